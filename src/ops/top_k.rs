//! Sampling on the device: the penalties applied to the logits in place (`shaders/penalize.wgsl`),
//! then the k likeliest tokens of each row, sorted (`shaders/top_k.wgsl`), so that a sampled
//! decode step reads back k (id, logit) pairs instead of the whole vocabulary's logits and the
//! host's [`crate::sampler::Sampler::sample_top`] finishes on those. CPU reference:
//! [`crate::sampler::likeliest`], which the sampler's own top-k uses.

use super::dispatch::{bind_range, dispatch, u32_of, View};
use crate::error::{Error, Result};
use crate::gpu::shaders::Kernel;
use crate::gpu::{device_vec_bytes, Context, MemTag, PipelineKey, TrackedBuffer, U32Buffer};
use crate::sampler::TokenPenalty;

/// Invocations of a top-k workgroup, and the most candidates it keeps (k ≤ WG).
const WG: u32 = 256;

/// Elements one top-k workgroup reduces to k: each level divides a row by `CHUNK / k`.
const CHUNK: usize = 8 * WG as usize;

/// The fewest candidates a workgroup sorts its new elements into: with k = 1 a tile's 256 fresh
/// elements would otherwise join one at a time.
const MIN_SORTED: usize = 32;

/// Invocations of a penalty workgroup.
const PENALTY_WG: u32 = 64;

/// The largest k the device selects.
pub const MAX_K: usize = WG as usize;

/// Penalties per row the device applies at once.
pub const MAX_PENALTIES: usize = 1024;

pub(crate) fn key(raw: bool) -> PipelineKey {
    PipelineKey { kernel: Kernel::TopK, format: None, consts: vec![("WG", WG), ("RAW", raw as u32)] }
}

pub(crate) fn penalize_key() -> PipelineKey {
    PipelineKey { kernel: Kernel::Penalize, format: None, consts: vec![("WG", PENALTY_WG)] }
}

/// The buffers of device sampling for `rows` rows of `n` logits: two candidate buffers the levels
/// alternate between, the penalties, and the readback of the result.
pub struct TopKBuffers {
    n: usize,
    rows: usize,
    /// Levels 0, 2, ... write here: `[rows][groups of level 0][MAX_K]` (key, id) pairs.
    even: U32Buffer,
    /// Levels 1, 3, ...: `[rows][groups of level 1][MAX_K]`.
    odd: U32Buffer,
    /// `[rows × MAX_PENALTIES]` entries of four words ([`TokenPenalty`]).
    penalties: U32Buffer,
    /// What the host reads: `[rows][MAX_K]` pairs.
    readback: TrackedBuffer,
}

impl TopKBuffers {
    pub fn new(ctx: &Context, n: usize, rows: usize) -> Result<TopKBuffers> {
        if n == 0 || rows == 0 {
            return Err(Error::Invalid(format!("device sampling over {rows} rows of {n} logits")));
        }
        let [even, odd] = Self::words(n, rows);
        Ok(TopKBuffers {
            n,
            rows,
            even: ctx.vec_zeroed("top-k candidates (even levels)", even, MemTag::Activations)?,
            odd: ctx.vec_zeroed("top-k candidates (odd levels)", odd, MemTag::Activations)?,
            penalties: ctx.vec_zeroed("sampling penalties", 4 * rows * MAX_PENALTIES, MemTag::Activations)?,
            readback: ctx.create_buffer(
                "top-k readback",
                (8 * rows * MAX_K) as u64,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                MemTag::Staging,
            )?,
        })
    }

    /// Device bytes of the buffers [`TopKBuffers::new`] allocates on the device (the readback
    /// excluded: it is host memory).
    pub fn bytes(n: usize, rows: usize) -> u64 {
        let [even, odd] = Self::words(n, rows);
        [even, odd, 4 * rows * MAX_PENALTIES].iter().map(|&w| device_vec_bytes(4 * w as u64)).sum()
    }

    /// Words of the even and odd levels' buffers: the first and second levels' outputs at the
    /// largest k, the largest of their parity (each level's output is smaller than the last).
    fn words(n: usize, rows: usize) -> [usize; 2] {
        let mut words = [2, 2];
        for (i, groups) in levels(n, MAX_K).enumerate().take(2) {
            words[i] = 2 * rows * groups * MAX_K;
        }
        words
    }

    /// Writes the penalties the next [`top_k`] applies, before the submit that records it.
    pub fn write_penalties(&self, ctx: &Context, penalties: &[TokenPenalty]) -> Result<()> {
        if penalties.len() > self.rows * MAX_PENALTIES {
            return Err(Error::Invalid(format!(
                "{} sampling penalties exceed the {} the device holds",
                penalties.len(),
                self.rows * MAX_PENALTIES
            )));
        }
        if let Some(bad) = penalties.iter().find(|t| t.row as usize >= self.rows || t.id as usize >= self.n) {
            return Err(Error::Invalid(format!("a penalty for token {} of row {} is out of range", bad.id, bad.row)));
        }
        ctx.write(&self.penalties, 0, bytemuck::cast_slice(penalties))
    }

