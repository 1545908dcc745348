//! The bytes each token stands for, computed once at load time (like llama.cpp's piece cache) and
//! stored back to back so that decoding is a slice lookup.

use super::bytes::{decode_bytes, CharToByte};
use super::vocab::{attr, TokenizerKind, Vocab};

/// Rendered pieces of every token: `bytes[offsets[id]..offsets[id + 1]]`.
#[derive(Clone, Debug)]
pub(crate) struct Pieces {
    bytes: Vec<u8>,
    offsets: Vec<usize>,
}

impl Pieces {
    pub fn new(vocab: &Vocab) -> Pieces {
        let char_to_byte = CharToByte::new();
        let mut bytes = Vec::with_capacity(vocab.texts.iter().map(|t| t.len()).sum());
        let mut offsets = Vec::with_capacity(vocab.len() + 1);
        offsets.push(0);
        for id in 0..vocab.len() as u32 {
            render(vocab, &char_to_byte, id, &mut bytes);
            offsets.push(bytes.len());
        }
        Pieces { bytes, offsets }
    }

    /// The piece of `id`, empty for an id outside the vocabulary.
    pub fn get(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.bytes[a..b],
            _ => &[],
        }
    }
}

/// One token's piece, by llama.cpp's `token_to_piece` rules with specials rendered: control, unknown
/// and user-defined tokens as their text, normal tokens un-escaped ("▁" → space for SentencePiece,
/// GPT-2 characters → bytes for BPE), byte tokens as their byte, anything else (unused) as nothing.
fn render(vocab: &Vocab, char_to_byte: &CharToByte, id: u32, out: &mut Vec<u8>) {
    let (a, text) = (vocab.attr(id), vocab.text(id).unwrap_or_default());
    if a & (attr::CONTROL | attr::UNKNOWN | attr::USER_DEFINED) != 0 {
        out.extend_from_slice(text.as_bytes());
    } else if a & attr::NORMAL != 0 {
        match vocab.kind {
            TokenizerKind::SentencePiece => out.extend_from_slice(text.replace('▁', " ").as_bytes()),
            TokenizerKind::BytePairEncoding => decode_bytes(char_to_byte, text, out),
        }
    } else if a & attr::BYTE != 0 {
        match parse_byte_token(text) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(text.as_bytes()),
        }
    }
}

/// The byte of a `<0xNN>` token.
pub(crate) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The token each byte falls back to in SentencePiece vocabularies: `<0xNN>`, or else a token whose
/// text is that single (ASCII) byte, as llama.cpp's `byte_to_token`.
pub(crate) fn byte_fallback_table(vocab: &Vocab) -> [Option<u32>; 256] {
    let mut table = [None; 256];
    for (b, slot) in table.iter_mut().enumerate() {
        *slot = vocab.id_of(&format!("<0x{b:02X}>")).or_else(|| {
            if b < 0x80 {
                vocab.id_of(&(b as u8 as char).to_string())
            } else {
                None
            }
        });
    }
    table
}
