//! Plan where a model's parts go under a VRAM budget, from the file's metadata alone (nothing is
//! uploaded, no GPU is needed).
//!
//! `wgquant plan -m MODEL.gguf --vram-budget 6GiB -c 4096 [--batch 512] [--kv f16|f32]
//!     [--allow-smaller-kv] [--allow-smaller-ctx] [--json]`
//!
//! Without a file: `--shape llama2-7b|llama3-8b|mistral-7b|qwen3-8b|phi3-mini|gemma2-9b
//! [--ftype Q4_K_M]` writes a zero-filled
//! stand-in with that model's exact tensor names, shapes and the recipe's types to a temporary
//! directory (a sparse file: a few MB of disk) and plans it like any other file.
//!
//! Prints the plan table (or JSON); when no plan can work, one line saying why and exit code 1.

use std::path::PathBuf;

use wgquant::gguf::GgufFile;
use wgquant::model::config::KvType;
use wgquant::model::zoo;
use wgquant::plan::{self, parse_bytes, Budget, PlanRequest};
use wgquant::quantize::FileType;
use wgquant::{Error, Result};

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model.
    #[arg(short, long, required_unless_present = "shape", conflicts_with = "shape")]
    model: Option<PathBuf>,
    /// Plan a well-known shape instead of a file: llama2-7b, llama3-8b, mistral-7b, qwen3-8b,
    /// phi3-mini, gemma2-9b (or llama-tiny).
    #[arg(long)]
    shape: Option<String>,
    /// File type of the --shape stand-in (llama.cpp recipe names: Q4_K_M, Q8_0, ...).
    #[arg(long, default_value = "Q4_K_M")]
    ftype: String,
    /// GPU memory to plan for: 6GiB, 6 GB, 512MiB, or bytes (default: 4 GiB, with a note).
    #[arg(long)]
    vram_budget: Option<String>,
    /// Context length (default: 4096, or the model's training context if shorter).
    #[arg(short = 'c', long = "ctx-size", visible_alias = "ctx")]
    ctx: Option<usize>,
    /// Sequences held at once, each with its own KV cache (`wgquant serve --parallel`).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Prompt micro-batch (tokens per forward pass).
    #[arg(long, default_value_t = plan::DEFAULT_BATCH)]
    batch: usize,
    /// KV cache element type: f16 or f32.
    #[arg(long, default_value = "f16")]
    kv: String,
    /// Allow an F16 KV cache when F32 does not fit.
    #[arg(long)]
    allow_smaller_kv: bool,
    /// Allow halving the context (down to 512) when it does not fit.
    #[arg(long)]
    allow_smaller_ctx: bool,
    /// The device's largest buffer (default: WebGPU's guaranteed 256 MiB).
    #[arg(long)]
    max_buffer_size: Option<String>,
    /// The device's largest storage binding (default: WebGPU's guaranteed 128 MiB).
    #[arg(long)]
    max_binding_size: Option<String>,
    /// Print the plan as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    // Kept alive until the plan is made: the stand-in lives in it.
    let mut _tmp = None;
    let path = match (&args.model, &args.shape) {
        (Some(path), _) => path.clone(),
        (None, Some(shape)) => {
            let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
            let path = dir.path().join("stand-in.gguf");
            zoo::write_stand_in(
                zoo::shape_named(shape)?,
                FileType::from_name(&args.ftype)?,
                zoo::StandInWeights::Zeros,
                &path,
            )?;
            _tmp = Some(dir);
            path
        }
        (None, None) => return Err(Error::Invalid("give a model (-m) or a --shape".into())),
    };
    let file = GgufFile::open(&path)?;
    let req = request(args, &file)?;
    let plan = plan::plan(&file, &req)?;
    if args.json {
        let json = serde_json::to_string_pretty(&plan).map_err(|e| Error::Invalid(e.to_string()))?;
        println!("{json}");
    } else {
        print!("{plan}");
    }
    Ok(())
}

/// The plan request from the arguments; a defaulted budget is announced on stderr.
fn request(args: &Args, file: &GgufFile) -> Result<PlanRequest> {
    let user_budget = args.vram_budget.as_deref().map(parse_bytes).transpose()?;
    let budget = Budget::resolve(user_budget, None);
    if user_budget.is_none() {
        eprintln!("note: {}", budget.describe());
    }
    let n_ctx = match args.ctx {
        Some(n) => n,
        None => wgquant::model::config::Config::from_gguf(file)?.n_ctx_train.min(4096),
    };
    let mut req = PlanRequest::new(n_ctx, budget.bytes);
    req.batch = args.batch;
    req.set_sequences(args.parallel);
    req.kv_type = match args.kv.to_ascii_lowercase().as_str() {
        "f16" => KvType::F16,
        "f32" => KvType::F32,
        other => return Err(Error::Invalid(format!("--kv `{other}`: f16 or f32"))),
    };
    req.allow_smaller_kv = args.allow_smaller_kv;
    req.allow_smaller_ctx = args.allow_smaller_ctx;
    if let Some(s) = &args.max_buffer_size {
        req.max_buffer_size = parse_bytes(s)?;
    }
    if let Some(s) = &args.max_binding_size {
        req.max_binding_size = parse_bytes(s)?;
    }
    Ok(req)
}
