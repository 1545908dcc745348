//! Writes the tiny random-weight models that prove each architecture against llama.cpp
//! (`tests/architectures.rs`): `cargo run --release --example make-tiny-models -- tests/data/tiny`.
//!
//! Each file has its architecture's exact tensor names and metadata (fused q/k/v and gate/up for
//! Phi-3, q/k norms for Qwen3, post-norms and soft-capping for Gemma 2, rope frequency factors for
//! Llama 3 and Phi-3), two layers of 256-wide embeddings in a mix of formats, and a byte-level BPE
//! vocabulary of the 256 bytes, a few merges and BOS/EOS, which llama.cpp and wgquant tokenize
//! alike. The weights come from a fixed seed, so the files are the same on every run; llama.cpp's
//! outputs on them are made by `tests/data/tiny/make-reference.sh`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wgquant::format::quant::quantize;
use wgquant::gguf::{GgufWriter, TensorData, Value, ValueType};
use wgquant::rng::SplitMix64;
use wgquant::tokenizer::byte_to_char_table;
use wgquant::{Error, GgmlType, Result};

const N_EMBD: u64 = 256;
const N_HEAD: u64 = 4;
const N_HEAD_KV: u64 = 2;
const HEAD_DIM: u64 = N_EMBD / N_HEAD;
const N_FF: u64 = 512;
const N_LAYER: usize = 2;

/// Merges of the vocabulary (their results follow the 256 byte tokens), then BOS and EOS.
const MERGES: [(&str, &str); 5] = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "a"), ("i", "n")];

/// One tiny model: its architecture and the formats its matrices cycle through.
struct Spec {
    file: &'static str,
    arch: &'static str,
    formats: &'static [GgmlType],
}

const SPECS: [Spec; 4] = [
    Spec { file: "llama3.gguf", arch: "llama", formats: &[GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0] },
    Spec { file: "qwen3.gguf", arch: "qwen3", formats: &[GgmlType::Q5_K, GgmlType::Q8_0, GgmlType::F16] },
    Spec { file: "phi3.gguf", arch: "phi3", formats: &[GgmlType::Q4_0, GgmlType::Q5_1, GgmlType::Q8_0] },
    Spec { file: "gemma2.gguf", arch: "gemma2", formats: &[GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::F16] },
];

struct Tensor {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    values: Vec<f32>,
}

/// The tensors of a model, values drawn from one seeded generator in file order.
struct Tensors {
    list: Vec<Tensor>,
    rng: SplitMix64,
    formats: std::iter::Cycle<std::slice::Iter<'static, GgmlType>>,
}

impl Tensors {
    /// A tensor of values `offset ± scale`; matrices take the next format of the cycle, vectors
    /// are F32.
    fn add(&mut self, name: String, dims: &[u64], scale: f32, offset: f32) {
        let ty = if dims.len() > 1 { *self.formats.next().expect("a cycle") } else { GgmlType::F32 };
        let n = dims.iter().product::<u64>() as usize;
        let values = (0..n).map(|_| offset + scale * self.rng.signed_unit()).collect();
        self.list.push(Tensor { name, ty, dims: dims.to_vec(), values });
    }
}

fn vocabulary() -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let table = byte_to_char_table();
    let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
    tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    let mut types = vec![1i32; tokens.len()];
    tokens.extend(["<s>".to_string(), "</s>".to_string()]);
    types.extend([3, 3]); // control
    let merges = MERGES.iter().map(|(a, b)| Value::String(format!("{a} {b}"))).collect();
    (tokens.into_iter().map(Value::String).collect(), types.into_iter().map(Value::I32).collect(), merges)
}

