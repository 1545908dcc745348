//! What each part of a model costs on the GPU, counted as the runtime allocates it: weight chunks
//! (buffers or textures), KV cache, scratch and staging.

use serde::Serialize;

use super::{fmt_bytes, PlanRequest};
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, TensorInfo};
use crate::gpu::{activation_bytes, WeightTextures};
use crate::model::config::{Config, KvType};

/// Spare bytes after every weight chunk: mirrors `TAIL_PAD` in `gpu/tensor.rs`, where the WGSL
/// loaders read one word past an unaligned one.
const TAIL_PAD: u64 = 16;

/// Bytes of activations (scratch) the GPU forward pass allocates for a micro-batch of `batch`
/// tokens with a cache of `n_ctx` positions, all f32:
///
/// `4 × [batch × (3·n_embd + q_dim + kv_dim + kv_dim_v + n_head·head_dim_v + 2·n_ff)
///       + logits_rows × n_vocab + attention scratch] + ids + the parameter arena`
///
/// - `3·n_embd`: the residual stream, its normed copy, and a layer output before the residual add;
/// - `q_dim + kv_dim + kv_dim_v`: Q, K and V of the batch;
/// - `n_head·head_dim_v`: the attention output;
/// - `2·n_ff`: FFN gate and up;
/// - `logits_rows × n_vocab`: the logits;
/// - the attention kernels' split results ([`crate::ops::attention::scratch_floats`]: bounded
///   whatever the context, where a score per cached position took `n_head × batch × n_ctx`);
/// - 4 bytes per token id (and 16 for the greedy next token's), the integer matvec's 8-bit column
///   ([`crate::ops::matvec_q8::Q8Column`] of [`Config::max_row_len`]), device sampling's
///   candidates and penalties ([`crate::ops::top_k::TopKBuffers::bytes`]), and the context's
///   kernel parameters ([`crate::gpu::UNIFORM_ARENA_BYTES`]).
///
/// Each of these buffers is allocated [`crate::gpu::activation_bytes`] large (with
/// `uniform_windows`, buffers of up to 64 KiB are rounded up to a power of two). The forward pass allocates exactly these; a test
/// compares the two.
pub fn scratch_bytes(config: &Config, batch: usize, n_ctx: usize, logits_rows: usize, uniform_windows: bool) -> u64 {
    let c = config;
    // The f32 buffers of `GpuState`: x, h, o, q/k/v (one buffer), attention output, gate, up,
    // attention scratch, logits.
    let qkv = c.q_dim() + c.kv_dim() + c.kv_dim_v();
    let per_token = [c.n_embd, c.n_embd, c.n_embd, qkv, c.n_head * c.head_dim_v, c.n_ff, c.n_ff];
    let attention = crate::ops::attention::scratch_floats(c.n_head, c.head_dim_v, batch, n_ctx);
    let buffers = per_token.iter().map(|&n| batch * n).chain([attention, logits_rows * c.n_vocab]);
    let f32_bytes: u64 = buffers.map(|n| activation_bytes(4 * n as u64, uniform_windows)).sum();
    // The batch's token ids, and the greedy next token's.
    let ids = device_vec_bytes(4 * batch as u64) + device_vec_bytes(4);
    let q8 = crate::ops::matvec_q8::Q8Column::bytes(c.max_row_len(), uniform_windows);
    let sampling = crate::ops::top_k::TopKBuffers::bytes(c.n_vocab, logits_rows);
    f32_bytes + ids + q8 + sampling + crate::gpu::UNIFORM_ARENA_BYTES
}

/// Bytes of the staging buffer alive at one time: an upload chunk ([`crate::gpu::UPLOAD_CHUNK`])
/// while loading, the logits readback, or one micro-batch's hidden states going between GPU and
/// CPU layers — whichever is largest.
pub fn staging_bytes(config: &Config, batch: usize, logits_rows: usize) -> u64 {
    let logits = 4 * (logits_rows * config.n_vocab) as u64;
    let hidden = 4 * (batch * config.n_embd) as u64;
    crate::gpu::UPLOAD_CHUNK.max(logits).max(hidden)
}

