//! Incremental detokenization for generation: tokens arrive one at a time, and a character may be
//! spread over several byte-fallback tokens (an emoji is four `<0xNN>` tokens), so the decoder holds
//! an incomplete UTF-8 tail until the rest arrives and only ever hands out valid text.

use super::Tokenizer;

/// Turns a token stream into text pieces that are always valid UTF-8.
///
/// The concatenation of everything [`push`](StreamDecoder::push) and
/// [`finish`](StreamDecoder::finish) return equals [`Tokenizer::decode`] of the same tokens.
/// The decoder holds no reference to the tokenizer, so it can live in an owned generation state.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    /// Bytes received but not yet emitted: at most an incomplete UTF-8 sequence (≤ 3 bytes).
    pending: Vec<u8>,
    /// Whether any piece has been rendered yet (the first may lose its SentencePiece space prefix).
    started: bool,
}

impl StreamDecoder {
    /// A decoder at the start of a stream (the same as [`Tokenizer::stream_decoder`]).
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Add one token; returns the text that became complete (often the whole piece, sometimes empty).
    /// Control tokens and ids outside the vocabulary add nothing.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        let Some(mut piece) = tokenizer.visible_piece(id) else {
            return String::new();
        };
        if !self.started {
            self.started = true;
            if tokenizer.add_space_prefix() {
                // SentencePiece added a space in front of the text when encoding; drop it again.
                piece = piece.strip_prefix(b" ").unwrap_or(piece);
            }
        }
        self.pending.extend_from_slice(piece);
        self.drain_valid()
    }

    /// Flush what is left at the end of the stream; an incomplete sequence becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }

    /// Whether bytes of an incomplete character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Emits the longest valid prefix of `pending`, replacing invalid sequences by U+FFFD and keeping
    /// only a trailing sequence that could still be completed.
    fn drain_valid(&mut self) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // The first `valid_up_to` bytes are UTF-8, so the fallback never applies.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        None => {
                            rest = after; // incomplete tail: wait for more bytes
                            break;
                        }
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }
}
