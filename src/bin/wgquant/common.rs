//! What the subcommands share: the model and sampling flag groups, finding and loading the model
//! (with a progress bar), the one-line model description, and errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wgquant::gguf::GgufFile;
use wgquant::model::gpu::Offload;
use wgquant::{Error, Model, ModelOptions, Result, SamplerParams};

/// Where `scripts/fetch-model.sh` puts the chat's default model: instruction-tuned (Gemma 3 270M
/// is a base model, never trained to answer).
pub const CHAT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The default of the other subcommands, and the reference for the Q4_K_M figures.
pub const DEFAULT_MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

/// Which model, on which device, within what memory.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// GGUF model file [default: the subcommand's default model under models/, in the current
    /// directory or the crate's]
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Context length in tokens [default: the model's training context, at most 4096]
    #[arg(short = 'c', long = "ctx-size", visible_alias = "ctx")]
    pub ctx_size: Option<usize>,
    /// VRAM budget, e.g. 6GiB or 512MiB [default: what the adapter reports]
    #[arg(long)]
    pub vram_budget: Option<String>,
    /// Adapter index or name substring; `gpu` for the best adapter; `cpu` for every layer on the
    /// CPU's own kernels (`wgquant chat --device list` lists them) [default: the best adapter, or
    /// the CPU's own kernels where that adapter is a CPU emulator such as lavapipe and no VRAM
    /// budget is given]
    #[arg(long)]
    pub device: Option<String>,
}

/// `--device` value for the CPU's own kernels.
pub const CPU_DEVICE: &str = "cpu";
/// `--device` value for the best adapter, even one that emulates a GPU on the CPU.
pub const GPU_DEVICE: &str = "gpu";

impl ModelArgs {
    /// The model file: `--model`, or `default` in the current directory or the crate's.
    pub fn path(&self, default: &str) -> Result<PathBuf> {
        if let Some(path) = &self.model {
            return match path.exists() {
                true => Ok(path.clone()),
                false => Err(Error::Invalid(format!("model file {} does not exist", path.display()))),
            };
        }
        let candidates = [PathBuf::from(default), Path::new(env!("CARGO_MANIFEST_DIR")).join(default)];
        candidates.into_iter().find(|p| p.exists()).ok_or_else(|| {
            Error::Invalid(format!(
                "the default model {default} is missing: run scripts/fetch-model.sh to download it, or pass --model PATH"
            ))
        })
    }

    /// The load options these flags ask for, for the model `gguf`.
    pub fn options(&self, gguf: &GgufFile) -> Result<ModelOptions> {
        let vram_budget = self.vram_budget.as_deref().map(wgquant::plan::parse_bytes).transpose()?;
        let native = match self.device.as_deref() {
            Some(CPU_DEVICE) => true,
            Some(_) => false,
            None => native_by_default(gguf, vram_budget),
        };
        Ok(ModelOptions {
            n_ctx: self.ctx_size,
            adapter: self.device.clone().filter(|d| d != CPU_DEVICE && d != GPU_DEVICE),
            vram_budget,
            offload: native.then_some(Offload::ALL_CPU),
            ..Default::default()
        })
    }
}

/// Whether `gguf` runs on the CPU's own kernels when no device is named
/// ([`wgquant::cpu::cpu_by_default`]); said on stderr. A VRAM budget asks for the adapter.
fn native_by_default(gguf: &GgufFile, vram_budget: Option<u64>) -> bool {
    let Some(why) = vram_budget.is_none().then(|| wgquant::cpu::cpu_by_default(gguf)).flatten() else {
        return false;
    };
    eprintln!("device: {why}: running on the CPU's own kernels");
    true
}

/// How tokens are picked.
#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 always picks the most likely token
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Sample from the k most likely tokens only; 0 keeps all
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Sample from the most likely tokens whose probabilities add up to p; 1 keeps all
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than min-p times the most likely one; 0 keeps all
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalise tokens seen in the last --repeat-last-n tokens; 1 is off
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens --repeat-penalty looks at
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed: the same seed and input give the same output
    #[arg(short, long, default_value_t = SamplerParams::default().seed)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn params(&self) -> SamplerParams {
        SamplerParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed,
        }
    }
}

