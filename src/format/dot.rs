//! CPU reference dot products of quantized rows with f32 vectors: the oracle for GPU matvec and
//! matmul kernels, and the inner loop of the CPU forward pass.
//!
//! [`dot_row`] and [`matvec`] decode a row a few blocks at a time into a stack buffer; [`matmul`]
//! decodes each weight row once into a per-thread buffer and reuses it for every column. Sums run
//! in eight independent lanes, which the compiler can vectorise.

use std::mem::size_of;

use rayon::prelude::*;

use super::blocks::*;
use super::dequant::{dequantize_blocks, Dequantize};
use super::GgmlType;
use crate::error::{Error, Result};

/// Elements decoded per step: one k-quant super-block, or several smaller blocks.
const CHUNK: usize = 256;

/// Rows handed to one rayon task at a time, so small rows don't drown in scheduling.
const ROWS_PER_TASK: usize = 8;

/// The dot product of one quantized row with `x` (`x.len()` elements, a whole number of blocks).
///
/// Returns [`Error::Shape`] if `row` is not exactly the bytes of `x.len()` elements of `ty`.
pub fn dot_row(ty: GgmlType, row: &[u8], x: &[f32]) -> Result<f32> {
    check_row(ty, row.len(), x.len())?;
    Ok(row_kernel(ty)(row, x))
}

/// `y = W x` for a row-major quantized matrix `weights` of rows of `row_len` elements, on all cores.
///
/// `x` has `row_len` elements and `y` one element per row of `weights`.
pub fn matvec(ty: GgmlType, weights: &[u8], row_len: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    let row_bytes = matrix_rows(ty, weights.len(), row_len, y.len())?;
    check_len("x", x.len(), row_len)?;
    let dot = row_kernel(ty);
    y.par_chunks_mut(ROWS_PER_TASK).zip(weights.par_chunks(row_bytes * ROWS_PER_TASK)).for_each(|(y, w)| {
        for (y, row) in y.iter_mut().zip(w.chunks_exact(row_bytes)) {
            *y = dot(row, x);
        }
    });
    Ok(())
}

/// `Y = X Wᵀ` for several input vectors at once: `x` is `[n_cols][row_len]` row-major and `y`
/// is `[n_cols][n_rows]`, so `y[c][r]` is row `r` of `weights` dotted with column `c` of `x`.
///
/// Each weight row is decoded once and reused for every column, which is what makes this cheaper
/// than `n_cols` calls to [`matvec`] (prompt processing).
pub fn matmul(ty: GgmlType, weights: &[u8], row_len: usize, x: &[f32], n_cols: usize, y: &mut [f32]) -> Result<()> {
    if row_len == 0 || n_cols == 0 {
        return Err(Error::Shape(format!("matmul with row length {row_len} and {n_cols} columns")));
    }
    check_len("x", x.len(), n_cols.checked_mul(row_len).ok_or_else(|| overflow("x"))?)?;
    if !y.len().is_multiple_of(n_cols) {
        return Err(Error::Shape(format!("output of {} floats is not {n_cols} columns", y.len())));
    }
    let n_rows = y.len() / n_cols;
    let row_bytes = matrix_rows(ty, weights.len(), row_len, n_rows)?;

    // Compute [row][col] in parallel over rows, then transpose into the [col][row] output.
    let mut by_row = vec![0.0f32; n_rows * n_cols];
    let decode: fn(&[u8], &mut [f32]) = with_block!(ty, B => dequantize_blocks::<B>);
    by_row.par_chunks_mut(n_cols * ROWS_PER_TASK).zip(weights.par_chunks(row_bytes * ROWS_PER_TASK)).for_each_init(
        || vec![0.0f32; row_len],
        |w_row, (out, w)| {
            for (out, row) in out.chunks_exact_mut(n_cols).zip(w.chunks_exact(row_bytes)) {
                decode(row, w_row);
                for (o, xc) in out.iter_mut().zip(x.chunks_exact(row_len)) {
                    *o = dot_f32(w_row, xc);
                }
            }
        },
    );
    for (r, row) in by_row.chunks_exact(n_cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            y[c * n_rows + r] = v;
        }
    }
    Ok(())
}

/// Plain f32 dot product in eight lanes (vectorisable; the lane order is fixed, so the result is
/// Activations rounded to 8 bits as the GPU's integer matvec rounds them
/// (`shaders/quantize_q8.wgsl`): per block of 32, `d = max|x| / 127` and `q = round(x / d)`, ties
/// to even; returns the values `d · q` that the integer products then see exactly.
pub fn quantize_activations(x: &[f32]) -> Vec<f32> {
    x.chunks(32)
        .flat_map(|block| {
            let d = block.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            block.iter().map(move |v| d * (v * id).round_ties_even())
        })
        .collect()
}

/// deterministic for a given input).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (a, b) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += a[i] * b[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The dot kernel of a format, monomorphised per block type.
fn row_kernel(ty: GgmlType) -> fn(&[u8], &[f32]) -> f32 {
    with_block!(ty, B => dot_blocks::<B>)
}

/// Decodes `row` a chunk at a time into a stack buffer and dots each chunk with `x`.
fn dot_blocks<B: Dequantize>(row: &[u8], x: &[f32]) -> f32 {
    let blocks_per_chunk = (CHUNK / B::ELEMS).max(1);
    let mut buf = [0.0f32; CHUNK];
    let mut sum = 0.0f32;
    for (bytes, xs) in row.chunks(blocks_per_chunk * size_of::<B>()).zip(x.chunks(blocks_per_chunk * B::ELEMS)) {
        let w = &mut buf[..xs.len()];
        dequantize_blocks::<B>(bytes, w);
        sum += dot_f32(w, xs);
    }
    sum
}

/// Checks that `row_bytes` bytes of `ty` are exactly `n` elements.
fn check_row(ty: GgmlType, row_bytes: usize, n: usize) -> Result<()> {
    let want = ty.row_bytes(n)?;
    if row_bytes != want {
        return Err(Error::Shape(format!("{n} elements of {ty} take {want} bytes, the row has {row_bytes}")));
    }
    Ok(())
}

/// Checks a matrix of `n_rows` rows of `row_len` elements against its byte length; returns the
/// bytes per row.
fn matrix_rows(ty: GgmlType, n_bytes: usize, row_len: usize, n_rows: usize) -> Result<usize> {
    if row_len == 0 {
        return Err(Error::Shape("row length 0".into()));
    }
    let row_bytes = ty.row_bytes(row_len)?;
    let want = row_bytes.checked_mul(n_rows).ok_or_else(|| overflow("weights"))?;
    if n_bytes != want {
        return Err(Error::Shape(format!(
            "{n_rows} rows of {row_len} {ty} elements take {want} bytes, the weights have {n_bytes}"
        )));
    }
    Ok(row_bytes)
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Shape(format!("{what} has {got} elements, expected {want}")));
    }
    Ok(())
}

fn overflow(what: &str) -> Error {
    Error::Shape(format!("size of {what} overflows"))
}
