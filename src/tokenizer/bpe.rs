//! Byte-level BPE (GPT-2, Llama 3, Qwen2), as llama.cpp's `llm_tokenizer_bpe`: each pre-tokenized
//! word, spelled in GPT-2's byte characters, starts as single characters; the adjacent pair with the
//! lowest merge rank (its index in `tokenizer.ggml.merges`; leftmost on ties) is merged until no pair
//! has a rank, and each final symbol is emitted as its token.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::bytes::{byte_to_char_table, encode_bytes};
use super::pretokenize::PreTokenizer;
use super::symbols::{init_symbols, Symbol};
use super::vocab::Vocab;
use crate::error::Result;
use crate::gguf::GgufFile;

const KEY_MERGES: &str = "tokenizer.ggml.merges";

/// Merge ranks and the pre-tokenizer of a byte-level BPE vocabulary.
#[derive(Clone, Debug)]
pub(crate) struct Bpe {
    /// Rank of each merge whose two halves are vocabulary tokens, keyed by their ids: lookups in the
    /// merge loop then need no string building.
    ranks: HashMap<(u32, u32), u32>,
    /// Merges with a half that is not a token (rare, malformed files), keyed by text.
    text_ranks: HashMap<(String, String), u32>,
    byte_chars: [char; 256],
    pre: PreTokenizer,
}

/// A candidate merge, valid while both sides keep the lengths they had when it was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    left_len: usize,
    right_len: usize,
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: lowest rank first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        other.rank.cmp(&self.rank).then_with(|| other.left.cmp(&self.left))
    }
}

impl Bpe {
    pub fn from_gguf(gguf: &GgufFile, vocab: &Vocab) -> Result<Bpe> {
        let merges = gguf.get_str_array(KEY_MERGES)?;
        let mut ranks = HashMap::with_capacity(merges.len());
        let mut text_ranks = HashMap::new();
        for (rank, merge) in merges.iter().enumerate() {
            // The separator is the first space after the first character (a half is never empty).
            let first_len = merge.chars().next().map_or(0, char::len_utf8);
            let Some(pos) = merge[first_len..].find(' ').map(|p| p + first_len) else { continue };
            let (left, right) = (&merge[..pos], &merge[pos + 1..]);
            let rank = rank as u32;
            match (vocab.id_of(left), vocab.id_of(right)) {
                (Some(l), Some(r)) => {
                    ranks.entry((l, r)).or_insert(rank);
                }
                _ => {
                    text_ranks.entry((left.to_string(), right.to_string())).or_insert(rank);
                }
            }
        }
        let pre = PreTokenizer::for_name(&vocab.pre)?;
        Ok(Bpe { ranks, text_ranks, byte_chars: byte_to_char_table(), pre })
    }

    /// Tokenize one text fragment and append the ids to `out`.
    pub fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        for word in self.pre.split(text) {
            let word = encode_bytes(&self.byte_chars, word);
            if self.pre.ignore_merges {
                if let Some(id) = vocab.id_of(&word) {
                    out.push(id);
                    continue;
                }
            }
            self.encode_word(vocab, &word, out);
        }
    }

    fn encode_word(&self, vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
        let mut symbols = init_symbols(word);
        let mut ids: Vec<Option<u32>> = symbols.iter().map(|s| vocab.id_of(&word[s.start..s.start + s.len])).collect();
        let mut queue = BinaryHeap::new();
        for i in 1..symbols.len() {
            self.push_bigram(word, &symbols, &ids, i - 1, i, &mut queue);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            if l.len != b.left_len || r.len != b.right_len || l.next != Some(b.right) {
                continue; // outdated: one side changed since this pair was queued
            }
            symbols[b.left].len += r.len;
            symbols[b.left].next = r.next;
            symbols[b.right].len = 0;
            if let Some(next) = r.next {
                symbols[next].prev = Some(b.left);
            }
            let merged = symbols[b.left];
            ids[b.left] = vocab.id_of(&word[merged.start..merged.start + merged.len]);
            if let Some(prev) = merged.prev {
                self.push_bigram(word, &symbols, &ids, prev, b.left, &mut queue);
            }
            if let Some(next) = merged.next {
                self.push_bigram(word, &symbols, &ids, b.left, next, &mut queue);
            }
        }
        self.emit(vocab, word, &symbols, &ids, out);
    }

    fn rank(&self, word: &str, symbols: &[Symbol], ids: &[Option<u32>], left: usize, right: usize) -> Option<u32> {
        if let (Some(l), Some(r)) = (ids[left], ids[right]) {
            if let Some(&rank) = self.ranks.get(&(l, r)) {
                return Some(rank);
            }
        }
        if self.text_ranks.is_empty() {
            return None;
        }
        let (l, r) = (symbols[left], symbols[right]);
        let key = (word[l.start..l.start + l.len].to_string(), word[r.start..r.start + r.len].to_string());
        self.text_ranks.get(&key).copied()
    }

    fn push_bigram(
        &self,
        word: &str,
        symbols: &[Symbol],
        ids: &[Option<u32>],
        left: usize,
        right: usize,
        queue: &mut BinaryHeap<Bigram>,
    ) {
        if let Some(rank) = self.rank(word, symbols, ids, left, right) {
            let (left_len, right_len) = (symbols[left].len, symbols[right].len);
            queue.push(Bigram { rank, left, right, left_len, right_len });
        }
    }

    /// Emits the final symbols. One that is not a token (its merge produced an unknown text, or a
    /// character missing from the vocabulary) is emitted character by character, skipping characters
    /// that have no token, which is what llama.cpp ends up doing for byte-level vocabularies.
    fn emit(&self, vocab: &Vocab, word: &str, symbols: &[Symbol], ids: &[Option<u32>], out: &mut Vec<u32>) {
        let mut i = if symbols.is_empty() { None } else { Some(0) };
        while let Some(idx) = i {
            let s = symbols[idx];
            match ids[idx] {
                Some(id) => out.push(id),
                None => {
                    let piece = &word[s.start..s.start + s.len];
                    let mut buf = [0u8; 4];
                    out.extend(piece.chars().filter_map(|c| vocab.id_of(c.encode_utf8(&mut buf))));
                }
            }
            i = s.next;
        }
    }
}
