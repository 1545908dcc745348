//! IQ4_NL and IQ4_XS, as llama.cpp's `quantize_row_iq4_nl_impl` called the way
//! `ggml_quantize_chunk` calls it without an importance matrix (`ntry = 7`, weights `x²`).
//!
//! Values are indices into the non-linear grid [`KVALUES_IQ4NL`]. Each sub-block of 32 gets the
//! scale that, among 15 candidates around `max / -127`, best fits the grid in the `x²`-weighted
//! least-squares sense. IQ4_NL stores that scale as the block's f16; IQ4_XS quantizes the eight
//! sub-block scales to 6 bits against one f16 super-block scale.

use half::f16;

use super::{nearest_int, signed_abs_max, Quantize, GROUP_MAX_EPS};
use crate::format::blocks::*;

/// Candidate scales tried on each side of the first guess (llama.cpp's `ntry`).
const NTRY: i32 = 7;

/// llama.cpp's `best_index_int8`: the index of the grid value nearest `x` (the upper one on
/// ties), by bisection over the sorted grid.
fn best_index(x: f32) -> u8 {
    let val = &KVALUES_IQ4NL;
    if x <= val[0] as f32 {
        return 0;
    }
    if x >= val[15] as f32 {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < val[mav] as f32 {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - (val[mu - 1] as f32) < val[mu] as f32 - x {
        (mu - 1) as u8
    } else {
        mu as u8
    }
}

/// `x²`-weighted sums `(Σ w q x, Σ w q²)` of `x` mapped to the grid with inverse scale `id`,
/// the grid indices written to `l` if given.
fn grid_fit(xb: &[f32], id: f32, mut l: Option<&mut [u8]>) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for (j, &v) in xb.iter().enumerate() {
        let idx = best_index(id * v);
        if let Some(l) = l.as_deref_mut() {
            l[j] = idx;
        }
        let q = KVALUES_IQ4NL[idx as usize] as f32;
        let w = v * v;
        sumqx += w * q * v;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// The least-squares scale of one sub-block of 32, or 0 for an all-zero sub-block: first the
/// scale that maps the largest-magnitude value to the grid's end, refit, then the candidates
/// `max / (itry - 127)` for `itry` in `-NTRY..=NTRY`, keeping the best fit. Fills `l` with the
/// first guess's indices (callers recompute them with the final, stored scale).
fn sub_block_scale(xb: &[f32], l: &mut [u8]) -> f32 {
    let (max, amax) = signed_abs_max(xb);
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let v0 = KVALUES_IQ4NL[0] as f32;
    let d = -max / v0;
    let (sumqx, sumq2) = grid_fit(xb, 1.0 / d, Some(l));
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -NTRY..=NTRY {
        let id = (itry + KVALUES_IQ4NL[0] as i32) as f32 / max;
        let (sumqx, sumq2) = grid_fit(xb, id, None);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// Packs 32 indices per 16 bytes: index `j` in the low nibble of byte `j`, `j + 16` high.
fn pack(levels: &[u8], qs: &mut [u8]) {
    for (q, l) in qs.chunks_exact_mut(16).zip(levels.chunks_exact(32)) {
        for j in 0..16 {
            q[j] = l[j] | (l[j + 16] << 4);
        }
    }
}

/// Reciprocal of a scale, 0 for a zero scale.
fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

impl Quantize for BlockIQ4NL {
    fn quantize(x: &[f32]) -> Self {
        let mut levels = [0u8; 32];
        let d = sub_block_scale(x, &mut levels);
        let id = inverse(d);
        for (l, &v) in levels.iter_mut().zip(x) {
            *l = best_index(id * v);
        }
        let mut qs = [0u8; 16];
        pack(&levels, &mut qs);
        BlockIQ4NL { d: f16::from_f32(d), qs }
    }
}

impl Quantize for BlockIQ4XS {
    fn quantize(x: &[f32]) -> Self {
        let mut levels = [0u8; QK_K];
        let mut scales = [0.0f32; QK_K / 32];
        let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
        for (ib, xb) in x.chunks_exact(32).enumerate() {
            scales[ib] = sub_block_scale(xb, &mut levels[32 * ib..32 * ib + 32]);
            if scales[ib].abs() > amax_scale {
                amax_scale = scales[ib].abs();
                max_scale = scales[ib];
            }
        }

        // 6-bit signed sub-block scales against d = max_scale / -32; values re-fit to the grid
        // with the scale they will be decoded with.
        let d = -max_scale / 32.0;
        let id = inverse(d);
        let (mut scales_h, mut scales_l) = (0u16, [0u8; QK_K / 64]);
        for (ib, xb) in x.chunks_exact(32).enumerate() {
            let l = nearest_int(id * scales[ib]).clamp(-32, 31);
            let idl = inverse(d * l as f32);
            for (lv, &v) in levels[32 * ib..32 * ib + 32].iter_mut().zip(xb) {
                *lv = best_index(idl * v);
            }
            let l = (l + 32) as u8;
            scales_l[ib / 2] |= (l & 0xF) << (4 * (ib % 2));
            scales_h |= ((l >> 4) as u16) << (2 * ib);
        }
        let mut qs = [0u8; QK_K / 2];
        pack(&levels, &mut qs);
        BlockIQ4XS { d: f16::from_f32(d), scales_h, scales_l, qs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_index_picks_nearest_grid_value() {
        assert_eq!(best_index(-200.0), 0);
        assert_eq!(best_index(200.0), 15);
        assert_eq!(best_index(0.0), 8); // nearer 1 than -10
        assert_eq!(best_index(-4.5), 8); // a tie between -10 and 1 goes up
        assert_eq!(best_index(-4.6), 7);
        assert_eq!(best_index(112.0), 15);
    }
}
