//! The vocabulary read from GGUF metadata: token texts, scores, attributes, special ids and the flags
//! that steer encoding. Defaults and the text-based detection of end-of-generation tokens follow
//! llama.cpp's `llama_vocab::load`, so a file behaves here as it does there.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, Value};

/// Per-token attribute bits, llama.cpp's `llama_token_attr` (a token can carry several).
pub(crate) mod attr {
    pub const UNKNOWN: u8 = 1 << 0;
    pub const UNUSED: u8 = 1 << 1;
    pub const NORMAL: u8 = 1 << 2;
    pub const CONTROL: u8 = 1 << 3;
    pub const USER_DEFINED: u8 = 1 << 4;
    pub const BYTE: u8 = 1 << 5;
}

/// Which tokenization algorithm a vocabulary uses (`tokenizer.ggml.model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// SentencePiece-style score-driven merges (`llama`): Llama 2, Gemma.
    SentencePiece,
    /// Byte-level BPE with ranked merges (`gpt2`): Llama 3, Qwen2, GPT-2.
    BytePairEncoding,
}

/// Token ids with a special role. `None` where the file (and the model type's defaults) has none.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
}

/// Everything read from the `tokenizer.ggml.*` keys.
#[derive(Clone)]
pub(crate) struct Vocab {
    pub kind: TokenizerKind,
    /// `tokenizer.ggml.pre` (empty when absent); only byte-level BPE uses it.
    pub pre: String,
    pub texts: Vec<Box<str>>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u8>,
    index: TextIndex,
    pub special: SpecialIds,
    /// Ids that end generation: eos, eot, eom and the texts llama.cpp recognises (`<end_of_turn>`, ...).
    pub eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
}

/// Token text → id.
type TextIndex = HashMap<Box<str>, u32>;

const KEY_MODEL: &str = "tokenizer.ggml.model";

/// Texts llama.cpp takes as end-of-turn when `tokenizer.ggml.eot_token_id` is absent.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Texts llama.cpp adds to the end-of-generation set whatever the metadata says.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<｜end▁of▁sentence｜>",
];

impl Vocab {
    /// Read the vocabulary of `gguf`. Fails, naming the key, on a missing or malformed vocabulary and
    /// on a tokenizer model this crate does not implement.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Vocab> {
        let model = gguf.get_str(KEY_MODEL)?;
        let kind = match model {
            "llama" => TokenizerKind::SentencePiece,
            "gpt2" => TokenizerKind::BytePairEncoding,
            other => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer model `{other}` ({KEY_MODEL}) is not supported; supported: llama, gpt2"
                )))
            }
        };
        let pre = optional_str(gguf, "tokenizer.ggml.pre")?.unwrap_or_default().to_string();
        let (texts, index) = read_texts(gguf)?;
        let n = texts.len();
        let scores = read_scores(gguf, n)?;
        let attrs = read_attrs(gguf, n)?;
        let mut vocab = Vocab {
            kind,
            pre,
            texts,
            scores,
            attrs,
            index,
            special: SpecialIds::default(),
            eog: Vec::new(),
            add_bos: kind == TokenizerKind::SentencePiece,
            add_eos: false,
            add_space_prefix: kind == TokenizerKind::SentencePiece,
        };
        if kind == TokenizerKind::BytePairEncoding && super::pretokenize::is_llama3_family(&vocab.pre) {
            // llama.cpp turns BOS on for the Llama 3 pre-tokenizers whatever the converter wrote.
            vocab.add_bos = true;
        }
        vocab.read_special_ids(gguf)?;
        vocab.read_flags(gguf)?;
        vocab.detect_eog();
        vocab.mark_unused();
        Ok(vocab)
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn id_of(&self, text: &str) -> Option<u32> {
        self.index.get(text).copied()
    }

    pub fn text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(|t| &**t)
    }

    pub fn attr(&self, id: u32) -> u8 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    pub fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    fn in_range(&self, id: u32) -> Option<u32> {
        ((id as usize) < self.len()).then_some(id)
    }

    fn read_special_ids(&mut self, gguf: &GgufFile) -> Result<()> {
        // The model types' defaults, as in llama.cpp; an id past the vocabulary is dropped.
        let (bos, eos, unk) = match self.kind {
            TokenizerKind::SentencePiece => (Some(1), Some(2), Some(0)),
            TokenizerKind::BytePairEncoding => (Some(11), Some(11), None),
        };
        let pick = |key: &str, default: Option<u32>| -> Result<Option<u32>> {
            let default = default.and_then(|d| self.in_range(d));
            Ok(match optional_u32(gguf, key)? {
                Some(id) if (id as usize) < self.len() => Some(id),
                _ => default,
            })
        };
        self.special = SpecialIds {
            bos: pick("tokenizer.ggml.bos_token_id", bos)?,
            eos: pick("tokenizer.ggml.eos_token_id", eos)?,
            eot: pick("tokenizer.ggml.eot_token_id", None)?,
            eom: pick("tokenizer.ggml.eom_token_id", None)?,
            unk: pick("tokenizer.ggml.unknown_token_id", unk)?,
        };
        Ok(())
    }

    fn read_flags(&mut self, gguf: &GgufFile) -> Result<()> {
        if let Some(b) = optional_bool(gguf, "tokenizer.ggml.add_bos_token")? {
            self.add_bos = b;
        }
        if let Some(b) = optional_bool(gguf, "tokenizer.ggml.add_eos_token")? {
            self.add_eos = b;
        }
        if self.kind == TokenizerKind::SentencePiece {
            if let Some(b) = optional_bool(gguf, "tokenizer.ggml.add_space_prefix")? {
                self.add_space_prefix = b;
            }
        } else {
            // Byte-level BPE never prefixes a space: the pre-tokenizer keeps spaces with the words.
            self.add_space_prefix = false;
        }
        if self.add_bos && self.special.bos.is_none() {
            return Err(Error::Tokenizer("tokenizer.ggml.add_bos_token is true but there is no BOS token".into()));
        }
        if self.add_eos && self.special.eos.is_none() {
            return Err(Error::Tokenizer("tokenizer.ggml.add_eos_token is true but there is no EOS token".into()));
        }
        Ok(())
    }

    /// Builds the end-of-generation set like llama.cpp: metadata ids, then well-known texts, which
    /// are also forced to be control tokens (so they never print and always parse as specials).
    fn detect_eog(&mut self) {
        if self.special.eot.is_none() {
            self.special.eot = EOT_TEXTS.iter().find_map(|t| self.id_of(t));
        }
        if self.special.eom.is_none() {
            self.special.eom = self.id_of("<|eom_id|>");
        }
        let mut eog: Vec<u32> = EOG_TEXTS.iter().filter_map(|t| self.id_of(t)).collect();
        eog.extend(self.special.eos);
        eog.extend(self.special.eot);
        eog.extend(self.special.eom);
        for &id in eog.iter().chain(self.special.eot.iter()).chain(self.special.eom.iter()) {
            self.attrs[id as usize] |= attr::CONTROL;
        }
        eog.sort_unstable();
        eog.dedup();
        self.eog = eog;
    }

    /// Control tokens whose text says "unused" are placeholders (Gemma has thousands).
    fn mark_unused(&mut self) {
        for (a, t) in self.attrs.iter_mut().zip(&self.texts) {
            if *a & attr::CONTROL != 0 && t.contains("unused") {
                *a |= attr::UNUSED;
            }
        }
    }
}

