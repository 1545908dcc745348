//! The GGUF reader and writer: the real model, round trips, and hostile input.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use wgquant::gguf::{GgufFile, GgufWriter, TensorData, Value, ValueType};
use wgquant::{Error, GgmlType};

#[test]
fn reads_the_default_model() {
    let f = GgufFile::open(common::default_model_path()).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.tensors().len(), 236);
    assert_eq!(f.architecture().unwrap(), "gemma3");
    assert_eq!(f.get_u32("gemma3.block_count").unwrap(), 18);
    assert_eq!(f.get_u32("gemma3.embedding_length").unwrap(), 640);
    assert_eq!(f.get_u32("gemma3.attention.sliding_window").unwrap(), 512);
    assert_eq!(f.get_f32("gemma3.rope.freq_base").unwrap(), 1_000_000.0);
    assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 262_144);
    assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap()[2], "<bos>");

    let mut types: BTreeMap<GgmlType, usize> = BTreeMap::new();
    for t in f.tensors() {
        *types.entry(t.ty).or_default() += 1;
    }
    let expected =
        [(GgmlType::F32, 109), (GgmlType::Q5_0, 81), (GgmlType::Q8_0, 10), (GgmlType::Q4_K, 27), (GgmlType::Q6_K, 9)];
    assert_eq!(types, expected.into_iter().collect());

    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dims, vec![640, 262_144]);
    assert_eq!(embd.ty, GgmlType::Q8_0);
    assert_eq!(embd.n_bytes, 262_144 * 20 * 34);
    assert_eq!(f.tensor("blk.0.ffn_down.weight").unwrap().dims, vec![2048, 640]);
    assert_eq!(f.tensor("blk.0.ffn_down.weight").unwrap().ty, GgmlType::Q6_K);
    assert_eq!(f.tensor("blk.0.attn_q.weight").unwrap().dims, vec![640, 1024]);
    assert_eq!(f.tensor("blk.0.attn_k_norm.weight").unwrap().dims, vec![256]);
    // The last tensor's data ends exactly at the end of the file.
    let last_end = f.tensors().iter().map(|t| f.data_offset + t.offset + t.n_bytes).max().unwrap();
    assert_eq!(last_end, f.file_size());
    assert!(matches!(f.get_u32("gemma3.nope"), Err(Error::MissingKey(k)) if k == "gemma3.nope"));
    assert!(matches!(f.get_u32("general.name"), Err(Error::KeyType { .. })));
}

fn sample_writer() -> (GgufWriter, Vec<Vec<u8>>) {
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama")
        .set("general.alignment", 64u32)
        .set("u8", 7u8)
        .set("i8", -7i8)
        .set("u16", 700u16)
        .set("i16", -700i16)
        .set("u32", 70_000u32)
        .set("i32", -70_000i32)
        .set("f32", 1.5f32)
        .set("bool", true)
        .set("u64", u64::MAX)
        .set("i64", i64::MIN)
        .set("f64", -2.25f64)
        .set("strings", vec!["a", "ü", ""])
        .set("empty", Value::Array(ValueType::F32, vec![]))
        .set("nested", Value::Array(ValueType::Array, vec![Value::from(vec![1i32, 2]), Value::from(vec![3i32])]));
    let data = vec![(0..8 * 4).map(|i| i as u8).collect::<Vec<u8>>(), vec![0xAB; 2 * 34], vec![0x11; 3 * 2]];
    w.add_tensor("a", GgmlType::F32, &[8]).unwrap();
    w.add_tensor("q", GgmlType::Q8_0, &[32, 2]).unwrap();
    w.add_tensor("h", GgmlType::F16, &[3]).unwrap();
    (w, data)
}

#[test]
fn writer_reader_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    let (w, data) = sample_writer();
    w.write(&path, |i| Ok(TensorData::Bytes(data[i].clone()))).unwrap();

    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    assert_eq!(f.get("i8"), Some(&Value::I8(-7)));
    assert_eq!(f.get("u64"), Some(&Value::U64(u64::MAX)));
    assert_eq!(f.get("i64"), Some(&Value::I64(i64::MIN)));
    assert_eq!(f.get("f64"), Some(&Value::F64(-2.25)));
    assert_eq!(f.get_str_array("strings").unwrap(), vec!["a", "ü", ""]);
    assert_eq!(f.get("empty"), Some(&Value::Array(ValueType::F32, vec![])));
    assert_eq!(f.get_array("nested").unwrap()[0], Value::from(vec![1i32, 2]));
    assert_eq!(f.get_u32("u16").unwrap(), 700);
    assert!(f.get_u32("i16").is_err(), "negative values are not u32");
    for (t, expected) in f.tensors().iter().zip(&data) {
        assert_eq!(t.offset % 64, 0);
        assert_eq!(f.tensor_data(t), &expected[..]);
    }
    assert_eq!(f.tensor("q").unwrap().dims, vec![32, 2]);
}

