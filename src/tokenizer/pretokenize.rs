//! Byte-level BPE pre-tokenization: the text is cut into words by a sequence of regexes chosen by
//! `tokenizer.ggml.pre`, and merges never cross a word boundary. The regexes are llama.cpp's (its
//! adaptations of the `tokenizer.json` patterns, with case-insensitive groups spelled out).
//!
//! Splitting follows llama.cpp's `unicode_regex_split`: each regex in turn splits every piece left
//! by the previous one; matched spans and the unmatched gaps between them both become pieces.

use fancy_regex::Regex;

use crate::error::{Error, Result};

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's fallback set for `pre = "default"` or a missing key.
const DEFAULT: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"];

/// Pre-tokenizer names that llama.cpp treats as Llama 3's (which also ignore merges for whole words
/// already in the vocabulary, and turn BOS on).
const LLAMA3_NAMES: &[&str] =
    &["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"];

pub(crate) fn is_llama3_family(pre: &str) -> bool {
    LLAMA3_NAMES.contains(&pre)
}

/// The compiled regex sequence for one `tokenizer.ggml.pre` value.
#[derive(Clone, Debug)]
pub(crate) struct PreTokenizer {
    regexes: Vec<Regex>,
    /// Whole words found in the vocabulary are emitted without merging (Llama 3's `ignore_merges`).
    pub ignore_merges: bool,
}

impl PreTokenizer {
    /// The pre-tokenizer named `pre`; an unknown name is an error naming it.
    pub fn for_name(pre: &str) -> Result<PreTokenizer> {
        let (patterns, ignore_merges): (Vec<&str>, bool) = match pre {
            "" | "default" => (DEFAULT.to_vec(), false),
            p if is_llama3_family(p) => (vec![LLAMA3], true),
            "dbrx" | "smaug-bpe" => (vec![LLAMA3], false),
            "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" => (vec![QWEN2], false),
            "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" | "jais" | "roberta-bpe" => (vec![GPT2], false),
            "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" => {
                (vec![r"\p{N}", GPT2], false)
            }
            other => {
                return Err(Error::Tokenizer(format!(
                    "pre-tokenizer `{other}` (tokenizer.ggml.pre) is not supported; supported: default, \
                     llama3/llama-bpe, qwen2, gpt-2, starcoder"
                )))
            }
        };
        let regexes = patterns
            .iter()
            .map(|p| Regex::new(p).map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex {p:?}: {e}"))))
            .collect::<Result<_>>()?;
        Ok(PreTokenizer { regexes, ignore_merges })
    }

    /// Cut `text` into words (contiguous, covering all of it, none empty).
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        for re in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                split_one(re, piece, &mut next);
            }
            pieces = next;
        }
        pieces.retain(|p| !p.is_empty());
        pieces
    }
}

/// Matches and gaps of `re` over `piece`, in order. Each piece is matched on its own, so lookaheads
/// see its end as the end of the text, as in llama.cpp. A regex runtime error (backtrack limit) leaves
/// the rest of the piece whole rather than failing the encode.
fn split_one<'t>(re: &Regex, piece: &'t str, out: &mut Vec<&'t str>) {
    let mut last = 0;
    for m in re.find_iter(piece) {
        let Ok(m) = m else { break };
        if m.start() == m.end() {
            continue;
        }
        if m.start() > last {
            out.push(&piece[last..m.start()]);
        }
        out.push(m.as_str());
        last = m.end();
    }
    if last < piece.len() {
        out.push(&piece[last..]);
    }
}
