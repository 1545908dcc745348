//! Tokenizer tests: the default model (Gemma 3, SentencePiece-style) against token ids that
//! llama.cpp's llama-tokenize produced (source vendored by llama-cpp-python 0.3.36), round trips,
//! special tokens and streaming; byte-level BPE on small vocabularies written with the GGUF writer,
//! checked against hand-derived merges and against llama.cpp's output for the same vocabularies
//! under four pre-tokenizers.

use std::path::PathBuf;
use std::sync::OnceLock;

use wgquant::gguf::{GgufFile, GgufWriter, Value, ValueType};
use wgquant::tokenizer::{StreamDecoder, Tokenizer, TokenizerKind};
use wgquant::Error;

// ---------------------------------------------------------------------------------------------
// The default model
// ---------------------------------------------------------------------------------------------

fn model_path() -> PathBuf {
    let path = std::env::var_os("WGQUANT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf"));
    assert!(path.exists(), "model {} is missing: run scripts/fetch-model.sh (or set WGQUANT_MODEL)", path.display());
    path
}

/// The Gemma tokenizer, loaded once for all tests of this binary.
fn gemma() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let gguf = GgufFile::open(model_path()).expect("open model");
        Tokenizer::from_gguf(&gguf).expect("build tokenizer")
    })
}

fn reference() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/reference/greedy.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("greedy.json parses")
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

#[test]
fn gemma_metadata() {
    let tok = gemma();
    assert_eq!(tok.kind(), TokenizerKind::SentencePiece);
    assert_eq!(tok.vocab_size(), 262144);
    assert_eq!(tok.bos_id(), Some(2));
    assert_eq!(tok.eos_id(), Some(1));
    assert!(tok.add_bos());
    assert!(!tok.add_eos());
    assert!(!tok.add_space_prefix());
    assert_eq!(tok.id_of("<end_of_turn>"), Some(106));
    assert_eq!(tok.eot_id(), Some(106));
    assert!(tok.is_eog(1) && tok.is_eog(106));
    assert!(!tok.is_eog(2) && !tok.is_eog(105) && !tok.is_eog(496));
    assert!(tok.is_control(105) && !tok.is_control(496));
}

#[test]
fn tokenizer_and_decoder_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Tokenizer>();
    send_sync::<StreamDecoder>();
}

#[test]
fn gemma_loads_quickly() {
    let gguf = GgufFile::open(model_path()).unwrap();
    let t0 = std::time::Instant::now();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let elapsed = t0.elapsed();
    eprintln!("tokenizer built in {elapsed:?}");
    assert_eq!(tok.vocab_size(), 262144);
    // Generous for a loaded 2-core machine; a release build takes a fraction of this.
    assert!(elapsed.as_secs_f64() < 5.0, "building the tokenizer took {elapsed:?}");
}

#[test]
fn gemma_prompt_ids_match_llama_cpp() {
    let tok = gemma();
    for case in reference()["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let add_bos = case["add_bos"].as_bool().unwrap();
        let want = ids_of(&case["prompt_ids"]);
        assert_eq!(tok.encode(prompt, add_bos, true).unwrap(), want, "prompt {prompt:?}");
        assert_eq!(tok.encode(prompt, add_bos, false).unwrap(), want, "prompt {prompt:?} without special parsing");
    }
}

