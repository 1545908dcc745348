//! The KV cache and attention ([`super::qkv`] appends to the cache); CPU reference:
//! [`crate::model::cpu::attention`].
//!
//! Two kernels, neither of which keeps a score per cached position in memory: on CPU devices
//! with a fixed subgroup size, `shaders/attention_split.wgsl` (a head's dimensions split across
//! one subgroup); everywhere else `shaders/attention_flash.wgsl` (a position per invocation in
//! tiles, online softmax, long contexts split across workgroups and merged by
//! `shaders/attention_combine.wgsl`). Their scratch is the splits' partial results: bounded by
//! [`scratch_floats`], whatever the context.

use super::dispatch::{bind_range, dispatch_linear, u32_of, View};
use crate::error::{Error, Result};
use crate::gpu::shaders::Kernel;
use crate::gpu::{Context, F32Buffer, MemTag, PipelineKey, U32Buffer};
use crate::model::KvType;

/// Invocations of the combine kernel's workgroups (one per token and head, an invocation per
/// output element).
const WG: u32 = 64;

/// One layer's cache of one of K or V: a ring of `rows` rows of `row_len` elements (position p in
/// row p % rows), as raw u32 words (f16 pairs or f32 bits).
pub struct KvBuffer {
    pub words: U32Buffer,
    pub row_len: usize,
    pub rows: usize,
    pub kv_type: KvType,
}

impl KvBuffer {
    pub fn new(ctx: &Context, label: &str, rows: usize, row_len: usize, kv_type: KvType) -> Result<KvBuffer> {
        if !row_len.is_multiple_of(2) || rows == 0 {
            return Err(Error::Shape(format!("KV cache of {rows} rows of {row_len} elements: rows must be even")));
        }
        let words = rows * row_len * kv_type.bytes() / 4;
        Ok(KvBuffer { words: ctx.vec_zeroed(label, words, MemTag::KvCache)?, row_len, rows, kv_type })
    }
}

/// The split-dimension kernel (`shaders/attention_split.wgsl`) for `heads_per_group` query heads
/// per workgroup, each of the `subgroup` invocations owning `head_dim / subgroup` dimensions.
pub(crate) fn split_key(kv_type: KvType, head_dim: usize, subgroup: u32, heads_per_group: u32) -> PipelineKey {
    PipelineKey {
        kernel: Kernel::AttentionSplit,
        format: None,
        consts: vec![
            ("WG", subgroup),
            ("DPI", head_dim as u32 / subgroup),
            ("HPW", heads_per_group),
            ("KV_F16", u32::from(kv_type == KvType::F16)),
            // Read by `uses_subgroups`: the scores are summed with subgroupAdd.
            ("SG", 1),
        ],
    }
}

/// The split kernel's key and its query heads per workgroup on `ctx`, or `None` where it does
/// not apply: GPUs (measured only on CPU devices so far), devices without a fixed subgroup size,
/// and heads that do not split into whole cache vec4s per invocation. The heads of a KV group
/// share one workgroup, so each cached key and value is read once for all of them, except where
/// that would leave fewer workgroups than the two a CPU device's threads need to stay busy.
fn split_kernel(ctx: &Context, s: &AttentionShape, kv_type: KvType) -> Option<(PipelineKey, usize)> {
    let sg = ctx.subgroup_size()?;
    let per_vec4 = if kv_type == KvType::F16 { 8 } else { 4 };
    let fits = s.head_dim == s.head_dim_v && s.head_dim.is_multiple_of(sg as usize * per_vec4);
    if !ctx.profile().attention_split_dims || !fits {
        return None;
    }
    let mut hpw = s.n_head / s.n_head_kv;
    while hpw.is_multiple_of(2) && s.n_tokens * s.n_head / hpw < 2 {
        hpw /= 2;
    }
    Some((split_key(kv_type, s.head_dim, sg, hpw as u32), hpw))
}

/// Invocations of a flash-attention workgroup (one position per invocation in a tile).
const FLASH_WG: u32 = 128;
/// Positions a split of the flash kernel takes at least: fewer and the combine pass costs more
/// than the parallelism gains.
const FLASH_SPLIT_MIN: usize = 256;
/// Most splits of one token's positions.
const FLASH_MAX_SPLITS: usize = 64;
/// Query tokens up to which a call is split across workgroups (decode, short batches); longer
/// batches have a workgroup per token and head group already.
const FLASH_SPLIT_TOKENS: usize = 8;

