//! The legacy 32-element formats, as llama.cpp's `quantize_row_q*_ref`: one scale (and for the
//! `_1` variants one minimum) per block from the block's extremes, then round each value.

use half::f16;

use super::{signed_abs_max, Quantize};
use crate::format::blocks::*;

/// Reciprocal of a scale, 0 for a zero scale (an all-zero block then quantizes to the midpoint).
#[inline(always)]
fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Smallest and largest value of a block, starting from ±FLT_MAX as the C does.
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// Symmetric quantization to `bits` bits: the largest-magnitude value maps to level 0 exactly
/// (`d = max / -2^(bits-1)`), every value to `trunc(x / d + 2^(bits-1) + 0.5)` capped at the top
/// level. C computes `x*id` and the `+ offset` as separate float roundings; so do we.
fn quantize_symmetric(x: &[f32], bits: u32, q: &mut [u8; 32]) -> f32 {
    let half = (1u32 << (bits - 1)) as f32;
    let top = (1u8 << bits) - 1;
    let (max, _) = signed_abs_max(x);
    let d = max / -half;
    let id = inverse(d);
    for (q, &v) in q.iter_mut().zip(x) {
        // `MIN(15, (int8_t)(x*id + 8.5f))`: a truncating cast, then the cap.
        *q = trunc_min(v * id + (half + 0.5), top);
    }
    d
}

/// C's `MIN(top, (int8_t)v)` stored in a `uint8_t`.
#[inline(always)]
fn trunc_min(v: f32, top: u8) -> u8 {
    (v as i8 as i32).min(top as i32) as u8
}

/// Asymmetric quantization to `bits` bits between the block's min and max. Q4_1 caps the level
/// at 15 (`MIN(15, (int8_t)...)`), Q5_1 only casts (`(uint8_t)...`); `cap` says which.
fn quantize_affine(x: &[f32], bits: u32, cap: bool, q: &mut [u8; 32]) -> (f32, f32) {
    let top = (1u8 << bits) - 1;
    let (min, max) = min_max(x);
    let d = (max - min) / top as f32;
    let id = inverse(d);
    for (q, &v) in q.iter_mut().zip(x) {
        let v = (v - min) * id + 0.5;
        *q = if cap { trunc_min(v, top) } else { v as u8 };
    }
    (d, min)
}

/// Packs 32 4-bit values: element `j` in the low nibble of byte `j`, element `j + 16` high.
fn pack_nibbles(q: &[u8; 32]) -> [u8; 16] {
    std::array::from_fn(|j| (q[j] & 0xF) | ((q[j + 16] & 0xF) << 4))
}

/// The fifth bits of 32 5-bit values, bit `j` for element `j`.
fn fifth_bits(q: &[u8; 32]) -> [u8; 4] {
    let qh = q.iter().enumerate().fold(0u32, |acc, (j, &v)| acc | (((v as u32 & 0x10) >> 4) << j));
    qh.to_le_bytes()
}

impl Quantize for BlockQ4_0 {
    fn quantize(x: &[f32]) -> Self {
        let mut q = [0u8; 32];
        let d = quantize_symmetric(x, 4, &mut q);
        BlockQ4_0 { d: f16::from_f32(d), qs: pack_nibbles(&q) }
    }
}

impl Quantize for BlockQ4_1 {
    fn quantize(x: &[f32]) -> Self {
        let mut q = [0u8; 32];
        let (d, m) = quantize_affine(x, 4, true, &mut q);
        BlockQ4_1 { d: f16::from_f32(d), m: f16::from_f32(m), qs: pack_nibbles(&q) }
    }
}

impl Quantize for BlockQ5_0 {
    fn quantize(x: &[f32]) -> Self {
        let mut q = [0u8; 32];
        let d = quantize_symmetric(x, 5, &mut q);
        BlockQ5_0 { d: f16::from_f32(d), qh: fifth_bits(&q), qs: pack_nibbles(&q) }
    }
}

impl Quantize for BlockQ5_1 {
    fn quantize(x: &[f32]) -> Self {
        let mut q = [0u8; 32];
        let (d, m) = quantize_affine(x, 5, false, &mut q);
        BlockQ5_1 { d: f16::from_f32(d), m: f16::from_f32(m), qh: fifth_bits(&q), qs: pack_nibbles(&q) }
    }
}

impl Quantize for BlockQ8_0 {
    /// `d = amax / 127`, values rounded half away from zero (C's `roundf`, Rust's `round`).
    fn quantize(x: &[f32]) -> Self {
        // C's `MAX(amax, fabsf(v))`, spelled out so NaNs behave as there.
        let amax = x.iter().fold(0.0f32, |a, v| if a > v.abs() { a } else { v.abs() });
        let d = amax / 127.0;
        let id = inverse(d);
        let qs = std::array::from_fn(|j| (x[j] * id).round() as i8);
        BlockQ8_0 { d: f16::from_f32(d), qs }
    }
}
