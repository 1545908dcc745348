//! `wgquant generate -p PROMPT [-n 64] [--temp 0]`: the generated text on stdout, timings (and,
//! with `WGQUANT_PROFILE=1`, device time per kernel per decode step) on stderr.

use std::io::Write;

use wgquant::gpu::{format_profile, PROFILE_ENV};
use wgquant::{GenerateParams, Result};

use crate::common::{self, ModelArgs, SamplingArgs, DEFAULT_MODEL};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The prompt (BOS is added when the model wants it; special tokens are parsed)
    #[arg(short, long)]
    prompt: String,
    /// Tokens to generate
    #[arg(short = 'n', long = "n-predict", default_value_t = 64)]
    n_predict: usize,
}

pub fn run(args: &Args) -> Result<()> {
    let path = args.model.path(DEFAULT_MODEL)?;
    let gguf = common::open_checked(&path)?;
    let model = common::load(&path, args.model.options(&gguf)?)?;
    let params =
        GenerateParams { max_tokens: args.n_predict, sampler: args.sampling.params(), ..GenerateParams::default() };
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
        common::device_label(&model),
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
