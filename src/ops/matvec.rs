//! Matrix × vector(s) for decode: `Y[n][m] = dot(W[m], X[n])` for 1..8 columns per dispatch.

use super::dispatch::{bind_range, bind_uniform_range, dispatch, fold, product_strides, u32_of, View};
use super::elementwise::act_code;
use crate::error::{Error, Result};
use crate::format::GgmlType;
use crate::gpu::shaders::{block_geometry, load_unit, Kernel};
use crate::gpu::{Context, GpuTensor, KernelProfile, PipelineKey};
use crate::model::Activation;

/// Most activation columns one matvec dispatch handles (the kernel keeps NCOLS × RPI
/// accumulators in registers).
pub const MAX_COLS: usize = 8;

/// How the matvec kernel maps rows to invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatVecShape {
    /// Invocations per workgroup.
    pub wg: u32,
    /// Invocations cooperating on one row (power of two); their partial sums are reduced with
    /// subgroupAdd (`subgroup`) or through workgroup memory.
    pub tpr: u32,
    /// Rows per invocation: each activation loaded is reused for this many rows.
    pub rpi: u32,
    /// Reduce rows with subgroupAdd; requires `tpr` to equal the device's fixed subgroup size.
    pub subgroup: bool,
}

impl MatVecShape {
    /// The shape for `ctx`'s device, weight format and column count (see [`MatVecShape::pick`]).
    pub fn for_device(ctx: &Context, ty: GgmlType, ncols: u32) -> MatVecShape {
        MatVecShape::pick(ctx.profile(), ctx.subgroup_size(), ty, ncols)
    }

    /// The shape for a kind of device (with a fixed subgroup size, if it has one usable for
    /// reductions), weight format and column count.
    ///
    /// GPU: a subgroup (or 32 invocations) per row: coalesced reads and one reduction, by
    /// subgroupAdd when the subgroup size is fixed, else through workgroup memory; 4 rows per
    /// workgroup. CPU (lavapipe): one invocation walks whole rows, several rows at a time, so each
    /// activation load and each decoded header feeds several rows; about 8 rows × columns of
    /// reuse was fastest (`cargo bench --bench kernels -- --tune`), fewer rows for formats whose decoders need many
    /// registers.
    pub fn pick(profile: KernelProfile, subgroup: Option<u32>, ty: GgmlType, ncols: u32) -> MatVecShape {
        match (profile, subgroup) {
            (KernelProfile::Gpu, Some(sg)) => MatVecShape { wg: 4 * sg, tpr: sg, rpi: 1, subgroup: true },
            (KernelProfile::Gpu, None) => MatVecShape { wg: 128, tpr: 32, rpi: 1, subgroup: false },
            (KernelProfile::Cpu, _) => {
                use GgmlType::*;
                let max_rows = match ty {
                    Q2_K | Q4_1 | Q5_K | Q6_K | IQ4_XS | F32 => 4,
                    _ => 8,
                };
                MatVecShape { wg: 8, tpr: 1, rpi: (8 / ncols.max(1)).clamp(1, max_rows), subgroup: false }
            }
        }
    }

    /// Rows covered by one workgroup.
    pub fn rows_per_workgroup(&self) -> u32 {
        self.wg / self.tpr * self.rpi
    }

    fn check(&self) -> Result<()> {
        let ok = self.tpr.is_power_of_two() && self.wg % self.tpr == 0 && self.rpi >= 1 && self.wg >= 1;
        ok.then_some(()).ok_or_else(|| Error::Shape(format!("bad matvec shape {self:?}")))
    }

    /// The pipeline key (and so the generated constants) for `ty` and `ncols` columns, reading X
    /// from a uniform window of `uniform_x` vec4s (0: from a storage buffer), with the gated
    /// activation `gate` applied to the output (see [`matvec_gated`]).
    pub fn key(&self, ty: GgmlType, ncols: u32, uniform_x: u32, gate: Option<Activation>) -> PipelineKey {
        let red = if self.tpr > 1 && !self.subgroup { self.wg * self.rpi * ncols } else { 1 };
        PipelineKey {
            kernel: Kernel::MatVec,
            format: Some(ty),
            consts: vec![
                ("WG", self.wg),
                ("TPR", self.tpr),
                ("RPI", self.rpi),
                ("NCOLS", ncols),
                ("RED", red),
                ("UG", unit_groups(ty, self.tpr)),
                ("SG", self.subgroup as u32),
                ("XU", uniform_x),
                ("GATE", gate.map_or(0, act_code)),
            ],
        }
    }
}

