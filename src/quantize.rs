//! Quantizing whole models: llama.cpp's file-type recipes (which tensor gets which format) and the
//! GGUF-to-GGUF quantizer built on them.
//!
//! The recipes follow llama.cpp's `llama_tensor_get_type` for the non-imatrix case, so that a file
//! quantized here has the same tensor types, sizes and (with the bit-exact quantizers of
//! [`crate::format::quant`]) the same bytes as llama-quantize's.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{dequant, quant, GgmlType};
use crate::gguf::{GgufFile, GgufWriter, TensorData, Value};

/// llama.cpp's file types (`general.file_type`), the ones wgquant can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[allow(non_camel_case_types)]
pub enum FileType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K_M,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
}

impl FileType {
    pub const ALL: [FileType; 14] = [
        FileType::F32,
        FileType::F16,
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q8_0,
        FileType::Q2_K,
        FileType::Q3_K_M,
        FileType::Q4_K_S,
        FileType::Q4_K_M,
        FileType::Q5_K_S,
        FileType::Q5_K_M,
        FileType::Q6_K,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FileType::F32 => "F32",
            FileType::F16 => "F16",
            FileType::Q4_0 => "Q4_0",
            FileType::Q4_1 => "Q4_1",
            FileType::Q5_0 => "Q5_0",
            FileType::Q5_1 => "Q5_1",
            FileType::Q8_0 => "Q8_0",
            FileType::Q2_K => "Q2_K",
            FileType::Q3_K_M => "Q3_K_M",
            FileType::Q4_K_S => "Q4_K_S",
            FileType::Q4_K_M => "Q4_K_M",
            FileType::Q5_K_S => "Q5_K_S",
            FileType::Q5_K_M => "Q5_K_M",
            FileType::Q6_K => "Q6_K",
        }
    }

    pub fn from_name(name: &str) -> Result<FileType> {
        FileType::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name)).ok_or_else(|| {
            let names: Vec<_> = FileType::ALL.iter().map(|f| f.name()).collect();
            Error::Invalid(format!("unknown file type `{name}` (one of {})", names.join(", ")))
        })
    }

    /// The value llama.cpp stores in `general.file_type`.
    pub fn id(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q4_1 => 3,
            FileType::Q8_0 => 7,
            FileType::Q5_0 => 8,
            FileType::Q5_1 => 9,
            FileType::Q2_K => 10,
            FileType::Q3_K_M => 12,
            FileType::Q4_K_S => 14,
            FileType::Q4_K_M => 15,
            FileType::Q5_K_S => 16,
            FileType::Q5_K_M => 17,
            FileType::Q6_K => 18,
        }
    }

    /// The format most tensors get.
    pub fn base_type(self) -> GgmlType {
        match self {
            FileType::F32 => GgmlType::F32,
            FileType::F16 => GgmlType::F16,
            FileType::Q4_0 => GgmlType::Q4_0,
            FileType::Q4_1 => GgmlType::Q4_1,
            FileType::Q5_0 => GgmlType::Q5_0,
            FileType::Q5_1 => GgmlType::Q5_1,
            FileType::Q8_0 => GgmlType::Q8_0,
            FileType::Q2_K => GgmlType::Q2_K,
            FileType::Q3_K_M => GgmlType::Q3_K,
            FileType::Q4_K_S | FileType::Q4_K_M => GgmlType::Q4_K,
            FileType::Q5_K_S | FileType::Q5_K_M => GgmlType::Q5_K,
            FileType::Q6_K => GgmlType::Q6_K,
        }
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor as the recipe sees it: its name and GGML dims.
#[derive(Clone, Debug)]
pub struct TensorShape {
    pub name: String,
    pub dims: Vec<u64>,
}

/// Whether llama.cpp quantizes a tensor at all: 2-D (or more) weights, but not norms.
pub fn is_quantizable(name: &str, dims: &[u64]) -> bool {
    name.ends_with("weight")
        && dims.len() >= 2
        && !name.contains("_norm.weight")
        && !name.contains("ffn_gate_inp.weight")
        && !name.contains("rope_freqs")
}

/// Chooses each tensor's format for a file type, carrying the counters llama.cpp keeps while it
/// walks the tensors in file order (attn_v and ffn_down are told apart by their index).
pub struct Recipe {
    ftype: FileType,
    /// Query heads per KV head (Q2_K gives attn_v more bits under heavy GQA).
    n_gqa: usize,
    has_output: bool,
    n_attn_v: usize,
    n_ffn_down: usize,
    i_attn_v: usize,
    i_ffn_down: usize,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third between.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64).rem_euclid(3) == 2
}

impl Recipe {
    pub fn new(ftype: FileType, tensors: &[TensorShape], n_gqa: usize) -> Recipe {
        let count = |s: &str| tensors.iter().filter(|t| t.name.contains(s)).count();
        Recipe {
            ftype,
            n_gqa,
            has_output: tensors.iter().any(|t| t.name == "output.weight"),
            n_attn_v: count("attn_v.weight"),
            n_ffn_down: count("ffn_down"),
            i_attn_v: 0,
            i_ffn_down: 0,
        }
    }

