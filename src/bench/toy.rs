//! Small random models for exercising the harness without real weights: a `llama` GGUF with a
//! zoo shape's tensors and toy SentencePiece vocabulary, and seeded random F32 weights.

use std::path::Path;

use crate::error::Result;
use crate::format::GgmlType;
use crate::gguf::{GgufWriter, TensorData, Value};
use crate::model::zoo::LlamaShape;

/// A tiny Llama: 2 layers of width 256 (so every k-quant applies), grouped-query attention with
/// 64-wide heads, and a 512-token vocabulary (3 controls, 256 byte tokens, 253 pieces).
pub const TINY_LLAMA: LlamaShape = LlamaShape {
    name: "tiny-random-llama",
    n_vocab: 512,
    n_embd: 256,
    n_ff: 512,
    n_layer: 2,
    n_head: 4,
    n_head_kv: 2,
    n_ctx_train: 1024,
    rope_base: 10_000.0,
};

/// SplitMix64: a small, seedable generator, so a seed gives the same file everywhere.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

/// Write a `llama` GGUF at `path` with `shape`'s tensors in F32: matrices drawn from
/// N(0, 1/row_len) (so activations keep their scale through the layers), norms all ones; the
/// token embedding is scaled up so the logits spread over the vocabulary.
pub fn write_random_llama(shape: &LlamaShape, path: &Path, seed: u64) -> Result<()> {
    let tensors = shape.tensors();
    let mut w = GgufWriter::new();
    for (key, value) in shape.metadata() {
        w.set(&key, value);
    }
    w.set("general.file_type", Value::U32(0));
    for t in &tensors {
        w.add_tensor(&t.name, GgmlType::F32, &t.dims)?;
    }
    let mut rng = SplitMix(seed);
    w.write(path, |i| {
        let t = &tensors[i];
        let n: u64 = t.dims.iter().product();
        let values: Vec<f32> = if t.dims.len() == 1 {
            vec![1.0; n as usize]
        } else {
            let scale = if t.name == "token_embd.weight" { 1.0 } else { 1.0 / (t.dims[0] as f32).sqrt() };
            (0..n).map(|_| rng.normal() * scale).collect()
        };
        Ok(TensorData::Bytes(bytemuck::cast_slice(&values).to_vec()))
    })
}