#[test]
fn gemma_generated_ids_decode_to_generated_text() {
    let tok = gemma();
    for case in reference()["cases"].as_array().unwrap() {
        let ids = ids_of(&case["generated_ids"]);
        assert_eq!(tok.decode(&ids), case["generated_text"].as_str().unwrap());
        let pieces: Vec<&str> =
            case["generated_pieces"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        for (&id, want) in ids.iter().zip(pieces) {
            assert_eq!(tok.token_to_piece(id), want.as_bytes(), "piece of {id}");
        }
        // The prompt and the continuation together read as one text.
        let mut all = ids_of(&case["prompt_ids"]);
        all.extend(&ids);
        let text = format!("{}{}", case["prompt"].as_str().unwrap(), case["generated_text"].as_str().unwrap());
        assert_eq!(tok.decode(&all), text);
    }
}

#[test]
fn gemma_known_encodings() {
    let tok = gemma();
    // Pieces from the vocabulary: "Once" (no space prefix), "▁upon", "▁a", "▁time".
    assert_eq!(tok.encode("Once upon a time", false, false).unwrap(), [14946, 3324, 496, 990]);
    assert_eq!(tok.token_text(3324), Some("▁upon"));
    // Runs of spaces, newlines and tabs are user-defined tokens, split out even without special parsing.
    let ids = tok.encode("a  b\n\nc\td", false, false).unwrap();
    let texts: Vec<&str> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
    assert_eq!(texts, ["a", "  ", "b", "\n\n", "c", "\t", "d"]);
    assert_eq!(ids[1], 138); // "  "
    assert_eq!(ids[3], 108); // "\n\n"
    assert_eq!(tok.encode("", true, true).unwrap(), [2]);
    assert_eq!(tok.encode("", false, true).unwrap(), Vec::<u32>::new());
}

/// (text, ids with special parsing, ids without), from llama.cpp's llama-tokenize on the default model.
#[rustfmt::skip]
const GEMMA_LLAMA_CPP: &[(&str, &[u32], &[u32])] = &[
    ("I'm sure we'll see they've gone.", &[2, 236777, 236789, 236757, 2889, 692, 236789, 859, 1460, 901, 236789, 560, 8731, 236761], &[2, 236777, 236789, 236757, 2889, 692, 236789, 859, 1460, 901, 236789, 560, 8731, 236761]),
    ("code: fn main() {\n    return x;\n}\n", &[2, 3970, 236787, 12751, 1689, 825, 642, 107, 140, 2060, 1123, 236793, 107, 236783, 107], &[2, 3970, 236787, 12751, 1689, 825, 642, 107, 140, 2060, 1123, 236793, 107, 236783, 107]),
    ("  leading\n\n\ttabs   and spaces  ", &[2, 138, 26016, 108, 255968, 39218, 139, 624, 9952, 138], &[2, 138, 26016, 108, 255968, 39218, 139, 624, 9952, 138]),
    ("emoji 😀🇫🇷 日本語 한국어 café", &[2, 67906, 163543, 246598, 242644, 33375, 238582, 50413, 237430, 33443], &[2, 67906, 163543, 246598, 242644, 33375, 238582, 50413, 237430, 33443]),
    ("<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", &[2, 105, 2364, 107, 10979, 106, 107, 105, 4368, 107], &[2, 236820, 3041, 236779, 1340, 236779, 887, 236813, 2364, 107, 10979, 236820, 643, 236779, 1340, 236779, 887, 236813, 107, 236820, 3041, 236779, 1340, 236779, 887, 236813, 4368, 107]),
    ("<unused0><mask>[multimodal]x<div>", &[2, 6, 4, 5, 236781, 224], &[2, 236820, 63634, 236771, 1798, 1080, 236813, 5, 236781, 224]),
    ("12345 + 6.78 = 12351.78", &[2, 236770, 236778, 236800, 236812, 236810, 900, 236743, 236825, 236761, 236832, 236828, 578, 236743, 236770, 236778, 236800, 236810, 236770, 236761, 236832, 236828], &[2, 236770, 236778, 236800, 236812, 236810, 900, 236743, 236825, 236761, 236832, 236828, 578, 236743, 236770, 236778, 236800, 236810, 236770, 236761, 236832, 236828]),
];

#[test]
fn gemma_matches_llama_cpp_on_tricky_text() {
    let tok = gemma();
    for &(text, special, plain) in GEMMA_LLAMA_CPP {
        assert_eq!(tok.encode(text, true, true).unwrap(), special, "{text:?} with special parsing");
        assert_eq!(tok.encode(text, true, false).unwrap(), plain, "{text:?} without special parsing");
    }
}

#[test]
fn gemma_special_tokens_parse() {
    let tok = gemma();
    let text = "<start_of_turn>user\nHi<end_of_turn>";
    let ids = tok.encode(text, true, true).unwrap();
    assert_eq!(ids[0], 2);
    assert_eq!(ids[1], 105, "<start_of_turn>");
    assert_eq!(*ids.last().unwrap(), 106, "<end_of_turn>");
    let texts: Vec<&str> = ids[2..ids.len() - 1].iter().map(|&i| tok.token_text(i).unwrap()).collect();
    assert_eq!(texts, ["user", "\n", "Hi"]);
    // Decoding hides control tokens; pieces show them.
    assert_eq!(tok.decode(&ids), "user\nHi");
    assert_eq!(tok.token_to_piece(105), b"<start_of_turn>");

    // Without special parsing the markup is ordinary text.
    let plain = tok.encode(text, false, false).unwrap();
    assert!(!plain.contains(&105) && !plain.contains(&106) && !plain.contains(&2));
    assert_eq!(tok.decode(&plain), text);

    // Longest match first: "<start_of_turn>" is not read as "<" + "start_of_turn>".
    let ids = tok.encode("<start_of_turn><start_of_turn>x<eos>", false, true).unwrap();
    assert_eq!(&ids[..2], [105, 105]);
    assert_eq!(*ids.last().unwrap(), 1);
}

const ROUND_TRIPS: &[&str] = &[
    "Hello, world!",
    "  leading spaces",
    "trailing spaces   ",
    "     ",
    "a\tb\t\tc\n\nd\r\ne",
    "\n",
    "multiple   spaces    between\twords",
    "emoji: 😀🎉👩‍👩‍👧‍👦 🇫🇷",
    "CJK: 日本語のテキスト、中文文本，한국어 텍스트",
    "mixed: café naïve Ελληνικά русский עברית العربية हिन्दी",
    "code: fn main() { println!(\"{}\", 1 + 2); }",
    "private use \u{E000}\u{F8FF} and astral \u{1D11E}\u{10FFFF}",
    "control chars \u{0}\u{1}\u{7F} zero width \u{200B}\u{FEFF}",
    "<start_of_turn> written as text",
    "<0x41> is not a byte token in text",
];

/// SentencePiece spells spaces as "▁", so a literal "▁" comes back as a space there (as in llama.cpp
/// and SentencePiece itself); byte-level BPE keeps it.
const LITERAL_ESCAPE: &str = "▁ literal lower one-eighth block ▁▁";

#[test]
fn gemma_round_trips() {
    let tok = gemma();
    for &text in ROUND_TRIPS {
        for add_bos in [false, true] {
            let ids = tok.encode(text, add_bos, false).unwrap();
            assert_eq!(tok.decode(&ids), text, "ids {ids:?}");
        }
    }
    let ids = tok.encode(LITERAL_ESCAPE, false, false).unwrap();
    assert_eq!(tok.decode(&ids), LITERAL_ESCAPE.replace('▁', " "));
}

#[test]
fn gemma_round_trips_generated_strings() {
    // A cheap deterministic generator over a character pool with many kinds of characters.
    let pool: Vec<char> = "aZ09 .,!?'\"\t\n\r  é漢字😀🎉\u{E000}\u{1D11E}ŉ\u{301}ß<>_-".chars().collect();
    let tok = gemma();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..300 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let len = (state >> 58) as usize;
        let text: String = (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                pool[(state >> 33) as usize % pool.len()]
            })
            .collect();
        let ids = tok.encode(&text, true, false).unwrap();
        assert_eq!(tok.decode(&ids), text, "{text:?} -> {ids:?}");
    }
}

