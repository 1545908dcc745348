//! CPU reference dequantization: raw GGML blocks to f32.
//!
//! Each format implements [`Dequantize`] for one block, following ggml's `dequantize_row_*`
//! (and gguf-py's equivalents) operation for operation, so the results equal theirs bit for
//! bit: the GPU decoders are checked against this code. Everything above one block is generic.

use std::mem::size_of;

use bytemuck::Pod;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use super::blocks::*;
use super::GgmlType;
use crate::error::{Error, Result};

/// Decoding of one block.
pub trait Dequantize: Block {
    /// Writes the block's `Self::ELEMS` values to `out` (which has exactly that length).
    fn dequantize(&self, out: &mut [f32]);

    /// Decodes consecutive blocks from `src` into `dst` (lengths already checked to agree).
    /// Block by block by default; the one-element float formats override it with whole-slice
    /// conversions, which matter for them because a "block" is a single value.
    #[inline]
    fn dequantize_run(src: &[u8], dst: &mut [f32]) {
        for (bytes, out) in src.chunks_exact(size_of::<Self>()).zip(dst.chunks_exact_mut(Self::ELEMS)) {
            read_block::<Self>(bytes).dequantize(out);
        }
    }
}

/// Dequantizes `src`, a whole number of `ty` blocks, into `dst`, which must hold exactly as many
/// elements as those blocks.
///
/// Returns [`Error::Shape`] if `src` is not a whole number of blocks or `dst` has the wrong length.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let n = elems_in(ty, src.len())?;
    if dst.len() != n {
        return Err(Error::Shape(format!(
            "{} bytes of {ty} hold {n} elements, but the output has room for {}",
            src.len(),
            dst.len()
        )));
    }
    with_block!(ty, B => dequantize_blocks::<B>(src, dst));
    Ok(())
}

/// Dequantizes `src`, a whole number of `ty` blocks, into a new vector.
pub fn dequantize_to_vec(ty: GgmlType, src: &[u8]) -> Result<Vec<f32>> {
    let mut dst = vec![0.0; elems_in(ty, src.len())?];
    dequantize(ty, src, &mut dst)?;
    Ok(dst)
}

/// The number of elements in `n_bytes` of `ty`, or an error if that is not a whole number of blocks.
pub fn elems_in(ty: GgmlType, n_bytes: usize) -> Result<usize> {
    if !n_bytes.is_multiple_of(ty.block_bytes()) {
        return Err(Error::Shape(format!(
            "{n_bytes} bytes is not a whole number of {ty} blocks of {} bytes",
            ty.block_bytes()
        )));
    }
    Ok(n_bytes / ty.block_bytes() * ty.block_elems())
}

/// Decodes consecutive blocks; `src` and `dst` must already agree in length.
#[inline]
pub(crate) fn dequantize_blocks<B: Dequantize>(src: &[u8], dst: &mut [f32]) {
    debug_assert_eq!(src.len() / size_of::<B>() * B::ELEMS, dst.len());
    B::dequantize_run(src, dst);
}

/// Converts 16-bit floats a stack buffer at a time with `half`'s slice conversion (which uses the
/// CPU's F16C instructions where it has them); `src` may be unaligned.
#[inline]
fn convert_16bit<H: Pod + Default + Copy>(src: &[u8], dst: &mut [f32], convert: impl Fn(&[H], &mut [f32])) {
    let mut buf = [H::default(); 256];
    for (bytes, out) in src.chunks(2 * buf.len()).zip(dst.chunks_mut(buf.len())) {
        let h = &mut buf[..out.len()];
        bytemuck::cast_slice_mut::<H, u8>(h).copy_from_slice(bytes);
        convert(h, out);
    }
}

impl Dequantize for f32 {
    fn dequantize(&self, out: &mut [f32]) {
        out[0] = *self;
    }

    fn dequantize_run(src: &[u8], dst: &mut [f32]) {
        bytemuck::cast_slice_mut::<f32, u8>(dst).copy_from_slice(src);
    }
}

impl Dequantize for f16 {
    fn dequantize(&self, out: &mut [f32]) {
        out[0] = self.to_f32();
    }

