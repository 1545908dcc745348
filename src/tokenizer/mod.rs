//! Tokenizers built from a GGUF file's vocabulary, matching llama.cpp token for token.
//!
//! Two algorithms, chosen by `tokenizer.ggml.model`:
//! - `llama`: SentencePiece-style score-driven merges with byte fallback (Gemma, Llama 2), in `spm.rs`;
//! - `gpt2`: byte-level BPE with ranked merges after a regex pre-tokenizer (Llama 3, Qwen2), in `bpe.rs`.
//!
//! Encoding first splits special tokens out of the text (`special.rs`), then runs the algorithm on
//! each text fragment. Decoding concatenates per-token byte pieces (`pieces.rs`); [`StreamDecoder`]
//! does it incrementally and only ever emits valid UTF-8.
//!
//! ```no_run
//! # fn main() -> wgquant::Result<()> {
//! let gguf = wgquant::gguf::GgufFile::open("models/gemma-3-270m-q4_k_m.gguf")?;
//! let tok = wgquant::tokenizer::Tokenizer::from_gguf(&gguf)?;
//! let ids = tok.encode("Once upon a time", tok.add_bos(), true)?;
//! assert_eq!(ids, [2, 14946, 3324, 496, 990]);
//! assert_eq!(tok.decode(&ids), "Once upon a time");
//! # Ok(()) }
//! ```

mod bpe;
mod bytes;
mod pieces;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod symbols;
mod vocab;

pub use bytes::byte_to_char_table;
pub use stream::StreamDecoder;
pub use vocab::TokenizerKind;

use crate::error::Result;
use crate::gguf::GgufFile;
use bpe::Bpe;
use pieces::Pieces;
use special::{Fragment, Specials};
use vocab::{attr, Vocab};

/// A tokenizer for one model: encodes text to token ids and decodes ids back to text.
///
/// Token ids outside the vocabulary never panic: they decode to nothing, have an empty piece and are
/// neither special nor end-of-generation.
#[derive(Clone)]
pub struct Tokenizer {
    vocab: Vocab,
    algo: Algorithm,
    specials: Specials,
    pieces: Pieces,
}

#[derive(Clone)]
enum Algorithm {
    SentencePiece { byte_fallback: Box<[Option<u32>; 256]> },
    Bpe(Box<Bpe>),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.vocab.kind)
            .field("pre", &self.vocab.pre)
            .field("vocab_size", &self.vocab.len())
            .field("bos", &self.vocab.special.bos)
            .field("eos", &self.vocab.special.eos)
            .field("add_bos", &self.vocab.add_bos)
            .finish()
    }
}