#[test]
fn gemma_stream_decoder_holds_partial_characters() {
    let tok = gemma();
    // Characters outside the vocabulary fall back to one token per UTF-8 byte.
    let text = "x\u{F0000}y\u{10FFFF}z";
    let ids = tok.encode(text, false, false).unwrap();
    let byte_tokens = ids.iter().filter(|&&i| tok.token_text(i).is_some_and(|t| t.starts_with("<0x"))).count();
    assert_eq!(byte_tokens, 8, "expected byte fallback for the private-use characters, got {ids:?}");

    let mut decoder = StreamDecoder::new();
    let mut out = String::new();
    let mut held = 0;
    for &id in &ids {
        let piece = decoder.push(tok, id);
        assert!(!piece.contains('\u{FFFD}'), "replacement character emitted for {id}");
        if piece.is_empty() {
            held += 1;
            assert!(decoder.has_pending());
        }
        out.push_str(&piece);
    }
    out.push_str(&decoder.finish());
    assert_eq!(out, text);
    assert_eq!(held, 6, "partial bytes must be held back, not emitted");

    // A truncated sequence at the end becomes one U+FFFD on finish, never invalid text.
    let mut decoder = tok.stream_decoder();
    let bytes = tok.encode("\u{10FFFF}", false, false).unwrap();
    assert_eq!(bytes.len(), 4);
    assert_eq!(decoder.push(tok, bytes[0]), "");
    assert_eq!(decoder.push(tok, bytes[1]), "");
    assert_eq!(decoder.finish(), "\u{FFFD}");
}

#[test]
fn gemma_out_of_range_ids_are_harmless() {
    let tok = gemma();
    let n = tok.vocab_size() as u32;
    for id in [n, n + 1, u32::MAX] {
        assert_eq!(tok.token_to_piece(id), b"");
        assert_eq!(tok.token_text(id), None);
        assert!(!tok.is_eog(id) && !tok.is_control(id));
    }
    assert_eq!(tok.decode(&[14946, u32::MAX, 3324]), "Once upon");
}

