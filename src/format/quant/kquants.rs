//! k-quants (Q2_K..Q6_K), as llama.cpp's `quantize_row_q*_K_ref`, which is what
//! `ggml_quantize_chunk` runs when no importance matrix is given.
//!
//! Each super-block of 256 values is split into sub-blocks of 16 or 32. A sub-block's scale (and
//! min) is not taken from its extremes but searched for: candidate scales around the min/max one
//! are tried and the one with the smallest weighted error is kept. The sub-block scales are then
//! themselves quantized against one f16 super-block scale, and every value is re-quantized with
//! the scale it will actually be decoded with.
//!
//! Every expression keeps the C's evaluation order and f32 precision: that is what makes the
//! output equal llama.cpp's byte for byte.

use half::f16;

use super::{nearest_int, signed_abs_max, Quantize, GROUP_MAX_EPS};
use crate::format::blocks::*;
use crate::format::dequant::{q3k_scale, scale_min_k4};

/// llama.cpp's `make_qkx2_quants`: quantize `x` to levels `0..=nmax` as `scale * l - min`,
/// choosing scale and min by weighted least squares.
///
/// Starts from the min/max scale, then for each of `nstep + 1` candidate scales
/// `(nmax + rmin + rdelta * is) / (max - min)` rounds every value, solves the 2x2 weighted least
/// squares problem for the best scale and min given those levels, and keeps the candidate with
/// the smallest weighted error (absolute error if `use_mad`, squared otherwise). The min is
/// never positive (a positive min is clamped to 0, refitting the scale alone).
///
/// Writes the levels to `l` and returns `(scale, -min)`.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    l: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l[..n].fill(0);
        return (0.0, -min);
    }
    let error_of = |diff: f32| if use_mad { diff.abs() } else { diff * diff };

    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += weights[i] * error_of(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }

    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let (w, q) = (weights[i], q as f32);
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * error_of(diff);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// llama.cpp's `make_qx_quants` with `rmse_type = 1` and no importance weights (the only way the
/// reference quantizers call it): symmetric levels `-nmax..nmax-1` weighted by `x²`.
///
/// Tries the scale that maps the largest-magnitude value to `-nmax` and 18 scales around it,
/// each refit by weighted least squares, and keeps the one with the largest `sumlx² / suml2`
/// (equivalently the smallest weighted squared error). Writes `level + nmax` to `l`.
fn make_qx_quants(x: &[f32], nmax: i32, l: &mut [u8]) -> f32 {
    let (max, amax) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        l[..x.len()].fill(0);
        return 0.0;
    }
    // Weighted sums for the levels that `iscale` gives, written to `l` when `store`.
    let fit = |iscale: f32, l: Option<&mut [u8]>| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        let mut l = l;
        for (i, &v) in x.iter().enumerate() {
            let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            if let Some(l) = l.as_deref_mut() {
                l[i] = (q + nmax) as u8;
            }
            let (w, q) = (v * v, q as f32);
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };

    let (mut sumlx, mut suml2) = fit(-nmax as f32 / max, Some(&mut *l));
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        (sumlx, suml2) = fit(iscale, None);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            fit(iscale, Some(&mut *l));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// llama.cpp's `make_q3_quants` with `do_rmse`: symmetric levels `-nmax..nmax-1` from the
/// largest-magnitude value, then up to five passes of coordinate descent that move single values
/// to another level whenever that improves the `x²`-weighted fit. Writes `level + nmax` to `l`.
fn make_q3_quants(x: &[f32], nmax: i32, l: &mut [u8]) -> f32 {
    let (max, amax) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        l[..x.len()].fill(0);
        return 0.0;
    }
    let iscale = -nmax as f32 / max;
    let mut levels = [0i32; 16];
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (i, &v) in x.iter().enumerate() {
        let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        levels[i] = q;
        let w = v * v;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for (i, &v) in x.iter().enumerate() {
            let w = v * v;
            let old = levels[i] as f32;
            let mut slx = sumlx - w * v * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != levels[i] {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        levels[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for (l, q) in l.iter_mut().zip(&levels[..x.len()]) {
        *l = (q + nmax) as u8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Packs 2-bit levels as Q2_K/Q3_K store them: in each 128-value half, byte `l` of its 32 holds
/// values `l`, `l+32`, `l+64`, `l+96` in bit pairs 0, 2, 4, 6.
fn pack_2bit(levels: &[u8; QK_K]) -> [u8; QK_K / 4] {
    std::array::from_fn(|i| {
        let (j, l) = (i / 32 * 128, i % 32);
        levels[j + l] | (levels[j + l + 32] << 2) | (levels[j + l + 64] << 4) | (levels[j + l + 96] << 6)
    })
}

/// Re-quantizes each sub-block of `x` with the scale and min it will be decoded with,
/// `level = round((x + dm) / d)` clamped to `0..=nmax`; sub-blocks whose scale is 0 keep the
/// levels they already have, as in the C.
fn requantize_affine(x: &[f32], sub: usize, nmax: i32, levels: &mut [u8], d_dm: impl Fn(usize) -> (f32, f32)) {
    for (j, (xs, ls)) in x.chunks_exact(sub).zip(levels.chunks_exact_mut(sub)).enumerate() {
        let (d, dm) = d_dm(j);
        if d == 0.0 {
            continue;
        }
        for (l, &v) in ls.iter_mut().zip(xs) {
            *l = nearest_int((v + dm) / d).clamp(0, nmax) as u8;
        }
    }
}

/// Symmetric counterpart of [`requantize_affine`]: `level = round(x / d) + offset`, clamped to
/// `-offset..offset`.
fn requantize_symmetric(x: &[f32], offset: i32, levels: &mut [u8], d_of: impl Fn(usize) -> f32) {
    for (j, (xs, ls)) in x.chunks_exact(16).zip(levels.chunks_exact_mut(16)).enumerate() {
        let d = d_of(j);
        if d == 0.0 {
            continue;
        }
        for (l, &v) in ls.iter_mut().zip(xs) {
            *l = (nearest_int(v / d).clamp(-offset, offset - 1) + offset) as u8;
        }
    }
}

/// The largest of `values` that is positive, else 0 (the C's `if (v > max) max = v` from 0).
fn positive_max(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, &v| if v > m { v } else { m })
}

impl Quantize for BlockQ2K {
    /// 16 sub-blocks of 16: scales and mins by `make_qkx2_quants` weighted by `|x|` (absolute
    /// error), then each quantized to 4 bits against the largest.
    fn quantize(x: &[f32]) -> Self {
        const Q4SCALE: f32 = 15.0;
        let mut levels = [0u8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut mins = [0.0f32; QK_K / 16];
        let mut weights = [0.0f32; 16];
        for (j, xs) in x.chunks_exact(16).enumerate() {
            for (w, v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            (scales[j], mins[j]) =
                make_qkx2_quants(xs, &weights, 3, &mut levels[16 * j..16 * j + 16], -0.5, 0.1, 15, true);
        }
        let max_scale = positive_max(&scales);
        let max_min = positive_max(&mins);

        let mut b = BlockQ2K { scales: [0; QK_K / 16], qs: [0; QK_K / 4], d: f16::ZERO, dmin: f16::ZERO };
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (s, &sc) in b.scales.iter_mut().zip(&scales) {
                *s = nearest_int(iscale * sc) as u8;
            }
            b.d = f16::from_f32(max_scale / Q4SCALE);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (s, &m) in b.scales.iter_mut().zip(&mins) {
                *s |= (nearest_int(iscale * m) << 4) as u8;
            }
            b.dmin = f16::from_f32(max_min / Q4SCALE);
        }
        let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
        requantize_affine(x, 16, 3, &mut levels, |j| {
            (d * (b.scales[j] & 0xF) as f32, dmin * (b.scales[j] >> 4) as f32)
        });
        b.qs = pack_2bit(&levels);
        b
    }
}

impl Quantize for BlockQ3K {
    /// 16 sub-blocks of 16: signed scales by `make_q3_quants`, quantized to 6 bits against the
    /// one of largest magnitude; the third bit of each level goes to `hmask`.
    fn quantize(x: &[f32]) -> Self {
        let mut levels = [0u8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for (j, xs) in x.chunks_exact(16).enumerate() {
            scales[j] = make_q3_quants(xs, 4, &mut levels[16 * j..16 * j + 16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }

        let mut b = BlockQ3K { hmask: [0; QK_K / 8], qs: [0; QK_K / 4], scales: [0; 12], d: f16::ZERO };
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &sc) in scales.iter().enumerate() {
                // `int8_t l = nearest_int(..)`: a truncating store, then clamp and bias.
                let l = ((nearest_int(iscale * sc) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    b.scales[j] = l & 0xF;
                } else {
                    b.scales[j - 8] |= (l & 0xF) << 4;
                }
                b.scales[j % 4 + 8] |= (l >> 4) << (2 * (j / 4));
            }
            b.d = f16::from_f32(1.0 / iscale);
        }
        let d = b.d.to_f32();
        requantize_symmetric(x, 4, &mut levels, |j| d * (q3k_scale(&b.scales, j) - 32) as f32);

        // The high bit of value j goes to bit j/32 of hmask byte j%32.
        for (j, l) in levels.iter_mut().enumerate() {
            if *l > 3 {
                b.hmask[j % 32] |= 1 << (j / 32);
                *l -= 4;
            }
        }
        b.qs = pack_2bit(&levels);
        b
    }
}

/// Scales and mins of the 8 sub-blocks of 32 that Q4_K and Q5_K share: `make_qkx2_quants` with
/// weights `rms(x) + |x|` (squared error), then 6-bit scales and mins against the largest of each,
/// packed as `get_scale_min_k4` reads them. Returns the packed scales and the f16 `d`, `dmin`.
fn k4_scales(x: &[f32], nmax: i32, rmin: f32, nstep: i32, levels: &mut [u8; QK_K]) -> ([u8; K_SCALE_SIZE], f16, f16) {
    let mut scales = [0.0f32; QK_K / 32];
    let mut mins = [0.0f32; QK_K / 32];
    let mut weights = [0.0f32; 32];
    for (j, xs) in x.chunks_exact(32).enumerate() {
        let sum_x2 = xs.iter().fold(0.0f32, |s, v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        (scales[j], mins[j]) =
            make_qkx2_quants(xs, &weights, nmax, &mut levels[32 * j..32 * j + 32], rmin, 0.1, nstep, false);
    }
    let max_scale = positive_max(&scales);
    let max_min = positive_max(&mins);

    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; K_SCALE_SIZE];
    for j in 0..QK_K / 32 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    (packed, f16::from_f32(max_scale / 63.0), f16::from_f32(max_min / 63.0))
}

/// Re-quantizes Q4_K/Q5_K levels with the decoded 6-bit scales and mins.
fn k4_requantize(x: &[f32], nmax: i32, scales: &[u8; K_SCALE_SIZE], d: f16, dmin: f16, levels: &mut [u8]) {
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    requantize_affine(x, 32, nmax, levels, |j| {
        let (sc, m) = scale_min_k4(j, scales);
        (d * sc as f32, dmin * m as f32)
    });
}

impl Quantize for BlockQ4K {
    fn quantize(x: &[f32]) -> Self {
        let mut levels = [0u8; QK_K];
        let (scales, d, dmin) = k4_scales(x, 15, -1.0, 20, &mut levels);
        k4_requantize(x, 15, &scales, d, dmin, &mut levels);
        // Each 64 values: the first 32 in low nibbles, the next 32 in high nibbles.
        let qs = std::array::from_fn(|i| {
            let (j, l) = (i / 32 * 64, i % 32);
            levels[j + l] | (levels[j + l + 32] << 4)
        });
        BlockQ4K { d, dmin, scales, qs }
    }
}

impl Quantize for BlockQ5K {
    fn quantize(x: &[f32]) -> Self {
        let mut levels = [0u8; QK_K];
        let (scales, d, dmin) = k4_scales(x, 31, -0.5, 15, &mut levels);
        k4_requantize(x, 31, &scales, d, dmin, &mut levels);
        // As Q4_K for the low four bits; the fifth bit of value 64n+j (+32) is bit 2n (2n+1) of qh[j].
        let mut qh = [0u8; QK_K / 8];
        let qs = std::array::from_fn(|i| {
            let (n, j) = (i / 32, i % 32);
            let (l1, l2) = (levels[64 * n + j], levels[64 * n + j + 32]);
            qh[j] |= ((l1 >> 4) << (2 * n)) | ((l2 >> 4) << (2 * n + 1));
            (l1 & 0xF) | ((l2 & 0xF) << 4)
        });
        BlockQ5K { d, dmin, scales, qh, qs }
    }
}

impl Quantize for BlockQ6K {
    /// 16 sub-blocks of 16: scales by `make_qx_quants`, quantized to signed 8 bits against the one
    /// of largest magnitude (which maps to -128).
    fn quantize(x: &[f32]) -> Self {
        let mut levels = [0u8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for (j, xs) in x.chunks_exact(16).enumerate() {
            scales[j] = make_qx_quants(xs, 32, &mut levels[16 * j..16 * j + 16]);
            if scales[j].abs() > max_abs_scale {
                max_abs_scale = scales[j].abs();
                max_scale = scales[j];
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            return bytemuck::Zeroable::zeroed();
        }

        let iscale = -128.0 / max_scale;
        let d = f16::from_f32(1.0 / iscale);
        let sc: [i8; QK_K / 16] = std::array::from_fn(|j| nearest_int(iscale * scales[j]).min(127) as i8);
        let df = d.to_f32();
        requantize_symmetric(x, 32, &mut levels, |j| df * sc[j] as f32);

        // Per 128-value half: ql bytes 0..32 hold values l (low) and l+64 (high nibble), bytes
        // 32..64 values l+32 and l+96; qh byte l holds the top two bits of all four.
        let mut ql = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 4];
        for h in 0..2 {
            let lv = &levels[128 * h..][..128];
            for l in 0..32 {
                let q = [lv[l], lv[l + 32], lv[l + 64], lv[l + 96]];
                ql[64 * h + l] = (q[0] & 0xF) | ((q[2] & 0xF) << 4);
                ql[64 * h + l + 32] = (q[1] & 0xF) | ((q[3] & 0xF) << 4);
                qh[32 * h + l] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
            }
        }
        BlockQ6K { ql, qh, scales: sc, d }
    }
}