#[test]
fn zero_tensors_make_sparse_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.gguf");
    let mut w = GgufWriter::new();
    w.add_tensor("big", GgmlType::Q4_K, &[4096, 32000]).unwrap();
    w.add_tensor("small", GgmlType::F32, &[4]).unwrap();
    w.write(&path, |_| Ok(TensorData::Zeros)).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.tensor("big").unwrap().n_bytes, 4096 * 32000 / 256 * 144);
    assert!(f.tensor_bytes("small").unwrap().iter().all(|&b| b == 0));
    // The file's length covers the tensors, but (on filesystems with holes) few blocks are allocated.
    let small = f.tensor("small").unwrap();
    assert_eq!(f.file_size(), f.data_offset + small.offset + 16);
}

fn sample_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    let (w, data) = sample_writer();
    w.write(&path, |i| Ok(TensorData::Bytes(data[i].clone()))).unwrap();
    std::fs::read(path).unwrap()
}

fn gguf_err(bytes: Vec<u8>) -> String {
    match GgufFile::from_bytes(bytes) {
        Err(Error::Gguf { msg, .. }) => msg,
        other => panic!("expected a GGUF error, got {other:?}"),
    }
}

/// A header with a chosen tensor count, metadata count and body.
fn header(n_tensors: u64, n_kv: u64, body: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b.extend_from_slice(body);
    b
}

