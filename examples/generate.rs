//! Generate text from a prompt: the generated text on stdout, timings on stderr.
//!
//! `cargo run --release --example generate -- -m MODEL -p PROMPT -n 64 --temp 0 [--seed S]`

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use wgquant::gpu::{format_profile, PROFILE_ENV};
use wgquant::{GenerateParams, Model, ModelOptions, SamplerParams};

mod common;

#[derive(Parser)]
#[command(about = "Generate text with a GGUF model on the GPU")]
struct Args {
    /// GGUF model file.
    #[arg(short, long, default_value = "models/gemma-3-270m-q4_k_m.gguf")]
    model: std::path::PathBuf,
    /// The prompt (BOS is added when the model wants it; special tokens are parsed).
    #[arg(short, long)]
    prompt: String,
    /// Tokens to generate.
    #[arg(short = 'n', long, default_value_t = 64)]
    n_predict: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
    /// Context length.
    #[arg(short = 'c', long)]
    ctx_size: Option<usize>,
    /// Adapter index or name substring (see `chat --device list`).
    #[arg(long)]
    device: Option<String>,
}

fn main() -> ExitCode {
    common::exit_code(run(&Args::parse()))
}

fn run(args: &Args) -> wgquant::Result<()> {
    let options = ModelOptions { n_ctx: args.ctx_size, adapter: args.device.clone(), ..Default::default() };
    let model = Model::load(&args.model, options)?;
    let params = GenerateParams {
        max_tokens: args.n_predict,
        sampler: SamplerParams {
            temperature: args.temp,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repeat_penalty: args.repeat_penalty,
            seed: args.seed,
            ..SamplerParams::default()
        },
        ..GenerateParams::default()
    };
    let mut session = model.session()?;
    let mut generation = session.generate(&args.prompt, &params)?;
    let mut stdout = std::io::stdout().lock();
    for (i, piece) in (&mut generation).enumerate() {
        let _ = write!(stdout, "{}", piece?.text);
        let _ = stdout.flush();
        if i == 0 {
            // The prompt's forward passes are not part of the decode profile.
            model.gpu().take_profile();
        }
    }
    let _ = writeln!(stdout);
    let s = generation.stats();
    eprintln!(
        "{} | load {:.2} s | prompt {} tokens {:.1} t/s | decode {} tokens {:.1} t/s | stop: {:?}",
        model.gpu().describe(),
        model.load_time().as_secs_f64(),
        s.prompt_tokens,
        s.prompt_tps(),
        s.generated_tokens,
        s.decode_tps(),
        s.stop_reason
    );
    let profile = model.gpu().take_profile();
    if !profile.is_empty() {
        // The first token came from the prompt's pass; each later one took a decode step.
        let steps = s.generated_tokens.saturating_sub(1).max(1);
        eprintln!("device time per decode step ({steps} steps, {PROFILE_ENV}=1):");
        eprint!("{}", format_profile(&profile, steps as f64));
    }
    Ok(())
}
