//! Embedding lookup: rows of a (quantized) table, dequantized to f32.

use super::dispatch::{bind_range, check_vec4, dispatch_linear, resolve, u32_of, View};
use crate::error::{Error, Result};
use crate::gpu::shaders::Kernel;
use crate::gpu::{Context, GpuTensor, PipelineKey, U32Buffer};

/// Invocations per workgroup of the get_rows kernel (one invocation per 8 weights).
pub const GET_ROWS_WG: u32 = 64;

pub(crate) fn key(ty: crate::format::GgmlType) -> PipelineKey {
    PipelineKey { kernel: Kernel::GetRows, format: Some(ty), consts: vec![("WG", GET_ROWS_WG), ("UG", 1)] }
}

/// `OUT[r] = dequantize(table[ids[ids_offset + r]])` for `r` in `0..n_ids`. OUT rows hold
/// `table.row_len` elements (offset and stride multiples of 4). Ids must be below
/// `table.n_rows`: an out-of-range id leaves its output row unwritten (the ids live on the
/// device, so the host cannot check them).
pub fn get_rows<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    table: &GpuTensor,
    ids: &U32Buffer,
    ids_offset: usize,
    n_ids: usize,
    out: impl Into<View<'a>>,
) -> Result<()> {
    let out = out.into();
    if n_ids == 0 {
        return Ok(());
    }
    if ids_offset + n_ids > ids.len() {
        return Err(Error::Shape(format!(
            "get_rows `{}`: ids {ids_offset}..+{n_ids} exceed {} ids",
            table.name,
            ids.len()
        )));
    }
    let k = table.row_len;
    let os = resolve(&out, &"get_rows OUT", n_ids, k)?;
    check_vec4(&out, os, &"get_rows OUT")?;
    let pipeline = ctx.pipeline(&key(table.ty).reading(table))?;
    let ir = bind_range(ctx, ids.buffer(), ids_offset, n_ids, "get_rows ids")?;
    let or = bind_range(ctx, out.buf.buffer(), out.offset, (n_ids - 1) * os + k, "get_rows OUT")?;
    let threads = n_ids as u64 * (k / 8) as u64;
    let groups = u32_of(threads.div_ceil(GET_ROWS_WG as u64), "workgroups")?;
    for chunk in &table.chunks {
        let [w_off, w_shift] = chunk.texture_params();
        let params = [
            u32_of(k, "K")?,
            u32_of(table.row_bytes, "row bytes")?,
            u32_of(n_ids, "ids")?,
            ir.base,
            or.base / 4,
            u32_of(os / 4, "OUT stride")?,
            u32_of(chunk.row0, "row0")?,
            u32_of(chunk.rows, "rows")?,
            w_off,
            w_shift,
        ];
        let entries = [
            chunk.binding(),
            wgpu::BindingResource::Buffer(ir.binding.clone()),
            wgpu::BindingResource::Buffer(or.binding.clone()),
        ];
        dispatch_linear(ctx, pass, &pipeline, &entries, &params, groups)?;
    }
    Ok(())
}