/// Name the file in errors about its contents ("bad GGUF at byte 0" alone does not say which file).
pub fn in_file(path: &Path, e: Error) -> Error {
    match e {
        Error::Io { .. } => e,
        other => Error::Invalid(format!("{}: {other}", path.display())),
    }
}

/// Opens the GGUF at `path` and checks that its architecture runs, before any GPU is probed (and
/// the probing's noise).
pub fn open_checked(path: &Path) -> Result<GgufFile> {
    let gguf = GgufFile::open(path).map_err(|e| in_file(path, e))?;
    wgquant::model::Config::from_gguf(&gguf).map_err(|e| in_file(path, e))?;
    Ok(gguf)
}

/// Load the model with a progress bar on stderr (hidden when stderr is not a terminal).
pub fn load(path: &Path, options: ModelOptions) -> Result<Model> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:32}] {bytes}/{total_bytes} ({eta})")
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    bar.set_message(format!("loading {name}"));
    let model = Model::load_with_progress(path, options, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    model.map_err(|e| in_file(path, e))
}

/// What runs the model: the adapter, or the CPU's own kernels when every layer is there.
pub fn device_label(model: &Model) -> String {
    match model.offload() == Offload::ALL_CPU {
        true => wgquant::cpu::describe(),
        false => model.gpu().describe(),
    }
}

/// One line: adapter, model, quant mix, VRAM plan (or, with everything on the CPU, that).
pub fn describe(model: &Model, gguf: &GgufFile) -> String {
    let plan = model.plan();
    if model.offload() == Offload::ALL_CPU {
        return format!(
            "{} | {} ({}, {} layers) | {} | context {} | loaded in {:.1} s",
            device_label(model),
            plan.model,
            plan.arch,
            plan.layers.len(),
            quant_mix(gguf),
            plan.n_ctx,
            model.load_time().as_secs_f64()
        );
    }
    format!(
        "{} | {} ({}, {} layers) | {} | VRAM {} of {} ({} of {} layers on the GPU, context {}, {:?} KV) | loaded in {:.1} s",
        model.gpu().adapter_info().name,
        plan.model,
        plan.arch,
        plan.layers.len(),
        quant_mix(gguf),
        wgquant::plan::fmt_bytes(plan.gpu_total()),
        wgquant::plan::fmt_bytes(plan.budget_bytes),
        plan.gpu_layers(),
        plan.layers.len(),
        plan.n_ctx,
        plan.kv_type,
        model.load_time().as_secs_f64()
    )
}

/// Tensor counts per type, largest share of the bytes first: `Q8_0×10 Q5_0×81 ...`.
fn quant_mix(gguf: &GgufFile) -> String {
    let mut by_type: Vec<(wgquant::GgmlType, usize, u64)> = Vec::new();
    for t in gguf.tensors() {
        match by_type.iter_mut().find(|(ty, _, _)| *ty == t.ty) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += t.n_bytes;
            }
            None => by_type.push((t.ty, 1, t.n_bytes)),
        }
    }
    by_type.sort_by_key(|&(_, _, bytes)| std::cmp::Reverse(bytes));
    by_type.iter().map(|(ty, n, _)| format!("{}×{n}", ty.name())).collect::<Vec<_>>().join(" ")
}

/// clap's message without its usage block, on one line.
pub fn clap_message(rendered: &str) -> String {
    let lines: Vec<&str> = rendered.lines().take_while(|l| !l.starts_with("Usage:")).map(str::trim).collect();
    lines.into_iter().filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// One `error: ...` line on stderr and exit status 1, so that scripts can rely on both.
pub fn fail(message: &str) -> ExitCode {
    eprintln!("error: {}", message.trim_start_matches("error: ").replace('\n', " "));
    ExitCode::FAILURE
}
