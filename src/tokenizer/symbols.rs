//! The doubly linked list of text spans that both merge algorithms (SentencePiece and BPE) work on.
//! A symbol is a byte range of the text; merging grows the left span and empties the right one.

/// A span of the text being tokenized. `len == 0` marks a symbol merged into its left neighbour.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Symbol {
    pub start: usize,
    pub len: usize,
    pub prev: Option<usize>,
    pub next: Option<usize>,
}

/// One symbol per character of `text`, linked in order.
pub(crate) fn init_symbols(text: &str) -> Vec<Symbol> {
    let n = text.chars().count();
    text.char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: (i + 1 < n).then_some(i + 1),
        })
        .collect()
}
