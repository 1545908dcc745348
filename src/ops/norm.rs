//! RMSNorm over rows (`shaders/rms_norm.wgsl`), and the residual add fused with the next norm
//! (`shaders/add_rms_norm.wgsl`); CPU reference: [`crate::model::cpu::rms_norm`].

use super::dispatch::{bind_range, dispatch_linear, resolve, u32_of, View};
use crate::error::Result;
use crate::gpu::shaders::Kernel;
use crate::gpu::{Context, F32Buffer, PipelineKey};

/// How the normalised row is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormOut {
    /// `y = norm(x) * w`
    Store,
    /// `y += norm(x) * w` (a post-norm feeding the residual stream)
    Add,
}

/// The kernel for `wg` invocations a row (the profile's `norm_workgroup`).
pub(crate) fn key(wg: u32, out: NormOut) -> PipelineKey {
    PipelineKey {
        kernel: Kernel::RmsNorm,
        format: None,
        consts: vec![("WG", wg), ("ADD", u32::from(out == NormOut::Add))],
    }
}

pub(crate) fn add_key(wg: u32, post_norm: bool) -> PipelineKey {
    PipelineKey { kernel: Kernel::AddRmsNorm, format: None, consts: vec![("WG", wg), ("POST", u32::from(post_norm))] }
}

/// The kernels read rows 4 elements at a time: `d`, checked to be a multiple of 4.
fn whole_vec4s(d: usize, what: &str) -> Result<usize> {
    if !d.is_multiple_of(4) {
        return Err(crate::Error::Shape(format!("{what}: rows of {d} elements (the norms need a multiple of 4)")));
    }
    Ok(d)
}

/// A binding's element offset as a vec4 index (rows of whole vec4s start at multiples of 4).
fn vec4_index(base: u32) -> Result<u32> {
    if !base.is_multiple_of(4) {
        return Err(crate::Error::Shape(format!("norm: element offset {base} is not a multiple of 4")));
    }
    Ok(base / 4)
}

/// RMSNorm of `n_rows` rows of `weight.len()` elements: `y = x / sqrt(mean(x²) + eps) * weight`.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    x: impl Into<View<'a>>,
    weight: &F32Buffer,
    y: impl Into<View<'a>>,
    n_rows: usize,
    eps: f32,
    out: NormOut,
) -> Result<()> {
    let (x, y) = (x.into(), y.into());
    let d = whole_vec4s(weight.len(), "rms_norm")?;
    super::dispatch::check_distinct(x.buf.buffer(), y.buf.buffer(), "rms_norm")?;
    // Rows are packed: the shader indexes row * d.
    resolve(&x.stride(d), &"rms_norm x", n_rows, d)?;
    resolve(&y.stride(d), &"rms_norm y", n_rows, d)?;
    let pipeline = ctx.pipeline(&key(ctx.profile().norm_workgroup, out))?;
    let xr = bind_range(ctx, x.buf.buffer(), x.offset, n_rows * d, "rms_norm x")?;
    let yr = bind_range(ctx, y.buf.buffer(), y.offset, n_rows * d, "rms_norm y")?;
    let params = [
        u32_of(d / 4, "d")?,
        u32_of(n_rows, "rows")?,
        vec4_index(xr.base)?,
        vec4_index(yr.base)?,
        eps.to_bits(),
        0,
        0,
        0,
    ];
    let entries = [
        wgpu::BindingResource::Buffer(xr.binding),
        weight.buffer().as_entire_binding(),
        wgpu::BindingResource::Buffer(yr.binding),
    ];
    let groups = u32_of(n_rows, "rows")?;
    dispatch_linear(ctx, pass, &pipeline, &entries, &params, groups)
}

/// The residual add of a block's output and the next norm, in one dispatch, over `n_rows` packed
/// rows of `weight.len()` elements:
/// `r += norm(o) * post_norm` (or `r += o` without a post-norm), then `h = norm(r) * weight`.
/// `o`, `r` and `h` must be different buffers.
#[allow(clippy::too_many_arguments)]
pub fn add_rms_norm(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    o: &F32Buffer,
    post_norm: Option<&F32Buffer>,
    r: &F32Buffer,
    weight: &F32Buffer,
    h: &F32Buffer,
    n_rows: usize,
    eps: f32,
) -> Result<()> {
    let d = whole_vec4s(weight.len(), "add_rms_norm")?;
    if post_norm.is_some_and(|pn| pn.len() != d) {
        return Err(crate::Error::Shape(format!(
            "add_rms_norm: post-norm of {} for rows of {d}",
            post_norm.map_or(0, |p| p.len())
        )));
    }
    for (a, b) in [(o, r), (o, h), (r, h)] {
        super::dispatch::check_distinct(a.buffer(), b.buffer(), "add_rms_norm")?;
    }
    for (buf, what) in [(o, "add_rms_norm o"), (r, "add_rms_norm r"), (h, "add_rms_norm h")] {
        resolve(&View::from(buf), &what, n_rows, d)?;
    }
    let pipeline = ctx.pipeline(&add_key(ctx.profile().norm_workgroup, post_norm.is_some()))?;
    let len = n_rows * d;
    let or = bind_range(ctx, o.buffer(), 0, len, "add_rms_norm o")?;
    let rr = bind_range(ctx, r.buffer(), 0, len, "add_rms_norm r")?;
    let hr = bind_range(ctx, h.buffer(), 0, len, "add_rms_norm h")?;
    let params = [
        u32_of(d / 4, "d")?,
        u32_of(n_rows, "rows")?,
        vec4_index(or.base)?,
        vec4_index(rr.base)?,
        vec4_index(hr.base)?,
        eps.to_bits(),
        0,
        0,
    ];
    // Without a post-norm the kernel never reads binding 1; any f32 buffer fills it.
    let entries = [
        wgpu::BindingResource::Buffer(or.binding),
        post_norm.unwrap_or(weight).buffer().as_entire_binding(),
        wgpu::BindingResource::Buffer(rr.binding),
        weight.buffer().as_entire_binding(),
        wgpu::BindingResource::Buffer(hr.binding),
    ];
    let groups = u32_of(n_rows, "rows")?;
    dispatch_linear(ctx, pass, &pipeline, &entries, &params, groups)
}