    fn dequantize_run(src: &[u8], dst: &mut [f32]) {
        convert_16bit::<f16>(src, dst, |h, out| h.convert_to_f32_slice(out));
    }
}

impl Dequantize for bf16 {
    fn dequantize(&self, out: &mut [f32]) {
        // bf16 is the top half of an f32: widening is exact.
        out[0] = self.to_f32();
    }

    fn dequantize_run(src: &[u8], dst: &mut [f32]) {
        convert_16bit::<bf16>(src, dst, |h, out| h.convert_to_f32_slice(out));
    }
}

impl Dequantize for BlockQ4_0 {
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, &q) in self.qs.iter().enumerate() {
            out[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
            out[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

impl Dequantize for BlockQ4_1 {
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (j, &q) in self.qs.iter().enumerate() {
            out[j] = (q & 0x0F) as f32 * d + m;
            out[j + 16] = (q >> 4) as f32 * d + m;
        }
    }
}

/// The two 5-bit quants packed at position `j` of a Q5_0/Q5_1 block (elements `j` and `j + 16`).
#[inline(always)]
fn q5_pair(qs: &[u8; 16], qh: u32, j: usize) -> (i32, i32) {
    let h0 = ((qh >> j) << 4) & 0x10;
    let h1 = (qh >> (j + 12)) & 0x10;
    (((qs[j] & 0x0F) as u32 | h0) as i32, ((qs[j] >> 4) as u32 | h1) as i32)
}

impl Dequantize for BlockQ5_0 {
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let qh = u32::from_le_bytes(self.qh);
        for j in 0..16 {
            let (q0, q1) = q5_pair(&self.qs, qh, j);
            out[j] = (q0 - 16) as f32 * d;
            out[j + 16] = (q1 - 16) as f32 * d;
        }
    }
}

impl Dequantize for BlockQ5_1 {
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        let qh = u32::from_le_bytes(self.qh);
        for j in 0..16 {
            let (q0, q1) = q5_pair(&self.qs, qh, j);
            out[j] = q0 as f32 * d + m;
            out[j + 16] = q1 as f32 * d + m;
        }
    }
}

impl Dequantize for BlockQ8_0 {
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = q as f32 * d;
        }
    }
}

impl Dequantize for BlockQ2K {
    fn dequantize(&self, out: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        // Sub-block `is` (16 elements) takes bit pair `shift` of 16 bytes of one 32-byte half of qs.
        for (is, (o, &sc)) in out.chunks_exact_mut(16).zip(&self.scales).enumerate() {
            let dl = d * (sc & 0xF) as f32;
            let ml = dmin * (sc >> 4) as f32;
            let q = &self.qs[(is / 8) * 32 + (is % 2) * 16..][..16];
            let shift = 2 * ((is % 8) / 2);
            for (o, &q) in o.iter_mut().zip(q) {
                *o = dl * ((q >> shift) & 3) as f32 - ml;
            }
        }
    }
}

/// The 16 six-bit scales of a Q3_K block, unpacked (still biased by 32).
#[inline(always)]
pub(crate) fn q3k_scale(scales: &[u8; 12], j: usize) -> i32 {
    let lo = if j < 8 { scales[j] & 0xF } else { scales[j - 8] >> 4 };
    let hi = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    (lo | (hi << 4)) as i32
}

impl Dequantize for BlockQ3K {
    fn dequantize(&self, out: &mut [f32]) {
        let d_all = self.d.to_f32();
        // Sub-block `is`: bit pair 2*j of qs (j = is%8/2), and hmask bit is/2 (across both halves).
        for (is, o) in out.chunks_exact_mut(16).enumerate() {
            let dl = d_all * (q3k_scale(&self.scales, is) - 32) as f32;
            let half = (is % 2) * 16;
            let q = &self.qs[(is / 8) * 32 + half..][..16];
            let hm = &self.hmask[half..][..16];
            let shift = 2 * ((is % 8) / 2);
            let m = 1u8 << (is / 2);
            for l in 0..16 {
                let low = ((q[l] >> shift) & 3) as i32;
                let offset = if hm[l] & m != 0 { 0 } else { 4 };
                o[l] = dl * (low - offset) as f32;
            }
        }
    }
}

