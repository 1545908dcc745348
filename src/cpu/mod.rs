//! CPU kernels built for speed, for the layers and the output head that the VRAM plan leaves on
//! the CPU: activations are rounded to 8 bits once per product ([`Q8Activations`], as llama.cpp's
//! CPU backend rounds them to Q8_0/Q8_K blocks), each weight block is decoded to 8-bit integers
//! with a scale and an offset per group of 16 ([`unpack`]), and the two are dotted with the widest
//! integer instructions the CPU has ([`simd`], chosen at run time, with a portable fallback). Rows
//! are split over rayon's threads, which live for the whole process.
//!
//! The scalar f32 kernels of [`crate::format::dot`] remain the reference: fed the same rounded
//! activations ([`crate::format::dot::quantize_activations`]), they give these kernels' results
//! up to the order of f32 sums (tests check every format, both instruction levels, odd shapes).
//! The float formats (F32, F16, BF16) have no integer kernel ([`has_kernel`]) and take the
//! reference path.

pub mod simd;
pub mod unpack;

use std::mem::size_of;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::blocks::*;
use crate::format::GgmlType;
use simd::{Isa, Level, Portable};
use unpack::{Int8Unit, Unpack8, GROUPS, UNIT};

/// Activations per quantization block.
pub const Q8_BLOCK: usize = 32;

/// Rows handed to one rayon task at a time.
const ROWS_PER_TASK: usize = 16;

/// Columns of activations rounded to 8 bits: per block of 32, `x ≈ d · q` with `q` in
/// −127..=127 (`d = max|x| / 127`, rounded to nearest, ties to even, as the GPU's integer matvec
/// and [`crate::format::dot::quantize_activations`] round). Per group of 16 it keeps `d` and
/// `d · Σq` (the offset formats' term), so the kernels' scale arithmetic is one line of 16 lanes.
pub struct Q8Activations {
    row_len: usize,
    n_cols: usize,
    q: Vec<i8>,
    /// Per group of 16: its block's `d`.
    d: Vec<f32>,
    /// Per group of 16: `d · Σq` over the group.
    dsum: Vec<f32>,
}

impl Q8Activations {
    /// Rounds `x`, `[n][row_len]`, to 8 bits; `row_len` must be a multiple of 32.
    pub fn quantize(x: &[f32], row_len: usize) -> Result<Q8Activations> {
        if row_len == 0 || row_len % Q8_BLOCK != 0 || x.len() % row_len != 0 {
            return Err(Error::Shape(format!(
                "{} activations in rows of {row_len}: rows must be whole blocks of {Q8_BLOCK}",
                x.len()
            )));
        }
        let groups = x.len() / 16;
        let mut a = Q8Activations {
            row_len,
            n_cols: x.len() / row_len,
            q: vec![0; x.len()],
            d: Vec::with_capacity(groups),
            dsum: Vec::with_capacity(groups),
        };
        for (xs, qs) in x.chunks_exact(Q8_BLOCK).zip(a.q.chunks_exact_mut(Q8_BLOCK)) {
            let d = xs.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            for (q, &v) in qs.iter_mut().zip(xs) {
                *q = (v * id).round_ties_even() as i8;
            }
            for half in qs.chunks_exact(16) {
                a.d.push(d);
                a.dsum.push(d * half.iter().map(|&q| q as i32).sum::<i32>() as f32);
            }
        }
        Ok(a)
    }

    pub fn n_cols(&self) -> usize {
        self.n_cols
    }
}

/// One row's dot products with every column of `x`, into `out` (one per column). The row is
/// decoded a unit of 256 weights at a time (the last unit of a row of small blocks may be
/// shorter) and each unit is dotted with all the columns.
#[inline(always)]
pub(crate) fn row_dot<B: Unpack8, I: Isa>(row: &[u8], x: &Q8Activations, out: &mut [f32]) {
    let mut unit = Int8Unit::default();
    let mut isum = [0i32; GROUPS];
    out.fill(0.0);
    let unit_bytes = (UNIT / B::ELEMS) * size_of::<B>();
    for (u, unit_row) in row.chunks(unit_bytes).enumerate() {
        let mut len = 0;
        for bytes in unit_row.chunks_exact(size_of::<B>()) {
            read_block::<B>(bytes).unpack8(&mut unit, len);
            len += B::ELEMS;
        }
        let groups = len / 16;
        for (c, o) in out.iter_mut().enumerate() {
            let at = c * x.row_len + u * UNIT;
            I::dot_groups(&unit.q[..len], &x.q[at..at + len], &mut isum[..groups]);
            *o += scaled_sum::<B>(&unit, &isum, &x.d[at / 16..], &x.dsum[at / 16..], groups);
        }
    }
}

/// Σ over the unit's groups of `scale · d · Σ(q·x)` (and `min · d · Σx`), in 16 lanes.
#[inline(always)]
fn scaled_sum<B: Unpack8>(unit: &Int8Unit, isum: &[i32; GROUPS], d: &[f32], dsum: &[f32], groups: usize) -> f32 {
    let mut lanes = [0.0f32; GROUPS];
    let (d, dsum) = (&d[..groups], &dsum[..groups]);
    for g in 0..groups {
        lanes[g] = unit.scale[g] * d[g] * isum[g] as f32;
        if B::HAS_MIN {
            lanes[g] += unit.min[g] * dsum[g];
        }
    }
    lanes.iter().sum()
}

/// A row kernel: one row of a format against every column.
type RowKernel = fn(&[u8], &Q8Activations, &mut [f32]);

