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
            panic!(
                "{ty}: element {i} (block {}) is {g:e} ({:#010x}), golden {w:e} ({:#010x})",
                i / ty.block_elems(),
                g.to_bits(),
                w.to_bits()
            );
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
        // The golden blocks are real and random blocks; treat them as rows of 512 elements (F32,
        // which has no golden file, gets random values).
        let blocks = if ty == GgmlType::F32 {
            rng.vec(2048).iter().flat_map(|v| v.to_le_bytes()).collect()
        } else {
            golden(&format!("{ty}.blocks"))
        };
        let w = dequantize_to_vec(ty, &blocks).unwrap();
        let row_len = 512.min(w.len());
        let row_bytes = ty.row_bytes(row_len).unwrap();
        let mut checked = 0;
        for (row, w) in blocks.chunks_exact(row_bytes).zip(w.chunks_exact(row_len)) {
            if w.iter().any(|v| !v.is_finite()) {
                continue;
            }
            checked += 1;
            let x = rng.vec(row_len);
            let got = dot_row(ty, row, &x).unwrap() as f64;
            let want = exact_dot(w, &x);
            let scale = abs_dot(w, &x).max(f64::MIN_POSITIVE);
            assert!((got - want).abs() <= 1e-5 * scale, "{ty}: dot {got} vs {want} (scale {scale})");
        }
        assert!(checked > 0, "{ty}: no finite rows to check");
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
    assert!(
        bad.is_empty(),
        "{ty}: {} of {} blocks differ from llama.cpp's, first {:?}\n got  {:02x?}\n want {:02x?}",
        bad.len(),
        want.len() / bb,
        bad.first(),
        &got[bad[0] * bb..][..bb],
        &want[bad[0] * bb..][..bb]
    );
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

/// How a format stores a sub-block, for the plain-rounding baseline.
#[derive(Clone, Copy)]
enum Grid {
    /// Levels `0..=nmax` with a non-positive min: `d * q - m`.
    Affine { nmax: i32 },
    /// Levels `-half..half` of a linear grid: `d * q`.
    Symmetric { half: i32 },
    /// The IQ4 non-linear grid.
    Iq4,
}

/// Layout of a format for the plain-rounding baseline: sub-block size, its grid, and the bits
/// of the quantized sub-block scales (0 = the sub-block scale itself is the stored f16).
struct Layout {
    sub: usize,
    grid: Grid,
    scale_bits: u32,
}

fn layout(ty: GgmlType) -> Layout {
    use GgmlType::*;
    let (sub, grid, scale_bits) = match ty {
        Q2_K => (16, Grid::Affine { nmax: 3 }, 4),
        Q3_K => (16, Grid::Symmetric { half: 4 }, 6),
        Q4_K => (32, Grid::Affine { nmax: 15 }, 6),
        Q5_K => (32, Grid::Affine { nmax: 31 }, 6),
        Q6_K => (16, Grid::Symmetric { half: 32 }, 8),
        IQ4_NL => (32, Grid::Iq4, 0),
        IQ4_XS => (32, Grid::Iq4, 6),
        _ => unreachable!(),
    };
    Layout { sub, grid, scale_bits }
}

const IQ4_GRID: [f32; 16] = [-127., -104., -83., -65., -49., -35., -22., -10., 1., 13., 25., 38., 53., 69., 89., 113.];

fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// Quantizes a list of sub-block scales the way the format stores them: one f16 super-scale
/// from the largest (by magnitude), each scale rounded to a multiple of it within `bits` bits
/// (signed for symmetric grids, whose scales may be negative).
fn quantize_scales(s: &[f32], bits: u32, signed: bool) -> Vec<f32> {
    if bits == 0 {
        return s.iter().map(|&v| f16_round(v)).collect();
    }
    let m = s.iter().cloned().fold(0.0f32, |a, v| if v.abs() > a.abs() { v } else { a });
    let top = if signed { -((1 << (bits - 1)) as f32) } else { ((1 << bits) - 1) as f32 };
    let d = f16_round(m / top);
    let (lo, hi) = if signed { (top, -top - 1.0) } else { (0.0, top) };
    s.iter().map(|&v| if d == 0.0 { 0.0 } else { d * (v / d).round().clamp(lo, hi) }).collect()
}

