//! llama.cpp's file-type recipes, and whole-model quantization.

mod common;

use wgquant::gguf::GgufFile;
use wgquant::model::zoo;
use wgquant::quantize::{quantize_file, tensor_shapes, FileType, Recipe};
use wgquant::GgmlType;

#[test]
fn q4_k_m_recipe_reproduces_the_default_models_types() {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    let types = Recipe::plan(FileType::Q4_K_M, &tensor_shapes(&file), 4);
    for (t, ty) in file.tensors().iter().zip(types) {
        assert_eq!(t.ty, ty, "{}", t.name);
    }
}

/// Bytes of all tensors of a shape table under a recipe.
fn recipe_bytes(shape: &zoo::ModelShape, ftype: FileType) -> u64 {
    let shapes = shape.tensors();
    let gqa = (shape.n_head / shape.n_head_kv) as usize;
    Recipe::plan(ftype, &shapes, gqa)
        .iter()
        .zip(&shapes)
        .map(|(ty, t)| ty.bytes_for(t.dims.iter().product()).unwrap())
        .sum()
}

#[test]
fn llama2_7b_recipe_sizes() {
    // Tensor bytes of llama.cpp's Llama-2-7B files (the published GGUFs add ~0.7 MB of metadata):
    // Q4_0 3.83 GB, Q4_K_M 4.08 GB, Q5_K_M 4.78 GB, Q8_0 7.16 GB.
    let gb = |ft| recipe_bytes(&zoo::LLAMA2_7B, ft) as f64 / 1e9;
    let q4_k_m = gb(FileType::Q4_K_M);
    assert!((4.07..4.09).contains(&q4_k_m), "Q4_K_M {q4_k_m}");
    let q4_0 = gb(FileType::Q4_0);
    assert!((3.82..3.84).contains(&q4_0), "Q4_0 {q4_0}");
    let q8_0 = gb(FileType::Q8_0);
    assert!((7.15..7.17).contains(&q8_0), "Q8_0 {q8_0}");
    let q5_k_m = gb(FileType::Q5_K_M);
    assert!((4.77..4.79).contains(&q5_k_m), "Q5_K_M {q5_k_m}");
    // The Q4_K_M mix: attn_v and ffn_down get Q6_K in 16 of the 32 layers, output Q6_K.
    let shapes = zoo::LLAMA2_7B.tensors();
    let types = Recipe::plan(FileType::Q4_K_M, &shapes, 1);
    let q6: Vec<&str> =
        shapes.iter().zip(&types).filter(|(_, &t)| t == GgmlType::Q6_K).map(|(s, _)| s.name.as_str()).collect();
    assert_eq!(q6.len(), 33, "{q6:?}");
    assert!(
        q6.contains(&"output.weight") && q6.contains(&"blk.6.attn_v.weight") && !q6.contains(&"blk.5.ffn_down.weight")
    );
}

#[test]
fn requantizing_the_default_model_to_q4_k_m_keeps_its_size() {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q4km.gguf");
    let summary = quantize_file(&file, &out, FileType::Q4_K_M, |_, _, _| {}).unwrap();
    // Same recipe, same metadata: the same tensor types and the same file size.
    assert_eq!(summary.file_bytes, file.file_size());
    let q = GgufFile::open(&out).unwrap();
    let mut same_bytes = 0;
    for (a, b) in file.tensors().iter().zip(q.tensors()) {
        assert_eq!((a.ty, &a.dims), (b.ty, &b.dims), "{}", a.name);
        same_bytes += (file.tensor_data(a) == q.tensor_data(b)) as usize;
    }
    // The quantizers are llama.cpp's to the bit: requantizing the dequantized weights with the same
    // recipe gives back every block, so the whole file comes back byte for byte.
    eprintln!("{same_bytes} of {} tensors byte-identical, {} bpw", file.tensors().len(), summary.bits_per_weight());
    assert_eq!(same_bytes, file.tensors().len());
    assert!(std::fs::read(&out).unwrap() == std::fs::read(common::default_model_path()).unwrap());
    // 268,098,176 weights in 232.8 MB of tensors: the Q8_0 embedding (167.8M weights) dominates.
    assert_eq!(summary.n_elements(), 268_098_176);
    assert!((summary.bits_per_weight() - 7.358).abs() < 1e-3, "{}", summary.bits_per_weight());
}

/// The Llama-2-7B column against llama.cpp's own files: the published GGUFs of Llama-2-7B
/// (TheBloke's conversions, byte sizes as listed on their model page) are our recipe's tensor bytes
/// plus the same 741,056-byte header for every file type, i.e. llama.cpp's quantizer chose the
/// same type for every tensor. (Q2_K is left out: its recipe changed after those files were made.)
#[test]
fn llama2_7b_recipe_matches_llama_cpps_published_files() {
    let published = [
        (FileType::Q4_0, 3_825_807_040u64),
        (FileType::Q4_K_M, 4_081_004_224),
        (FileType::Q5_K_M, 4_783_156_928),
        (FileType::Q6_K, 5_529_194_176),
        (FileType::Q8_0, 7_161_089_728),
    ];
    for (ftype, file_bytes) in published {
        let ours = recipe_bytes(&zoo::LLAMA2_7B, ftype);
        assert_eq!(file_bytes - ours, 741_056, "{ftype}: published {file_bytes}, recipe tensors {ours}");
        assert!((file_bytes as f64 / ours as f64 - 1.0).abs() < 1e-3);
    }
}
