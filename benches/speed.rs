//! Prompt and decode speed of a model, in the manner of llama.cpp's `llama-bench`, so the two can
//! be run side by side (`scripts/compare-llamacpp.sh`):
//!
//! `cargo bench --bench speed -- -m MODEL -p 64 -n 32 -r 3`
//! `cargo bench --bench speed -- --stand-in llama2-7b:Q4_K_M -p 512 -n 128 -d 4096,16384`
//!
//! `ppP`: P prompt tokens in one call; `tgN`: N tokens decoded greedily one at a time after a
//! one-token prompt; `tgN@dD`: the same N steps at positions D.. of a cache D tokens deep (the
//! cache is not filled first: attention reads every cached position whatever it holds, so a
//! step costs what it would after a real prompt). Each is repeated `-r` times; mean ± standard
//! deviation in tokens per second.
//!
//! Beside tokens per second it reports what a GPU engineer asks first: load time, first-token
//! latency, host time per decode step (recording and submitting, up to the submit), and decode
//! against its physical bound (the weight bytes a step reads ÷ the device's measured streaming-
//! read bandwidth). With `WGQUANT_PROFILE=1`, the device time of each kernel per decode step.
//!
//! `--stand-in SHAPE:FTYPE` writes a model of a known shape (`llama2-7b`, `llama3-8b`,
//! `mistral-7b`, `qwen3-8b`, `phi3-mini`, `gemma2-9b`) with random weights in llama.cpp's recipe
//! for FTYPE, times it, and deletes it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use wgquant::bench::speed::{host_read_bandwidth, multiplied_matrices, read_bandwidth, PassTimer};
use wgquant::gguf::GgufFile;
use wgquant::gpu::{format_profile, PROFILE_ENV};
use wgquant::model::gpu::{GpuModel, GpuState, Offload};
use wgquant::model::zoo::{self, StandInWeights};
use wgquant::model::KvType;
use wgquant::quantize::FileType;
use wgquant::{Error, Model, ModelOptions, Result};

#[derive(Parser)]
#[command(about = "Prompt and decode tokens per second of a GGUF model on the GPU")]
struct Args {
    /// GGUF model file.
    #[arg(short, long, default_value = "models/gemma-3-270m-q4_k_m.gguf")]
    model: PathBuf,
    /// Instead of a file: a stand-in with random weights, `SHAPE:FTYPE` (`llama2-7b:Q4_K_M`).
    #[arg(long)]
    stand_in: Option<String>,
    /// Folder the stand-in is written to (deleted after the run); default: the temp folder.
    #[arg(long)]
    stand_in_dir: Option<PathBuf>,
    /// Keep the stand-in after the run (to time llama.cpp on the same file).
    #[arg(long)]
    keep_stand_in: bool,
    /// Prompt tokens.
    #[arg(short = 'p', long, default_value_t = 64)]
    prompt_tokens: usize,
    /// Decoded tokens.
    #[arg(short = 'n', long, default_value_t = 32)]
    decode_tokens: usize,
    /// Cache depths to decode at as well (comma-separated), like llama-bench's `-d`.
    #[arg(short = 'd', long, value_delimiter = ',')]
    depth: Vec<usize>,
    /// Repetitions.
    #[arg(short = 'r', long, default_value_t = 3)]
    reps: usize,
    /// Prompt tokens per micro-batch.
    #[arg(short = 'b', long, default_value_t = 512)]
    batch: usize,
    /// Adapter index or name substring.
    #[arg(long)]
    device: Option<String>,
    /// Layers on the GPU, as llama-bench's `-ngl`: the rest, and then the output head too, run on
    /// the CPU (0: everything on the CPU). Default: what the VRAM plan decides.
    #[arg(long = "ngl")]
    gpu_layers: Option<usize>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Mean and sample standard deviation.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (mean, var.sqrt())
}

/// A stand-in written for this run, deleted when dropped unless kept.
struct StandIn {
    path: PathBuf,
    keep: bool,
}

