//! CPU quantizers: f32 rows to GGML blocks, following llama.cpp's reference (non-imatrix)
//! algorithms closely enough to produce the same bytes.
//!
//! Bit-exactness with llama.cpp depends on doing every float operation in the same order and
//! precision as its C code: f32 everywhere it uses `float`, no fused multiply-adds (Rust never
//! contracts `a * b + c`), and its rounding helpers (`nearest_int`, `roundf`, truncating casts)
//! reproduced exactly. Each block is quantized independently, so rows run in parallel.

mod iq4;
mod kquants;
mod legacy;

use std::mem::size_of;

use half::{bf16, f16};
use rayon::prelude::*;

use super::blocks::*;
use super::GgmlType;
use crate::error::{Error, Result};

/// Encoding of one block.
pub trait Quantize: Block {
    /// Quantizes `x`, exactly `Self::ELEMS` values, into one block.
    fn quantize(x: &[f32]) -> Self;
}

/// Quantizes `src`, rows of `row_len` values, to `ty`; returns the rows' blocks back to back.
///
/// `row_len` must be a whole number of `ty`'s blocks and `src` a whole number of rows, otherwise
/// [`Error::Shape`]. Rows are quantized in parallel on all cores.
pub fn quantize(ty: GgmlType, src: &[f32], row_len: usize) -> Result<Vec<u8>> {
    if row_len == 0 || !src.len().is_multiple_of(row_len) {
        return Err(Error::Shape(format!("{} values are not whole rows of {row_len}", src.len())));
    }
    let row_bytes = ty.row_bytes(row_len)?;
    let n_rows = src.len() / row_len;
    let total = n_rows
        .checked_mul(row_bytes)
        .ok_or_else(|| Error::Shape(format!("{n_rows} rows of {row_bytes} bytes overflow")))?;
    let mut out = vec![0u8; total];
    let encode: fn(&[f32], &mut [u8]) = with_block!(ty, B => quantize_blocks::<B>);
    out.par_chunks_mut(row_bytes).zip(src.par_chunks(row_len)).for_each(|(dst, x)| encode(x, dst));
    Ok(out)
}

/// Quantizes consecutive blocks; `src` and `dst` must already agree in length.
fn quantize_blocks<B: Quantize>(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks_exact(B::ELEMS).zip(dst.chunks_exact_mut(size_of::<B>())) {
        out.copy_from_slice(bytemuck::bytes_of(&B::quantize(x)));
    }
}

/// llama.cpp's `nearest_int`: round to nearest, ties to even, by adding 1.5 * 2^23 so the FPU
/// rounds the value into the mantissa's low bits. Valid for |x| < 2^22, which every caller keeps
/// to; outside that (or for NaN) it returns garbage, as the C does, instead of panicking.
#[inline(always)]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let v = x + 12582912.0;
    (v.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// ggml's `GROUP_MAX_EPS`: below this a group counts as all zeros.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// The element of largest magnitude, with its sign (the first one on ties), and that magnitude.
///
/// Matches ggml's `if (amax < fabsf(v)) { amax = fabsf(v); max = v; }` scans.
#[inline]
pub(crate) fn signed_abs_max(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

impl Quantize for f32 {
    fn quantize(x: &[f32]) -> Self {
        x[0]
    }
}

impl Quantize for f16 {
    /// Round to nearest even, as `GGML_FP32_TO_FP16` and numpy's `astype(float16)`.
    fn quantize(x: &[f32]) -> Self {
        f16::from_f32(x[0])
    }
}

impl Quantize for bf16 {
    /// ggml's `ggml_compute_fp32_to_bf16`: round to nearest even on the top 16 bits, NaNs made
    /// quiet (rather than rounded, which could turn them into infinities).
    fn quantize(x: &[f32]) -> Self {
        let u = x[0].to_bits();
        let bits = if u & 0x7fff_ffff > 0x7f80_0000 {
            (u >> 16) | 64
        } else {
            ((u as u64 + (0x7fff + ((u >> 16) & 1)) as u64) >> 16) as u32
        };
        bf16::from_bits(bits as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        let cases = [(0.5, 0), (1.5, 2), (2.5, 2), (-0.5, 0), (-1.5, -2), (3.49, 3), (-3.51, -4), (0.0, 0)];
        for (x, want) in cases {
            assert_eq!(nearest_int(x), want, "{x}");
        }
    }

    #[test]
    fn bf16_rounds_like_ggml() {
        let q = |v: f32| bf16::quantize(&[v]).to_bits();
        assert_eq!(q(1.0), 0x3f80);
        assert_eq!(q(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, even stays
        assert_eq!(q(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, odd rounds up
        assert_eq!(q(f32::from_bits(0x7f80_0001)), 0x7fc0); // signalling NaN made quiet
        assert_eq!(q(f32::INFINITY), 0x7f80);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(matches!(quantize(GgmlType::Q4_0, &[0.0; 64], 0), Err(Error::Shape(_))));
        assert!(matches!(quantize(GgmlType::Q4_0, &[0.0; 64], 48), Err(Error::Shape(_))));
        assert!(matches!(quantize(GgmlType::Q4_0, &[0.0; 48], 16), Err(Error::Shape(_))));
        assert!(matches!(quantize(GgmlType::Q4_K, &[0.0; 128], 128), Err(Error::Shape(_))));
        assert_eq!(quantize(GgmlType::Q4_0, &[0.0; 64], 32).unwrap().len(), 36);
    }
}