// ---------------------------------------------------------------------------------------------
// Small vocabularies built with the GGUF writer
// ---------------------------------------------------------------------------------------------

/// GPT-2's byte → character table (printable Latin-1 bytes map to themselves, the rest upwards from U+0100).
fn gpt2_byte_chars() -> Vec<char> {
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            if (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b) {
                char::from_u32(b).unwrap()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap()
            }
        })
        .collect()
}

fn str_array(items: &[String]) -> Value {
    Value::Array(ValueType::String, items.iter().map(|s| Value::String(s.clone())).collect())
}

/// Writes a metadata-only GGUF and opens it.
fn open_written(w: &GgufWriter) -> GgufFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vocab.gguf");
    w.write(&path, |_| unreachable!("no tensors")).unwrap();
    GgufFile::open(&path).unwrap()
}

/// A byte-level BPE vocabulary: the 256 byte characters (ids 0..256 in byte order), then one token
/// per merge result, then `specials` as control tokens and `user` as user-defined tokens.
fn bpe_tokenizer_with(pre: &str, merges: &[&str], specials: &[&str], user: &[&str]) -> Result<Tokenizer, Error> {
    let mut tokens: Vec<String> = gpt2_byte_chars().iter().map(|c| c.to_string()).collect();
    let mut types: Vec<i32> = vec![1; tokens.len()];
    for m in merges {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    for (texts, ty) in [(specials, 3), (user, 4)] {
        for t in texts {
            tokens.push(t.to_string());
            types.push(ty);
        }
    }
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama");
    w.set("tokenizer.ggml.model", "gpt2");
    w.set("tokenizer.ggml.pre", pre);
    w.set("tokenizer.ggml.tokens", str_array(&tokens));
    w.set("tokenizer.ggml.token_type", Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()));
    w.set("tokenizer.ggml.merges", str_array(&merges.iter().map(|m| m.to_string()).collect::<Vec<_>>()));
    if let Some(first) = specials.first() {
        let id = tokens.iter().position(|t| t == first).unwrap() as u32;
        w.set("tokenizer.ggml.bos_token_id", id);
        w.set("tokenizer.ggml.eos_token_id", id);
    }
    Tokenizer::from_gguf(&open_written(&w))
}

fn bpe_tokenizer(pre: &str, merges: &[&str], specials: &[&str]) -> Result<Tokenizer, Error> {
    bpe_tokenizer_with(pre, merges, specials, &[])
}

/// Id of a byte-level token given by its plain text (" the" → "Ġthe").
fn bpe_id(tok: &Tokenizer, plain: &str) -> u32 {
    let table = gpt2_byte_chars();
    let spelled: String = plain.bytes().map(|b| table[b as usize]).collect();
    tok.id_of(&spelled).unwrap_or_else(|| panic!("no token {spelled:?}"))
}

const MERGES: &[&str] = &["h e", "l l", "Ġ t", "Ġt he", "ll o", "he llo", "b c", "a b", "1 2", "12 3"];

/// Merges for the llama.cpp comparison: the hand-checked ones above and more common English pairs.
const LLAMA_CPP_MERGES: &[&str] = &[
    "h e",
    "l l",
    "Ġ t",
    "Ġt he",
    "ll o",
    "he llo",
    "b c",
    "a b",
    "1 2",
    "12 3",
    "i n",
    "Ġ a",
    "e r",
    "o n",
    "Ġ s",
    "r e",
    "a t",
    "e n",
    "Ġ w",
    "o r",
    "in g",
    "Ġ b",
    "Ġ o",
    "e s",
    "a n",
    "e d",
    "Ċ Ċ",
    "Ġ Ġ",
    "ĠĠ ĠĠ",
    "' s",
    "' t",
    "o u",
    "Ġ i",
    "Ġ d",
    "Ġw e",
    "Ġ 1",
    "Ġ Ċ",
    "ĉ ĉ",
    "ĠĠ Ġ",
    "ã ģ",
    "Ġ ãģ",
    "5 6",
    "Ġ '",
    "Ġ (",
    "Ġ \"",
    ". Ċ",
    "ĠĠĠĠ ĠĠĠĠ",
    "Ġs he",
    "Ġw or",
    "l d",
    "Ġwor ld",
];
const LLAMA_CPP_SPECIALS: &[&str] = &["<|endoftext|>", "<|im_start|>"];
const LLAMA_CPP_USER: &[&str] = &["<tag>"];

