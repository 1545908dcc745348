//! The CPU's integer decoders: each quantized format's block as 8-bit integers with a scale and an
//! offset per group of 16 weights, `weight[i] = scale[i / 16] · q[i] + min[i / 16]`, the form the
//! integer dot products ([`super::simd`]) take. Blocks are decoded into units of 256 weights (one
//! k-quant super-block, or eight 32-weight blocks), so that every format's dot products and
//! scale arithmetic run over the same long, fixed-size arrays. Every weight of every format fits: 4- and 5-bit
//! quants with their offsets folded in or kept apart as `min`, Q6_K's `q - 32`, Q3_K's signed
//! 3 bits, IQ4's codebook values (−127..113), Q8_0 as stored.
//!
//! `scale · q + min` reproduces [`crate::format::dequant`]'s weights bit for bit (a test checks
//! it), so the integer kernels differ from the scalar reference only by the rounding of the
//! activations to 8 bits and the order of the sums.

use super::simd::Isa;
use crate::format::blocks::*;
use crate::format::dequant::scale_min_k4;

/// Weights in a unit.
pub const UNIT: usize = QK_K;

/// Groups of 16 weights in a unit.
pub const GROUPS: usize = UNIT / 16;

/// Up to 256 weights as 8-bit integers with their groups' scales and offsets.
#[derive(Clone, Debug)]
pub struct Int8Unit {
    pub q: [i8; UNIT],
    pub scale: [f32; GROUPS],
    /// Offsets per group; untouched (zero) for formats without ([`Unpack8::HAS_MIN`]).
    pub min: [f32; GROUPS],
}

impl Default for Int8Unit {
    fn default() -> Self {
        Int8Unit { q: [0; UNIT], scale: [0.0; GROUPS], min: [0.0; GROUPS] }
    }
}

/// A quantized block that decodes into an [`Int8Unit`] (a k-quant super-block fills it, so they
/// ignore `at`).
pub trait Unpack8: Block {
    /// Whether groups have an offset (`min`).
    const HAS_MIN: bool;
    /// Whether every quant lies in 0..=63 (those with offsets keep them unsigned), so the dot
    /// products need no sign handling.
    const UNSIGNED: bool = Self::HAS_MIN;
    /// Decodes the block into `out` from element `at` (a multiple of the block size), with the
    /// instruction set `I`'s helpers where a format has use for them.
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, at: usize);
}

/// An f16 scale as f32, inline: the bit-level conversion, exact for every finite f16 (zeros and
/// subnormals, whose exponent field is 0, are `mantissa · 2^-24`). `half`'s conversion looks for
/// F16C at every call, which cost 3 % of a CPU decode step.
#[inline(always)]
fn f32_of(h: half::f16) -> f32 {
    let h = h.to_bits() as u32;
    let (sign, exp, mant) = ((h & 0x8000) << 16, (h >> 10) & 0x1f, h & 0x3ff);
    match exp {
        0 => {
            let v = mant as f32 * (1.0 / 16_777_216.0);
            if sign != 0 {
                -v
            } else {
                v
            }
        }
        31 => f32::from_bits(sign | 0x7f80_0000 | (mant << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (mant << 13)),
    }
}

/// Eight bytes at once (SWAR): the low nibbles of each byte.
const LOW_NIBBLES: u64 = 0x0F0F_0F0F_0F0F_0F0F;

/// Eight `bits`-bit unsigned values (one per byte) minus `2^(bits-1)`, as two's-complement bytes:
/// values with the top bit set just lose it, the others get every bit above filled (`v - 2^(b-1)`
/// for `v < 2^(b-1)`), all without a carry between bytes.
#[inline(always)]
fn centered(v: u64, bits: u32) -> u64 {
    let top = 0x0101_0101_0101_0101u64 << (bits - 1);
    (v & (top - 0x0101_0101_0101_0101)) | (((v & top) ^ top) * ((256 >> (bits - 1)) - 1))
}

/// Writes eight bytes of `v` as weights `at..at + 8`.
#[inline(always)]
fn put8(q: &mut [i8], at: usize, v: u64) {
    q[at..at + 8].copy_from_slice(&bytemuck::cast::<[u8; 8], [i8; 8]>(v.to_le_bytes()));
}

/// The nibbles of `qs` as weights 0..16 (low) and 16..32 (high); centred (minus 8) for Q4_0.
#[inline(always)]
pub(super) fn nibbles(qs: &[u8; 16], center: bool, q: &mut [i8]) {
    for h in 0..2 {
        let w = u64::from_le_bytes(qs[8 * h..8 * h + 8].try_into().expect("8 bytes"));
        let (lo, hi) = (w & LOW_NIBBLES, (w >> 4) & LOW_NIBBLES);
        let (lo, hi) = if center { (centered(lo, 4), centered(hi, 4)) } else { (lo, hi) };
        put8(q, 8 * h, lo);
        put8(q, 16 + 8 * h, hi);
    }
}

/// Bit i of a byte as byte i of a little-endian u64, 0x10 when set: a byte of Q5's fifth bits
/// spread over the eight weights it belongs to, with one table load instead of eight shifts.
const FIFTH_BITS: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut i = 0;
        while i < 8 {
            if (b >> i) & 1 == 1 {
                table[b] |= 0x10 << (8 * i);
            }
            i += 1;
        }
        b += 1;
    }
    table
};

