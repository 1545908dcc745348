//! The integer matvec for decode: one column quantized to 8 bits once ([`quantize_q8`]), then
//! dotted with each matrix's quants four at a time ([`matvec_q8`], `dot4I8Packed`), for the formats
//! with an integer decoder ([`has_int_decoder`]). The float matvec unpacks, converts and multiplies
//! every weight; this one issues about one instruction per four weights, the shape of the kernels
//! that reach most of a GPU's memory bandwidth. The rounding of the activations to 8 bits is the
//! price, as in llama.cpp's CPU and GPU backends.

use super::dispatch::{bind_range, check_distinct, dispatch_linear, resolve, u32_of, View};
use crate::error::{Error, Result};
use crate::format::GgmlType;
use crate::gpu::shaders::{has_int_decoder, Kernel};
use crate::gpu::{Context, F32Buffer, GpuTensor, PipelineKey, U32Buffer};

/// Invocations per workgroup of both kernels.
const WG: u32 = 128;

/// Activations per quantization block (and per integer sub-block of a weight row).
pub const Q8_BLOCK: usize = 32;

/// One column's activations at 8 bits: four packed i8 per word, and (d, d · Σq) per block of 32.
/// One column serves every product of a decode step in turn: it holds whatever [`quantize_q8`]
/// last wrote (recorded before the products that read it).
pub struct Q8Column {
    pub words: U32Buffer,
    pub scales: F32Buffer,
    /// Activations it has room for.
    pub capacity: usize,
}

impl Q8Column {
    /// Room for `capacity` activations (rounded up to a multiple of 32).
    pub fn new(ctx: &Context, capacity: usize) -> Result<Q8Column> {
        let capacity = Self::rounded(capacity);
        let words = ctx.vec_zeroed("q8 activations", capacity / 4, crate::gpu::MemTag::Activations)?;
        let scales = ctx.f32_buffer("q8 scales", 2 * capacity / Q8_BLOCK)?;
        Ok(Q8Column { words, scales, capacity })
    }

    /// Device bytes of a column for `capacity` activations (what [`Q8Column::new`] allocates).
    pub fn bytes(capacity: usize, uniform_windows: bool) -> u64 {
        let capacity = Self::rounded(capacity) as u64;
        crate::gpu::device_vec_bytes(capacity)
            + crate::gpu::activation_bytes(8 * capacity / Q8_BLOCK as u64, uniform_windows)
    }

    fn rounded(capacity: usize) -> usize {
        capacity.max(1).next_multiple_of(Q8_BLOCK)
    }
}

pub fn quantize_key() -> PipelineKey {
    PipelineKey { kernel: Kernel::QuantizeQ8, format: None, consts: vec![("WG", WG)] }
}

/// The integer matvec's key for `ty`, rows reduced by subgroups of `subgroup` invocations or,
/// without, by 32 through workgroup memory.
pub fn key(ty: GgmlType, subgroup: Option<u32>) -> PipelineKey {
    let tpr = subgroup.unwrap_or(32);
    let red = if subgroup.is_some() { 1 } else { WG };
    PipelineKey {
        kernel: Kernel::MatVecQ8,
        format: Some(ty),
        consts: vec![
            ("WG", WG),
            ("TPR", tpr),
            ("SG", subgroup.is_some() as u32),
            ("RPI", 1),
            ("NCOLS", 1),
            ("RED", red),
            // The float decoders composed beside `blk_idot` name the matvec's unit size.
            ("UG", 1),
        ],
    }
}

/// Quantizes the first `n` activations of `x` (a multiple of 32) into `out`.
pub fn quantize_q8<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    x: impl Into<View<'a>>,
    n: usize,
    out: &Q8Column,
) -> Result<()> {
    let x = x.into();
    if n == 0 || !n.is_multiple_of(Q8_BLOCK) || n > out.capacity {
        return Err(Error::Shape(format!(
            "quantize_q8: {n} activations (a multiple of {Q8_BLOCK}, at most {})",
            out.capacity
        )));
    }
    resolve(&x, &"quantize_q8 X", 1, n)?;
    if x.offset % 4 != 0 {
        return Err(Error::Shape("quantize_q8: X must start at a multiple of 4 elements".into()));
    }
    let xr = bind_range(ctx, x.buf.buffer(), x.offset, n, "quantize_q8 X")?;
    let blocks = u32_of(n / Q8_BLOCK, "blocks")?;
    let pipeline = ctx.pipeline(&quantize_key())?;
    let entries = [
        wgpu::BindingResource::Buffer(xr.binding),
        out.words.buffer().as_entire_binding(),
        out.scales.buffer().as_entire_binding(),
    ];
    dispatch_linear(ctx, pass, &pipeline, &entries, &[blocks, xr.base / 4, 0, 0], blocks.div_ceil(WG))
}

/// `y[m] = dot(W[m], x)` for the column `x` last quantized by [`quantize_q8`] (its first
/// `W.row_len` activations); `W` of a format with an integer decoder.
pub fn matvec_q8<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    w: &GpuTensor,
    x: &Q8Column,
    y: impl Into<View<'a>>,
) -> Result<()> {
    let y = y.into();
    if !has_int_decoder(w.ty) || w.row_len > x.capacity || !w.row_len.is_multiple_of(Q8_BLOCK) {
        return Err(Error::Shape(format!(
            "matvec_q8 `{}`: {} rows of {} against room for {} activations ({} has {} integer decoder)",
            w.name,
            w.ty.name(),
            w.row_len,
            x.capacity,
            w.ty.name(),
            if has_int_decoder(w.ty) { "an" } else { "no" }
        )));
    }
    resolve(&y, &"matvec_q8 Y", 1, w.n_rows)?;
    check_distinct(x.words.buffer(), y.buf.buffer(), "matvec_q8")?;
    let pipeline = ctx.pipeline(&key(w.ty, ctx.subgroup_size().filter(|&s| s <= WG)).reading(w))?;
    let tpr = pipeline.key.constant("TPR").unwrap_or(32);
    for chunk in &w.chunks {
        let yr = bind_range(ctx, y.buf.buffer(), y.offset + chunk.row0, chunk.rows, "matvec_q8 Y")?;
        let [w_off, w_shift] = chunk.texture_params();
        let params = [
            u32_of(w.row_len, "K")?,
            u32_of(chunk.rows, "rows")?,
            u32_of(w.row_bytes, "row bytes")?,
            0,
            yr.base,
            0,
            w_off,
            w_shift,
        ];
        let entries = [
            chunk.binding(),
            x.words.buffer().as_entire_binding(),
            x.scales.buffer().as_entire_binding(),
            wgpu::BindingResource::Buffer(yr.binding),
        ];
        let groups = u32_of(chunk.rows.div_ceil((WG / tpr) as usize), "workgroups")?;
        dispatch_linear(ctx, pass, &pipeline, &entries, &params, groups)?;
    }
    Ok(())
}
