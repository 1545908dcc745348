//! Tensor tables of well-known models (Llama 2/3, Mistral, Qwen3, Phi-3, Gemma 2), from their
//! published shapes: for planning and size estimates without weights, and for writing stand-ins
//! of big models (zero-filled for tests of the planner and loader, random for benchmarks).

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::random::random_blocks;
use crate::format::GgmlType;
use crate::gguf::{GgufWriter, TensorData, Value};
use crate::model::Arch;
use crate::quantize::{FileType, Recipe, TensorShape};

/// The hyperparameters that decide a model's tensor shapes.
#[derive(Clone, Debug)]
pub struct ModelShape {
    pub name: &'static str,
    /// Which tensors there are (fused for Phi-3, q/k norms for Qwen3, post-norms for Gemma 2).
    pub arch: Arch,
    pub n_vocab: u64,
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_layer: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    /// Width of a query, key or value head (`n_embd / n_head` except in Gemma 2).
    pub head_dim: u64,
    /// The output head is the embedding table (no `output.weight`).
    pub tied: bool,
    pub n_ctx_train: u64,
    pub rope_base: f32,
}

pub const LLAMA2_7B: ModelShape = ModelShape {
    arch: Arch::Llama,
    name: "Llama-2-7B",
    n_vocab: 32000,
    n_embd: 4096,
    n_ff: 11008,
    n_layer: 32,
    n_head: 32,
    n_head_kv: 32,
    head_dim: 128,
    tied: false,
    n_ctx_train: 4096,
    rope_base: 10_000.0,
};

pub const MISTRAL_7B: ModelShape = ModelShape {
    arch: Arch::Llama,
    name: "Mistral-7B",
    n_vocab: 32000,
    n_embd: 4096,
    n_ff: 14336,
    n_layer: 32,
    n_head: 32,
    n_head_kv: 8,
    head_dim: 128,
    tied: false,
    n_ctx_train: 32768,
    rope_base: 1_000_000.0,
};

pub const LLAMA3_8B: ModelShape = ModelShape {
    arch: Arch::Llama,
    name: "Llama-3-8B",
    n_vocab: 128256,
    n_embd: 4096,
    n_ff: 14336,
    n_layer: 32,
    n_head: 32,
    n_head_kv: 8,
    head_dim: 128,
    tied: false,
    n_ctx_train: 8192,
    rope_base: 500_000.0,
};

/// A tiny Llama: 2 layers of width 256 (so every k-quant applies), grouped-query attention with
/// 64-wide heads, and a 512-token vocabulary (3 controls, 256 byte tokens, 253 pieces). Small
/// enough for lavapipe: the toy models of the format benchmark and the GPU check's dry run.
pub const LLAMA_TINY: ModelShape = ModelShape {
    arch: Arch::Llama,
    name: "tiny-random-llama",
    n_vocab: 512,
    n_embd: 256,
    n_ff: 512,
    n_layer: 2,
    n_head: 4,
    n_head_kv: 2,
    head_dim: 64,
    tied: false,
    n_ctx_train: 1024,
    rope_base: 10_000.0,
};

/// Qwen3-8B: q/k norms, 128-wide heads, an untied head over a 151,936-token vocabulary.
pub const QWEN3_8B: ModelShape = ModelShape {
    name: "Qwen3-8B",
    arch: Arch::Qwen3,
    n_vocab: 151_936,
    n_embd: 4096,
    n_ff: 12288,
    n_layer: 36,
    n_head: 32,
    n_head_kv: 8,
    head_dim: 128,
    tied: false,
    n_ctx_train: 40960,
    rope_base: 1_000_000.0,
};

/// Phi-3-mini (4k): fused q/k/v and gate/up, 96-wide heads, no grouped-query attention.
pub const PHI3_MINI: ModelShape = ModelShape {
    name: "Phi-3-mini",
    arch: Arch::Phi3,
    n_vocab: 32064,
    n_embd: 3072,
    n_ff: 8192,
    n_layer: 32,
    n_head: 32,
    n_head_kv: 32,
    head_dim: 96,
    tied: false,
    n_ctx_train: 4096,
    rope_base: 10_000.0,
};