/// Scale and min `j` (0..8) of a Q4_K/Q5_K block: ggml's `get_scale_min_k4`.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

impl Dequantize for BlockQ4K {
    fn dequantize(&self, out: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        // Each 32 bytes of qs hold sub-block 2k in the low nibbles and 2k+1 in the high nibbles.
        for (is, o) in out.chunks_exact_mut(32).enumerate() {
            let (sc, m) = scale_min_k4(is, &self.scales);
            let (d1, m1) = (d * sc as f32, dmin * m as f32);
            let q = &self.qs[(is / 2) * 32..][..32];
            let shift = 4 * (is % 2);
            for (o, &q) in o.iter_mut().zip(q) {
                *o = d1 * ((q >> shift) & 0xF) as f32 - m1;
            }
        }
    }
}

impl Dequantize for BlockQ5K {
    fn dequantize(&self, out: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        for (is, o) in out.chunks_exact_mut(32).enumerate() {
            let (sc, m) = scale_min_k4(is, &self.scales);
            let (d1, m1) = (d * sc as f32, dmin * m as f32);
            let ql = &self.qs[(is / 2) * 32..][..32];
            let shift = 4 * (is % 2);
            let u = 1u8 << is;
            for l in 0..32 {
                let high = if self.qh[l] & u != 0 { 16 } else { 0 };
                o[l] = d1 * (((ql[l] >> shift) & 0xF) + high) as f32 - m1;
            }
        }
    }
}

impl Dequantize for BlockQ6K {
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        // Each 128-element half uses 64 bytes of ql and 32 of qh; within it, quarter k (32
        // elements) takes ql's low/high nibble of bytes 0..32/32..64 and bit pair 2k of qh.
        for (is, o) in out.chunks_exact_mut(16).enumerate() {
            let half = is / 8;
            let k = (is % 8) / 2;
            let l0 = (is % 2) * 16;
            let ql = &self.ql[half * 64 + (k % 2) * 32 + l0..][..16];
            let qh = &self.qh[half * 32 + l0..][..16];
            let dl = d * self.scales[is] as f32;
            for l in 0..16 {
                let low = (ql[l] >> (4 * (k / 2))) & 0xF;
                let high = (qh[l] >> (2 * k)) & 3;
                o[l] = dl * ((low | (high << 4)) as i32 - 32) as f32;
            }
        }
    }
}

impl Dequantize for BlockIQ4NL {
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, &q) in self.qs.iter().enumerate() {
            out[j] = d * KVALUES_IQ4NL[(q & 0xF) as usize] as f32;
            out[j + 16] = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
        }
    }
}

impl Dequantize for BlockIQ4XS {
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (ib, o) in out.chunks_exact_mut(32).enumerate() {
            let lo = (self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
            let hi = ((self.scales_h >> (2 * ib)) & 3) as u8;
            let dl = d * ((lo | (hi << 4)) as i32 - 32) as f32;
            for (j, &q) in self.qs[ib * 16..][..16].iter().enumerate() {
                o[j] = dl * KVALUES_IQ4NL[(q & 0xF) as usize] as f32;
                o[j + 16] = dl * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_partial_blocks_and_wrong_output() {
        let mut out = vec![0.0; 32];
        assert!(matches!(dequantize(GgmlType::Q4_0, &[0; 17], &mut out), Err(Error::Shape(_))));
        assert!(matches!(dequantize(GgmlType::Q4_0, &[0; 18], &mut out[..31]), Err(Error::Shape(_))));
        assert!(dequantize(GgmlType::Q4_0, &[0; 18], &mut out).is_ok());
    }

    #[test]
    fn q8_0_block_by_hand() {
        let mut bytes = vec![0u8; 34];
        bytes[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        bytes[2] = 4;
        bytes[3] = (-6i8) as u8;
        let v = dequantize_to_vec(GgmlType::Q8_0, &bytes).unwrap();
        assert_eq!(&v[..3], &[2.0, -3.0, 0.0]);
    }
}
