//! `wgquant`: run GGUF-quantized language models on any GPU.
//!
//! One command with a subcommand per job (`wgquant chat`, `wgquant generate -p ...`, `wgquant
//! plan ...`); `wgquant --help` lists them and `wgquant SUBCOMMAND --help` their flags. The flags
//! that several subcommands take are defined once ([`common::ModelArgs`],
//! [`common::SamplingArgs`]), spelled as llama.cpp spells them where it has them.
//!
//! Output meant for programs (answers, JSON, tables) goes to stdout; progress, the model line,
//! statistics and errors to stderr. An error is one `error: ...` line and exit status 1.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod chat;
mod common;
mod generate;
mod inspect;
mod perplexity;
mod plan;
mod quantize;
mod serve;
mod tokenize;

#[derive(Parser)]
#[command(name = "wgquant", version, about = "Run GGUF-quantized language models on any GPU (wgpu + WGSL)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Chat with a model: line editing, streamed answers, the model's chat template
    Chat(chat::Args),
    /// Generate text from a prompt: the text on stdout, timings on stderr
    Generate(generate::Args),
    /// An OpenAI-compatible HTTP server that batches concurrent requests
    Serve(serve::Args),
    /// Quantize a GGUF model with one of llama.cpp's file-type recipes
    Quantize(quantize::Args),
    /// Print a GGUF file's metadata and tensors
    Inspect(inspect::Args),
    /// Plan a model's VRAM use from its metadata: what goes on the GPU, what runs on the CPU
    Plan(plan::Args),
    /// The format benchmark: size, quality and speed of every quantization of a model
    Bench(bench::Args),
    /// Print a text's token ids as JSON, as llama-tokenize --ids does
    Tokenize(tokenize::Args),
    /// Perplexity of a model on a text file, llama-perplexity's method
    Perplexity(perplexity::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print as usual.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => return common::fail(&common::clap_message(&e.to_string())),
    };
    let result = match &cli.command {
        Command::Chat(args) => chat::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Perplexity(args) => perplexity::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => common::fail(&e.to_string()),
    }
}
