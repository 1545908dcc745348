//! GGUF files: a bounds-checked reader over a memory map, typed metadata access, and a writer.
//!
//! Shapes are kept in GGML order: `dims[0]` is the row length (the fastest-varying dimension), so a
//! PyTorch `[out, in]` weight appears here as `[in, out]`.

mod reader;
mod value;
mod writer;

pub(crate) use reader::held_range;
pub use reader::{GgufFile, TensorInfo, GGUF_MAGIC};
pub use value::{Value, ValueType};
pub use writer::{GgufWriter, TensorData};

/// Alignment of the tensor data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