fn kv(key: &str, ty: u32, value: &[u8]) -> Vec<u8> {
    let mut b = (key.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(value);
    b
}

fn tensor_info(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut b = (name.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    b
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let bytes = sample_bytes();
    for len in 0..bytes.len() {
        let err = GgufFile::from_bytes(bytes[..len].to_vec()).unwrap_err();
        assert!(matches!(err, Error::Gguf { .. }), "truncated to {len}: {err}");
    }
    GgufFile::from_bytes(bytes).unwrap();
}

#[test]
fn hostile_headers_give_typed_errors() {
    assert!(gguf_err(b"GGML\x03\0\0\0".to_vec()).contains("not a GGUF file"));
    let mut v9 = header(0, 0, &[]);
    v9[4] = 9;
    assert!(gguf_err(v9).contains("version 9"));
    // Counts that cannot fit in the file are rejected before anything is allocated.
    assert!(gguf_err(header(u64::MAX, 0, &[])).contains("tensor count"));
    assert!(gguf_err(header(0, u64::MAX, &[])).contains("metadata count"));
    // A string length past the end of the file.
    let mut long = u64::MAX.to_le_bytes().to_vec();
    long.extend_from_slice(&[b'a'; 64]);
    assert!(gguf_err(header(0, 1, &long)).contains("truncated"));
    // An array whose length cannot fit.
    let mut arr = 4u32.to_le_bytes().to_vec();
    arr.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(gguf_err(header(0, 1, &kv("k", 9, &arr))).contains("array length"));
    // Arrays nested past the depth limit.
    let mut deep = Vec::new();
    for _ in 0..6 {
        deep.extend_from_slice(&9u32.to_le_bytes());
        deep.extend_from_slice(&1u64.to_le_bytes());
    }
    deep.extend_from_slice(&4u32.to_le_bytes());
    deep.extend_from_slice(&0u64.to_le_bytes());
    assert!(gguf_err(header(0, 1, &kv("k", 9, &deep))).contains("nested"));
    assert!(gguf_err(header(0, 1, &kv("k", 77, &[]))).contains("unknown value type 77"));
    assert!(gguf_err(header(0, 1, &kv("k", 7, &[2]))).contains("bool"));
    assert!(gguf_err(header(0, 1, &kv("general.alignment", 4, &3u32.to_le_bytes()))).contains("power of two"));
    let two_keys = [kv("k", 4, &[0; 4]), kv("k", 4, &[0; 4])].concat();
    assert!(gguf_err(header(0, 2, &two_keys)).contains("duplicate"));
    let bad_utf8 = [&2u64.to_le_bytes()[..], &[0xff, 0xfe], &4u32.to_le_bytes(), &[0; 4]].concat();
    assert!(gguf_err(header(0, 1, &bad_utf8)).contains("UTF-8"));
}

#[test]
fn hostile_tensor_infos_give_typed_errors() {
    let pad = vec![0u8; 256];
    let with = |info: Vec<u8>| [info, pad.clone()].concat();
    let e = gguf_err(header(1, 0, &with(tensor_info("t", &[32, 2], 16, 0))));
    assert!(e.contains("IQ2_XXS") && e.contains("`t`"), "{e}");
    assert!(gguf_err(header(1, 0, &with(tensor_info("t", &[32], 1234, 0)))).contains("unsupported tensor type id 1234"));
    assert!(gguf_err(header(1, 0, &with(tensor_info("t", &[1, 1, 1, 1, 1], 0, 0)))).contains("dimensions"));
    assert!(gguf_err(header(1, 0, &with(tensor_info("t", &[0, 4], 0, 0)))).contains("size 0"));
    let e = gguf_err(header(1, 0, &with(tensor_info("t", &[1 << 32, 1 << 32, 1 << 32], 0, 0))));
    assert!(e.contains("overflow"), "{e}");
    // 2^62 f32 elements: the count fits, the byte count does not.
    let e = gguf_err(header(1, 0, &with(tensor_info("t", &[1 << 31, 1 << 31], 0, 0))));
    assert!(e.contains("overflow") || e.contains("past the end"), "{e}");
    assert!(gguf_err(header(1, 0, &with(tensor_info("t", &[33], 8, 0)))).contains("multiple"));
    assert!(gguf_err(header(1, 0, &with(tensor_info("t", &[8], 0, 3)))).contains("aligned"));
    assert!(gguf_err(header(1, 0, &with(tensor_info("t", &[1024], 0, 0)))).contains("past the end"));
    assert!(gguf_err(header(1, 0, &with(tensor_info("t", &[8], 0, u64::MAX - 31)))).contains("past the end"));
    let two = [tensor_info("t", &[8], 0, 0), tensor_info("t", &[8], 0, 32), pad.clone()].concat();
    assert!(gguf_err(header(2, 0, &two)).contains("duplicate tensor"));
}

#[test]
fn missing_file_is_an_io_error() {
    let err = GgufFile::open("/nonexistent/model.gguf").unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/model.gguf"));
}

/// The first 64 KiB of the real model: its whole metadata block and the start of its tensor index.
fn real_header() -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; 7 << 20];
    let mut f = std::fs::File::open(common::default_model_path()).unwrap();
    f.read_exact(&mut buf).unwrap();
    buf
}

proptest! {
    // 100,000 cases in all: mutated bytes of a real header (vocabulary arrays included) and of the
    // synthetic file with every value type. Each must give Ok or a typed error, never a panic.
    #![proptest_config(ProptestConfig { cases: 50_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_synthetic_files_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = SAMPLE.with(|s| s.clone());
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let len = cut.index(bytes.len() + 1);
        bytes.truncate(len.max(bytes.len() / 2));
        check_no_panic(bytes);
    }

    #[test]
    fn mutated_real_headers_never_panic(
        edits in prop::collection::vec((0usize..4096, any::<u8>()), 1..6),
        truncate in prop::option::of(0usize..(7 << 20)),
    ) {
        let mut bytes = REAL.with(|s| s.clone());
        for (at, byte) in edits {
            // Aim at the counts and the first keys, where lengths live.
            bytes[at] = byte;
        }
        if let Some(t) = truncate {
            bytes.truncate(t);
        }
        check_no_panic(bytes);
    }
}

thread_local! {
    static SAMPLE: Vec<u8> = sample_bytes();
    static REAL: Vec<u8> = real_header();
}

fn check_no_panic(bytes: Vec<u8>) {
    match GgufFile::from_bytes(bytes) {
        Ok(f) => {
            for t in f.tensors() {
                assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
            }
        }
        Err(Error::Gguf { .. }) => {}
        Err(e) => panic!("untyped error: {e}"),
    }
}