fn kernel<B: Unpack8>(level: Level) -> RowKernel {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Level::Avx2` comes from `Level::detect` on this CPU (or a test that checked it).
        Level::Avx2 => |row, x, out| unsafe { simd::avx2_row::<B>(row, x, out) },
        _ => row_dot::<B, Portable>,
    }
}

/// `$body` with `$B` the block type of the quantized format `$ty`; `$float` for the float formats.
macro_rules! with_quant_block {
    ($ty:expr, $B:ident => $body:expr, floats => $float:expr) => {{
        use GgmlType as T;
        match $ty {
            T::F32 | T::F16 | T::BF16 => $float,
            T::Q4_0 => {
                type $B = BlockQ4_0;
                $body
            }
            T::Q4_1 => {
                type $B = BlockQ4_1;
                $body
            }
            T::Q5_0 => {
                type $B = BlockQ5_0;
                $body
            }
            T::Q5_1 => {
                type $B = BlockQ5_1;
                $body
            }
            T::Q8_0 => {
                type $B = BlockQ8_0;
                $body
            }
            T::Q2_K => {
                type $B = BlockQ2K;
                $body
            }
            T::Q3_K => {
                type $B = BlockQ3K;
                $body
            }
            T::Q4_K => {
                type $B = BlockQ4K;
                $body
            }
            T::Q5_K => {
                type $B = BlockQ5K;
                $body
            }
            T::Q6_K => {
                type $B = BlockQ6K;
                $body
            }
            T::IQ4_NL => {
                type $B = BlockIQ4NL;
                $body
            }
            T::IQ4_XS => {
                type $B = BlockIQ4XS;
                $body
            }
        }
    }};
}

/// The integer kernel of `ty` at `level`; `None` for the float formats.
fn row_kernel(ty: GgmlType, level: Level) -> Option<RowKernel> {
    with_quant_block!(ty, B => Some(kernel::<B>(level)), floats => None)
}

/// Whether `ty` has an integer kernel (every quantized format).
pub fn has_kernel(ty: GgmlType) -> bool {
    row_kernel(ty, Level::Portable).is_some()
}

/// The instruction level this process uses, detected once.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(Level::detect)
}

/// `y = X Wᵀ` on the CPU: `weights` is a row-major matrix of `ty` with rows of `x`'s row length,
/// `y` is `[n_cols][n_rows]`; at this CPU's best [`level`].
pub fn matmul(ty: GgmlType, weights: &[u8], x: &Q8Activations, y: &mut [f32]) -> Result<()> {
    matmul_at(level(), ty, weights, x, y)
}

/// [`matmul`] at a given instruction level (tests and benchmarks compare them). A level this CPU
/// does not have is an error.
pub fn matmul_at(level: Level, ty: GgmlType, weights: &[u8], x: &Q8Activations, y: &mut [f32]) -> Result<()> {
    if level != Level::Portable && level != Level::detect() {
        return Err(Error::Invalid(format!("this CPU cannot run the {} kernels", level.name())));
    }
    let kernel = row_kernel(ty, level).ok_or_else(|| Error::Invalid(format!("{ty} has no integer CPU kernel")))?;
    let n_cols = x.n_cols;
    if y.len() % n_cols != 0 {
        return Err(Error::Shape(format!("output of {} floats is not {n_cols} columns", y.len())));
    }
    let n_rows = y.len() / n_cols;
    let row_bytes = ty.row_bytes(x.row_len)?;
    if weights.len() != row_bytes * n_rows {
        return Err(Error::Shape(format!(
            "{n_rows} rows of {} {ty} elements take {} bytes, the weights have {}",
            x.row_len,
            row_bytes * n_rows,
            weights.len()
        )));
    }
    if n_cols == 1 {
        let tasks = y.par_chunks_mut(ROWS_PER_TASK).zip(weights.par_chunks(row_bytes * ROWS_PER_TASK));
        tasks.for_each(|(y, w)| {
            for (y, row) in y.chunks_exact_mut(1).zip(w.chunks_exact(row_bytes)) {
                kernel(row, x, y);
            }
        });
        return Ok(());
    }
    // [row][col] in parallel over rows, then transposed into the [col][row] output.
    let mut by_row = vec![0.0f32; n_rows * n_cols];
    let tasks = by_row.par_chunks_mut(n_cols * ROWS_PER_TASK).zip(weights.par_chunks(row_bytes * ROWS_PER_TASK));
    tasks.for_each(|(out, w)| {
        for (out, row) in out.chunks_exact_mut(n_cols).zip(w.chunks_exact(row_bytes)) {
            kernel(row, x, out);
        }
    });
    for (r, row) in by_row.chunks_exact(n_cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            y[c * n_rows + r] = v;
        }
    }
    Ok(())
}

/// The weights of `bytes` (whole blocks of `ty`) rebuilt from their integer form, `scale · q +
/// min`, for the test that compares them with the scalar decoder.
#[cfg(test)]
fn rebuild(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    fn blocks<B: Unpack8>(bytes: &[u8]) -> Vec<f32> {
        let mut blk = Int8Unit::default();
        let mut out = Vec::new();
        for b in bytes.chunks_exact(size_of::<B>()) {
            read_block::<B>(b).unpack8(&mut blk, 0);
            let weight = |i: usize| blk.scale[i / 16] * blk.q[i] as f32;
            match B::HAS_MIN {
                true => out.extend((0..B::ELEMS).map(|i| weight(i) + blk.min[i / 16])),
                false => out.extend((0..B::ELEMS).map(weight)),
            }
        }
        out
    }
    with_quant_block!(ty, B => blocks::<B>(bytes), floats => Vec::new())
}