/// Positions layer `il`'s cache holds: the context, capped at the window on sliding-window layers.
pub fn kv_ctx_of(config: &Config, il: usize, n_ctx: usize, batch: usize) -> usize {
    config.kv_rows(il, n_ctx, batch)
}

/// Bytes of layer `il`'s K and V caches for `n_ctx` positions: each is
/// `kv_ctx × kv_dim × element bytes` (V with `kv_dim_v`) in its own buffer, rounded up like every
/// device vector ([`device_vec_bytes`]).
pub fn kv_layer_bytes(config: &Config, il: usize, n_ctx: usize, batch: usize, kv_type: KvType) -> u64 {
    let rows = kv_ctx_of(config, il, n_ctx, batch) as u64;
    let elem = kv_type.bytes() as u64;
    let k = device_vec_bytes(rows * config.kv_dim() as u64 * elem);
    let v = device_vec_bytes(rows * config.kv_dim_v() as u64 * elem);
    k + v
}

/// Bytes a device vector of `bytes` bytes allocates (the KV cache, and weight vectors, are such
/// vectors): the allocator's own rule, so the plan cannot drift from it.
pub use crate::gpu::device_vec_bytes;

/// Bytes the GPU allocates for one weight tensor, mirroring how the GPU model uploads weights.
/// A vector (1-D: norms, biases) becomes an f32 device vector ([`device_vec_bytes`]). A matrix
/// keeps its raw blocks as [`crate::gpu::GpuTensor::upload`] does: rows split into chunks of at
/// most `chunk_limit` bytes (with padding), each padded to a multiple of 16 plus a spare vec4, and
/// in `textures` to whole texture rows ([`WeightTextures::allocated`]). A matrix with one row
/// larger than the limit cannot be split: that is an error naming it.
/// Projections the GPU model stacks into one buffer ([`crate::gpu::GpuTensor::upload_stack`])
/// share one padding, so this is an upper bound for them (by at most 32 bytes per stack).
pub fn gpu_tensor_bytes(info: &TensorInfo, chunk_limit: u64, textures: Option<WeightTextures>) -> Result<u64> {
    if info.dims.len() == 1 {
        return Ok(device_vec_bytes(4 * info.n_elements()));
    }
    let n_rows = info.n_rows().max(1) as u64;
    let row_bytes = info.n_bytes / n_rows;
    let rows_per_chunk = chunk_limit.saturating_sub(TAIL_PAD + 16) / row_bytes.max(1);
    if rows_per_chunk == 0 {
        return Err(Error::DoesNotFit(format!(
            "tensor `{}`: one row of {} exceeds the device's largest buffer/binding of {} ({} bytes), \
             and a tensor cannot be split inside a row",
            info.name,
            fmt_bytes(row_bytes),
            fmt_bytes(chunk_limit),
            chunk_limit
        )));
    }
    let rows_per_chunk = rows_per_chunk.min(n_rows);
    let full = n_rows / rows_per_chunk;
    let rest = n_rows % rows_per_chunk;
    let chunk = |rows: u64| {
        let bytes = (rows * row_bytes).next_multiple_of(16) + TAIL_PAD;
        // The chunk limit keeps a chunk within one texture.
        textures.and_then(|t| t.allocated(bytes)).unwrap_or(bytes)
    };
    Ok(full * chunk(rows_per_chunk) + if rest > 0 { chunk(rest) } else { 0 })
}

/// Weight bytes of a model, grouped the way the planner places them.
#[derive(Clone, Debug, Serialize)]
pub struct ModelBytes {
    /// GPU bytes of each layer's weights.
    pub layers: Vec<u64>,
    /// GPU bytes of the output head: `output_norm.weight` + `output.weight` (or `token_embd.weight`
    /// when tied).
    pub head: u64,
    /// Raw bytes of `token_embd.weight`.
    pub embedding: u64,
    /// GPU bytes of other global tensors (`rope_freqs.weight`).
    pub globals: u64,
    /// Whether the head is tied to the embedding (the file has no `output.weight`).
    pub tied: bool,
}

