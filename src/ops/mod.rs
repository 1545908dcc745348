//! GPU ops: typed wrappers that check shapes, bind buffers and record dispatches.
//!
//! # Conventions
//! - A weight `W` ([`GpuTensor`]) has `M = n_rows` rows of `K = row_len` elements (GGML dims
//!   `[K, M]`), kept as raw blocks of its format.
//! - Activations are f32, row-major: `X` is `[N][K]` (N tokens, "columns" of the product), the
//!   output `Y` is `[N][M]`, and `Y[n][m] = dot(W[m], X[n])`.
//! - Activations are passed as [`View`]s: `&buf` (offset 0, packed rows), `buf.at(offset)`, or
//!   `buf.at(offset).stride(s)` to read or write a slice of a larger buffer. Views that are read
//!   as vectors (X, get_rows output) need offsets and strides that are multiples of 4.
//! - Input and output of one op must be different buffers.
//! - Ops record into a caller's [`wgpu::ComputePass`]; nothing is submitted. Record a whole
//!   forward pass into one pass (or a few) and submit once: on lavapipe a dispatch costs about
//!   40 µs inside a pass against about 100 µs per separate submit. wgpu orders dispatches that
//!   touch the same buffers within a pass.
//!
//! # Example
//! ```no_run
//! # fn demo(ctx: &wgquant::gpu::Context, w: &wgquant::gpu::GpuTensor) -> wgquant::Result<()> {
//! use wgquant::ops;
//! let x = ctx.f32_buffer("x", w.row_len)?;  // [1][K]
//! let y = ctx.f32_buffer("y", w.n_rows)?;   // [1][M]
//! let mut enc = ctx.encoder("forward");
//! {
//!     let mut pass = enc.begin_compute_pass(&Default::default());
//!     ops::mul_mat(ctx, &mut pass, w, &x, &y, 1)?;
//! }
//! ctx.submit_and_wait(enc)?;
//! let logits = ctx.read(&y)?;
//! # Ok(()) }
//! ```
//!
//! # Ops
//! - [`mul_mat`]: picks [`matvec()`] (decode, up to a few columns) or [`matmul()`] (prompts).
//! - [`matvec()`]: 1..8 columns per dispatch, kernel shape per device kind, format and column
//!   count ([`MatVecShape::for_device`]; [`matvec_with`] takes an explicit one).
//! - [`matmul()`]: tiled, W tiles dequantized into workgroup memory ([`MatMulShape`]).
//! - [`get_rows()`]: embedding lookup from a quantized table into f32 rows.
//! - [`mul_mat_gated`] / [`matvec_gated`]: a gated FFN's up projection with the activation fused
//!   into the matvec's epilogue.
//! - [`norm::rms_norm`], [`norm::add_rms_norm`] (a block's residual add fused with the next
//!   norm), [`qkv::prepare_qkv`] (per-head q/k norms, RoPE and the KV-cache append in one
//!   dispatch), [`attention::attention`], [`elementwise::elementwise`].
//!
//! Fusions exist because every dispatch has a fixed cost (tens of µs on lavapipe, a launch and a
//! round trip of the activations through memory on a GPU): a decode step is 11 dispatches per
//! layer.
//!
//! Weights bigger than one binding (a storage buffer's, or a texture's on CPU devices) are split
//! by rows ([`GpuTensor::chunks`]); every op dispatches once per chunk, so callers never see the
//! split.

pub mod argmax;
pub mod attention;
pub(crate) mod dispatch;
pub mod elementwise;
pub mod get_rows;
pub mod matmul;
pub mod matvec;
pub mod matvec_q8;
pub mod norm;
pub mod qkv;
pub mod top_k;

pub use dispatch::View;
pub use get_rows::get_rows;
pub use matmul::{matmul, matmul_with, MatMulShape};
pub use matvec::{matvec, matvec_gated, matvec_with, MatVecShape, MAX_COLS};

use crate::error::Result;
use crate::gpu::{Context, GpuTensor};

/// Every pipeline the activation ops (norms, q/k/v preparation, attention, element-wise) can build,
/// for validation without a device.
#[cfg(test)]
pub(crate) fn activation_keys() -> Vec<crate::gpu::PipelineKey> {
    use crate::model::{Activation, KvType, RopeLayout};
    let mut keys = Vec::new();
    for wg in [crate::gpu::DeviceProfile::gpu().norm_workgroup, crate::gpu::DeviceProfile::cpu().norm_workgroup] {
        keys.extend([norm::key(wg, norm::NormOut::Store), norm::key(wg, norm::NormOut::Add)]);
        keys.extend([norm::add_key(wg, false), norm::add_key(wg, true)]);
        for layout in [RopeLayout::Normal, RopeLayout::Neox] {
            for kv in [KvType::F16, KvType::F32] {
                for flags in [[false, false, false], [true, true, true], [true, false, true]] {
                    keys.push(qkv::key(wg, layout, flags, kv));
                }
            }
        }
    }
    for kv in [KvType::F16, KvType::F32] {
        for hpw in [1, 2, 4] {
            keys.extend([64, 128, 256].map(|hd| attention::split_key(kv, hd, 8, hpw)));
            keys.extend([40, 64, 128, 256].map(|hd| attention::flash_key(kv, hd, hd, hpw)));
        }
    }
    keys.push(attention::combine_key());
    keys.extend([argmax::key(), top_k::key(true), top_k::key(false), top_k::penalize_key()]);
    let ops = [
        elementwise::Op::Add,
        elementwise::Op::Gated(Activation::Silu),
        elementwise::Op::Gated(Activation::GeluTanh),
        elementwise::Op::AddRow,
        elementwise::Op::Scale(1.0),
    ];
    keys.extend(ops.map(elementwise::key));
    keys
}

/// `Y[n][m] = dot(W[m], X[n])` for `n` in `0..n_cols`, with the kernel that suits `n_cols`.
pub fn mul_mat<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    w: &GpuTensor,
    x: impl Into<View<'a>>,
    y: impl Into<View<'a>>,
    n_cols: usize,
) -> Result<()> {
    if n_cols < ctx.profile().matmul_threshold {
        matvec(ctx, pass, w, x, y, n_cols)
    } else {
        matmul(ctx, pass, w, x, y, n_cols)
    }
}

/// The up projection and activation of a gated feed-forward block: `gate = act(gate) * (X Wᵀ)`
/// over `n_cols` columns, in one matvec dispatch for decode ([`matvec_gated`]); prompts go
/// through the matmul into `up` and an element-wise pass.
#[allow(clippy::too_many_arguments)]
pub fn mul_mat_gated(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    w_up: &GpuTensor,
    x: &crate::gpu::F32Buffer,
    gate: &crate::gpu::F32Buffer,
    up: &crate::gpu::F32Buffer,
    n_cols: usize,
    act: crate::model::Activation,
) -> Result<()> {
    if n_cols < ctx.profile().matmul_threshold {
        return matvec_gated(ctx, pass, w_up, x, gate, n_cols, act);
    }
    matmul(ctx, pass, w_up, x, up, n_cols)?;
    let n = n_cols * w_up.n_rows;
    elementwise::elementwise(ctx, pass, elementwise::Op::Gated(act), gate, up, n, n)
}