    /// The format of the next tensor (call in file order, once per tensor).
    pub fn next_type(&mut self, t: &TensorShape) -> GgmlType {
        use FileType as F;
        use GgmlType as G;
        if !is_quantizable(&t.name, &t.dims) {
            return G::F32;
        }
        let ft = self.ftype;
        let mut ty = ft.base_type();
        if matches!(ft, F::F32 | F::F16) {
            return ty;
        }
        let name = t.name.as_str();
        if name == "output.weight" || (!self.has_output && name == "token_embd.weight") {
            ty = if !t.dims[0].is_multiple_of(256) {
                G::Q8_0
            } else if ty != G::Q8_0 {
                G::Q6_K
            } else {
                ty
            };
        } else if name == "token_embd.weight" {
            // unchanged
        } else if name.contains("attn_v.weight") {
            let (i, n) = (self.i_attn_v, self.n_attn_v);
            ty = match ft {
                F::Q2_K => {
                    if self.n_gqa >= 4 {
                        G::Q4_K
                    } else {
                        G::Q3_K
                    }
                }
                F::Q3_K_M => {
                    if i < 2 {
                        G::Q5_K
                    } else {
                        G::Q4_K
                    }
                }
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => G::Q6_K,
                F::Q4_K_S if i < 4 => G::Q5_K,
                _ => ty,
            };
            self.i_attn_v += 1;
        } else if name.contains("ffn_down") {
            let (i, n) = (self.i_ffn_down, self.n_ffn_down);
            ty = match ft {
                F::Q2_K => G::Q3_K,
                F::Q3_K_M => {
                    if i < n / 16 {
                        G::Q5_K
                    } else {
                        G::Q4_K
                    }
                }
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => G::Q6_K,
                F::Q4_K_S if i < n / 8 => G::Q5_K,
                _ => ty,
            };
            self.i_ffn_down += 1;
        } else if name.contains("attn_output.weight") {
            ty = match ft {
                F::Q2_K => G::Q3_K,
                F::Q3_K_M => G::Q4_K,
                _ => ty,
            };
        }
        fallback_for_row(ty, t.dims[0])
    }

    /// Formats of every tensor, in order.
    pub fn plan(ftype: FileType, tensors: &[TensorShape], n_gqa: usize) -> Vec<GgmlType> {
        let mut r = Recipe::new(ftype, tensors, n_gqa);
        tensors.iter().map(|t| r.next_type(t)).collect()
    }
}

/// llama.cpp's fallback when a row length is not a multiple of the chosen format's block:
/// k-quants fall back to the legacy format of about the same size, then to F16.
fn fallback_for_row(ty: GgmlType, row_len: u64) -> GgmlType {
    use GgmlType as G;
    if row_len.is_multiple_of(ty.block_elems() as u64) {
        return ty;
    }
    let fb = match ty {
        G::Q2_K | G::Q3_K | G::IQ4_XS => G::IQ4_NL,
        G::Q4_K => G::Q5_0,
        G::Q5_K => G::Q5_1,
        G::Q6_K => G::Q8_0,
        other => other,
    };
    if row_len.is_multiple_of(fb.block_elems() as u64) {
        fb
    } else {
        G::F16
    }
}

/// What [`quantize_file`] did, per tensor and in total.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QuantizeSummary {
    pub ftype: FileType,
    /// (name, format, elements, bytes) per tensor.
    pub tensors: Vec<(String, GgmlType, u64, u64)>,
    pub file_bytes: u64,
}

impl QuantizeSummary {
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.3).sum()
    }
    pub fn n_elements(&self) -> u64 {
        self.tensors.iter().map(|t| t.2).sum()
    }
    /// Bits per weight over all tensors (what llama.cpp prints as BPW).
    pub fn bits_per_weight(&self) -> f64 {
        self.tensor_bytes() as f64 * 8.0 / self.n_elements() as f64
    }
}

/// Shapes of every tensor of a file, in order.
pub fn tensor_shapes(file: &GgufFile) -> Vec<TensorShape> {
    file.tensors().iter().map(|t| TensorShape { name: t.name.clone(), dims: t.dims.clone() }).collect()
}

/// Query heads per KV head, from metadata (1 when absent).
pub fn n_gqa(file: &GgufFile) -> usize {
    let arch = file.architecture().unwrap_or("llama");
    let heads = file.get_u32(&format!("{arch}.attention.head_count")).unwrap_or(1).max(1);
    let kv = file.get_u32(&format!("{arch}.attention.head_count_kv")).unwrap_or(heads).max(1);
    (heads / kv) as usize
}

/// Quantize every tensor of `src` per `ftype`'s recipe into a new GGUF at `dst`. Tensors that are
/// quantized already are dequantized to f32 first. `progress(i, n, name)` is called per tensor.
pub fn quantize_file(
    src: &GgufFile,
    dst: &Path,
    ftype: FileType,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<QuantizeSummary> {
    let shapes = tensor_shapes(src);
    let types = Recipe::plan(ftype, &shapes, n_gqa(src));

    let mut w = GgufWriter::new();
    for (key, value) in src.metadata() {
        w.set(key, value.clone());
    }
    w.set("general.file_type", Value::U32(ftype.id()));
    w.set("general.quantization_version", Value::U32(2));
    for (t, &ty) in src.tensors().iter().zip(&types) {
        w.add_tensor(&t.name, ty, &t.dims)?;
    }
    let n = src.tensors().len();
    w.write(dst, |i| {
        let t = &src.tensors()[i];
        progress(i, n, &t.name);
        let ty = types[i];
        let raw = src.tensor_data(t);
        if ty == t.ty {
            return Ok(TensorData::Bytes(raw.to_vec()));
        }
        let f32s = dequant::dequantize_to_vec(t.ty, raw)?;
        Ok(TensorData::Bytes(quant::quantize(ty, &f32s, t.row_len())?))
    })?;
    progress(n, n, "");

    let file_bytes = std::fs::metadata(dst).map_err(|e| Error::io(dst, e))?.len();
    let tensors = src
        .tensors()
        .iter()
        .zip(&types)
        .map(|(t, &ty)| Ok((t.name.clone(), ty, t.n_elements(), ty.bytes_for(t.n_elements())?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(QuantizeSummary { ftype, tensors, file_bytes })
}