/// Plain min/max rounding in the same format as `ty`: each sub-block's scale (and min) taken
/// from its extremes, those quantized as the format stores them, then every value rounded to the
/// nearest level. This is what the k-quants' least-squares search must beat.
fn minmax_round(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let Layout { sub, grid, scale_bits } = layout(ty);
    let mut out = Vec::with_capacity(x.len());
    for sb in x.chunks_exact(256.max(sub)) {
        let subs: Vec<&[f32]> = sb.chunks_exact(sub).collect();
        let max_of = |xs: &[f32]| xs.iter().cloned().fold(0.0f32, |a, v| if v.abs() > a.abs() { v } else { a });
        match grid {
            Grid::Affine { nmax } => {
                let mins: Vec<f32> = subs.iter().map(|xs| xs.iter().cloned().fold(0.0f32, f32::min)).collect();
                let maxs: Vec<f32> =
                    subs.iter().map(|xs| xs.iter().cloned().fold(f32::NEG_INFINITY, f32::max)).collect();
                let d: Vec<f32> = maxs.iter().zip(&mins).map(|(a, b)| (a - b) / nmax as f32).collect();
                let d = quantize_scales(&d, scale_bits, false);
                let neg_min: Vec<f32> = mins.iter().map(|m| -m).collect();
                let m = quantize_scales(&neg_min, scale_bits, false);
                for (j, xs) in subs.iter().enumerate() {
                    out.extend(xs.iter().map(|&v| {
                        let q = if d[j] == 0.0 { 0.0 } else { ((v + m[j]) / d[j]).round().clamp(0.0, nmax as f32) };
                        d[j] * q - m[j]
                    }));
                }
            }
            Grid::Symmetric { half } => {
                let d: Vec<f32> = subs.iter().map(|xs| max_of(xs) / -(half as f32)).collect();
                let d = quantize_scales(&d, scale_bits, true);
                for (j, xs) in subs.iter().enumerate() {
                    out.extend(xs.iter().map(|&v| {
                        let q =
                            if d[j] == 0.0 { 0.0 } else { (v / d[j]).round().clamp(-half as f32, (half - 1) as f32) };
                        d[j] * q
                    }));
                }
            }
            Grid::Iq4 => {
                let d: Vec<f32> = subs.iter().map(|xs| max_of(xs) / -127.0).collect();
                let d = quantize_scales(&d, scale_bits, true);
                for (j, xs) in subs.iter().enumerate() {
                    out.extend(xs.iter().map(|&v| {
                        let t = if d[j] == 0.0 { 0.0 } else { v / d[j] };
                        let q =
                            IQ4_GRID.iter().cloned().min_by(|a, b| (a - t).abs().total_cmp(&(b - t).abs())).unwrap();
                        d[j] * q
                    }));
                }
            }
        }
    }
    out
}

/// The rows the quantizer properties are checked on: the 32 golden rows (random values, real
/// Gemma weights, and Q4_K-dequantized weights), then 64 rows of pseudo-random bell-shaped values
/// with occasional 8x outliers, as real weight rows have.
fn property_rows() -> Vec<Vec<f32>> {
    let mut rng = Rng(7);
    let random: Vec<f32> = (0..64 * 256)
        .map(|i| {
            let g = rng.next_f32() + rng.next_f32() + rng.next_f32();
            if i % 97 == 0 {
                8.0 * g
            } else {
                g
            }
        })
        .collect();
    vec![golden_f32("kquant.in.f32"), random]
}