    /// Copies `rows` rows of `k` candidates from where [`top_k`] left them to the readback.
    pub fn copy_out(&self, enc: &mut wgpu::CommandEncoder, rows: usize, k: usize) {
        let result = if levels(self.n, k).count() % 2 == 1 { &self.even } else { &self.odd };
        enc.copy_buffer_to_buffer(result.buffer(), 0, &self.readback, 0, (8 * rows * k) as u64);
    }

    /// The `rows × k` candidates copied out, each row best first as `(id, logit)`, sentinels of
    /// rows shorter than k dropped.
    pub async fn read(&self, ctx: &Context, rows: usize, k: usize) -> Result<Vec<Vec<(u32, f32)>>> {
        let words: Vec<u32> = ctx.read_mapped(&self.readback, 2 * rows * k).await?;
        Ok(words.chunks(2 * k).map(decode_row).collect())
    }
}

/// The workgroups of each level that reduces `n` elements per row to `k`: a level of `g` groups
/// leaves `g × k` elements for the next; the last has one group.
fn levels(n: usize, k: usize) -> impl Iterator<Item = usize> {
    let mut left = Some(n);
    std::iter::from_fn(move || {
        let n = left?;
        let groups = n.div_ceil(CHUNK);
        left = (groups > 1).then_some(groups * k);
        Some(groups)
    })
}

/// A row of (key, id) pairs as `(id, logit)`, sentinels (id `u32::MAX`) dropped.
fn decode_row(words: &[u32]) -> Vec<(u32, f32)> {
    words.chunks_exact(2).filter(|p| p[1] != u32::MAX).map(|p| (p[1], logit_of_key(p[0]))).collect()
}

/// Inverse of `order_key` in `shaders/top_k.wgsl`: keys of non-negative floats have the top bit
/// set (the sign flipped), those of negative ones are the complemented bits.
fn logit_of_key(key: u32) -> f32 {
    f32::from_bits(if key & 0x8000_0000 != 0 { key ^ 0x8000_0000 } else { !key })
}

/// Applies `n_penalties` penalties (written by [`TopKBuffers::write_penalties`]) to `rows` rows of
/// `n` logits in place, then selects each row's `k` likeliest into `bufs` (read them with
/// [`TopKBuffers::copy_out`] and [`TopKBuffers::read`]).
#[allow(clippy::too_many_arguments)]
pub fn top_k<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    logits: impl Into<View<'a>>,
    rows: usize,
    k: usize,
    n_penalties: usize,
    bufs: &TopKBuffers,
) -> Result<()> {
    let logits = logits.into();
    let n = bufs.n;
    if k == 0 || k > MAX_K || rows == 0 || rows > bufs.rows || logits.offset + rows * n > logits.buf.len() {
        return Err(Error::Shape(format!(
            "top-{k} of {rows} rows of {n} logits at {} in a buffer of {} (at most {} rows, k ≤ {MAX_K})",
            logits.offset,
            logits.buf.len(),
            bufs.rows
        )));
    }
    let lr = bind_range(ctx, logits.buf.buffer(), logits.offset, rows * n, "top-k logits")?;
    if n_penalties > 0 {
        let pipeline = ctx.pipeline(&penalize_key())?;
        let entries = [wgpu::BindingResource::Buffer(lr.binding.clone()), bufs.penalties.buffer().as_entire_binding()];
        let count = u32_of(n_penalties, "penalties")?;
        let params = [count, u32_of(n, "logits")?, lr.base, 0];
        dispatch(ctx, pass, &pipeline, &entries, &params, (count.div_ceil(PENALTY_WG), 1))?;
    }
    let (mut src, mut dst) = (&bufs.odd, &bufs.even);
    let mut n_in = n;
    for (level, groups) in levels(n, k).enumerate() {
        let pipeline = ctx.pipeline(&key(level == 0))?;
        let entries = [
            wgpu::BindingResource::Buffer(lr.binding.clone()),
            src.buffer().as_entire_binding(),
            dst.buffer().as_entire_binding(),
        ];
        let kp = k.next_power_of_two().clamp(MIN_SORTED, MAX_K) as u32;
        let params = [u32_of(n_in, "top-k elements")?, CHUNK as u32, k as u32, kp, lr.base, 0, 0, 0];
        dispatch(ctx, pass, &pipeline, &entries, &params, (u32_of(groups, "top-k groups")?, rows as u32))?;
        n_in = groups * k;
        (src, dst) = (dst, src);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_end_with_one_group() {
        assert_eq!(levels(100, 40).collect::<Vec<_>>(), [1]);
        assert_eq!(levels(262_144, 256).collect::<Vec<_>>(), [128, 16, 2, 1]);
        assert_eq!(levels(262_144, 40).collect::<Vec<_>>(), [128, 3, 1]);
        assert_eq!(levels(CHUNK + 1, 1).collect::<Vec<_>>(), [2, 1]);
    }

    #[test]
    fn keys_invert() {
        for l in [0.0f32, -0.0, 1.5, -1.5, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, -3e38] {
            let bits = l.to_bits();
            let key = if bits >> 31 == 1 { !bits } else { bits ^ 0x8000_0000 };
            assert_eq!(logit_of_key(key).to_bits(), bits);
        }
    }
}
