//! Weight tensors on the device: a tensor's raw GGUF blocks, unchanged, in one or more storage
//! buffers split at row boundaries.

use super::context::Context;
use super::memory::{MemTag, TrackedBuffer};
use super::shaders::row_granularity;
use crate::error::{Error, Result};
use crate::format::GgmlType;
use crate::gguf::{GgufFile, TensorInfo};

/// Spare bytes after the data of every chunk: the WGSL loaders read weights 16 bytes at a time
/// and assemble an unaligned window from two such loads; the spare vec4 keeps the second load
/// inside the binding.
const TAIL_PAD: u64 = 16;

/// Rows `row0 .. row0 + rows` of a tensor, in their own buffer.
pub struct TensorChunk {
    pub buffer: TrackedBuffer,
    pub row0: usize,
    pub rows: usize,
}

/// A 2-D weight `W` of `n_rows` rows of `row_len` elements (GGML dims `[row_len, n_rows]`),
/// held as raw blocks. Rows are split over several buffers when the tensor exceeds the
/// device's storage binding or buffer size; ops dispatch once per chunk, transparently.
pub struct GpuTensor {
    pub name: String,
    pub ty: GgmlType,
    pub row_len: usize,
    pub n_rows: usize,
    pub row_bytes: usize,
    pub chunks: Vec<TensorChunk>,
}

impl GpuTensor {
    /// Uploads `bytes` (the raw blocks of `n_rows` rows of `row_len` elements of `ty`).
    pub fn upload(
        ctx: &Context,
        name: &str,
        ty: GgmlType,
        row_len: usize,
        n_rows: usize,
        bytes: &[u8],
    ) -> Result<GpuTensor> {
        let row_bytes = check_geometry(name, ty, row_len, n_rows, bytes.len())?;
        let per_chunk = rows_per_chunk(ctx.max_binding_size(), row_bytes, n_rows).ok_or_else(|| {
            Error::DoesNotFit(format!(
                "tensor `{name}`: one row of {row_bytes} bytes exceeds the device's binding size {}",
                ctx.max_binding_size()
            ))
        })?;
        let mut chunks = Vec::new();
        let mut row0 = 0;
        while row0 < n_rows {
            let rows = per_chunk.min(n_rows - row0);
            let data = &bytes[row0 * row_bytes..(row0 + rows) * row_bytes];
            let size = (data.len() as u64).next_multiple_of(16) + TAIL_PAD;
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
            let buffer = ctx.create_buffer(name, size, usage, MemTag::Weights)?;
            ctx.upload_bytes(&buffer, 0, data)?;
            chunks.push(TensorChunk { buffer, row0, rows });
            row0 += rows;
        }
        Ok(GpuTensor { name: name.to_string(), ty, row_len, n_rows, row_bytes, chunks })
    }

    /// Uploads a tensor of a GGUF file. Tensors of more than two dimensions are viewed as 2-D
    /// (`dims[0]` elements per row).
    pub fn from_gguf(ctx: &Context, file: &GgufFile, info: &TensorInfo) -> Result<GpuTensor> {
        GpuTensor::upload(ctx, &info.name, info.ty, info.row_len(), info.n_rows(), file.tensor_data(info))
    }

    /// Bytes of raw blocks (without padding).
    pub fn n_bytes(&self) -> usize {
        self.row_bytes * self.n_rows
    }
}

fn check_geometry(name: &str, ty: GgmlType, row_len: usize, n_rows: usize, n_bytes: usize) -> Result<usize> {
    let g = row_granularity(ty) as usize;
    if row_len == 0 || n_rows == 0 || row_len % g != 0 {
        return Err(Error::Shape(format!(
            "tensor `{name}` ({ty}): {n_rows} rows of {row_len} elements; rows must be non-empty multiples of {g}"
        )));
    }
    let row_bytes = ty.row_bytes(row_len)?;
    if row_bytes.checked_mul(n_rows) != Some(n_bytes) {
        return Err(Error::Shape(format!(
            "tensor `{name}` ({ty}): {n_rows} rows of {row_bytes} bytes but {n_bytes} bytes of data"
        )));
    }
    Ok(row_bytes)
}

/// How many rows fit in one chunk of at most `max_bytes` (including the tail padding).
fn rows_per_chunk(max_bytes: u64, row_bytes: usize, n_rows: usize) -> Option<usize> {
    // Offsets inside a chunk are u32 in the shaders.
    let max = max_bytes.min(u32::MAX as u64).checked_sub(TAIL_PAD + 16)?;
    let rows = (max / row_bytes as u64) as usize;
    (rows > 0).then_some(rows.min(n_rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_at_rows_within_the_limit() {
        assert_eq!(rows_per_chunk(1 << 20, 680, 262144), Some(((1 << 20) - 32) / 680));
        assert_eq!(rows_per_chunk(100, 680, 10), None);
        assert_eq!(rows_per_chunk(u64::MAX, 680, 10), Some(10));
        assert!(check_geometry("t", GgmlType::Q8_0, 640, 2, 2 * 680).is_ok());
        assert!(check_geometry("t", GgmlType::Q8_0, 640, 2, 680).is_err());
        assert!(check_geometry("t", GgmlType::Q4_K, 640, 1, 360).is_err());
    }
}
