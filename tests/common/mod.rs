//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The default model (Gemma 3 270M Q4_K_M). Tests that need it fail, not skip, when it is missing:
/// `.ci/run` fetches it, and a silently skipped test proves nothing.
pub fn default_model_path() -> PathBuf {
    let path = std::env::var_os("WGQUANT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf"));
    assert!(path.exists(), "{} is missing: run scripts/fetch-model.sh first", path.display());
    path
}

/// A file under tests/data.
pub fn data_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

/// Little-endian f32s from a file under tests/data.
pub fn read_f32s(rel: &str) -> Vec<f32> {
    let bytes = std::fs::read(data_path(rel)).unwrap();
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}