/// (pre-tokenizer, text, ids with special parsing, ids without), from llama.cpp's llama-tokenize on
/// the vocabulary `bpe_tokenizer(pre, LLAMA_CPP_MERGES, LLAMA_CPP_SPECIALS, LLAMA_CPP_USER)` builds.
#[rustfmt::skip]
const BPE_LLAMA_CPP: &[(&str, &str, &[u32], &[u32])] = &[
    ("gpt-2", "Hello world, she's 123456 <tag>x<|im_start|>", &[72, 101, 260, 306, 44, 303, 285, 32, 265, 52, 297, 32, 309, 120, 308], &[72, 101, 260, 306, 44, 303, 285, 32, 265, 52, 297, 32, 309, 120, 60, 124, 105, 109, 95, 115, 116, 97, 114, 116, 124, 62]),
    ("gpt-2", "I'M 12 apples\r\n\n  and\t\t 5,678 日本 ñ 'LL", &[73, 39, 77, 32, 264, 267, 112, 112, 108, 279, 13, 282, 32, 267, 110, 100, 293, 32, 53, 44, 54, 55, 56, 32, 230, 151, 165, 230, 156, 172, 32, 195, 177, 298, 76, 76], &[73, 39, 77, 32, 264, 267, 112, 112, 108, 279, 13, 282, 32, 267, 110, 100, 293, 32, 53, 44, 54, 55, 56, 32, 230, 151, 165, 230, 156, 172, 32, 195, 177, 298, 76, 76]),
    ("gpt-2", "   spaces  \n\n  end  ", &[283, 270, 112, 97, 99, 279, 283, 282, 32, 32, 273, 100, 283], &[283, 270, 112, 97, 99, 279, 283, 282, 32, 32, 273, 100, 283]),
    ("gpt-2", "he said (\"hello\") 1234567.", &[256, 270, 97, 105, 100, 299, 34, 261, 34, 41, 32, 265, 52, 297, 55, 46], &[256, 270, 97, 105, 100, 299, 34, 261, 34, 41, 32, 265, 52, 297, 55, 46]),
    ("llama-bpe", "Hello world, she's 123456 <tag>x<|im_start|>", &[307, 72, 101, 260, 306, 44, 303, 285, 32, 265, 52, 297, 32, 309, 120, 308], &[307, 72, 101, 260, 306, 44, 303, 285, 32, 265, 52, 297, 32, 309, 120, 60, 124, 105, 109, 95, 115, 116, 97, 114, 116, 124, 62]),
    ("llama-bpe", "I'M 12 apples\r\n\n  and\t\t 5,678 日本 ñ 'LL", &[307, 73, 39, 77, 32, 264, 267, 112, 112, 108, 279, 13, 282, 32, 267, 110, 100, 293, 32, 53, 44, 54, 55, 56, 32, 230, 151, 165, 230, 156, 172, 32, 195, 177, 298, 76, 76], &[307, 73, 39, 77, 32, 264, 267, 112, 112, 108, 279, 13, 282, 32, 267, 110, 100, 293, 32, 53, 44, 54, 55, 56, 32, 230, 151, 165, 230, 156, 172, 32, 195, 177, 298, 76, 76]),
    ("llama-bpe", "   spaces  \n\n  end  ", &[307, 283, 270, 112, 97, 99, 279, 283, 282, 32, 32, 273, 100, 283], &[307, 283, 270, 112, 97, 99, 279, 283, 282, 32, 32, 273, 100, 283]),
    ("llama-bpe", "he said (\"hello\") 1234567.", &[307, 256, 270, 97, 105, 100, 299, 34, 261, 34, 41, 32, 265, 52, 297, 55, 46], &[307, 256, 270, 97, 105, 100, 299, 34, 261, 34, 41, 32, 265, 52, 297, 55, 46]),
    ("qwen2", "Hello world, she's 123456 <tag>x<|im_start|>", &[72, 101, 260, 306, 44, 303, 285, 32, 49, 50, 51, 52, 53, 54, 32, 309, 120, 308], &[72, 101, 260, 306, 44, 303, 285, 32, 49, 50, 51, 52, 53, 54, 32, 309, 120, 60, 124, 105, 109, 95, 115, 116, 97, 114, 116, 124, 62]),
    ("qwen2", "I'M 12 apples\r\n\n  and\t\t 5,678 日本 ñ 'LL", &[73, 39, 77, 32, 49, 50, 267, 112, 112, 108, 279, 13, 282, 32, 267, 110, 100, 293, 32, 53, 44, 54, 55, 56, 32, 230, 151, 165, 230, 156, 172, 32, 195, 177, 298, 76, 76], &[73, 39, 77, 32, 49, 50, 267, 112, 112, 108, 279, 13, 282, 32, 267, 110, 100, 293, 32, 53, 44, 54, 55, 56, 32, 230, 151, 165, 230, 156, 172, 32, 195, 177, 298, 76, 76]),
    ("qwen2", "   spaces  \n\n  end  ", &[283, 270, 112, 97, 99, 279, 283, 282, 32, 32, 273, 100, 283], &[283, 270, 112, 97, 99, 279, 283, 282, 32, 32, 273, 100, 283]),
    ("qwen2", "he said (\"hello\") 1234567.", &[256, 270, 97, 105, 100, 299, 34, 261, 34, 41, 32, 49, 50, 51, 52, 53, 54, 55, 46], &[256, 270, 97, 105, 100, 299, 34, 261, 34, 41, 32, 49, 50, 51, 52, 53, 54, 55, 46]),
    ("default", "Hello world, she's 123456 <tag>x<|im_start|>", &[72, 101, 260, 306, 44, 303, 39, 115, 32, 265, 52, 297, 32, 309, 120, 308], &[72, 101, 260, 306, 44, 303, 39, 115, 32, 265, 52, 297, 32, 309, 120, 60, 124, 105, 109, 95, 115, 116, 97, 114, 116, 124, 62]),
    ("default", "I'M 12 apples\r\n\n  and\t\t 5,678 日本 ñ 'LL", &[73, 39, 77, 32, 264, 267, 112, 112, 108, 279, 13, 282, 32, 267, 110, 100, 293, 32, 53, 44, 54, 55, 56, 32, 230, 151, 165, 230, 156, 172, 32, 195, 177, 32, 39, 76, 76], &[73, 39, 77, 32, 264, 267, 112, 112, 108, 279, 13, 282, 32, 267, 110, 100, 293, 32, 53, 44, 54, 55, 56, 32, 230, 151, 165, 230, 156, 172, 32, 195, 177, 32, 39, 76, 76]),
    ("default", "   spaces  \n\n  end  ", &[283, 270, 112, 97, 99, 279, 283, 282, 32, 32, 273, 100, 283], &[283, 270, 112, 97, 99, 279, 283, 282, 32, 32, 273, 100, 283]),
    ("default", "he said (\"hello\") 1234567.", &[256, 270, 97, 105, 100, 32, 40, 34, 261, 34, 41, 32, 265, 52, 297, 55, 46], &[256, 270, 97, 105, 100, 32, 40, 34, 261, 34, 41, 32, 265, 52, 297, 55, 46]),
];