/// Gemma-2-9B: 256-wide heads (q is wider than the embedding), post-norms, a tied head over a
/// 256,000-token vocabulary, a 4096-token window on every other layer.
pub const GEMMA2_9B: ModelShape = ModelShape {
    name: "Gemma-2-9B",
    arch: Arch::Gemma2,
    n_vocab: 256_000,
    n_embd: 3584,
    n_ff: 14336,
    n_layer: 42,
    n_head: 16,
    n_head_kv: 8,
    head_dim: 256,
    tied: true,
    n_ctx_train: 8192,
    rope_base: 10_000.0,
};

impl ModelShape {
    /// Every tensor, in the order llama.cpp's converter writes them.
    pub fn tensors(&self) -> Vec<TensorShape> {
        let (e, f, hd) = (self.n_embd, self.n_ff, self.head_dim);
        let (q, kv) = (hd * self.n_head, hd * self.n_head_kv);
        let t = |name: String, dims: Vec<u64>| TensorShape { name, dims };
        let mut out =
            vec![t("token_embd.weight".into(), vec![e, self.n_vocab]), t("output_norm.weight".into(), vec![e])];
        if !self.tied {
            out.push(t("output.weight".into(), vec![e, self.n_vocab]));
        }
        for il in 0..self.n_layer {
            let b = |s: &str| format!("blk.{il}.{s}.weight");
            if self.arch == Arch::Phi3 {
                out.push(t(b("attn_qkv"), vec![e, q + 2 * kv]));
            } else {
                out.extend([t(b("attn_q"), vec![e, q]), t(b("attn_k"), vec![e, kv]), t(b("attn_v"), vec![e, kv])]);
            }
            if self.arch == Arch::Qwen3 {
                out.extend([t(b("attn_q_norm"), vec![hd]), t(b("attn_k_norm"), vec![hd])]);
            }
            out.push(t(b("attn_output"), vec![q, e]));
            if self.arch == Arch::Phi3 {
                out.push(t(b("ffn_up"), vec![e, 2 * f]));
            } else {
                out.extend([t(b("ffn_gate"), vec![e, f]), t(b("ffn_up"), vec![e, f])]);
            }
            out.extend([t(b("ffn_down"), vec![f, e]), t(b("attn_norm"), vec![e]), t(b("ffn_norm"), vec![e])]);
            if self.arch == Arch::Gemma2 {
                out.extend([t(b("post_attention_norm"), vec![e]), t(b("post_ffw_norm"), vec![e])]);
            }
        }
        out
    }

    /// Metadata for a GGUF of this architecture with these shapes (a byte-level toy vocabulary, so
    /// that the file loads and generates; the weights decide nothing about shapes).
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let arch = self.arch.name();
        let k = |s: &str| format!("{arch}.{s}");
        let tokens: Vec<String> = (0..self.n_vocab)
            .map(|i| match i {
                0 => "<unk>".to_string(),
                1 => "<s>".to_string(),
                2 => "</s>".to_string(),
                i if i < 259 => format!("<0x{:02X}>", i - 3),
                i => format!("▁tok{i}"),
            })
            .collect();
        let types: Vec<i32> = (0..self.n_vocab)
            .map(|i| {
                if i < 3 {
                    3
                } else if i < 259 {
                    6
                } else {
                    1
                }
            })
            .collect();
        let mut meta = vec![
            ("general.architecture".into(), arch.into()),
            ("general.name".into(), self.name.into()),
            (k("context_length"), Value::U32(self.n_ctx_train as u32)),
            (k("embedding_length"), Value::U32(self.n_embd as u32)),
            (k("block_count"), Value::U32(self.n_layer as u32)),
            (k("feed_forward_length"), Value::U32(self.n_ff as u32)),
            (k("attention.head_count"), Value::U32(self.n_head as u32)),
            (k("attention.head_count_kv"), Value::U32(self.n_head_kv as u32)),
            (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
            (k("rope.freq_base"), Value::F32(self.rope_base)),
            (k("attention.key_length"), Value::U32(self.head_dim as u32)),
            (k("attention.value_length"), Value::U32(self.head_dim as u32)),
            ("tokenizer.ggml.model".into(), "llama".into()),
            ("tokenizer.ggml.tokens".into(), Value::from(tokens)),
            ("tokenizer.ggml.scores".into(), Value::from(vec![0.0f32; self.n_vocab as usize])),
            ("tokenizer.ggml.token_type".into(), Value::from(types)),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ];
        if self.arch == Arch::Gemma2 {
            meta.extend([
                (k("attention.sliding_window"), Value::U32(4096)),
                (k("attn_logit_softcapping"), Value::F32(50.0)),
                (k("final_logit_softcapping"), Value::F32(30.0)),
            ]);
        }
        meta
    }
}