impl StandIn {
    fn write(spec: &str, dir: Option<&Path>, keep: bool) -> Result<StandIn> {
        let (shape, ftype) = spec
            .split_once(':')
            .ok_or_else(|| Error::Invalid(format!("--stand-in wants SHAPE:FTYPE, got `{spec}`")))?;
        let (shape, ftype) = (zoo::shape_named(shape)?, FileType::from_name(ftype)?);
        let dir = dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let path = dir.join(format!("{}-{}-random.gguf", shape.name, ftype.name()));
        let t = Instant::now();
        zoo::write_stand_in(shape, ftype, StandInWeights::Random { seed: 1 }, &path)?;
        let size = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        eprintln!(
            "wrote {} ({:.2} GB of random weights) in {:.1} s",
            path.display(),
            size as f64 / 1e9,
            t.elapsed().as_secs_f64()
        );
        Ok(StandIn { path, keep })
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Fixed pseudo-random token ids (llama-bench also times random tokens): no tokenizer effects.
fn tokens(n: usize, seed: u64, n_vocab: u64) -> Vec<u32> {
    (0..n as u64).map(|i| (((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed) % n_vocab) as u32).collect()
}

/// One timed decode run: seconds for `steps` greedy steps from position `pos0` (each token picked
/// on the device, as `Session` does for greedy decoding), and the host seconds of recording and
/// submitting them.
struct Decode {
    seconds: f64,
    host_seconds: f64,
    /// Seconds in the layers and head the plan left on the CPU.
    cpu_seconds: f64,
}

fn decode(model: &GpuModel, state: &mut GpuState, first: u32, pos0: usize, steps: usize) -> Result<Decode> {
    let mut next = first;
    let (mut host_seconds, mut cpu_seconds) = (0.0, 0.0);
    let t = Instant::now();
    for i in 0..steps {
        next = model.forward_greedy(state, &[next], pos0 + i)?;
        host_seconds += state.last_host_seconds();
        cpu_seconds += state.last_cpu_seconds();
    }
    Ok(Decode { seconds: t.elapsed().as_secs_f64(), host_seconds, cpu_seconds })
}

fn run(args: &Args) -> Result<()> {
    if args.prompt_tokens == 0 || args.decode_tokens == 0 {
        return Err(Error::Invalid("-p and -n must be at least 1".into()));
    }
    let stand_in = args
        .stand_in
        .as_deref()
        .map(|s| StandIn::write(s, args.stand_in_dir.as_deref(), args.keep_stand_in))
        .transpose()?;
    let path = stand_in.as_ref().map_or(args.model.as_path(), |s| s.path.as_path());
    let max_depth = args.depth.iter().copied().max().unwrap_or(0);
    let n_ctx = (args.prompt_tokens + 1).max(max_depth + 1) + args.decode_tokens + 1;
    let options = ModelOptions {
        adapter: args.device.clone(),
        n_ctx: Some(n_ctx),
        batch: args.batch.min(args.prompt_tokens),
        kv_type: KvType::F16,
        offload: args.gpu_layers.map(|n| Offload { gpu_layers: n, head_on_gpu: false }),
        ..Default::default()
    };
    let t_load = Instant::now();
    let model = Model::load(path, options)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let gpu = model.gpu_model();
    let ctx = model.gpu();
    let n_vocab = model.config().n_vocab as u64;

    let file = GgufFile::open(path)?;
    let step_bytes: u64 = multiplied_matrices(&file).iter().map(|t| t.n_bytes).sum();
    let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    let timer = PassTimer::new(ctx);
    // All on the CPU, the bound is the host's memory; otherwise the adapter's.
    let (bandwidth, yardstick) = match args.gpu_layers {
        Some(0) => (host_read_bandwidth(), "the host's read"),
        _ => (read_bandwidth(ctx, &timer, (1u64 << 30).min(ctx.max_binding_size() & !15), 3)?, "streaming read"),
    };
    let bound_tps = bandwidth * 1e9 / step_bytes as f64;
    eprintln!("device: {}, {} profile", ctx.describe(), ctx.profile().name);
    eprintln!(
        "loaded {:.2} GB in {load_s:.2} s ({:.2} GB/s); {yardstick} {bandwidth:.1} GB/s; a decode step reads {:.2} GB of weights: bound {bound_tps:.1} t/s",
        size as f64 / 1e9,
        size as f64 / 1e9 / load_s,
        step_bytes as f64 / 1e9
    );

    // Prompt processing, and the first token's latency (the prompt plus picking the token).
    let batch = model.plan().batch;
    let mut state = GpuState::new(gpu, n_ctx, batch, 1, KvType::F16)?;
    gpu.forward_greedy(&mut state, &tokens(args.prompt_tokens.min(16), 99, n_vocab), 0)?; // builds pipelines
    let (mut pp, mut first_token) = (Vec::new(), f64::MAX);
    for rep in 0..args.reps.max(1) as u64 {
        let prompt = tokens(args.prompt_tokens, rep, n_vocab);
        let t = Instant::now();
        gpu.forward_greedy(&mut state, &prompt, 0)?;
        let s = t.elapsed().as_secs_f64();
        pp.push(args.prompt_tokens as f64 / s);
        first_token = first_token.min(s);
    }
    drop(state);

    // Decode at the start of the cache, then at each depth.
    let mut rows = vec![(format!("pp{}", args.prompt_tokens), mean_sd(&pp), None)];
    let mut profile = Vec::new();
    for &depth in std::iter::once(&0).chain(&args.depth) {
        let mut state = GpuState::new(gpu, depth + args.decode_tokens + 2, 1, 1, KvType::F16)?;
        decode(gpu, &mut state, 1, depth, 2)?; // builds pipelines
        let (mut tps, mut host, mut cpu_share) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..args.reps.max(1) as u64 {
            ctx.take_profile();
            let d = decode(gpu, &mut state, tokens(1, rep, n_vocab)[0], depth + 1, args.decode_tokens)?;
            tps.push(args.decode_tokens as f64 / d.seconds);
            host.push(d.host_seconds / args.decode_tokens as f64 * 1e6);
            cpu_share.push(d.cpu_seconds / d.seconds * 100.0);
            if depth == 0 && rep == 0 {
                profile = ctx.take_profile(); // empty unless profiling is on
            }
        }
        let test =
            if depth == 0 { format!("tg{}", args.decode_tokens) } else { format!("tg{}@d{depth}", args.decode_tokens) };
        rows.push((test, mean_sd(&tps), Some((mean_sd(&host).0, mean_sd(&cpu_share).0))));
    }

    let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let size_mib = size as f64 / (1 << 20) as f64;
    // "CPU %": the share of a decode step spent in the layers and head left on the CPU; the rest
    // is the GPU's work, waiting for it, and the host's recording.
    println!("| model | size | device | test | t/s | host µs/step | CPU % | % of bound |");
    println!("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |");
    // With every layer and the head on the CPU the adapter does none of the work.
    let device = match args.gpu_layers {
        Some(0) => wgquant::cpu::describe(),
        _ => ctx.adapter_info().name.clone(),
    };
    for (test, (mean, sd), step) in rows {
        let (host, cpu, bound) = match step {
            Some((h, cpu)) => (format!("{h:.0}"), format!("{cpu:.0}"), format!("{:.1}", mean / bound_tps * 100.0)),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!("| {name} | {size_mib:.2} MiB | {device} | {test} | {mean:.2} ± {sd:.2} | {host} | {cpu} | {bound} |");
    }
    println!("load {load_s:.2} s; first token after {} prompt tokens {:.1} ms", args.prompt_tokens, first_token * 1e3);
    if !profile.is_empty() {
        println!("device time per decode step ({} steps, {PROFILE_ENV}=1):", args.decode_tokens);
        print!("{}", format_profile(&profile, args.decode_tokens as f64));
    }
    Ok(())
}