#[test]
fn bpe_matches_llama_cpp() {
    for &(pre, text, special, plain) in BPE_LLAMA_CPP {
        let tok = bpe_tokenizer_with(pre, LLAMA_CPP_MERGES, LLAMA_CPP_SPECIALS, LLAMA_CPP_USER).unwrap();
        // llama-tokenize adds BOS exactly when the model asks for it (here: the Llama 3 pre-tokenizer).
        let add_bos = tok.add_bos();
        assert_eq!(add_bos, pre == "llama-bpe");
        assert_eq!(tok.encode(text, add_bos, true).unwrap(), special, "{pre}: {text:?} with special parsing");
        assert_eq!(tok.encode(text, add_bos, false).unwrap(), plain, "{pre}: {text:?} without special parsing");
        assert_eq!(tok.decode(plain), text, "{pre}: {text:?}");
    }
}

#[test]
fn bpe_merges_follow_rank_order() {
    let tok = bpe_tokenizer("gpt-2", MERGES, &["<|endoftext|>"]).unwrap();
    assert_eq!(tok.kind(), TokenizerKind::BytePairEncoding);
    assert!(!tok.add_bos());
    // "hello": h+e (rank 0), l+l (1), ll+o (4), he+llo (5) → one token.
    assert_eq!(tok.encode("hello", false, false).unwrap(), [bpe_id(&tok, "hello")]);
    // " the": h+e (0) before Ġ+t (2), then Ġt+he (3).
    assert_eq!(tok.encode(" the", false, false).unwrap(), [bpe_id(&tok, " the")]);
    // "abc": b+c has the lower rank, so a stays alone although "a b" is a merge too.
    assert_eq!(tok.encode("abc", false, false).unwrap(), [bpe_id(&tok, "a"), bpe_id(&tok, "bc")]);
    // "hell": h+e, l+l, then no merge "he ll".
    assert_eq!(tok.encode("hell", false, false).unwrap(), [bpe_id(&tok, "he"), bpe_id(&tok, "ll")]);
    // Merges never cross pre-tokenizer words: "hello the" is "hello" + " the".
    assert_eq!(tok.encode("hello the", false, false).unwrap(), [bpe_id(&tok, "hello"), bpe_id(&tok, " the")]);
    // Bytes of characters with no merges are their byte tokens: "é" is C3 A9.
    assert_eq!(tok.encode("é", false, false).unwrap(), [0xC3, 0xA9]);
}

