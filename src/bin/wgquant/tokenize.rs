//! `wgquant tokenize TEXT`: the token ids of a text as a JSON array, the way llama.cpp's
//! `llama-tokenize --ids` prints them: BOS in front when the model asks for it (and EOS behind
//! when it asks for that too), special tokens written in the text (`<start_of_turn>`) parsed as
//! their ids.
//!
//! ```text
//! wgquant tokenize -m models/gemma-3-270m-q4_k_m.gguf "Once upon a time"
//! [2,14946,3324,496,990]
//! ```

use std::path::PathBuf;

use wgquant::gguf::GgufFile;
use wgquant::tokenizer::Tokenizer;
use wgquant::Result;

use crate::common::DEFAULT_MODEL;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model whose tokenizer to use [default: models/gemma-3-270m-q4_k_m.gguf]
    #[arg(short, long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// The text to tokenize
    text: String,
    /// Do not add BOS even when the model asks for it
    #[arg(long)]
    no_bos: bool,
    /// Tokenize special-token markup as plain text
    #[arg(long)]
    no_parse_special: bool,
}

pub fn run(args: &Args) -> Result<()> {
    println!("{}", ids_json(args)?);
    Ok(())
}

fn ids_json(args: &Args) -> Result<String> {
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