/// Every shape above, by the name the command-line tools take (`llama2-7b`, ...).
pub const SHAPES: [(&str, &ModelShape); 7] = [
    ("llama2-7b", &LLAMA2_7B),
    ("llama3-8b", &LLAMA3_8B),
    ("mistral-7b", &MISTRAL_7B),
    ("qwen3-8b", &QWEN3_8B),
    ("phi3-mini", &PHI3_MINI),
    ("gemma2-9b", &GEMMA2_9B),
    ("llama-tiny", &LLAMA_TINY),
];

/// The shape named `name` (see [`SHAPES`]), or an error listing the known names.
pub fn shape_named(name: &str) -> Result<&'static ModelShape> {
    SHAPES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, s)| *s).ok_or_else(|| {
        let known: Vec<&str> = SHAPES.iter().map(|(n, _)| *n).collect();
        Error::Invalid(format!("unknown model shape `{name}`; known: {}", known.join(", ")))
    })
}

/// What a stand-in's tensors hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandInWeights {
    /// All zero, left as holes in the file: a 7B stand-in costs a few MB of disk. Enough for the
    /// planner and the loader, which read metadata and move bytes.
    Zeros,
    /// Valid random blocks ([`random_blocks`]), norms of one: what a benchmark should time, since
    /// a GPU may compress zero pages and every product of zero weights is zero.
    Random { seed: u64 },
}

/// Write a GGUF at `path` with `shape`'s tensor names and shapes in `ftype`'s recipe types
/// (llama.cpp's per-tensor choices). Plans of such a file are the plans of the real model, since
/// the planner reads only metadata and the tensor index.
pub fn write_stand_in(shape: &ModelShape, ftype: FileType, weights: StandInWeights, path: &Path) -> Result<()> {
    let shapes = shape.tensors();
    let n_gqa = (shape.n_head / shape.n_head_kv.max(1)) as usize;
    let types = Recipe::plan(ftype, &shapes, n_gqa);
    let mut w = GgufWriter::new();
    for (key, value) in shape.metadata() {
        w.set(&key, value);
    }
    w.set("general.file_type", Value::U32(ftype.id()));
    for (t, ty) in shapes.iter().zip(&types) {
        w.add_tensor(&t.name, *ty, &t.dims)?;
    }
    w.write(path, |i| match weights {
        StandInWeights::Zeros => Ok(TensorData::Zeros),
        StandInWeights::Random { seed } => {
            let dims = &shapes[i].dims;
            let n: u64 = dims.iter().product();
            if dims.len() == 1 && types[i] == GgmlType::F32 {
                // Norm weights: ones, so activations keep their scale through the layers.
                return Ok(TensorData::Bytes(1f32.to_le_bytes().repeat(n as usize)));
            }
            random_blocks(types[i], n, seed ^ (i as u64) << 32).map(TensorData::Bytes)
        }
    })
}
