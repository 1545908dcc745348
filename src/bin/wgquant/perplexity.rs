//! `wgquant perplexity -f TEXT [-c 512] [--chunks N]`: perplexity measured like llama.cpp's
//! llama-perplexity (chunks of CTX tokens, the first replaced by BOS, only the second half of
//! each chunk scored). The last line is `PPL = X`.

use std::path::PathBuf;
use std::sync::Arc;

use wgquant::gguf::GgufFile;
use wgquant::gpu::{AdapterSelector, Context, ContextOptions};
use wgquant::model::gpu::{GpuModel, Offload};
use wgquant::model::Config;
use wgquant::tokenizer::Tokenizer;
use wgquant::Result;

use crate::common::DEFAULT_MODEL;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file [default: models/gemma-3-270m-q4_k_m.gguf]
    #[arg(short, long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Plain-text file
    #[arg(short, long)]
    file: PathBuf,
    /// Tokens per chunk
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    ctx_size: usize,
    /// Score at most this many chunks
    #[arg(long)]
    chunks: Option<usize>,
    /// Adapter index or name substring
    #[arg(long)]
    device: Option<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let text = std::fs::read_to_string(&args.file).map_err(|e| wgquant::Error::io(&args.file, e))?;
    let file = Arc::new(GgufFile::open(&args.model)?);
    let config = Config::from_gguf(&file)?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let tokens = tokenizer.encode(&text, tokenizer.add_bos(), false)?;
    let mut tokens = &tokens[..];
    if let Some(n) = args.chunks {
        tokens = &tokens[..tokens.len().min(n * args.ctx_size)];
    }
    let adapter = args.device.as_deref().map(AdapterSelector::parse);
    let ctx = Arc::new(Context::with_options(ContextOptions { adapter, ..Default::default() })?);
    eprintln!("{} | {} tokens, chunks of {}", ctx.describe(), tokens.len(), args.ctx_size);
    let model = GpuModel::load(ctx, file, Offload::all_gpu(&config), |_, _| {})?;
    let bos = if tokenizer.add_bos() { tokenizer.bos_id() } else { None };
    let start = std::time::Instant::now();
    let result = wgquant::eval::perplexity(&model, tokens, args.ctx_size, bos)?;
    let line: Vec<String> = result.per_chunk.iter().enumerate().map(|(i, p)| format!("[{}]{p:.4}", i + 1)).collect();
    eprintln!("{}", line.join(","));
    eprintln!(
        "{} tokens scored in {:.1} s ({:.1} tokens/s processed)",
        result.scored_tokens,
        start.elapsed().as_secs_f64(),
        (result.chunks * args.ctx_size) as f64 / start.elapsed().as_secs_f64()
    );
    println!("PPL = {:.4}", result.ppl);
    Ok(())
}
