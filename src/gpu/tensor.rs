//! Weight tensors on the device: a tensor's raw GGUF blocks, unchanged, in one or more storage
//! buffers (or weight textures, see [`super::ContextOptions::weight_textures`]) split at row
//! boundaries; or several tensors back to back in one allocation (a stack), so that one dispatch
//! can read them all.

use std::sync::Arc;

use super::context::Context;
use super::memory::{MemTag, TrackedBuffer, TrackedTexture, TEXEL_BYTES};
use super::shaders::row_granularity;
use crate::error::{Error, Result};
use crate::format::GgmlType;
use crate::gguf::{GgufFile, TensorInfo};

/// Spare bytes after the data of every chunk: the WGSL loaders read weights 16 bytes at a time
/// and assemble an unaligned window from two such loads; the spare vec4 keeps the second load
/// inside the binding.
const TAIL_PAD: u64 = 16;

/// One weight allocation, a storage buffer or a texture, holding tensors' bytes back to back,
/// padded to 16 bytes plus a spare vec4; the chunks of a stack share it.
#[derive(Clone)]
pub enum WeightStore {
    Buffer(Arc<TrackedBuffer>),
    Texture(Arc<TrackedTexture>),
}

impl WeightStore {
    /// Uploads `datas` back to back into a new buffer, or a new texture when the context holds
    /// weights in textures.
    fn upload(ctx: &Context, name: &str, datas: &[&[u8]]) -> Result<WeightStore> {
        let len: usize = datas.iter().map(|d| d.len()).sum();
        let size = (len as u64).next_multiple_of(16) + TAIL_PAD;
        if ctx.weight_textures() {
            let texture = ctx.create_weight_texture(name, size)?;
            ctx.upload_texture(&texture, datas)?;
            return Ok(WeightStore::Texture(Arc::new(texture)));
        }
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let buffer = ctx.create_buffer(name, size, usage, MemTag::Weights)?;
        let mut at = 0;
        for data in datas {
            ctx.upload_bytes(&buffer, at, data)?;
            at += data.len() as u64;
        }
        Ok(WeightStore::Buffer(Arc::new(buffer)))
    }

    /// Bytes allocated.
    fn size(&self) -> u64 {
        match self {
            WeightStore::Buffer(b) => b.size(),
            WeightStore::Texture(t) => t.bytes(),
        }
    }

    /// Whether a part of a stack can start at byte `offset`: a buffer binding's offset alignment,
    /// or a whole texel.
    fn can_start_at(ctx: &Context, offset: usize) -> bool {
        let align = match ctx.weight_textures() {
            true => TEXEL_BYTES,
            false => ctx.limits().min_storage_buffer_offset_alignment as u64,
        };
        (offset as u64).is_multiple_of(align)
    }
}

/// Rows `row0 .. row0 + rows` of a tensor: `size` bytes (the blocks and a spare vec4) from byte
/// `offset` of a weight allocation (a part start, see `WeightStore::can_start_at`).
pub struct TensorChunk {
    pub store: WeightStore,
    pub offset: u64,
    pub size: u64,
    pub row0: usize,
    pub rows: usize,
}

impl TensorChunk {
    /// The chunk as the kernels' weight binding (binding 0): a buffer binding of the chunk's
    /// range, or the whole texture (the kernels add `w_off`, see [`TensorChunk::texture_params`]).
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        match &self.store {
            WeightStore::Buffer(buffer) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset: self.offset,
                size: wgpu::BufferSize::new(self.size),
            }),
            WeightStore::Texture(texture) => wgpu::BindingResource::TextureView(texture.view()),
        }
    }

    /// The kernels' `w_off` and `w_shift` parameters: the chunk's first texel in its texture and
    /// log2 of the texture's row length; 0 for a buffer, whose binding starts at the chunk.
    pub fn texture_params(&self) -> [u32; 2] {
        match &self.store {
            WeightStore::Buffer(_) => [0, 0],
            // Texel indices fit u32: a chunk holds at most 4 GiB (`rows_per_chunk`).
            WeightStore::Texture(texture) => [(self.offset / TEXEL_BYTES) as u32, texture.row_bits()],
        }
    }
}

