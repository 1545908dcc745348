//! Plumbing shared by the ops: activation views, sub-range bindings, bind groups, dispatch sizes.

use crate::error::{Error, Result};
use crate::gpu::uniform_window_bytes;
use crate::gpu::{Context, F32Buffer, GpuTensor, GpuVec, Pipeline, TrackedBuffer};

/// A window into an f32 buffer viewed as rows: row `i` starts at element `offset + i * stride`.
/// `stride: None` means rows are packed (the stride is the row length the op expects).
///
/// `&F32Buffer` converts into a view at offset 0, so simple calls just pass `&buf`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub buf: &'a F32Buffer,
    pub offset: usize,
    pub stride: Option<usize>,
}

impl<'a> From<&'a F32Buffer> for View<'a> {
    fn from(buf: &'a F32Buffer) -> View<'a> {
        View { buf, offset: 0, stride: None }
    }
}

impl<'a> View<'a> {
    /// The same view with an explicit row stride (in elements).
    pub fn stride(self, stride: usize) -> View<'a> {
        View { stride: Some(stride), ..self }
    }
}

impl GpuVec<f32> {
    /// A view starting at element `offset`, rows packed.
    pub fn at(&self, offset: usize) -> View<'_> {
        View { buf: self, offset, stride: None }
    }
}

/// The elements a view must hold for `n` rows of `row_len`, with its resolved stride.
pub(crate) fn resolve(view: &View<'_>, what: &dyn std::fmt::Display, n: usize, row_len: usize) -> Result<usize> {
    let stride = view.stride.unwrap_or(row_len);
    if stride < row_len {
        return Err(Error::Shape(format!("{what}: stride {stride} is shorter than a row of {row_len}")));
    }
    let need = view.offset + (n - 1) * stride + row_len;
    if need > view.buf.len() {
        return Err(Error::Shape(format!(
            "{what}: {n} rows of {row_len} (stride {stride}) at offset {} need {need} elements, buffer has {}",
            view.offset,
            view.buf.len()
        )));
    }
    Ok(stride)
}

/// Checks that a view is read as vec4: offset and stride multiples of 4 elements.
pub(crate) fn check_vec4(view: &View<'_>, stride: usize, what: &dyn std::fmt::Display) -> Result<()> {
    if !view.offset.is_multiple_of(4) || !stride.is_multiple_of(4) {
        return Err(Error::Shape(format!(
            "{what}: offset {} and stride {stride} must be multiples of 4 elements (read as vec4)",
            view.offset
        )));
    }
    Ok(())
}

/// Checks the views of `Y = X Wᵀ` for `n_cols` columns (X rows of `w.row_len`, read as vec4; Y
/// rows of `w.n_rows`; different buffers) and returns their resolved strides `(xs, ys)`.
pub(crate) fn product_strides(
    w: &GpuTensor,
    x: &View<'_>,
    y: &View<'_>,
    n_cols: usize,
    op: &str,
) -> Result<(usize, usize)> {
    if n_cols == 0 {
        return Err(Error::Shape(format!("{op} `{}`: zero columns", w.name)));
    }
    let xs = resolve(x, &format_args!("{op} X"), n_cols, w.row_len)?;
    let ys = resolve(y, &format_args!("{op} Y"), n_cols, w.n_rows)?;
    check_vec4(x, xs, &format_args!("{op} X"))?;
    check_distinct(x.buf.buffer(), y.buf.buffer(), op)?;
    Ok((xs, ys))
}

/// Rejects an op whose input and output are the same buffer (wgpu forbids binding one buffer as
/// both read-only and writable storage in a dispatch).
pub(crate) fn check_distinct(a: &wgpu::Buffer, b: &wgpu::Buffer, op: &str) -> Result<()> {
    if a == b {
        return Err(Error::Shape(format!("{op}: input and output must be different buffers")));
    }
    Ok(())
}

/// A binding of part of a buffer, and where the wanted elements start inside it.
pub(crate) struct Range<'a> {
    pub binding: wgpu::BufferBinding<'a>,
    /// Elements from the start of the binding to the first wanted element.
    pub base: u32,
}

/// Binds elements `start .. start + len` of `buf` (4-byte elements): the binding starts at the
/// largest aligned offset before `start`, so buffers larger than one binding can be used as long
/// as each dispatch's window fits.
pub(crate) fn bind_range<'a>(
    ctx: &Context,
    buf: &'a TrackedBuffer,
    start: usize,
    len: usize,
    what: &str,
) -> Result<Range<'a>> {
    let (begin, base) = window_start(start, ctx.limits().min_storage_buffer_offset_alignment);
    let end = ((start + len) as u64 * 4).next_multiple_of(16).min(buf.size());
    let size = end - begin;
    if size > ctx.max_binding_size() {
        return Err(Error::DoesNotFit(format!(
            "{what}: a window of {size} bytes exceeds the binding limit of {} bytes",
            ctx.max_binding_size()
        )));
    }
    Ok(Range {
        binding: wgpu::BufferBinding { buffer: buf, offset: begin, size: wgpu::BufferSize::new(size) },
        base: u32_of(base, what)?,
    })
}

