//! The CPU reference formats against golden data made by llama.cpp's own code (see
//! tests/data/README.md), plus properties the quantizers and dot products must have.

use std::path::PathBuf;

use wgquant::format::dequant::{dequantize, dequantize_to_vec};
use wgquant::format::dot::{dot_row, matmul, matvec};
use wgquant::format::quant::quantize;
use wgquant::{Error, GgmlType};

fn golden(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn golden_f32(name: &str) -> Vec<f32> {
    golden(name).chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

/// The first index where two f32 slices differ bit for bit, with both values.
fn first_bit_difference(a: &[f32], b: &[f32]) -> Option<(usize, f32, f32)> {
    a.iter().zip(b).enumerate().find(|(_, (x, y))| x.to_bits() != y.to_bits()).map(|(i, (x, y))| (i, *x, *y))
}

#[test]
fn dequantize_matches_golden_bit_for_bit() {
    for ty in GgmlType::all() {
        if ty == GgmlType::F32 {
            continue; // no golden file: F32 "dequantization" is a copy, checked below
        }
        let blocks = golden(&format!("{ty}.blocks"));
        let want = golden_f32(&format!("{ty}.f32"));
        let got = dequantize_to_vec(ty, &blocks).unwrap();
        assert_eq!(got.len(), want.len(), "{ty}");
        if let Some((i, g, w)) = first_bit_difference(&got, &want) {
            panic!("{ty}: element {i} (block {}) is {g:e} ({:#010x}), golden {w:e} ({:#010x})",
                i / ty.block_elems(), g.to_bits(), w.to_bits());
        }
    }
}

#[test]
fn dequantize_f32_is_a_copy() {
    let x = [1.5f32, -0.0, f32::MIN_POSITIVE, 3.25e7];
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let got = dequantize_to_vec(GgmlType::F32, &bytes).unwrap();
    assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), x.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
}

#[test]
fn dequantize_rejects_wrong_lengths() {
    for ty in GgmlType::all() {
        let bb = ty.block_bytes();
        let be = ty.block_elems();
        let src = vec![0u8; 2 * bb];
        // Not a whole number of blocks.
        assert!(matches!(dequantize_to_vec(ty, &src[..2 * bb - 1]), Err(Error::Shape(_))), "{ty}");
        // Output too short and too long.
        assert!(matches!(dequantize(ty, &src, &mut vec![0.0; 2 * be - 1]), Err(Error::Shape(_))), "{ty}");
        assert!(matches!(dequantize(ty, &src, &mut vec![0.0; 2 * be + 1]), Err(Error::Shape(_))), "{ty}");
        assert!(dequantize(ty, &src, &mut vec![0.0; 2 * be]).is_ok(), "{ty}");
        assert!(dequantize_to_vec(ty, &[]).unwrap().is_empty());
    }
}

/// A deterministic pseudo-random f32 in [-1, 1) (xorshift), so tests need no extra crates.
struct Rng(u64);
impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }
}

/// `sum |w_i x_i|` in f64: the scale against which a dot product's rounding error is measured.
fn abs_dot(w: &[f32], x: &[f32]) -> f64 {
    w.iter().zip(x).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum()
}

fn exact_dot(w: &[f32], x: &[f32]) -> f64 {
    w.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum()
}

#[test]
fn dot_row_equals_dequantize_then_dot() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for ty in GgmlType::all() {
        if ty == GgmlType::F32 {
            continue;
        }
        // The golden blocks are real and random blocks; treat them as rows of 512 elements.
        let blocks = golden(&format!("{ty}.blocks"));
        let w = dequantize_to_vec(ty, &blocks).unwrap();
        let row_len = 512.min(w.len());
        let row_bytes = ty.row_bytes(row_len).unwrap();
        for (row, w) in blocks.chunks_exact(row_bytes).zip(w.chunks_exact(row_len)) {
            if w.iter().any(|v| !v.is_finite()) {
                continue;
            }
            let x = rng.vec(row_len);
            let got = dot_row(ty, row, &x).unwrap() as f64;
            let want = exact_dot(w, &x);
            let scale = abs_dot(w, &x).max(f64::MIN_POSITIVE);
            assert!((got - want).abs() <= 1e-5 * scale, "{ty}: dot {got} vs {want} (scale {scale})");
        }
    }
}

