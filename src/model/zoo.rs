//! Tensor tables of well-known architectures, from their published shapes: for planning and size
//! estimates without weights, and for writing zero-filled stand-ins of big models in tests.

use crate::gguf::Value;
use crate::quantize::TensorShape;

/// The hyperparameters that decide a Llama-family model's tensor shapes.
#[derive(Clone, Debug)]
pub struct LlamaShape {
    pub name: &'static str,
    pub n_vocab: u64,
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_layer: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub n_ctx_train: u64,
    pub rope_base: f32,
}

pub const LLAMA2_7B: LlamaShape = LlamaShape {
    name: "Llama-2-7B",
    n_vocab: 32000,
    n_embd: 4096,
    n_ff: 11008,
    n_layer: 32,
    n_head: 32,
    n_head_kv: 32,
    n_ctx_train: 4096,
    rope_base: 10_000.0,
};

pub const MISTRAL_7B: LlamaShape = LlamaShape {
    name: "Mistral-7B",
    n_vocab: 32000,
    n_embd: 4096,
    n_ff: 14336,
    n_layer: 32,
    n_head: 32,
    n_head_kv: 8,
    n_ctx_train: 32768,
    rope_base: 1_000_000.0,
};

pub const LLAMA3_8B: LlamaShape = LlamaShape {
    name: "Llama-3-8B",
    n_vocab: 128256,
    n_embd: 4096,
    n_ff: 14336,
    n_layer: 32,
    n_head: 32,
    n_head_kv: 8,
    n_ctx_train: 8192,
    rope_base: 500_000.0,
};

impl LlamaShape {
    /// Every tensor, in the order llama.cpp's converter writes them.
    pub fn tensors(&self) -> Vec<TensorShape> {
        let (e, f, kv) = (self.n_embd, self.n_ff, self.n_embd / self.n_head * self.n_head_kv);
        let t = |name: String, dims: Vec<u64>| TensorShape { name, dims };
        let mut out = vec![
            t("token_embd.weight".into(), vec![e, self.n_vocab]),
            t("output_norm.weight".into(), vec![e]),
            t("output.weight".into(), vec![e, self.n_vocab]),
        ];
        for il in 0..self.n_layer {
            let b = |s: &str| format!("blk.{il}.{s}.weight");
            out.extend([
                t(b("attn_q"), vec![e, e]),
                t(b("attn_k"), vec![e, kv]),
                t(b("attn_v"), vec![e, kv]),
                t(b("attn_output"), vec![e, e]),
                t(b("ffn_gate"), vec![e, f]),
                t(b("ffn_up"), vec![e, f]),
                t(b("ffn_down"), vec![f, e]),
                t(b("attn_norm"), vec![e]),
                t(b("ffn_norm"), vec![e]),
            ]);
        }
        out
    }

    /// Metadata for a `llama` GGUF with these shapes (a byte-level toy vocabulary, so that the file
    /// loads and generates; the weights decide nothing about shapes).
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let k = |s: &str| format!("llama.{s}");
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
        vec![
            ("general.architecture".into(), "llama".into()),
            ("general.name".into(), self.name.into()),
            (k("context_length"), Value::U32(self.n_ctx_train as u32)),
            (k("embedding_length"), Value::U32(self.n_embd as u32)),
            (k("block_count"), Value::U32(self.n_layer as u32)),
            (k("feed_forward_length"), Value::U32(self.n_ff as u32)),
            (k("attention.head_count"), Value::U32(self.n_head as u32)),
            (k("attention.head_count_kv"), Value::U32(self.n_head_kv as u32)),
            (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
            (k("rope.freq_base"), Value::F32(self.rope_base)),
            ("tokenizer.ggml.model".into(), "llama".into()),
            ("tokenizer.ggml.tokens".into(), Value::from(tokens)),
            ("tokenizer.ggml.scores".into(), Value::from(vec![0.0f32; self.n_vocab as usize])),
            ("tokenizer.ggml.token_type".into(), Value::from(types)),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ]
    }
}
