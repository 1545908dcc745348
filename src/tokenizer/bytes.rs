//! GPT-2's reversible byte ↔ character mapping: byte-level BPE vocabularies spell every byte as a
//! printable character so that tokens are valid text (a space is "Ġ", a newline "Ċ"). Printable
//! Latin-1 bytes map to themselves; the other 68 bytes take the characters from U+0100 upwards.

/// The character that stands for each byte.
pub fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        let cp = if printable {
            b as u32
        } else {
            extra += 1;
            255 + extra
        };
        *slot = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    table
}

/// The reverse map: the byte a character stands for, `None` for characters outside the mapping.
/// All mapped characters are below U+0144, so a small array replaces a hash map.
#[derive(Clone, Debug)]
pub(crate) struct CharToByte([Option<u8>; 0x144]);

impl CharToByte {
    pub fn new() -> CharToByte {
        let mut map = [None; 0x144];
        for (b, c) in byte_to_char_table().iter().enumerate() {
            map[*c as usize] = Some(b as u8);
        }
        CharToByte(map)
    }

    pub fn get(&self, c: char) -> Option<u8> {
        self.0.get(c as usize).copied().flatten()
    }
}

/// `text`'s UTF-8 bytes, each spelled as its GPT-2 character.
pub(crate) fn encode_bytes(table: &[char; 256], text: &str) -> String {
    text.bytes().map(|b| table[b as usize]).collect()
}

/// The bytes a byte-level token stands for. A character outside the mapping (text of a token added
/// by hand) is kept as its own UTF-8 rather than turned into an error marker.
pub(crate) fn decode_bytes(map: &CharToByte, token: &str, out: &mut Vec<u8>) {
    for c in token.chars() {
        match map.get(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}