#[test]
fn matvec_and_matmul_equal_dot_row() {
    let mut rng = Rng(42);
    let ty = GgmlType::Q4_K;
    let blocks = golden("Q4_K.blocks"); // 64 blocks: 16 rows of 1024
    let (row_len, n_rows) = (1024, 16);
    let row_bytes = ty.row_bytes(row_len).unwrap();
    let n_cols = 3;
    let x = rng.vec(n_cols * row_len);

    let mut y = vec![0.0; n_rows];
    matvec(ty, &blocks, row_len, &x[..row_len], &mut y).unwrap();
    for (r, row) in blocks.chunks_exact(row_bytes).enumerate() {
        assert_eq!(y[r], dot_row(ty, row, &x[..row_len]).unwrap());
    }

    let mut ym = vec![0.0; n_cols * n_rows];
    matmul(ty, &blocks, row_len, &x, n_cols, &mut ym).unwrap();
    for c in 0..n_cols {
        let xc = &x[c * row_len..][..row_len];
        for (r, row) in blocks.chunks_exact(row_bytes).enumerate() {
            let want = dot_row(ty, row, xc).unwrap();
            let got = ym[c * n_rows + r];
            assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "col {c} row {r}: {got} vs {want}");
        }
    }
}

#[test]
fn dot_and_matvec_reject_wrong_lengths() {
    let ty = GgmlType::Q8_0;
    let row = vec![0u8; 2 * 34];
    assert!(dot_row(ty, &row, &[0.0; 64]).is_ok());
    assert!(matches!(dot_row(ty, &row, &[0.0; 63]), Err(Error::Shape(_))));
    assert!(matches!(dot_row(ty, &row, &[0.0; 32]), Err(Error::Shape(_))));
    assert!(matches!(dot_row(ty, &row[..67], &[0.0; 64]), Err(Error::Shape(_))));
    let mut y = vec![0.0; 2];
    assert!(matches!(matvec(ty, &row, 32, &[0.0; 32], &mut y), Ok(())));
    assert!(matches!(matvec(ty, &row, 32, &[0.0; 31], &mut y), Err(Error::Shape(_))));
    assert!(matches!(matvec(ty, &row, 32, &[0.0; 32], &mut y[..1]), Err(Error::Shape(_))));
    assert!(matches!(matvec(ty, &row, 48, &[0.0; 48], &mut y[..1]), Err(Error::Shape(_))));
    assert!(matches!(matvec(ty, &row, 0, &[], &mut y), Err(Error::Shape(_))));
    assert!(matches!(matmul(ty, &row, 32, &[0.0; 64], 2, &mut [0.0; 4]), Ok(())));
    assert!(matches!(matmul(ty, &row, 32, &[0.0; 64], 2, &mut [0.0; 3]), Err(Error::Shape(_))));
    assert!(matches!(matmul(ty, &row, 32, &[0.0; 60], 2, &mut [0.0; 4]), Err(Error::Shape(_))));
    assert!(matches!(matmul(ty, &row, 32, &[0.0; 64], 0, &mut []), Err(Error::Shape(_))));
}

fn check_quantizer(ty: GgmlType, input: &str, golden_blocks: &str) {
    let x = golden_f32(input);
    let want = golden(golden_blocks);
    let got = quantize(ty, &x, 256).unwrap();
    assert_eq!(got.len(), want.len(), "{ty}");
    let bb = ty.block_bytes();
    let bad: Vec<usize> = (0..want.len() / bb).filter(|&b| got[b * bb..][..bb] != want[b * bb..][..bb]).collect();
    assert!(bad.is_empty(), "{ty}: {} of {} blocks differ from llama.cpp's, first {:?}\n got  {:02x?}\n want {:02x?}",
        bad.len(), want.len() / bb, bad.first(), &got[bad[0] * bb..][..bb], &want[bad[0] * bb..][..bb]);
}