/// The flash kernel (`shaders/attention_flash.wgsl`) for `heads_per_group` query heads per
/// workgroup and heads of up to `head_dim` (q, k) and `head_dim_v` elements.
pub(crate) fn flash_key(kv_type: KvType, head_dim: usize, head_dim_v: usize, heads_per_group: u32) -> PipelineKey {
    let pairs = (head_dim_v as u32 / 2).div_ceil(FLASH_WG).max(1);
    PipelineKey {
        kernel: Kernel::AttentionFlash,
        format: None,
        consts: vec![
            ("WG", FLASH_WG),
            ("HPW", heads_per_group),
            ("HD", head_dim.next_power_of_two().max(4) as u32),
            ("PPI", pairs),
            ("KV_F16", u32::from(kv_type == KvType::F16)),
        ],
    }
}

/// The kernel merging the flash kernel's splits (`shaders/attention_combine.wgsl`).
pub(crate) fn combine_key() -> PipelineKey {
    PipelineKey { kernel: Kernel::AttentionCombine, format: None, consts: vec![("WG", WG)] }
}

/// The flash kernel's key and query heads per workgroup, or a shape error for heads whose keys
/// are not whole cache vec4s (8 elements with an f16 cache, 4 with f32) or whose values are not
/// whole pairs. A workgroup takes the largest share of a KV group's query heads up to 8, so that
/// each key and value it reads serves all of them.
fn flash_kernel(s: &AttentionShape, kv_type: KvType) -> Result<(PipelineKey, usize)> {
    let per_vec4 = if kv_type == KvType::F16 { 8 } else { 4 };
    if !s.head_dim.is_multiple_of(per_vec4) || !s.head_dim_v.is_multiple_of(2) {
        return Err(Error::Shape(format!(
            "attention: heads of {} (keys) and {} (values) elements; with a {kv_type:?} cache keys must be \
             multiples of {per_vec4} and values of 2",
            s.head_dim, s.head_dim_v
        )));
    }
    let group = s.n_head / s.n_head_kv;
    let hpw = (1..=group.min(8)).rev().find(|h| group.is_multiple_of(*h)).unwrap_or(1);
    Ok((flash_key(kv_type, s.head_dim, s.head_dim_v, hpw as u32), hpw))
}

/// Floats of attention scratch for micro-batches of `batch` tokens over a cache of `n_ctx`
/// positions: the flash kernel's partial results (maximum, sum and `head_dim_v` outputs) for the
/// splits of up to [`FLASH_SPLIT_TOKENS`] tokens and every head. At most 8 × heads × 64 ×
/// (head_dim_v + 2), however long the context: a Llama-2-7B decode state needs 1 MiB at 16384
/// positions (a score per position, head and token took 2 MiB at that context, and 1 GiB for a
/// 512-token batch).
pub fn scratch_floats(n_head: usize, head_dim_v: usize, batch: usize, n_ctx: usize) -> usize {
    let splits = n_ctx.div_ceil(FLASH_SPLIT_MIN).clamp(1, FLASH_MAX_SPLITS);
    batch.clamp(1, FLASH_SPLIT_TOKENS) * n_head * splits * (head_dim_v + 2)
}

/// Splits of each token's positions for the flash kernel: for a few tokens over many positions,
/// enough that the GPU has work for all its cores, each at least [`FLASH_SPLIT_MIN`] positions,
/// and no more than the scratch of `scratch_len` floats holds.
fn flash_splits(s: &AttentionShape, scratch_len: usize) -> usize {
    if s.n_tokens > FLASH_SPLIT_TOKENS {
        return 1;
    }
    let end = s.pos0 + s.n_tokens;
    let positions = s.window.map_or(end, |w| w.min(end));
    let fits = scratch_len / (s.n_tokens * s.n_head * (s.head_dim_v + 2));
    positions.div_ceil(FLASH_SPLIT_MIN).min(FLASH_MAX_SPLITS).min(fits).max(1)
}

/// Shape of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub n_tokens: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    /// Position of query token 0; token t attends to positions ..= pos0 + t.
    pub pos0: usize,
    /// Attend only to the last `window` positions (itself included).
    pub window: Option<usize>,
    pub scale: f32,
    /// Scaled scores become `cap · tanh(score / cap)` before the softmax (Gemma 2).
    pub softcap: Option<f32>,
    /// Positions of the context.
    pub n_ctx: usize,
}

