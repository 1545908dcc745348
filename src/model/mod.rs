//! Models: configuration from GGUF metadata, the weights each architecture needs, and the forward
//! passes (GPU, and the CPU oracle).

pub mod config;
pub mod cpu;
pub mod gpu;
pub mod stream;
pub mod weights;
pub mod zoo;

pub use config::{Activation, Arch, Config, KvType, RopeLayout};
