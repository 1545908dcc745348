//! Prompt and decode speed of a model, in the manner of llama.cpp's `llama-bench`, so the two can
//! be run side by side (`scripts/compare-llamacpp.sh`):
//!
//! `cargo bench --bench speed -- -m MODEL -p 64 -n 32 -r 3`
//!
//! `ppP`: P prompt tokens in one call; `tgN`: N tokens decoded greedily one at a time after a
//! short prompt. Each is repeated `-r` times; mean ± standard deviation in tokens per second.

use std::process::ExitCode;

use clap::Parser;
use wgquant::bench::speed::generation_speed;
use wgquant::{Model, ModelOptions};

#[derive(Parser)]
#[command(about = "Prompt and decode tokens per second of a GGUF model on the GPU")]
struct Args {
    /// GGUF model file.
    #[arg(short, long, default_value = "models/gemma-3-270m-q4_k_m.gguf")]
    model: std::path::PathBuf,
    /// Prompt tokens.
    #[arg(short = 'p', long, default_value_t = 64)]
    prompt_tokens: usize,
    /// Decoded tokens.
    #[arg(short = 'n', long, default_value_t = 32)]
    decode_tokens: usize,
    /// Repetitions.
    #[arg(short = 'r', long, default_value_t = 3)]
    reps: usize,
    /// Adapter index or name substring.
    #[arg(long)]
    device: Option<String>,
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

fn run(args: &Args) -> wgquant::Result<()> {
    let options = ModelOptions { adapter: args.device.clone(), ..Default::default() };
    let model = Model::load(&args.model, options)?;
    let n_vocab = model.config().n_vocab as u64;
    // Fixed pseudo-random token ids (llama-bench also times random tokens): no tokenizer effects.
    let tokens = |n: usize, seed: u64| -> Vec<u32> {
        (0..n as u64)
            .map(|i| ((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed) % n_vocab)
            .map(|t| t as u32)
            .collect()
    };
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for rep in 0..args.reps.max(1) as u64 {
        pp.push(generation_speed(model.gpu_model(), &tokens(args.prompt_tokens, rep), 1, 1)?.0);
        tg.push(generation_speed(model.gpu_model(), &tokens(1, rep), args.decode_tokens, 1)?.1);
    }
    let size = std::fs::metadata(&args.model).map_err(|e| wgquant::Error::io(&args.model, e))?.len();
    let name = args.model.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    println!("| model | size | device | test | t/s |");
    println!("| --- | ---: | --- | --- | ---: |");
    for (test, v) in [(format!("pp{}", args.prompt_tokens), &pp), (format!("tg{}", args.decode_tokens), &tg)] {
        let (mean, sd) = mean_sd(v);
        let size_mib = size as f64 / (1 << 20) as f64;
        println!("| {name} | {size_mib:.2} MiB | {} | {test} | {mean:.2} ± {sd:.2} |", model.gpu().adapter_info().name);
    }
    Ok(())
}