impl ModelBytes {
    /// Sizes of `file`'s tensors as `req` would have them allocated ([`PlanRequest::chunk_limit`],
    /// [`PlanRequest::weight_textures`]). A tensor that cannot be split to the limit, or one that
    /// names a layer the model does not have, is an error.
    pub fn from_gguf(file: &GgufFile, config: &Config, req: &PlanRequest) -> Result<ModelBytes> {
        let tied = file.tensor("output.weight").is_none();
        let embedding = file.require_tensor("token_embd.weight")?.n_bytes;
        let mut bytes = ModelBytes { layers: vec![0; config.n_layer], head: 0, embedding, globals: 0, tied };
        for info in file.tensors() {
            bytes.add(info, req.chunk_limit(), req.weight_textures)?;
        }
        Ok(bytes)
    }

    fn add(&mut self, info: &TensorInfo, chunk_limit: u64, textures: Option<WeightTextures>) -> Result<()> {
        let gpu = gpu_tensor_bytes(info, chunk_limit, textures)?;
        if let Some(il) = layer_index(&info.name) {
            let n_layer = self.layers.len();
            let slot = self.layers.get_mut(il).ok_or_else(|| {
                Error::Invalid(format!(
                    "tensor `{}` belongs to layer {il}, but the model has {n_layer} layers",
                    info.name
                ))
            })?;
            *slot += gpu;
        } else if info.name == "output.weight" || info.name == "output_norm.weight" {
            self.head += gpu;
        } else if info.name == "token_embd.weight" {
            // The embedding is the head's matrix when tied; otherwise it stays in the memory map.
            if self.tied {
                self.head += gpu;
            }
        } else {
            self.globals += gpu;
        }
        Ok(())
    }
}

/// The layer a tensor belongs to (`blk.{il}.…`), if any.
fn layer_index(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names() {
        assert_eq!(layer_index("blk.12.attn_q.weight"), Some(12));
        assert_eq!(layer_index("output.weight"), None);
        assert_eq!(layer_index("blk.x.attn_q.weight"), None);
    }

    #[test]
    fn chunked_tensor_bytes() {
        let info = |rows: u64, n_bytes: u64| TensorInfo {
            name: "t".into(),
            ty: crate::GgmlType::Q8_0,
            dims: vec![32, rows],
            offset: 0,
            n_bytes,
        };
        // 10 rows of 34 bytes in one chunk: 340 → padded to 352, plus the spare vec4.
        assert_eq!(gpu_tensor_bytes(&info(10, 340), 1 << 20, None).unwrap(), 368);
        // A limit of 32 + 3 rows: chunks of 3, 3, 3, 1 rows (102 → 112 + 16, 34 → 48 + 16).
        assert_eq!(gpu_tensor_bytes(&info(10, 340), 32 + 102, None).unwrap(), 3 * (112 + 16) + (48 + 16));
        assert!(matches!(gpu_tensor_bytes(&info(10, 340), 60, None), Err(Error::DoesNotFit(_))));
        // In textures: whole rows of at least 16 texels, 4 rows at least (368 bytes → 1 KiB).
        let textures = Some(WeightTextures { max_row_bits: 14, max_height: 16384 });
        assert_eq!(gpu_tensor_bytes(&info(10, 340), 1 << 20, textures).unwrap(), 1024);
        // 4096 rows of 4096 Q4_K weights: 9 437 200 bytes in 292 rows of 2048 texels.
        let q4k = TensorInfo { ty: crate::GgmlType::Q4_K, dims: vec![4096, 4096], n_bytes: 4096 * 2304, ..info(1, 34) };
        assert_eq!(gpu_tensor_bytes(&q4k, 128 << 20, textures).unwrap(), 292 * 2048 * 16);
    }
}
