//! Small random models for exercising the harness without real weights: a `llama` GGUF with a
//! zoo shape's tensors and toy SentencePiece vocabulary, and seeded random F32 weights.

use std::path::Path;

use crate::error::Result;
use crate::format::GgmlType;
use crate::gguf::{GgufWriter, TensorData, Value};
use crate::model::zoo::ModelShape;
use crate::rng::SplitMix64;

/// The tiny Llama shape (see [`crate::model::zoo::LLAMA_TINY`]).
pub use crate::model::zoo::LLAMA_TINY as TINY_LLAMA;

/// Write a `llama` GGUF at `path` with `shape`'s tensors in F32: matrices drawn from
/// N(0, 1/row_len) (so activations keep their scale through the layers), norms all ones; the
/// token embedding is scaled up so the logits spread over the vocabulary.
pub fn write_random_llama(shape: &ModelShape, path: &Path, seed: u64) -> Result<()> {
    let tensors = shape.tensors();
    let mut w = GgufWriter::new();
    for (key, value) in shape.metadata() {
        w.set(&key, value);
    }
    w.set("general.file_type", Value::U32(0));
    for t in &tensors {
        w.add_tensor(&t.name, GgmlType::F32, &t.dims)?;
    }
    let mut rng = SplitMix64(seed);
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
