//! The GPU layer: device context, tracked buffers, pipelines built from composed WGSL, and weight
//! tensors held as raw GGUF blocks.
//!
//! - [`Context`]: adapter choice (discrete > integrated > virtual > CPU, Vulkan first, overridable
//!   with [`ADAPTER_ENV`] or [`ContextOptions::adapter`]), the device with the adapter's own
//!   limits, optional features (shader-f16, subgroups, timestamps) when present.
//! - [`MemoryTracker`]: every buffer is a [`TrackedBuffer`] (every weight texture a
//!   [`TrackedTexture`]) counted under a [`MemTag`].
//! - [`GpuVec`] / [`F32Buffer`]: activations; uploads go through a bounded staging buffer.
//! - [`GpuTensor`]: a weight's raw blocks in storage buffers (or, on CPU devices, read-only
//!   storage textures), split by rows over several when needed.
//! - [`shaders`]: WGSL composition (common library + one decoder per format + kernel family).

mod bind_groups;
mod buffers;
mod context;
mod memory;
mod pipeline;
pub mod probe;
pub mod profile;
pub mod profiler;
pub mod ready;
pub mod shaders;
mod tensor;
mod uniforms;
pub mod vram;

pub use buffers::{
    activation_bytes, device_vec_bytes, uniform_window_bytes, F32Buffer, GpuVec, U32Buffer, UPLOAD_CHUNK,
};
pub(crate) use context::env_switch;
pub use context::{
    best_adapter_entry, list_adapters, AdapterEntry, AdapterSelector, Context, ContextOptions, Submitted,
    WeightTextures, ADAPTER_ENV, INT_MATVEC_ENV, SHADER_CHECKS_ENV, WEIGHT_TEXTURES_ENV,
};
pub use memory::{MemTag, MemoryReport, MemoryTracker, TrackedBuffer, TrackedTexture, TEXEL_BYTES};
pub use pipeline::{Pipeline, PipelineKey};
pub use profile::{DeviceProfile, MatVecRule};
pub use profiler::{format_profile, KernelTime, PROFILE_ENV};
pub use ready::now;
pub use tensor::{GpuTensor, StackedTensor, TensorChunk, WeightStore};
pub use uniforms::{UniformSlot, UNIFORM_ARENA_BYTES};