/// Q5_0/Q5_1 quants: nibbles with their fifth bit from `qh` (bit j for weight j); centred (minus
/// 16) for Q5_0.
#[inline(always)]
pub(super) fn five_bits(qs: &[u8; 16], qh: [u8; 4], center: bool, q: &mut [i8]) {
    for h in 0..2 {
        let w = u64::from_le_bytes(qs[8 * h..8 * h + 8].try_into().expect("8 bytes"));
        let lo = (w & LOW_NIBBLES) | FIFTH_BITS[qh[h] as usize];
        let hi = ((w >> 4) & LOW_NIBBLES) | FIFTH_BITS[qh[2 + h] as usize];
        let (lo, hi) = if center { (centered(lo, 5), centered(hi, 5)) } else { (lo, hi) };
        put8(q, 8 * h, lo);
        put8(q, 16 + 8 * h, hi);
    }
}

/// Sets both groups of the 32 weights from element `at` to one scale.
#[inline(always)]
fn sub_block(out: &mut Int8Unit, at: usize, scale: f32) {
    out.scale[at / 16..at / 16 + 2].fill(scale);
}

/// Sets both groups of the 32 weights from element `at` to one scale and offset.
#[inline(always)]
fn sub_block_with_min(out: &mut Int8Unit, at: usize, scale: f32, min: f32) {
    sub_block(out, at, scale);
    out.min[at / 16..at / 16 + 2].fill(min);
}

impl Unpack8 for BlockQ4_0 {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, at: usize) {
        I::nibbles(&self.qs, true, &mut out.q[at..at + 32]);
        sub_block(out, at, f32_of(self.d));
    }
}

impl Unpack8 for BlockQ4_1 {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, at: usize) {
        I::nibbles(&self.qs, false, &mut out.q[at..at + 32]);
        sub_block_with_min(out, at, f32_of(self.d), f32_of(self.m));
    }
}

impl Unpack8 for BlockQ5_0 {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, at: usize) {
        I::five_bits(&self.qs, self.qh, true, &mut out.q[at..at + 32]);
        sub_block(out, at, f32_of(self.d));
    }
}

impl Unpack8 for BlockQ5_1 {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, at: usize) {
        I::five_bits(&self.qs, self.qh, false, &mut out.q[at..at + 32]);
        sub_block_with_min(out, at, f32_of(self.d), f32_of(self.m));
    }
}

impl Unpack8 for BlockQ8_0 {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, at: usize) {
        out.q[at..at + 32].copy_from_slice(&self.qs);
        sub_block(out, at, f32_of(self.d));
    }
}