const KQUANTS: [GgmlType; 7] = [
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

/// Over a whole set of rows, the least-squares k-quants (and IQ4) have no more error than plain
/// min/max rounding in the same format. Single rows may lose a little, because the search
/// minimises a *weighted* error (weights |x|, x² or rms+|x| depending on the format), not the plain
/// RMSE measured here; they stay within 25% of the baseline.
#[test]
fn kquants_beat_plain_minmax_rounding() {
    for x in property_rows() {
        for ty in KQUANTS {
            let y = dequantize_to_vec(ty, &quantize(ty, &x, 256).unwrap()).unwrap();
            let b = minmax_round(ty, &x);
            let (e, eb) = (rmse(&x, &y), rmse(&x, &b));
            assert!(e <= eb, "{ty}: RMSE {e:.6} is worse than plain rounding's {eb:.6}");
            for (r, ((xr, yr), br)) in x.chunks(256).zip(y.chunks(256)).zip(b.chunks(256)).enumerate() {
                let (e, eb) = (rmse(xr, yr), rmse(xr, br));
                assert!(e <= 1.25 * eb, "{ty} row {r}: RMSE {e:.6} vs plain rounding's {eb:.6}");
            }
        }
    }
}

/// Quantize → dequantize error of every format, per 256-value row, relative to the row:
/// `(max RMSE / RMS, max |error| / max |x|)`. For the block formats these are the worst seen on
/// the property rows with about 20% margin (roughly halving per bit; symmetric formats lose a
/// level to the sign and do worse than affine ones of the same bits). For F16 and BF16 they are
/// the exact half-ulp bounds of round-to-nearest (2^-11, 2^-8).
fn round_trip_bound(ty: GgmlType) -> (f64, f64) {
    use GgmlType::*;
    match ty {
        Q4_0 => (0.22, 0.15),
        Q4_1 => (0.13, 0.08),
        Q5_0 => (0.11, 0.075),
        Q5_1 => (0.065, 0.04),
        Q8_0 => (0.014, 0.005),
        Q2_K => (0.53, 0.37),
        Q3_K => (0.29, 0.23),
        Q4_K => (0.125, 0.086),
        Q5_K => (0.062, 0.039),
        Q6_K => (0.04, 0.035),
        IQ4_NL | IQ4_XS => (0.17, 0.103),
        F32 => (0.0, 0.0),
        F16 => (2f64.powi(-11), 2f64.powi(-11)),
        BF16 => (2f64.powi(-8), 2f64.powi(-8)),
    }
}

#[test]
fn round_trips_stay_within_format_bounds() {
    for x in property_rows() {
        for ty in GgmlType::all() {
            let (rmse_bound, max_bound) = round_trip_bound(ty);
            let y = dequantize_to_vec(ty, &quantize(ty, &x, 256).unwrap()).unwrap();
            for (r, (xr, yr)) in x.chunks(256).zip(y.chunks(256)).enumerate() {
                let amax = xr.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
                let max_err = xr.iter().zip(yr).fold(0.0f64, |a, (p, q)| a.max((p - q).abs() as f64));
                let rel = if rms(xr) > 0.0 { rmse(xr, yr) / rms(xr) } else { rmse(xr, yr) };
                assert!(rel <= rmse_bound, "{ty} row {r}: relative RMSE {rel:.5} > {rmse_bound}");
                assert!(
                    max_err <= max_bound * amax,
                    "{ty} row {r}: max error {:.5} of max |x| > {max_bound}",
                    max_err / amax
                );
            }
        }
    }
}

#[test]
fn float_formats_quantize_like_ggml() {
    // The golden f16/bf16 values are exactly representable, so converting back must restore the bits.
    for ty in [GgmlType::F16, GgmlType::BF16] {
        let x = golden_f32(&format!("{ty}.f32"));
        assert_eq!(quantize(ty, &x, 256).unwrap(), golden(&format!("{ty}.blocks")), "{ty}");
    }
    let x = [1.0f32, -2.5, 1.0 + f32::EPSILON];
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(quantize(GgmlType::F32, &x, 3).unwrap(), bytes);
    // Ties round to even: 1 + 2^-11 is halfway between two f16s and rounds down to 1.0.
    let h = quantize(GgmlType::F16, &[1.0 + 2f32.powi(-11)], 1).unwrap();
    assert_eq!(u16::from_le_bytes([h[0], h[1]]), 0x3c00);
}

#[test]
fn quantize_rejects_wrong_lengths() {
    for ty in GgmlType::all() {
        let be = ty.block_elems();
        let x = vec![0.5f32; 4 * be];
        assert_eq!(quantize(ty, &x, 2 * be).unwrap().len(), 4 * ty.block_bytes(), "{ty}");
        assert!(matches!(quantize(ty, &x, 0), Err(Error::Shape(_))), "{ty}");
        assert!(matches!(quantize(ty, &x, 3 * be), Err(Error::Shape(_))), "{ty}");
        if be > 1 {
            assert!(matches!(quantize(ty, &x[..be + 1], be + 1), Err(Error::Shape(_))), "{ty}");
        }
    }
}

/// Weights read from a file can hold anything: the quantizers must not panic (or overflow in
/// debug builds) on NaN, infinities, huge or denormal values, and the results must decode.
#[test]
fn quantizers_survive_non_finite_input() {
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -f32::MAX, 1e-40, -0.0, 0.0];
    for ty in GgmlType::all() {
        for &s in &specials {
            // One special value among ordinary ones, and a row of nothing but the special value.
            let mut x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin()).collect();
            x[5] = s;
            x[256..].fill(s);
            let q = quantize(ty, &x, 256).unwrap();
            assert_eq!(dequantize_to_vec(ty, &q).unwrap().len(), 512, "{ty} with {s}");
        }
    }
}
