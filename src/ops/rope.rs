//! Rotary position embedding, in place (`shaders/rope.wgsl`); CPU reference:
//! [`crate::model::cpu::Rope`].

use super::dispatch::{bind_range, dispatch, fold, u32_of, View};
use crate::error::{Error, Result};
use crate::gpu::shaders::Kernel;
use crate::gpu::{Context, F32Buffer, PipelineKey};
use crate::model::RopeLayout;

const WG: u32 = 64;

/// Rope parameters of one layer.
#[derive(Clone, Copy)]
pub struct RopeParams<'a> {
    pub layout: RopeLayout,
    pub base: f32,
    pub freq_scale: f32,
    /// Per-pair frequency divisors (Llama 3.1's `rope_freqs`), `head_dim / 2` of them.
    pub factors: Option<&'a F32Buffer>,
}

pub(crate) fn key(layout: RopeLayout, has_factors: bool) -> PipelineKey {
    let neox = u32::from(layout == RopeLayout::Neox);
    PipelineKey {
        kernel: Kernel::Rope,
        format: None,
        consts: vec![("WG", WG), ("NEOX", neox), ("HAS_FACTORS", u32::from(has_factors))],
    }
}

/// Rotate `n_rows` rows of `n_heads` heads of `head_dim` values; row t is at position `pos0 + t`.
/// `factors_fallback` is bound when `params.factors` is `None` (any small buffer: it is not read).
#[allow(clippy::too_many_arguments)]
pub fn rope<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    x: impl Into<View<'a>>,
    n_rows: usize,
    n_heads: usize,
    head_dim: usize,
    pos0: usize,
    params: &RopeParams<'_>,
    factors_fallback: &F32Buffer,
) -> Result<()> {
    let x = x.into();
    if head_dim % 2 != 0 {
        return Err(Error::Shape(format!("rope: head dim {head_dim} is odd")));
    }
    let n = n_rows * n_heads * head_dim;
    if let Some(f) = params.factors {
        if f.len() < head_dim / 2 {
            return Err(Error::Shape(format!("rope: {} frequency factors for head dim {head_dim}", f.len())));
        }
    }
    let pipeline = ctx.pipeline(&key(params.layout, params.factors.is_some()))?;
    let xr = bind_range(ctx, x.buf.buffer(), x.offset, n, "rope x")?;
    let p = [
        u32_of(n_rows, "rows")?,
        u32_of(n_heads, "heads")?,
        u32_of(head_dim, "head dim")?,
        xr.base,
        u32_of(pos0, "pos0")?,
        params.base.to_bits(),
        params.freq_scale.to_bits(),
        0,
    ];
    let uniform = ctx.uniform("rope params", &p)?;
    let factors = params.factors.unwrap_or(factors_fallback);
    let entries =
        [wgpu::BindingResource::Buffer(xr.binding), factors.buffer().as_entire_binding(), uniform.as_entire_binding()];
    let groups = u32_of((n as u64 / 2).div_ceil(WG as u64), "workgroups")?;
    dispatch(ctx, pass, &pipeline, &entries, fold(groups, ctx.limits().max_compute_workgroups_per_dimension)?)
}