/// Binds elements `start .. start + len` of `buf` as a uniform buffer of
/// [`uniform_window_bytes`] (activation buffers are allocated so that a window from their start
/// fits), with that size in vec4s; `None` when the buffer is not usable as a uniform or such a
/// window would leave it or exceed the device's uniform binding limit.
pub(crate) fn bind_uniform_range<'a>(
    ctx: &Context,
    buf: &'a TrackedBuffer,
    start: usize,
    len: usize,
) -> Option<(Range<'a>, u32)> {
    if !buf.usage().contains(wgpu::BufferUsages::UNIFORM) {
        return None;
    }
    let (begin, base) = window_start(start, ctx.limits().min_uniform_buffer_offset_alignment);
    let size = uniform_window_bytes(base * 4 + len as u64 * 4);
    if size > ctx.limits().max_uniform_buffer_binding_size || begin + size > buf.size() {
        return None;
    }
    let binding = wgpu::BufferBinding { buffer: buf, offset: begin, size: wgpu::BufferSize::new(size) };
    Some((Range { binding, base: u32::try_from(base).ok()? }, u32::try_from(size / 16).ok()?))
}

/// Where a binding that reaches element `start` begins: the largest offset before it that is
/// aligned for the device (and for vec4 reads), and the elements from there to `start`.
fn window_start(start: usize, device_align: u32) -> (u64, u64) {
    let align = device_align.max(16) as u64;
    let start_b = start as u64 * 4;
    let begin = start_b / align * align;
    (begin, (start_b - begin) / 4)
}

/// `v` as u32, or a shape error naming `what`.
pub(crate) fn u32_of(v: impl TryInto<u32> + Copy + std::fmt::Display, what: &str) -> Result<u32> {
    v.try_into().map_err(|_| Error::Shape(format!("{what}: {v} does not fit in u32")))
}

/// Records one dispatch of `x` × `y` workgroups binding `resources` (bindings 0, 1, ... in order)
/// and, as the last binding, the kernel's parameters `params` (a slot of the context's parameter
/// arena, bound at a dynamic offset). The bind group comes from the context's cache: a decode
/// step binds the same windows every step, so after the first step no group is created.
pub(crate) fn dispatch(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    pipeline: &Pipeline,
    resources: &[wgpu::BindingResource<'_>],
    params: &[u32],
    (x, y): (u32, u32),
) -> Result<()> {
    let max = ctx.limits().max_compute_workgroups_per_dimension;
    if x > max || y > max {
        return Err(Error::DoesNotFit(format!("dispatch of {x} x {y} workgroups exceeds {max} per dimension")));
    }
    let slot = ctx.uniform(params)?;
    let group = ctx.bind_group(&pipeline.layout, resources, slot.dynamic_binding())?;
    pass.set_pipeline(&pipeline.pipeline);
    pass.set_bind_group(0, &group, &[slot.dynamic_offset()]);
    match ctx.profiler() {
        Some(p) => p.timed(pass, &pipeline.label, |pass| pass.dispatch_workgroups(x, y, 1)),
        None => {
            pass.dispatch_workgroups(x, y, 1);
            Ok(())
        }
    }
}

/// [`dispatch`] of `groups` workgroups in a line, folded into two dimensions past the device's
/// per-dimension limit (see [`fold`]).
pub(crate) fn dispatch_linear(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    pipeline: &Pipeline,
    resources: &[wgpu::BindingResource<'_>],
    params: &[u32],
    groups: u32,
) -> Result<()> {
    dispatch(ctx, pass, pipeline, resources, params, fold(groups, ctx.limits().max_compute_workgroups_per_dimension)?)
}

/// Splits `groups` workgroups into `(x, y)` with `x, y <= max` and `x * y >= groups`, for
/// kernels that linearise `workgroup_id` with `num_workgroups` (and ignore the surplus).
pub(crate) fn fold(groups: u32, max: u32) -> Result<(u32, u32)> {
    if groups <= max {
        return Ok((groups.max(1), 1));
    }
    let y = groups.div_ceil(max);
    if y > max {
        return Err(Error::DoesNotFit(format!("{groups} workgroups exceed {max} x {max}")));
    }
    Ok((groups.div_ceil(y), y))
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn fold_covers_all_groups() {
        assert_eq!(fold(10, 65535).unwrap(), (10, 1));
        let (x, y) = fold(100_000, 65535).unwrap();
        assert!(x <= 65535 && y <= 65535 && x * y >= 100_000);
        assert!(fold(u32::MAX, 65535).is_err());
    }
}