/// Token texts and the text → id index. An empty text is renamed `[EMPTY_i]` (as llama.cpp does) so
/// that no token matches the empty string; a duplicate text is an error.
fn read_texts(gguf: &GgufFile) -> Result<(Vec<Box<str>>, TextIndex)> {
    const KEY: &str = "tokenizer.ggml.tokens";
    let raw = gguf.get_str_array(KEY)?;
    if raw.is_empty() {
        return Err(Error::Tokenizer(format!("{KEY} is empty")));
    }
    if raw.len() > u32::MAX as usize {
        return Err(Error::Tokenizer(format!("{KEY} has {} tokens, more than ids can hold", raw.len())));
    }
    let mut texts = Vec::with_capacity(raw.len());
    let mut index = HashMap::with_capacity(raw.len());
    for (i, t) in raw.into_iter().enumerate() {
        let text: Box<str> = if t.is_empty() { format!("[EMPTY_{i}]").into() } else { t.into() };
        if let Some(prev) = index.insert(text.clone(), i as u32) {
            return Err(Error::Tokenizer(format!("duplicate token {text:?} in {KEY} (ids {prev} and {i})")));
        }
        texts.push(text);
    }
    Ok((texts, index))
}

fn read_scores(gguf: &GgufFile, n: usize) -> Result<Vec<f32>> {
    const KEY: &str = "tokenizer.ggml.scores";
    if gguf.get(KEY).is_none() {
        return Ok(vec![0.0; n]);
    }
    let scores = gguf.get_f32_array(KEY)?;
    if scores.len() < n {
        return Err(Error::Tokenizer(format!("{KEY} has {} entries for {n} tokens", scores.len())));
    }
    Ok(scores[..n].to_vec())
}

/// Attributes from `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user defined,
/// 5 unused, 6 byte; anything else undefined). Without the key every token is normal.
fn read_attrs(gguf: &GgufFile, n: usize) -> Result<Vec<u8>> {
    const KEY: &str = "tokenizer.ggml.token_type";
    if gguf.get(KEY).is_none() {
        return Ok(vec![attr::NORMAL; n]);
    }
    let types = gguf.get_i64_array(KEY)?;
    if types.len() < n {
        return Err(Error::Tokenizer(format!("{KEY} has {} entries for {n} tokens", types.len())));
    }
    Ok(types[..n]
        .iter()
        .map(|&t| match t {
            1 => attr::NORMAL,
            2 => attr::UNKNOWN,
            3 => attr::CONTROL,
            4 => attr::USER_DEFINED,
            5 => attr::UNUSED,
            6 => attr::BYTE,
            _ => 0,
        })
        .collect())
}

fn optional_u32(gguf: &GgufFile, key: &str) -> Result<Option<u32>> {
    match gguf.get(key) {
        None => Ok(None),
        // A negative id (some converters write -1 for "none") means absent.
        Some(v) if v.as_i128().is_some_and(|i| i < 0) => Ok(None),
        Some(_) => gguf.get_u32(key).map(Some),
    }
}

fn optional_bool(gguf: &GgufFile, key: &str) -> Result<Option<bool>> {
    match gguf.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => gguf.get_bool(key).map(Some),
    }
}

fn optional_str<'a>(gguf: &'a GgufFile, key: &str) -> Result<Option<&'a str>> {
    match gguf.get(key) {
        None => Ok(None),
        Some(_) => gguf.get_str(key).map(Some),
    }
}