/// Attention of `q: [n_tokens][n_head * head_dim]` over the caches into
/// `out: [n_tokens][n_head * head_dim_v]`, with `scratch` for the splits of a long context (see
/// [`scratch_floats`]; a smaller one means fewer splits). A ring cache must hold the window plus
/// the batch.
#[allow(clippy::too_many_arguments)]
pub fn attention<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    shape: &AttentionShape,
    q: impl Into<View<'a>>,
    k: &KvBuffer,
    v: &KvBuffer,
    scratch: &F32Buffer,
    out: impl Into<View<'a>>,
) -> Result<()> {
    let (q, out) = (q.into(), out.into());
    let s = shape;
    if !s.n_head.is_multiple_of(s.n_head_kv)
        || k.row_len != s.n_head_kv * s.head_dim
        || v.row_len != s.n_head_kv * s.head_dim_v
    {
        return Err(Error::Shape(format!(
            "attention: {s:?} does not match caches of rows {} and {}",
            k.row_len, v.row_len
        )));
    }
    let end = s.pos0 + s.n_tokens;
    let needed_rows = s.window.map_or(end, |w| end.min(w + s.n_tokens));
    if end > s.n_ctx || k.rows < needed_rows || v.rows < needed_rows {
        return Err(Error::Invalid(format!(
            "attention: positions up to {end} need {needed_rows} cache rows of a context of {} (cache has {})",
            s.n_ctx, k.rows
        )));
    }
    let split = split_kernel(ctx, s, k.kv_type);
    let uses_scratch = split.is_none();
    let (key, heads_per_workgroup, n_split) = match split {
        Some((key, hpw)) => (key, hpw, 1),
        None => {
            let (key, hpw) = flash_kernel(s, k.kv_type)?;
            (key, hpw, flash_splits(s, scratch.len()))
        }
    };
    let pipeline = ctx.pipeline(&key)?;
    let (q_stride, o_stride) = (s.n_head * s.head_dim, s.n_head * s.head_dim_v);
    let qr = bind_range(ctx, q.buf.buffer(), q.offset, s.n_tokens * q_stride, "attention q")?;
    let or = bind_range(ctx, out.buf.buffer(), out.offset, s.n_tokens * o_stride, "attention out")?;
    let p = [
        u32_of(s.n_tokens, "tokens")?,
        u32_of(s.n_head, "heads")?,
        u32_of(s.n_head / s.n_head_kv, "group")?,
        u32_of(s.head_dim, "head dim")?,
        u32_of(s.head_dim_v, "head dim v")?,
        u32_of(k.row_len, "kv dim")?,
        u32_of(v.row_len, "kv dim v")?,
        u32_of(s.pos0, "pos0")?,
        u32_of(s.n_ctx, "n_ctx")?,
        u32_of(s.window.unwrap_or(0), "window")?,
        s.scale.to_bits(),
        qr.base,
        u32_of(q_stride, "q stride")?,
        or.base,
        u32_of(o_stride, "o stride")?,
        u32_of(k.rows, "ring")?,
        u32_of(n_split, "splits")?,
        s.softcap.unwrap_or(0.0).to_bits(),
    ];
    let (qb, kb, vb, ob) = (
        wgpu::BindingResource::Buffer(qr.binding),
        k.words.buffer().as_entire_binding(),
        v.words.buffer().as_entire_binding(),
        wgpu::BindingResource::Buffer(or.binding.clone()),
    );
    // The flash kernel keeps its splits' partial results in the scratch (binding 3); the split
    // kernel keeps everything in registers.
    let (flash, split);
    let entries: &[wgpu::BindingResource<'_>] = if uses_scratch {
        flash = [qb, kb, vb, scratch.buffer().as_entire_binding(), ob];
        &flash
    } else {
        split = [qb, kb, vb, ob];
        &split
    };
    let groups = u32_of(s.n_tokens * s.n_head / heads_per_workgroup * n_split, "workgroups")?;
    dispatch_linear(ctx, pass, &pipeline, entries, &p, groups)?;
    if n_split > 1 {
        let combine = ctx.pipeline(&combine_key())?;
        let entries = [scratch.buffer().as_entire_binding(), wgpu::BindingResource::Buffer(or.binding)];
        dispatch_linear(ctx, pass, &combine, &entries, &p, u32_of(s.n_tokens * s.n_head, "workgroups")?)?;
    }
    Ok(())
}