#[test]
fn bpe_special_tokens_and_bos() {
    let tok = bpe_tokenizer("gpt-2", MERGES, &["<|endoftext|>"]).unwrap();
    let eot = tok.id_of("<|endoftext|>").unwrap();
    assert_eq!(tok.bos_id(), Some(eot));
    assert!(tok.is_eog(eot));
    let ids = tok.encode("hello<|endoftext|> the", true, true).unwrap();
    assert_eq!(ids, [eot, bpe_id(&tok, "hello"), eot, bpe_id(&tok, " the")]);
    assert_eq!(tok.decode(&ids), "hello the");
    let plain = tok.encode("hello<|endoftext|>", false, false).unwrap();
    assert!(!plain.contains(&eot));
    assert_eq!(tok.decode(&plain), "hello<|endoftext|>");
}

#[test]
fn bpe_pre_tokenizers_split_numbers_differently() {
    // Llama 3 groups up to three digits, Qwen2 splits every digit: "123" merges only for Llama 3.
    let llama3 = bpe_tokenizer("llama-bpe", MERGES, &["<|begin_of_text|>"]).unwrap();
    assert!(llama3.add_bos(), "llama3 pre-tokenizers turn BOS on");
    assert_eq!(llama3.encode("123", false, false).unwrap(), [bpe_id(&llama3, "123")]);
    let qwen2 = bpe_tokenizer("qwen2", MERGES, &["<|endoftext|>"]).unwrap();
    assert_eq!(qwen2.encode("123", false, false).unwrap(), [0x31, 0x32, 0x33]);
    // Llama 3 ignores merges for words already in the vocabulary; the result is the same token.
    assert_eq!(llama3.encode(" the", false, false).unwrap(), [bpe_id(&llama3, " the")]);
}

#[test]
fn bpe_round_trips() {
    for pre in ["gpt-2", "llama-bpe", "qwen2", "default"] {
        let tok = bpe_tokenizer(pre, MERGES, &["<|endoftext|>"]).unwrap();
        for &text in ROUND_TRIPS.iter().chain([&LITERAL_ESCAPE]) {
            let ids = tok.encode(text, false, false).unwrap();
            assert_eq!(tok.decode(&ids), text, "pre {pre}, ids {ids:?}");
        }
    }
}

#[test]
fn bpe_stream_decoder_emits_whole_characters() {
    let tok = bpe_tokenizer("llama-bpe", MERGES, &["<|begin_of_text|>"]).unwrap();
    let text = "a😀b漢";
    let ids = tok.encode(text, false, false).unwrap();
    assert_eq!(ids.len(), 1 + 4 + 1 + 3);
    let mut decoder = StreamDecoder::new();
    let pieces: Vec<String> = ids.iter().map(|&id| decoder.push(&tok, id)).collect();
    assert_eq!(pieces, ["a", "", "", "", "😀", "b", "", "", "漢"]);
    assert_eq!(decoder.finish(), "");
}

#[test]
fn unknown_tokenizer_models_are_errors() {
    let mut w = GgufWriter::new();
    w.set("tokenizer.ggml.model", "t5");
    w.set("tokenizer.ggml.tokens", str_array(&["a".to_string()]));
    let err = Tokenizer::from_gguf(&open_written(&w)).unwrap_err();
    assert!(matches!(&err, Error::Tokenizer(m) if m.contains("t5")), "{err}");

    let err = bpe_tokenizer("no-such-pre", MERGES, &[]).unwrap_err();
    assert!(matches!(&err, Error::Tokenizer(m) if m.contains("no-such-pre")), "{err}");
}

