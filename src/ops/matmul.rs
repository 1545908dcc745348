//! Tiled matrix × matrix for prompt processing: `Y[n][m] = dot(W[m], X[n])` for many columns.

use super::dispatch::{bind_range, dispatch, product_strides, u32_of, View};
use crate::error::{Error, Result};
use crate::format::GgmlType;
use crate::gpu::shaders::{load_unit, span, Kernel};
use crate::gpu::{Context, GpuTensor, PipelineKey};

/// Tile sizes of the matmul kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatMulShape {
    /// Rows of W (and Y) per workgroup tile.
    pub bm: u32,
    /// Columns of X (and Y) per workgroup tile.
    pub bn: u32,
    /// Depth of one k step; a multiple of the format's span (set by [`MatMulShape::for_format`]).
    pub bk: u32,
    /// Rows per invocation's micro-tile.
    pub tm: u32,
    /// Columns per invocation's micro-tile.
    pub tn: u32,
    /// Decode whole load units (usually blocks) per invocation when loading W tiles (see
    /// `unit_groups`).
    pub whole_blocks: bool,
    /// Pad each tile row by one vec4 so that the invocations reading a column of the tile hit
    /// different memory banks (GPUs; a CPU device has no banks, and its 32 KiB of workgroup
    /// memory would then hold only smaller tiles).
    pub pad_rows: bool,
    /// Hold both tiles as f16 where the device has shader-f16 (half the workgroup memory and the
    /// tile traffic; the products still accumulate in f32): GPUs. Both operands are then rounded
    /// to f16 (11 significant bits), as llama.cpp's Vulkan matmul rounds them.
    pub f16_tiles: bool,
}

impl MatMulShape {
    /// The device profile's tiles for weight format `ty`, shrunk until their workgroup memory
    /// fits the device.
    pub fn for_format(ctx: &Context, ty: GgmlType) -> MatMulShape {
        let mut shape = ctx.profile().matmul;
        shape.f16_tiles &= ctx.features().contains(wgpu::Features::SHADER_F16);
        shape.for_limit(ty, ctx.limits().max_compute_workgroup_storage_size)
    }

    /// These tiles with the depth `ty` needs (a multiple of its decoders' span), halved until
    /// their workgroup memory fits `limit` bytes.
    pub fn for_limit(self, ty: GgmlType, limit: u32) -> MatMulShape {
        let mut s = MatMulShape { bk: span(ty).max(32), ..self };
        while s.workgroup_bytes() > limit && s.bm > s.tm * 2 {
            s.bm /= 2;
            s.bn /= 2;
        }
        s
    }

    /// Invocations per workgroup.
    pub fn wg(&self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }

    /// Workgroup memory of the two tiles (`TROW` vec4s a row in the kernel).
    pub fn workgroup_bytes(&self) -> u32 {
        let element = if self.f16_tiles { 2 } else { 4 };
        (self.bm + self.bn) * (self.bk + 4 * self.pad_rows as u32) * element
    }

    fn check(&self, ty: GgmlType) -> Result<()> {
        let ok = self.bm.is_multiple_of(self.tm)
            && self.bn.is_multiple_of(self.tn)
            && self.bk.is_multiple_of(span(ty))
            && self.bk.is_multiple_of(8);
        ok.then_some(()).ok_or_else(|| Error::Shape(format!("bad matmul shape {self:?} for {ty}")))
    }

    pub fn key(&self, ty: GgmlType) -> PipelineKey {
        PipelineKey {
            kernel: Kernel::MatMul,
            format: Some(ty),
            consts: vec![
                ("BM", self.bm),
                ("BN", self.bn),
                ("BK", self.bk),
                ("TM", self.tm),
                ("TN", self.tn),
                ("WG", self.wg()),
                ("UG", self.unit_groups(ty)),
                ("TPAD", self.pad_rows as u32),
                ("TH", self.f16_tiles as u32),
            ],
        }
    }

    /// Groups decoded per unit of tile loading: with `whole_blocks`, all of a block's groups
    /// inside the tile (its header read once, fewer invocations busy); else one group per
    /// invocation (every invocation busy, as GPUs want).
    fn unit_groups(&self, ty: GgmlType) -> u32 {
        if self.whole_blocks {
            load_unit(ty).min(self.bk / 8)
        } else {
            1
        }
    }
}

/// `Y[n][m] = dot(W[m], X[n])` for `n` in `0..n_cols`, tiled. Same views as [`super::matvec()`].
/// Columns are processed in batches when X or Y windows would exceed one binding.
pub fn matmul<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    w: &GpuTensor,
    x: impl Into<View<'a>>,
    y: impl Into<View<'a>>,
    n_cols: usize,
) -> Result<()> {
    matmul_with(ctx, pass, MatMulShape::for_format(ctx, w.ty), w, x.into(), y.into(), n_cols)
}

/// [`matmul`] with an explicit tile shape.
pub fn matmul_with(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    shape: MatMulShape,
    w: &GpuTensor,
    x: View<'_>,
    y: View<'_>,
    n_cols: usize,
) -> Result<()> {
    shape.check(w.ty)?;
    let (k, m) = (w.row_len, w.n_rows);
    let (xs, ys) = product_strides(w, &x, &y, n_cols, "matmul")?;
    let pipeline = ctx.pipeline(&shape.key(w.ty).reading(w))?;
    let batch = column_batch(ctx.max_binding_size(), n_cols, k, xs, m, ys)?;
    for col0 in (0..n_cols).step_by(batch) {
        let nc = batch.min(n_cols - col0);
        let xr = bind_range(ctx, x.buf.buffer(), x.offset + col0 * xs, (nc - 1) * xs + k, "matmul X")?;
        for chunk in &w.chunks {
            let y_start = y.offset + col0 * ys + chunk.row0;
            let yr = bind_range(ctx, y.buf.buffer(), y_start, (nc - 1) * ys + chunk.rows, "matmul Y")?;
            let [w_off, w_shift] = chunk.texture_params();
            let params = [
                u32_of(k, "K")?,
                u32_of(chunk.rows, "rows")?,
                u32_of(nc, "columns")?,
                u32_of(w.row_bytes, "row bytes")?,
                xr.base / 4,
                u32_of(xs / 4, "X stride")?,
                yr.base,
                u32_of(ys, "Y stride")?,
                w_off,
                w_shift,
            ];
            let groups = (
                u32_of(chunk.rows.div_ceil(shape.bm as usize), "row tiles")?,
                u32_of(nc.div_ceil(shape.bn as usize), "column tiles")?,
            );
            let entries = [
                chunk.binding(),
                wgpu::BindingResource::Buffer(xr.binding.clone()),
                wgpu::BindingResource::Buffer(yr.binding),
            ];
            dispatch(ctx, pass, &pipeline, &entries, &params, groups)?;
        }
    }
    Ok(())
}

/// Most columns per dispatch such that the X and Y windows (plus alignment slack) fit a binding.
fn column_batch(max_binding: u64, n: usize, k: usize, xs: usize, m: usize, ys: usize) -> Result<usize> {
    let max_elems = (max_binding / 4).saturating_sub(256) as usize;
    let fits = |len: usize, stride: usize| if len > max_elems { 0 } else { (max_elems - len) / stride + 1 };
    let batch = n.min(fits(k, xs)).min(fits(m, ys));
    if batch == 0 {
        return Err(Error::DoesNotFit(format!("matmul: one column of X ({k}) or Y ({m}) exceeds the binding limit")));
    }
    Ok(batch)
}