/// Groups per unit of work: the format's load unit (usually a whole block) when one invocation
/// walks the row or the block is small (32-weight formats keep the whole block in registers),
/// else one group of a 256-weight block so that the invocations sharing a row have enough units
/// to go round.
pub(crate) fn unit_groups(ty: GgmlType, tpr: u32) -> u32 {
    let gpb = block_geometry(ty).0 / 8;
    if tpr == 1 || gpb <= 4 {
        load_unit(ty)
    } else {
        1
    }
}

/// `Y[n][m] = dot(W[m], X[n])` for `n` in `0..n_cols` with the device's default shape.
/// Views: X rows of `W.row_len` (offset and stride multiples of 4), Y rows of `W.n_rows`.
/// More than [`MAX_COLS`] columns are done in several dispatches (use [`super::matmul()`] for
/// prompts).
pub fn matvec<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    w: &GpuTensor,
    x: impl Into<View<'a>>,
    y: impl Into<View<'a>>,
    n_cols: usize,
) -> Result<()> {
    matvec_with(ctx, pass, None, w, x.into(), y.into(), n_cols)
}

/// `Y[n][m] = act(Y[n][m]) * dot(W[m], X[n])`: the up projection of a gated feed-forward block
/// with its activation fused in, `Y` holding the gate projection on entry (as
/// [`super::elementwise::Op::Gated`] after a plain matvec, without the extra pass over Y).
pub fn matvec_gated<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    w: &GpuTensor,
    x: impl Into<View<'a>>,
    y: impl Into<View<'a>>,
    n_cols: usize,
    act: Activation,
) -> Result<()> {
    matvec_impl(ctx, pass, None, w, x.into(), y.into(), n_cols, Some(act))
}

/// [`matvec`] with an explicit kernel shape (benchmarks and tuning); `None` picks
/// [`MatVecShape::for_device`] for each batch of columns.
pub fn matvec_with(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    shape: Option<MatVecShape>,
    w: &GpuTensor,
    x: View<'_>,
    y: View<'_>,
    n_cols: usize,
) -> Result<()> {
    matvec_impl(ctx, pass, shape, w, x, y, n_cols, None)
}

#[allow(clippy::too_many_arguments)]
fn matvec_impl(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    shape: Option<MatVecShape>,
    w: &GpuTensor,
    x: View<'_>,
    y: View<'_>,
    n_cols: usize,
    gate: Option<Activation>,
) -> Result<()> {
    let k = w.row_len;
    let (xs, ys) = product_strides(w, &x, &y, n_cols, "matvec")?;
    for col0 in (0..n_cols).step_by(MAX_COLS) {
        let nc = MAX_COLS.min(n_cols - col0);
        let shape = shape.unwrap_or_else(|| MatVecShape::for_device(ctx, w.ty, nc as u32));
        shape.check()?;
        if shape.subgroup && ctx.subgroup_size() != Some(shape.tpr) {
            return Err(Error::Shape(format!("matvec shape {shape:?} needs a fixed subgroup size of {}", shape.tpr)));
        }
        let (x_start, x_len) = (x.offset + col0 * xs, (nc - 1) * xs + k);
        // On CPU devices X is read through a uniform window (shaders/common/x_uniform.wgsl).
        let uniform = match ctx.profile() {
            KernelProfile::Cpu => bind_uniform_range(ctx, x.buf.buffer(), x_start, x_len),
            KernelProfile::Gpu => None,
        };
        let (xr, uniform_x) = match uniform {
            Some(window) => window,
            None => (bind_range(ctx, x.buf.buffer(), x_start, x_len, "matvec X")?, 0),
        };
        let pipeline = ctx.pipeline(&shape.key(w.ty, nc as u32, uniform_x, gate))?;
        for chunk in &w.chunks {
            let y_start = y.offset + col0 * ys + chunk.row0;
            let yr = bind_range(ctx, y.buf.buffer(), y_start, (nc - 1) * ys + chunk.rows, "matvec Y")?;
            let params = [
                u32_of(k, "K")?,
                u32_of(chunk.rows, "rows")?,
                u32_of(w.row_bytes, "row bytes")?,
                xr.base / 4,
                u32_of(xs / 4, "X stride")?,
                yr.base,
                u32_of(ys, "Y stride")?,
                0,
            ];
            let uniform = ctx.uniform("matvec params", &params)?;
            let groups = u32_of(chunk.rows.div_ceil(shape.rows_per_workgroup() as usize), "workgroups")?;
            let entries = [
                chunk.buffer.as_entire_binding(),
                wgpu::BindingResource::Buffer(xr.binding.clone()),
                wgpu::BindingResource::Buffer(yr.binding),
                uniform.as_entire_binding(),
            ];
            dispatch(ctx, pass, &pipeline, &entries, fold(groups, ctx.limits().max_compute_workgroups_per_dimension)?)?;
        }
    }
    Ok(())
}
