//! Print the token ids of a text as a JSON array, the way llama.cpp's `llama-tokenize --ids` does:
//! BOS in front when the model asks for it (and EOS behind when it asks for that too), special
//! tokens written in the text (`<start_of_turn>`) parsed as their ids.
//!
//! ```text
//! cargo run --example tokenize -- -m models/gemma-3-270m-q4_k_m.gguf "Once upon a time"
//! [2,14946,3324,496,990]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use wgquant::gguf::GgufFile;
use wgquant::tokenizer::Tokenizer;

/// Tokenize TEXT with the vocabulary of a GGUF model and print the ids as JSON.
#[derive(Parser)]
struct Args {
    /// The GGUF model whose tokenizer to use.
    #[arg(short, long)]
    model: PathBuf,
    /// The text to tokenize.
    text: String,
    /// Do not add BOS even when the model asks for it.
    #[arg(long)]
    no_bos: bool,
    /// Tokenize special-token markup as plain text.
    #[arg(long)]
    no_parse_special: bool,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => return fail(&clap_message(&e.to_string())),
    };
    match run(&args) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn run(args: &Args) -> wgquant::Result<String> {
    let gguf = GgufFile::open(&args.model)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    // llama-tokenize passes "add special tokens" = the model's add_bos flag unless told otherwise.
    let add_special = tokenizer.add_bos() && !args.no_bos;
    let mut ids = tokenizer.encode(&args.text, add_special, !args.no_parse_special)?;
    if add_special && tokenizer.add_eos() {
        ids.extend(tokenizer.eos_id());
    }
    serde_json::to_string(&ids).map_err(|e| wgquant::Error::Invalid(e.to_string()))
}

/// clap's message without its usage block, on one line.
fn clap_message(rendered: &str) -> String {
    let lines: Vec<&str> = rendered.lines().take_while(|l| !l.starts_with("Usage:")).map(str::trim).collect();
    lines.into_iter().filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// One line on stderr and exit status 1, so that scripts can rely on both.
fn fail(message: &str) -> ExitCode {
    eprintln!("error: {}", message.trim_start_matches("error: ").replace('\n', " "));
    ExitCode::FAILURE
}