/// Eight bytes from `bytes[at..at + 8]` as a little-endian word.
#[inline(always)]
fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Eight bytes' bit pair `j` (bits 2j, 2j + 1 of each byte).
const PAIRS: u64 = 0x0303_0303_0303_0303;

/// Q2_K and Q3_K's quants into `q` (256): weight `128h + 32j + l` (l < 32) is bit pair `j` of
/// byte `32h + l` of `qs`; Q3_K (`hmask` given) adds a third bit, bit `4h + j` of `hmask[l]`: set,
/// the quant is the two low bits as they are; clear, 4 lower (so −4..3).
#[inline(always)]
pub(super) fn bit_planes(qs: &[u8; QK_K / 4], hmask: Option<&[u8; QK_K / 8]>, q: &mut [i8]) {
    for h in 0..2 {
        for j in 0..4 {
            for l in (0..32).step_by(8) {
                let low = (word(qs, 32 * h + l) >> (2 * j)) & PAIRS;
                let quants = match hmask {
                    None => low,
                    Some(hmask) => {
                        let high = (word(hmask, l) >> (4 * h + j)) & 0x0101_0101_0101_0101;
                        centered(low | (high << 2), 3)
                    }
                };
                put8(q, 128 * h + 32 * j + l, quants);
            }
        }
    }
}

impl Unpack8 for BlockQ2K {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, _at: usize) {
        let (d, dmin) = (f32_of(self.d), f32_of(self.dmin));
        for (g, &sc) in self.scales.iter().enumerate() {
            out.scale[g] = d * (sc & 0xF) as f32;
            out.min[g] = -(dmin * (sc >> 4) as f32);
        }
        I::bit_planes(&self.qs, None, &mut out.q);
    }
}

/// Q3_K's sixteen 6-bit scales, minus their bias of 32, eight bytes at a time: scale `j`'s low
/// four bits are the low (j < 8) or high nibble of byte `j % 8`, its top two bits pair `j / 4` of
/// byte `8 + j % 4` ([`crate::format::dequant::q3k_scale`] one at a time).
#[inline(always)]
fn q3k_scales(scales: &[u8; 12]) -> [i8; GROUPS] {
    let nibbles = word(scales, 0);
    let tops = u32::from_le_bytes(scales[8..12].try_into().expect("4 bytes")) as u64;
    let pairs = |k: u32| (tops >> (2 * k)) & 0x0303_0303;
    let first = (nibbles & LOW_NIBBLES) | ((pairs(0) | (pairs(1) << 32)) << 4);
    let second = ((nibbles >> 4) & LOW_NIBBLES) | ((pairs(2) | (pairs(3) << 32)) << 4);
    let mut out = [0i8; GROUPS];
    put8(&mut out, 0, centered(first, 6));
    put8(&mut out, 8, centered(second, 6));
    out
}

impl Unpack8 for BlockQ3K {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, _at: usize) {
        let d = f32_of(self.d);
        for (s, sc) in out.scale.iter_mut().zip(q3k_scales(&self.scales)) {
            *s = d * sc as f32;
        }
        I::bit_planes(&self.qs, Some(&self.hmask), &mut out.q);
    }
}

/// Q4_K and Q5_K's eight 6-bit (scale, min) pairs as the sub-blocks' scales and offsets.
#[inline(always)]
fn k4_scales(out: &mut Int8Unit, d: f32, dmin: f32, scales: &[u8; K_SCALE_SIZE]) {
    for sb in 0..8 {
        let (sc, m) = scale_min_k4(sb, scales);
        sub_block_with_min(out, 32 * sb, d * sc as f32, -(dmin * m as f32));
    }
}

impl Unpack8 for BlockQ4K {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, _at: usize) {
        let (d, dmin) = (f32_of(self.d), f32_of(self.dmin));
        // Each 32 bytes of qs hold sub-block 2k in the low nibbles and 2k+1 in the high ones.
        for (k, qs) in self.qs.chunks_exact(32).enumerate() {
            for (l, &b) in qs.iter().enumerate() {
                out.q[64 * k + l] = (b & 0xF) as i8;
                out.q[64 * k + 32 + l] = (b >> 4) as i8;
            }
        }
        k4_scales(out, d, dmin, &self.scales);
    }
}