/// Matrices of one format and row length uploaded back to back into one allocation, viewed as one
/// tensor of all their rows (part after part). Decode reads a layer's q, k and v projections (or
/// its FFN gate and up) in one dispatch through it; prompt processing uses views of the parts
/// ([`GpuTensor::upload_stack`] returns both) like separate tensors.
pub struct StackedTensor {
    pub whole: GpuTensor,
    /// Rows of each part, in order.
    pub part_rows: Vec<usize>,
}

/// A 2-D weight `W` of `n_rows` rows of `row_len` elements (GGML dims `[row_len, n_rows]`),
/// held as raw blocks. Rows are split into several chunks (buffers or textures) when the tensor
/// exceeds [`Context::weight_chunk_limit`]; ops dispatch once per chunk, transparently.
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
        let per_chunk = rows_per_chunk(ctx.weight_chunk_limit(), row_bytes, n_rows).ok_or_else(|| {
            Error::DoesNotFit(format!(
                "tensor `{name}`: one row of {row_bytes} bytes exceeds the device's weight chunk limit of {} bytes",
                ctx.weight_chunk_limit()
            ))
        })?;
        let mut chunks = Vec::new();
        let mut row0 = 0;
        while row0 < n_rows {
            let rows = per_chunk.min(n_rows - row0);
            let data = &bytes[row0 * row_bytes..(row0 + rows) * row_bytes];
            let store = WeightStore::upload(ctx, name, &[data])?;
            chunks.push(TensorChunk { size: store.size(), store, offset: 0, row0, rows });
            row0 += rows;
        }
        Ok(GpuTensor { name: name.to_string(), ty, row_len, n_rows, row_bytes, chunks })
    }

    /// Uploads `parts` (name, rows, raw blocks), matrices of `ty` with rows of `row_len`, back to
    /// back into one allocation: the stack, and a view of each part. `None` when they cannot share
    /// one binding: together they exceed the binding size, or a part would start at an offset
    /// the device cannot bind.
    pub fn upload_stack(
        ctx: &Context,
        name: &str,
        ty: GgmlType,
        row_len: usize,
        parts: &[(&str, usize, &[u8])],
    ) -> Result<Option<(StackedTensor, Vec<GpuTensor>)>> {
        let mut row_bytes = 0;
        for &(part, rows, bytes) in parts {
            row_bytes = check_geometry(part, ty, row_len, rows, bytes.len())?;
        }
        let n_rows: usize = parts.iter().map(|p| p.1).sum();
        // Byte offset of each part in the stack.
        let starts: Vec<usize> = parts.iter().scan(0, |at, p| Some(std::mem::replace(at, *at + p.2.len()))).collect();
        let bindable = starts.iter().all(|&start| WeightStore::can_start_at(ctx, start));
        if parts.is_empty() || !bindable || rows_per_chunk(ctx.weight_chunk_limit(), row_bytes, n_rows) != Some(n_rows)
        {
            return Ok(None);
        }
        let datas: Vec<&[u8]> = parts.iter().map(|p| p.2).collect();
        let store = WeightStore::upload(ctx, name, &datas)?;
        let view = |name: &str, offset: usize, rows: usize| {
            // A part's spare vec4 is the start of the next part (or the allocation's own tail).
            let size = ((rows * row_bytes) as u64 + TAIL_PAD).next_multiple_of(16).min(store.size() - offset as u64);
            let chunk = TensorChunk { store: store.clone(), offset: offset as u64, size, row0: 0, rows };
            GpuTensor { name: name.to_string(), ty, row_len, n_rows: rows, row_bytes, chunks: vec![chunk] }
        };
        let views = parts.iter().zip(&starts).map(|(&(part, rows, _), &start)| view(part, start, rows)).collect();
        let stack = StackedTensor { whole: view(name, 0, n_rows), part_rows: parts.iter().map(|p| p.1).collect() };
        Ok(Some((stack, views)))
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

    /// Whether the tensor is held in textures (the kernels' `WT` constant: common/w_texture.wgsl
    /// instead of w_storage.wgsl).
    pub fn in_texture(&self) -> bool {
        matches!(self.chunks.first().map(|c| &c.store), Some(WeightStore::Texture(_)))
    }
}

fn check_geometry(name: &str, ty: GgmlType, row_len: usize, n_rows: usize, n_bytes: usize) -> Result<usize> {
    let g = row_granularity(ty) as usize;
    if row_len == 0 || n_rows == 0 || !row_len.is_multiple_of(g) {
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
