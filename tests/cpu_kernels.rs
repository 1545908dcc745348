//! The CPU's integer kernels (`wgquant::cpu`) against the scalar reference: for every quantized
//! format, at every instruction level this CPU has (the portable one included), on odd shapes (odd row counts,
//! rows of one and of several blocks, one column and several), the same products as
//! `format::dot::matmul` fed the same 8-bit activations, up to the order of f32 sums, and every
//! level the portable one's results bit for bit.

use wgquant::cpu::simd::Level;
use wgquant::cpu::{has_kernel, matmul_at, Q8Activations};
use wgquant::format::dequant::dequantize_to_vec;
use wgquant::format::dot::{matmul, quantize_activations};
use wgquant::format::random::random_blocks;
use wgquant::GgmlType;

/// Deterministic activations in [-1, 1), with a few outliers as real activations have.
fn activations(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v = (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
            if i % 97 == 0 {
                20.0 * v
            } else {
                v
            }
        })
        .collect()
}

#[test]
fn integer_kernels_equal_the_scalar_reference_on_rounded_activations() {
    let levels = Level::available();
    eprintln!("levels: {:?}", levels);
    let formats: Vec<GgmlType> = GgmlType::all().filter(|&ty| has_kernel(ty)).collect();
    assert_eq!(formats.len(), 12, "every quantized format has an integer kernel: {formats:?}");
    for ty in formats {
        let qk = ty.block_elems();
        // A prompt's tasks are whole tiles of four rows (at least one), so 37 and 19 rows reach
        // full tiles and short ones (1 and 3 rows), 5 rows a tile and a row; 13 blocks of 32
        // leave a short unit after a whole one, decoded into scratch memory a whole unit wrote.
        for (rows, blocks) in [(37, 1), (5, 3), (19, if qk == 32 { 13 } else { 2 })] {
            let row_len = qk * blocks;
            let weights = random_blocks(ty, (rows * row_len) as u64, rows as u64 + 7).unwrap();
            let w = dequantize_to_vec(ty, &weights).unwrap();
            for n_cols in [1, 3, 35] {
                let x = activations(n_cols * row_len, (rows * n_cols) as u64);
                let rounded = quantize_activations(&x);
                let mut want = vec![0.0f32; n_cols * rows];
                matmul(ty, &weights, row_len, &rounded, n_cols, &mut want).unwrap();
                let q8 = Q8Activations::quantize(&x, row_len).unwrap();
                let mut portable = vec![f32::NAN; n_cols * rows];
                matmul_at(Level::Portable, ty, &weights, &q8, &mut portable).unwrap();
                for &level in &levels {
                    let mut got = vec![f32::NAN; n_cols * rows];
                    matmul_at(level, ty, &weights, &q8, &mut got).unwrap();
                    // The SIMD forms keep the portable one's integer sums and order of float
                    // operations: the same bits.
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&portable), "{ty} {level:?} rows {rows} × {row_len}, {n_cols} columns");
                    for c in 0..n_cols {
                        for r in 0..rows {
                            let wr = &w[r * row_len..(r + 1) * row_len];
                            let xr = &rounded[c * row_len..(c + 1) * row_len];
                            let scale: f32 = wr.iter().zip(xr).map(|(a, b)| (a * b).abs()).sum();
                            let (g, e) = (got[c * rows + r], want[c * rows + r]);
                            assert!(
                                (g - e).abs() <= 1e-5 * scale + 1e-6,
                                "{ty} {level:?} rows {rows} × {row_len}, column {c}, row {r}: {g} vs {e} (Σ|wx| {scale})"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    assert!(Q8Activations::quantize(&[0.0; 48], 48).is_err(), "rows must be whole blocks of 32");
    let x = Q8Activations::quantize(&[0.5; 64], 32).unwrap();
    assert_eq!(x.n_cols(), 2);
    let weights = random_blocks(GgmlType::Q8_0, 32 * 3, 1).unwrap();
    let mut y = vec![0.0; 5];
    assert!(matmul_at(Level::Portable, GgmlType::Q8_0, &weights, &x, &mut y).is_err(), "5 outputs for 2 columns");
    let mut y = vec![0.0; 4];
    assert!(matmul_at(Level::Portable, GgmlType::Q8_0, &weights, &x, &mut y).is_err(), "3 rows, 2 outputs a column");
    assert!(matmul_at(Level::Portable, GgmlType::F16, &weights, &x, &mut [0.0; 6]).is_err());
}