impl Unpack8 for BlockQ5K {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, _at: usize) {
        let (d, dmin) = (f32_of(self.d), f32_of(self.dmin));
        for (k, qs) in self.qs.chunks_exact(32).enumerate() {
            let (u0, u1) = (1u8 << (2 * k), 1u8 << (2 * k + 1));
            for (l, &b) in qs.iter().enumerate() {
                let h = self.qh[l];
                out.q[64 * k + l] = ((b & 0xF) | if h & u0 != 0 { 16 } else { 0 }) as i8;
                out.q[64 * k + 32 + l] = ((b >> 4) | if h & u1 != 0 { 16 } else { 0 }) as i8;
            }
        }
        k4_scales(out, d, dmin, &self.scales);
    }
}

impl Unpack8 for BlockQ6K {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, _at: usize) {
        let d = f32_of(self.d);
        // Each 128-weight half uses 64 bytes of ql and 32 of qh; quarter k (32 weights) takes
        // ql's low/high nibbles of bytes 0..32/32..64 and bit pair 2k of qh.
        for half in 0..2 {
            let ql = &self.ql[64 * half..][..64];
            let qh = &self.qh[32 * half..][..32];
            for k in 0..4 {
                let ql = &ql[(k % 2) * 32..][..32];
                let q = &mut out.q[128 * half + 32 * k..][..32];
                for l in 0..32 {
                    let low = (ql[l] >> (4 * (k / 2))) & 0xF;
                    let high = (qh[l] >> (2 * k)) & 3;
                    q[l] = (low | (high << 4)) as i8 - 32;
                }
            }
        }
        for (s, &sc) in out.scale.iter_mut().zip(&self.scales) {
            *s = d * sc as f32;
        }
    }
}

impl Unpack8 for BlockIQ4NL {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, at: usize) {
        I::lookup_nibbles(&KVALUES_IQ4NL, &self.qs, &mut out.q[at..at + 32]);
        sub_block(out, at, f32_of(self.d));
    }
}

impl Unpack8 for BlockIQ4XS {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn unpack8<I: Isa>(&self, out: &mut Int8Unit, _at: usize) {
        let d = f32_of(self.d);
        for sb in 0..8 {
            I::lookup_nibbles(&KVALUES_IQ4NL, &self.qs[16 * sb..], &mut out.q[32 * sb..]);
            let lo = (self.scales_l[sb / 2] >> (4 * (sb % 2))) & 0xF;
            let hi = ((self.scales_h >> (2 * sb)) & 3) as u8;
            sub_block(out, 32 * sb, d * ((lo | (hi << 4)) as i32 - 32) as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::format::dequant::dequantize_to_vec;
    use crate::format::random::random_blocks;
    use crate::format::GgmlType;

    /// The inline f16 conversion equals `half`'s for every finite f16.
    #[test]
    fn f16_scales_convert_exactly() {
        for bits in 0..=u16::MAX {
            let h = half::f16::from_bits(bits);
            if h.is_finite() {
                assert_eq!(super::f32_of(h).to_bits(), h.to_f32().to_bits(), "{bits:#06x}");
            }
        }
    }

    /// `scale · q + min` is the scalar reference's weight, bit for bit, for every quantized format.
    #[test]
    fn unpacked_blocks_rebuild_the_dequantized_weights() {
        for ty in GgmlType::all().filter(|&ty| super::super::has_kernel(ty)) {
            let elems = ty.block_elems() as u64 * 6;
            let bytes = random_blocks(ty, elems, 99).unwrap();
            let want = dequantize_to_vec(ty, &bytes).unwrap();
            let got = super::super::rebuild(ty, &bytes);
            assert_eq!(got.len(), want.len());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{ty}");
        }
    }
}