#[test]
fn legacy_quantizers_match_golden_bit_for_bit() {
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0] {
        check_quantizer(ty, &format!("quant_{ty}.in.f32"), &format!("quant_{ty}.blocks"));
    }
}

#[test]
fn kquant_quantizers_match_llama_cpp_bit_for_bit() {
    for ty in [GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
        check_quantizer(ty, "kquant.in.f32", &format!("kquant_{ty}.blocks"));
    }
}

#[test]
fn iq4_quantizers_match_llama_cpp_bit_for_bit() {
    for ty in [GgmlType::IQ4_NL, GgmlType::IQ4_XS] {
        check_quantizer(ty, "kquant.in.f32", &format!("kquant_{ty}.blocks"));
    }
}

/// Root-mean-square of `a - b`.
fn rmse(a: &[f32], b: &[f32]) -> f64 {
    (a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
}

fn rms(a: &[f32]) -> f64 {
    (a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
}

/// Plain rounding baseline: each sub-block of `sub` values rounded to `levels` evenly spaced
/// levels, with an exact f32 scale taken from the sub-block's min and max (`affine`), or from its
/// largest-magnitude value mapped to the lowest level (symmetric, ggml's convention). Exact f32
/// scales make this baseline slightly *better* than the same rounding in the real format.
fn minmax_round(x: &[f32], sub: usize, levels: i32, affine: bool) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for xs in x.chunks_exact(sub) {
        let min = xs.iter().cloned().fold(f32::INFINITY, f32::min);
        let max = xs.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        if affine {
            let d = (max - min) / (levels - 1) as f32;
            out.extend(xs.iter().map(|&v| if d == 0.0 { v } else { min + d * ((v - min) / d).round() }));
        } else {
            let m = if max.abs() > min.abs() { max } else { min };
            let d = m / -(levels / 2) as f32;
            out.extend(xs.iter().map(|&v| {
                if d == 0.0 { v } else { d * (v / d).round().clamp(-(levels / 2) as f32, (levels / 2 - 1) as f32) }
            }));
        }
    }
    out
}

#[test]
fn zz_measure() {
    let x = golden_f32("kquant.in.f32");
    for (ty, sub, levels, affine) in [(GgmlType::Q2_K, 16, 4, true), (GgmlType::Q3_K, 16, 8, false), (GgmlType::Q4_K, 32, 16, true), (GgmlType::Q5_K, 32, 32, true), (GgmlType::Q6_K, 16, 64, false), (GgmlType::IQ4_NL, 32, 16, false), (GgmlType::IQ4_XS, 32, 16, false)] {
        let q = quantize(ty, &x, 256).unwrap();
        let y = dequantize_to_vec(ty, &q).unwrap();
        let b = minmax_round(&x, sub, levels, affine);
        let mut worst: f64 = 0.0; let mut worst_b: f64 = 0.0; let mut maxrel: f64 = 0.0;
        for r in 0..32 {
            let (xr, yr, br) = (&x[r*256..][..256], &y[r*256..][..256], &b[r*256..][..256]);
            let e = rmse(xr, yr) / rms(xr); let eb = rmse(xr, br) / rms(xr);
            worst = worst.max(e); worst_b = worst_b.max(eb); maxrel = maxrel.max(e / eb);
            let amax = xr.iter().fold(0f32, |a, v| a.max(v.abs()));
            let maxerr = xr.iter().zip(yr).fold(0f32, |a, (p, q)| a.max((p - q).abs())) / amax;
            if r % 8 == 0 { println!("{ty} row {r}: rel rmse {e:.4} baseline {eb:.4} maxerr/amax {maxerr:.4}"); }
        }
        println!("{ty}: worst rel rmse {worst:.4}, baseline worst {worst_b:.4}, max ratio {maxrel:.3}  total {:.4} vs {:.4}", rmse(&x, &y)/rms(&x), rmse(&x,&b)/rms(&x));
    }
}