impl Tokenizer {
    /// Build the tokenizer described by the `tokenizer.ggml.*` metadata of `gguf`. An unsupported
    /// `tokenizer.ggml.model` or `tokenizer.ggml.pre` is an [`Error::Tokenizer`](crate::Error::Tokenizer)
    /// naming it.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer> {
        let vocab = Vocab::from_gguf(gguf)?;
        let algo = match vocab.kind {
            TokenizerKind::SentencePiece => {
                Algorithm::SentencePiece { byte_fallback: Box::new(pieces::byte_fallback_table(&vocab)) }
            }
            TokenizerKind::BytePairEncoding => Algorithm::Bpe(Box::new(Bpe::from_gguf(gguf, &vocab)?)),
        };
        let specials = Specials::new(&vocab);
        let pieces = Pieces::new(&vocab);
        Ok(Tokenizer { vocab, algo, specials, pieces })
    }

    /// Token ids for `text`. With `add_bos` the BOS token comes first (pass [`add_bos`](Self::add_bos)
    /// to do what the model asks). With `parse_special`, control tokens written in the text, such as
    /// `<start_of_turn>`, become their ids; without it they are tokenized as plain text.
    /// User-defined tokens are always recognised, as in llama.cpp.
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_bos {
            let bos =
                self.vocab.special.bos.ok_or_else(|| {
                    crate::Error::Tokenizer("BOS requested but the vocabulary has no BOS token".into())
                })?;
            out.push(bos);
        }
        // A SentencePiece fragment at the start or after a special token gets the space prefix.
        let mut after_special = true;
        for fragment in self.specials.partition(&self.vocab, text, parse_special) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(t) => {
                    self.encode_fragment(t, after_special, &mut out)?;
                    after_special = false;
                }
            }
        }
        Ok(out)
    }

    fn encode_fragment(&self, text: &str, after_special: bool, out: &mut Vec<u32>) -> Result<()> {
        match &self.algo {
            Algorithm::SentencePiece { byte_fallback } => {
                let prefix = if self.vocab.add_space_prefix && after_special { " " } else { "" };
                let escaped = format!("{prefix}{text}").replace(' ', "▁");
                spm::encode(&self.vocab, byte_fallback, &escaped, out)
            }
            Algorithm::Bpe(bpe) => {
                bpe.encode(&self.vocab, text, out);
                Ok(())
            }
        }
    }

    /// The text of `ids`: the concatenation of their pieces, skipping control tokens (BOS, EOS,
    /// `<end_of_turn>`), with the SentencePiece space prefix removed from the first piece. Bytes that
    /// do not form valid UTF-8 become U+FFFD. Equal to streaming the ids through a [`StreamDecoder`].
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut decoder = StreamDecoder::new();
        let mut text = String::new();
        for &id in ids {
            text.push_str(&decoder.push(self, id));
        }
        text.push_str(&decoder.finish());
        text
    }

    /// A fresh incremental decoder (see [`StreamDecoder`]).
    pub fn stream_decoder(&self) -> StreamDecoder {
        StreamDecoder::new()
    }

    /// The bytes token `id` stands for, with control tokens rendered as their text (`<end_of_turn>`).
    /// A piece can be part of a UTF-8 character (byte-fallback tokens). Empty for an out-of-range id.
    pub fn token_to_piece(&self, id: u32) -> &[u8] {
        self.pieces.get(id)
    }

    /// The piece as decoding shows it: `None` for control and unknown tokens and out-of-range ids.
    pub(crate) fn visible_piece(&self, id: u32) -> Option<&[u8]> {
        let hidden = self.vocab.attr(id) & (attr::CONTROL | attr::UNKNOWN) != 0;
        ((id as usize) < self.vocab.len() && !hidden).then(|| self.pieces.get(id))
    }

    /// The token's text as stored in the vocabulary ("▁time", "Ġthe", "<0x0A>").
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// The id of the token whose vocabulary text is exactly `text`.
    pub fn id_of(&self, text: &str) -> Option<u32> {
        self.vocab.id_of(text)
    }

    /// Number of tokens in the vocabulary (the length of a logits row).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Which algorithm this vocabulary uses.
    pub fn kind(&self) -> TokenizerKind {
        self.vocab.kind
    }

    /// `tokenizer.ggml.pre` ("" when absent).
    pub fn pre(&self) -> &str {
        &self.vocab.pre
    }

    /// Beginning-of-sequence token (`tokenizer.ggml.bos_token_id`, else the model type's default).
    pub fn bos_id(&self) -> Option<u32> {
        self.vocab.special.bos
    }

    /// End-of-sequence token (`tokenizer.ggml.eos_token_id`, else the model type's default).
    pub fn eos_id(&self) -> Option<u32> {
        self.vocab.special.eos
    }

    /// End-of-turn token (metadata `tokenizer.ggml.eot_token_id`, else found by text: `<end_of_turn>`,
    /// `<|eot_id|>`, `<|im_end|>`, ...).
    pub fn eot_id(&self) -> Option<u32> {
        self.vocab.special.eot
    }

    /// Whether generation should stop at `id`: EOS, EOT, EOM and the end tokens llama.cpp knows.
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation ids, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.vocab.eog
    }

    /// Whether `id` is a control token (never printed by [`decode`](Self::decode)).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id) & attr::CONTROL != 0
    }

    /// Whether the model expects BOS in front of a prompt (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// Whether the model expects EOS after a prompt (`tokenizer.ggml.add_eos_token`).
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }

    /// Whether SentencePiece encoding puts a space in front of the text (`tokenizer.ggml.add_space_prefix`).
    pub fn add_space_prefix(&self) -> bool {
        self.vocab.add_space_prefix
    }
}
