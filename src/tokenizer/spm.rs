//! SentencePiece-style tokenization of one text fragment, as llama.cpp's `llm_tokenizer_spm`: start
//! from single characters, repeatedly merge the adjacent pair whose concatenation is the vocabulary
//! token with the highest score (leftmost on ties), then emit each final symbol as its token or, when
//! it is not one, as byte-fallback tokens `<0xNN>`.
//!
//! The caller has already replaced spaces by "▁" (and added the optional space prefix).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::symbols::{init_symbols, Symbol};
use super::vocab::Vocab;
use crate::error::{Error, Result};

/// A candidate merge of `symbols[left]` and `symbols[right]`, valid while their lengths are unchanged.
#[derive(Clone, Copy, Debug)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenize `text` (already escaped) and append the ids to `out`.
pub(crate) fn encode(vocab: &Vocab, byte_tokens: &[Option<u32>; 256], text: &str, out: &mut Vec<u32>) -> Result<()> {
    let mut symbols = init_symbols(text);
    let mut queue = BinaryHeap::new();
    for i in 1..symbols.len() {
        push_bigram(vocab, text, &symbols, i - 1, i, &mut queue);
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
            continue; // one side was merged since this pair was queued
        }
        merge(&mut symbols, b.left, b.right);
        if let Some(prev) = symbols[b.left].prev {
            push_bigram(vocab, text, &symbols, prev, b.left, &mut queue);
        }
        if let Some(next) = symbols[b.left].next {
            push_bigram(vocab, text, &symbols, b.left, next, &mut queue);
        }
    }
    emit(vocab, byte_tokens, text, &symbols, out)
}

/// Folds `right` into `left` and unlinks it.
fn merge(symbols: &mut [Symbol], left: usize, right: usize) {
    let r = symbols[right];
    symbols[left].len += r.len;
    symbols[left].next = r.next;
    symbols[right].len = 0;
    if let Some(next) = r.next {
        symbols[next].prev = Some(left);
    }
}

fn push_bigram(
    vocab: &Vocab,
    text: &str,
    symbols: &[Symbol],
    left: usize,
    right: usize,
    queue: &mut BinaryHeap<Bigram>,
) {
    let (l, r) = (symbols[left], symbols[right]);
    let joined = &text[l.start..r.start + r.len];
    if let Some(id) = vocab.id_of(joined) {
        queue.push(Bigram { score: vocab.score(id), left, right, len: joined.len() });
    }
}

/// Emits the final symbols. A merged symbol is always a token, so only a lone character can miss the
/// vocabulary; it falls back to its UTF-8 bytes (llama.cpp's "resegment" never finds a merge for it).
fn emit(
    vocab: &Vocab,
    byte_tokens: &[Option<u32>; 256],
    text: &str,
    symbols: &[Symbol],
    out: &mut Vec<u32>,
) -> Result<()> {
    let mut i = if symbols.is_empty() { None } else { Some(0) };
    while let Some(idx) = i {
        let s = symbols[idx];
        let piece = &text[s.start..s.start + s.len];
        match vocab.id_of(piece) {
            Some(id) => out.push(id),
            None => {
                for &b in piece.as_bytes() {
                    let id = byte_tokens[b as usize].or(vocab.special.unk).ok_or_else(|| {
                        Error::Tokenizer(format!("byte 0x{b:02X} of {piece:?} has no token and there is no <unk>"))
                    })?;
                    out.push(id);
                }
            }
        }
        i = s.next;
    }
    Ok(())
}
