//! wgquant: run GGUF-quantized language models on any GPU through wgpu and WGSL.
//!
//! Quantized tensors stay quantized: a GGUF file is memory-mapped, each tensor's raw blocks are
//! uploaded unchanged, and WGSL kernels dequantize in registers inside the matrix kernels.

// In a browser wgpu's handles are neither Send nor Sync (a page has one thread); the `Arc`s that
// share them between threads natively are plain shared ownership there.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod bench;
pub mod chat;
pub mod cpu;
pub mod error;
pub mod eval;
pub mod format;
pub mod gguf;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod plan;
pub mod quantize;
pub mod rng;
pub mod sampler;
pub mod session;
pub mod tokenizer;

pub use error::{Error, Result};
pub use format::GgmlType;
pub use sampler::SamplerParams;
pub use session::{
    GenerateParams, Generation, GenerationStats, Model, ModelOptions, Piece, Session, StopReason, StopText,
};
