//! Sizes: bytes and bits per weight of a file type, per tensor type, from a written file's tensor
//! index or from shapes and a recipe alone; Llama-2-7B's sizes under each recipe; and the
//! published numbers they are compared with.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::GgmlType;
use crate::gguf::{GgufFile, GgufWriter, TensorData, Value};
use crate::model::zoo::{ModelShape, LLAMA2_7B};
use crate::quantize::{n_gqa, tensor_shapes, FileType, Recipe, TensorShape};

/// The tensors of one GGML type inside a file.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TypeShare {
    #[serde(rename = "type")]
    pub ty: GgmlType,
    pub tensors: usize,
    pub weights: u64,
    pub bytes: u64,
    /// Share of all the file's weights that are stored in this type.
    pub weight_fraction: f64,
    /// `bytes × 8 / weights`: the type's own bits per weight.
    pub bits_per_weight: f64,
}

/// Bytes and weights of a whole file type, and how they split over tensor types.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SizeBreakdown {
    pub n_weights: u64,
    /// Bytes of all tensors' data, without metadata and alignment padding.
    pub tensor_bytes: u64,
    /// One entry per type present, most weights first.
    pub types: Vec<TypeShare>,
}

impl SizeBreakdown {
    /// From `(type, elements, bytes)` per tensor.
    pub fn from_tensors(tensors: impl IntoIterator<Item = (GgmlType, u64, u64)>) -> SizeBreakdown {
        let mut types: Vec<TypeShare> = Vec::new();
        for (ty, weights, bytes) in tensors {
            match types.iter_mut().find(|t| t.ty == ty) {
                Some(t) => {
                    t.tensors += 1;
                    t.weights += weights;
                    t.bytes += bytes;
                }
                None => {
                    types.push(TypeShare { ty, tensors: 1, weights, bytes, weight_fraction: 0.0, bits_per_weight: 0.0 })
                }
            }
        }
        let n_weights: u64 = types.iter().map(|t| t.weights).sum();
        let tensor_bytes = types.iter().map(|t| t.bytes).sum();
        for t in &mut types {
            t.weight_fraction = t.weights as f64 / n_weights.max(1) as f64;
            t.bits_per_weight = t.bytes as f64 * 8.0 / t.weights.max(1) as f64;
        }
        types.sort_by(|a, b| b.weights.cmp(&a.weights).then(a.ty.cmp(&b.ty)));
        SizeBreakdown { n_weights, tensor_bytes, types }
    }

    /// What a file holds, from its tensor index.
    pub fn of_file(file: &GgufFile) -> SizeBreakdown {
        SizeBreakdown::from_tensors(file.tensors().iter().map(|t| (t.ty, t.n_elements(), t.n_bytes)))
    }

    /// What `ftype`'s recipe gives for these shapes, from the block table alone.
    pub fn of_recipe(shapes: &[TensorShape], n_gqa: usize, ftype: FileType) -> Result<SizeBreakdown> {
        let types = Recipe::plan(ftype, shapes, n_gqa);
        let tensors = shapes
            .iter()
            .zip(types)
            .map(|(s, ty)| {
                let n: u64 = s.dims.iter().product();
                Ok((ty, n, ty.bytes_for(n)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SizeBreakdown::from_tensors(tensors))
    }

    /// Bits per weight over every tensor (what llama.cpp prints as BPW).
    pub fn bits_per_weight(&self) -> f64 {
        self.tensor_bytes as f64 * 8.0 / self.n_weights.max(1) as f64
    }

    /// The share of a type, if the file has it.
    pub fn share(&self, ty: GgmlType) -> Option<&TypeShare> {
        self.types.iter().find(|t| t.ty == ty)
    }
}

/// Tensor bytes of Llama-2-7B under `ftype`'s recipe (no weights needed).
pub fn llama2_7b_bytes(ftype: FileType) -> Result<u64> {
    Ok(shape_breakdown(&LLAMA2_7B, ftype)?.tensor_bytes)
}

/// The breakdown of a zoo shape under `ftype`'s recipe.
pub fn shape_breakdown(shape: &ModelShape, ftype: FileType) -> Result<SizeBreakdown> {
    let gqa = (shape.n_head / shape.n_head_kv.max(1)) as usize;
    SizeBreakdown::of_recipe(&shape.tensors(), gqa, ftype)
}

/// The sizes the seed table gives for Llama-2-7B, in GB (1 decimal).
pub const SEED_7B_GB: [(FileType, f64); 4] =
    [(FileType::Q4_0, 3.8), (FileType::Q4_K_M, 4.1), (FileType::Q5_K_M, 5.0), (FileType::Q8_0, 7.7)];

/// Tensor bytes of llama.cpp's published Llama-2-7B GGUF files, in GB (2 decimals; the files add
/// about 0.7 MB of metadata). These are llama.cpp's own quantizer's output for these shapes.
pub const LLAMA_CPP_7B_GB: [(FileType, f64); 4] =
    [(FileType::Q4_0, 3.83), (FileType::Q4_K_M, 4.08), (FileType::Q5_K_M, 4.78), (FileType::Q8_0, 7.16)];

/// Look a format up in one of the tables above.
pub fn lookup(table: &[(FileType, f64)], ftype: FileType) -> Option<f64> {
    table.iter().find(|(f, _)| *f == ftype).map(|(_, gb)| *gb)
}

/// Whether a number given to `decimals` decimals is `exact` correctly rounded (with a hair of
/// slack for the rounding of `exact` itself).
pub fn holds_when_rounded(claimed: f64, exact: f64, decimals: i32) -> bool {
    (claimed - exact).abs() <= 0.5 * 10f64.powi(-decimals) + 1e-9
}

/// Size on disk of the file [`crate::quantize::quantize_file`] would write for `src` and
/// `ftype`, found without quantizing: the same metadata and tensor index are written to
/// `scratch` with every tensor left as a hole (a sparse file), and its length measured. The
/// scratch file is removed.
pub fn planned_file_bytes(src: &GgufFile, ftype: FileType, scratch: &Path) -> Result<u64> {
    let shapes = tensor_shapes(src);
    let types = Recipe::plan(ftype, &shapes, n_gqa(src));
    let mut w = GgufWriter::new();
    for (key, value) in src.metadata() {
        w.set(key, value.clone());
    }
    // The same keys quantize_file sets, so the header has the same length.
    w.set("general.file_type", Value::U32(ftype.id()));
    w.set("general.quantization_version", Value::U32(2));
    for (t, &ty) in shapes.iter().zip(&types) {
        w.add_tensor(&t.name, ty, &t.dims)?;
    }
    w.write(scratch, |_| Ok(TensorData::Zeros))?;
    let len = std::fs::metadata(scratch).map_err(|e| Error::io(scratch, e))?.len();
    std::fs::remove_file(scratch).map_err(|e| Error::io(scratch, e))?;
    Ok(len)
}
