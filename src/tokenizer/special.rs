//! Splitting special tokens out of the text before the tokenizer proper runs, like llama.cpp's
//! `tokenizer_st_partition`: special tokens are taken longest text first, and each one cuts every
//! remaining text fragment at all its (non-overlapping, leftmost-first) occurrences.
//!
//! User-defined tokens (Gemma's runs of spaces, tabs and newlines, HTML tags) are always split out;
//! control and unknown tokens (`<start_of_turn>`, `<bos>`) only when the caller parses specials.
//!
//! llama.cpp tries each of its thousands of special tokens against the text; here a byte trie finds
//! the few that occur at all in one pass, and only those run the (same) partition algorithm.

use super::vocab::{attr, Vocab};

/// A piece of the input: text still to tokenize, or a special token already recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

#[derive(Clone, Debug, Default)]
struct Node {
    /// (byte, child node index), few per node.
    children: Vec<(u8, u32)>,
    /// Index into `Specials::order` of the token ending here.
    rank: Option<u32>,
}

/// The special tokens of a vocabulary, in partition order, and a trie over their texts.
#[derive(Clone, Debug)]
pub(crate) struct Specials {
    /// Token ids, longest text first (ties by id, so the order is reproducible).
    order: Vec<u32>,
    /// Whether `order[i]` is split out only when parsing specials (control or unknown).
    needs_parse: Vec<bool>,
    nodes: Vec<Node>,
}

impl Specials {
    pub fn new(vocab: &Vocab) -> Specials {
        let wanted = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut order: Vec<u32> = (0..vocab.len() as u32).filter(|&id| vocab.attr(id) & wanted != 0).collect();
        order.sort_by_key(|&id| (std::cmp::Reverse(vocab.text(id).map_or(0, str::len)), id));
        let needs_parse = order.iter().map(|&id| vocab.attr(id) & (attr::CONTROL | attr::UNKNOWN) != 0).collect();
        let mut specials = Specials { order, needs_parse, nodes: vec![Node::default()] };
        for rank in 0..specials.order.len() {
            let text = vocab.text(specials.order[rank]).unwrap_or_default().as_bytes();
            specials.insert(text, rank as u32);
        }
        specials
    }

    fn insert(&mut self, text: &[u8], rank: u32) {
        let mut node = 0usize;
        for &b in text {
            node = match self.nodes[node].children.iter().find(|(c, _)| *c == b) {
                Some(&(_, child)) => child as usize,
                None => {
                    self.nodes.push(Node::default());
                    let child = self.nodes.len() - 1;
                    self.nodes[node].children.push((b, child as u32));
                    child
                }
            };
        }
        self.nodes[node].rank = Some(rank);
    }

    /// Ranks of the special tokens that occur somewhere in `text` and are enabled, sorted.
    fn present(&self, text: &[u8], parse_special: bool) -> Vec<u32> {
        let mut seen = Vec::new();
        for start in 0..text.len() {
            let mut node = 0usize;
            for &b in &text[start..] {
                match self.nodes[node].children.iter().find(|(c, _)| *c == b) {
                    Some(&(_, child)) => node = child as usize,
                    None => break,
                }
                if let Some(rank) = self.nodes[node].rank {
                    if parse_special || !self.needs_parse[rank as usize] {
                        seen.push(rank);
                    }
                }
            }
        }
        seen.sort_unstable();
        seen.dedup();
        seen
    }

    /// Cut `text` into text fragments and special tokens.
    pub fn partition<'t>(&self, vocab: &Vocab, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut fragments = vec![Fragment::Text(text)];
        for rank in self.present(text.as_bytes(), parse_special) {
            let id = self.order[rank as usize];
            let Some(special) = vocab.text(id) else { continue };
            fragments = split_all(fragments, special, id);
        }
        fragments
    }
}

/// Replaces every occurrence of `special` in the text fragments by `Token(id)`.
fn split_all<'t>(fragments: Vec<Fragment<'t>>, special: &str, id: u32) -> Vec<Fragment<'t>> {
    let mut out = Vec::with_capacity(fragments.len() + 2);
    for fragment in fragments {
        let Fragment::Text(text) = fragment else {
            out.push(fragment);
            continue;
        };
        let mut last = 0;
        for (at, _) in text.match_indices(special) {
            if at > last {
                out.push(Fragment::Text(&text[last..at]));
            }
            out.push(Fragment::Token(id));
            last = at + special.len();
        }
        if last < text.len() {
            out.push(Fragment::Text(&text[last..]));
        }
    }
    out
}