/// A SentencePiece vocabulary small enough to follow by hand: scores decide which pair merges.
fn spm_tokenizer(add_space_prefix: bool) -> Tokenizer {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (text, score) in
        [("▁", -1.0), ("a", -2.0), ("b", -2.0), ("c", -2.0), ("ab", -5.0), ("bc", -3.0), ("▁a", -4.0), ("▁abc", -6.0)]
    {
        tokens.push(text.into());
        types.push(1);
        scores.push(score);
    }
    let mut w = GgufWriter::new();
    w.set("tokenizer.ggml.model", "llama");
    w.set("tokenizer.ggml.tokens", str_array(&tokens));
    w.set("tokenizer.ggml.scores", Value::Array(ValueType::F32, scores.into_iter().map(Value::F32).collect()));
    w.set("tokenizer.ggml.token_type", Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()));
    w.set("tokenizer.ggml.add_space_prefix", add_space_prefix);
    Tokenizer::from_gguf(&open_written(&w)).unwrap()
}

#[test]
fn spm_merges_follow_scores() {
    let tok = spm_tokenizer(true);
    let id = |t: &str| tok.id_of(t).unwrap();
    assert_eq!(tok.bos_id(), Some(1)); // llama.cpp's SentencePiece default
    assert!(tok.add_bos());
    // "▁abc": bc (-3) beats ▁a (-4) and ab (-5); then ▁a; then "▁a"+"bc" is the token "▁abc".
    assert_eq!(tok.encode("abc", false, false).unwrap(), [id("▁abc")]);
    // "▁ab": ▁a (-4) beats ab (-5).
    assert_eq!(tok.encode("ab", true, false).unwrap(), [1, id("▁a"), id("b")]);
    // "x" is not in the vocabulary: byte fallback; the space prefix is "▁".
    assert_eq!(tok.encode("x", false, false).unwrap(), [id("▁"), id("<0x78>")]);
    // The space prefix is removed again when decoding.
    assert_eq!(tok.decode(&tok.encode("abc x", true, false).unwrap()), "abc x");
    // Without the prefix: bc (-3) beats ab (-5), and "a"+"bc" is not a token.
    let no_prefix = spm_tokenizer(false);
    let id = |t: &str| no_prefix.id_of(t).unwrap();
    assert_eq!(no_prefix.encode("abc", false, false).unwrap(), [id("a"), id("bc")]);
    assert_eq!(no_prefix.encode("ab", false, false).unwrap(), [id("ab")]);
    for &text in ROUND_TRIPS {
        assert_eq!(tok.decode(&tok.encode(text, true, false).unwrap()), text);
        assert_eq!(no_prefix.decode(&no_prefix.encode(text, true, false).unwrap()), text);
    }
}

#[test]
fn gemma_encodes_long_text_quickly() {
    let tok = gemma();
    let paragraph = "The quick brown fox jumps over the lazy dog.  Le cœur a ses raisons 🦊\n\n\
                     東京は日本の首都です。\tfn main() { let x = 42; }\n";
    let text = paragraph.repeat(2000); // ~250 KB
    let t0 = std::time::Instant::now();
    let ids = tok.encode(&text, true, true).unwrap();
    let elapsed = t0.elapsed();
    eprintln!("{} bytes → {} tokens in {elapsed:?}", text.len(), ids.len());
    assert_eq!(tok.decode(&ids), text);
    // Each repetition tokenizes the same way (the paragraph ends with a newline, a user-defined token).
    let one = tok.encode(paragraph, false, true).unwrap();
    assert_eq!(ids.len(), 1 + 2000 * one.len());
    assert!(elapsed.as_secs_f64() < 10.0, "encoding took {elapsed:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Any text comes back from encode → decode (SentencePiece turns a literal "▁" into a space, so
    /// that one character is left out for Gemma).
    #[test]
    fn arbitrary_text_round_trips(text in "\\PC*|[ \t\n\r a-z😀漢é<>]{0,40}", any_text in proptest::prelude::any::<String>()) {
        let tok = gemma();
        for t in [&text, &any_text] {
            let t = t.replace('▁', "_");
            let ids = tok.encode(&t, true, false).unwrap();
            proptest::prop_assert_eq!(tok.decode(&ids), t);
        }
        let bpe = bpe_tokenizer_with("llama-bpe", LLAMA_CPP_MERGES, LLAMA_CPP_SPECIALS, LLAMA_CPP_USER).unwrap();
        for t in [&text, &any_text] {
            let ids = bpe.encode(t, false, false).unwrap();
            proptest::prop_assert_eq!(&bpe.decode(&ids), t);
        }
    }
}