fn write(spec: &Spec, dir: &Path) -> Result<PathBuf> {
    let (tokens, types, merges) = vocabulary();
    let n_vocab = tokens.len() as u64;
    let kv = HEAD_DIM * N_HEAD_KV;
    let seed = spec.file.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let mut t = Tensors { list: Vec::new(), rng: SplitMix64(seed), formats: spec.formats.iter().cycle() };
    let arch = spec.arch;
    let (phi3, gemma2, qwen3) = (arch == "phi3", arch == "gemma2", arch == "qwen3");

    t.add("token_embd.weight".into(), &[N_EMBD, n_vocab], 1.0, 0.0);
    t.add("output_norm.weight".into(), &[N_EMBD], 0.2, 1.0);
    if phi3 {
        // Untied head; LongRoPE's factors (the long ones apply past the original context).
        t.add("output.weight".into(), &[N_EMBD, n_vocab], 0.1, 0.0);
        t.add("rope_factors_long.weight".into(), &[HEAD_DIM / 2], 1.5, 3.0);
        t.add("rope_factors_short.weight".into(), &[HEAD_DIM / 2], 0.4, 1.2);
    }
    if arch == "llama" {
        // Llama 3.1's frequency divisors (1 for high frequencies up to 8 for low ones); tied head.
        let factors = (0..HEAD_DIM / 2).map(|i| 1.0 + 7.0 * i as f32 / (HEAD_DIM / 2 - 1) as f32).collect();
        t.list.push(Tensor {
            name: "rope_freqs.weight".into(),
            ty: GgmlType::F32,
            dims: vec![HEAD_DIM / 2],
            values: factors,
        });
    }
    for il in 0..N_LAYER {
        let b = |s: &str| format!("blk.{il}.{s}.weight");
        t.add(b("attn_norm"), &[N_EMBD], 0.2, 1.0);
        if phi3 {
            t.add(b("attn_qkv"), &[N_EMBD, N_EMBD + 2 * kv], 0.15, 0.0);
        } else {
            t.add(b("attn_q"), &[N_EMBD, N_EMBD], 0.15, 0.0);
            t.add(b("attn_k"), &[N_EMBD, kv], 0.15, 0.0);
            t.add(b("attn_v"), &[N_EMBD, kv], 0.15, 0.0);
        }
        if qwen3 {
            t.add(b("attn_q_norm"), &[HEAD_DIM], 0.2, 1.0);
            t.add(b("attn_k_norm"), &[HEAD_DIM], 0.2, 1.0);
        }
        t.add(b("attn_output"), &[N_EMBD, N_EMBD], 0.1, 0.0);
        if gemma2 {
            t.add(b("post_attention_norm"), &[N_EMBD], 0.2, 1.0);
        }
        t.add(b("ffn_norm"), &[N_EMBD], 0.2, 1.0);
        if phi3 {
            t.add(b("ffn_up"), &[N_EMBD, 2 * N_FF], 0.1, 0.0);
        } else {
            t.add(b("ffn_gate"), &[N_EMBD, N_FF], 0.1, 0.0);
            t.add(b("ffn_up"), &[N_EMBD, N_FF], 0.1, 0.0);
        }
        t.add(b("ffn_down"), &[N_FF, N_EMBD], 0.1, 0.0);
        if gemma2 {
            t.add(b("post_ffw_norm"), &[N_EMBD], 0.2, 1.0);
        }
    }

    let mut w = GgufWriter::new();
    let k = |s: &str| format!("{arch}.{s}");
    w.set("general.architecture", arch)
        // Not the architecture's name: llama.cpp gives vocabularies of models named like Phi-3
        // special-token attributes that need Phi-3's own tokens.
        .set("general.name", "tiny random weights")
        .set(&k("context_length"), 1024u32)
        .set(&k("embedding_length"), N_EMBD as u32)
        .set(&k("block_count"), N_LAYER as u32)
        .set(&k("feed_forward_length"), N_FF as u32)
        .set(&k("attention.head_count"), N_HEAD as u32)
        .set(&k("attention.head_count_kv"), N_HEAD_KV as u32)
        .set(&k("attention.layer_norm_rms_epsilon"), 1e-6f32)
        .set(&k("rope.dimension_count"), HEAD_DIM as u32)
        .set(&k("vocab_size"), n_vocab as u32)
        .set("tokenizer.ggml.model", "gpt2")
        .set("tokenizer.ggml.pre", "gpt-2")
        .set("tokenizer.ggml.tokens", Value::Array(ValueType::String, tokens))
        .set("tokenizer.ggml.token_type", Value::Array(ValueType::I32, types))
        .set("tokenizer.ggml.merges", Value::Array(ValueType::String, merges))
        .set("tokenizer.ggml.bos_token_id", (n_vocab - 2) as u32)
        .set("tokenizer.ggml.eos_token_id", (n_vocab - 1) as u32)
        .set("tokenizer.ggml.add_bos_token", true);
    match arch {
        "llama" => {
            w.set(&k("rope.freq_base"), Value::F32(500_000.0));
        }
        "qwen3" => {
            w.set(&k("rope.freq_base"), Value::F32(1_000_000.0));
        }
        "phi3" => {
            // The original context is 64 tokens: llama.cpp's context, padded to 256, is past it
            // (long factors).
            w.set(&k("rope.freq_base"), Value::F32(10_000.0))
                .set(&k("rope.scaling.original_context_length"), 64u32)
                .set(&k("rope.scaling.attn_factor"), Value::F32(1.1902));
        }
        _ => {
            // Gemma 2 with caps small enough for random weights to reach them, and a window of 8
            // on the even layers.
            w.set(&k("rope.freq_base"), Value::F32(10_000.0))
                .set(&k("attention.sliding_window"), 8u32)
                .set(&k("attn_logit_softcapping"), Value::F32(4.0))
                .set(&k("final_logit_softcapping"), Value::F32(30.0))
                .set(&k("attention.key_length"), HEAD_DIM as u32)
                .set(&k("attention.value_length"), HEAD_DIM as u32);
        }
    }
    for tensor in &t.list {
        w.add_tensor(&tensor.name, tensor.ty, &tensor.dims)?;
    }
    let path = dir.join(spec.file);
    w.write(&path, |i| {
        let tensor = &t.list[i];
        Ok(TensorData::Bytes(quantize(tensor.ty, &tensor.values, tensor.dims[0] as usize)?))
    })?;
    Ok(path)
}

fn main() -> ExitCode {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "tests/data/tiny".into()));
    match write_all(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for spec in &SPECS {
        let path = write(spec, dir)?;
        let bytes = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        println!("{} ({bytes} bytes)", path.display());
    }
    Ok(())
}
