//! Random but valid blocks of any format, made fast and without a quantizer search: the weights of
//! stand-in models that benchmarks time. Zero-filled weights would flatter a GPU, which may
//! compress zero pages, and would make every decoded product zero.
//!
//! A quantized block is random bytes with its f16 scale fields (the table's `f16_scales`) set to
//! small finite numbers, so every quant, sub-block scale and sign is random and every weight
//! finite. Float formats get random values in (-1/16, 1/16).

use half::{bf16, f16};
use rayon::prelude::*;

use super::GgmlType;
use crate::error::Result;
use crate::rng::SplitMix64;

/// Blocks made by one rayon task (about 1 MiB of output for most formats).
const TASK_BLOCKS: usize = 8192;

/// `n_elems` elements of `ty` (a whole number of blocks), deterministic in `seed`.
pub fn random_blocks(ty: GgmlType, n_elems: u64, seed: u64) -> Result<Vec<u8>> {
    let mut out = vec![0u8; ty.bytes_for(n_elems)? as usize];
    let task_bytes = TASK_BLOCKS * ty.block_bytes();
    out.par_chunks_mut(task_bytes).enumerate().for_each(|(i, chunk)| {
        let mut rng = SplitMix64(seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        fill(ty, chunk, &mut rng);
    });
    Ok(out)
}

fn fill(ty: GgmlType, out: &mut [u8], rng: &mut SplitMix64) {
    let small = |rng: &mut SplitMix64| rng.signed_unit() / 16.0;
    match ty {
        GgmlType::F32 => out.chunks_exact_mut(4).for_each(|v| v.copy_from_slice(&small(rng).to_le_bytes())),
        GgmlType::F16 => {
            out.chunks_exact_mut(2).for_each(|v| v.copy_from_slice(&f16::from_f32(small(rng)).to_le_bytes()))
        }
        GgmlType::BF16 => {
            out.chunks_exact_mut(2).for_each(|v| v.copy_from_slice(&bf16::from_f32(small(rng)).to_le_bytes()))
        }
        _ => {
            for word in out.chunks_mut(8) {
                let bytes = rng.next_u64().to_le_bytes();
                word.copy_from_slice(&bytes[..word.len()]);
            }
            // Scales from 2^-10 to 2^-7: the range of a trained model's block scales.
            for block in out.chunks_exact_mut(ty.block_bytes()) {
                for &at in ty.info().f16_scales {
                    let scale = (1.0 + rng.signed_unit().abs() * 7.0) / 1024.0;
                    block[at..at + 2].copy_from_slice(&f16::from_f32(scale).to_le_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::dequant::dequantize_to_vec;

    #[test]
    fn every_format_decodes_to_finite_varied_weights() {
        for ty in GgmlType::all() {
            let n = 4 * 256;
            let bytes = random_blocks(ty, n, 7).unwrap();
            let w = dequantize_to_vec(ty, &bytes).unwrap();
            assert!(w.iter().all(|v| v.is_finite()), "{}: a weight is not finite", ty.name());
            let distinct = w.iter().map(|v| v.to_bits()).collect::<std::collections::HashSet<_>>().len();
            assert!(distinct > 8, "{}: only {distinct} distinct weights", ty.name());
            assert_eq!(bytes, random_blocks(ty, n, 7).unwrap(), "{}: not deterministic", ty.name());
            assert_ne!(bytes, random_blocks(ty, n, 8).unwrap(), "{}: the seed changes nothing", ty.name());
        }
    }
}
