//! The CPU's integer decoders: each quantized format's block as 8-bit integers with a scale and an
//! offset per group of 16 weights, `weight[i] = scale[i / 16] · (q[i] − BIAS) + min[i / 16]`, the
//! form the integer dot products ([`super::simd`]) take. Blocks are decoded into units of 256 weights (one
//! k-quant super-block, or eight 32-weight blocks), so that every format's dot products and
//! scale arithmetic run over the same long, fixed-size arrays. Every weight of every format fits:
//! 4- and 5-bit quants as stored, their offsets kept apart as `min` (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K)
//! or as the format's [`Unpack8::BIAS`] (Q4_0's 8, Q5_0's 16, Q3_K's 4, Q6_K's 32), IQ4's codebook
//! values (−127..113), Q8_0 as stored.
//!
//! `scale · (q − BIAS) + min` reproduces [`crate::format::dequant`]'s weights bit for bit (a test checks
//! it), so the integer kernels differ from the scalar reference only by the rounding of the
//! activations to 8 bits and the order of the sums.

use super::simd::Isa;
use crate::format::blocks::*;

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

/// A quantized format whose blocks decode into an [`Int8Unit`] a unit at a time.
pub trait Unpack8: Block {
    /// Whether groups have an offset (`min`).
    const HAS_MIN: bool;
    /// What the quants are stored plus (0, or a power of two), so that they are unsigned: the
    /// dot products take `BIAS · Σx` back from each group's integer sum, exactly, where centring
    /// every quant would cost an instruction per 32 weights and the sign handling three more.
    const BIAS: i32 = 0;
    /// Whether every quant lies in 0..=63 (those with offsets or a bias keep them unsigned), so
    /// the dot products need no sign handling.
    const UNSIGNED: bool = Self::HAS_MIN || Self::BIAS != 0;
    /// Decodes the whole blocks of `bytes` (one unit's: `UNIT / ELEMS` blocks, or fewer at the end
    /// of a row) into `out`, with the instruction set `I`'s helpers where a format has use for
    /// them. Scales reach `out` as whole vectors: a vector load of values written one by one
    /// cannot be forwarded from the stores and waits for them to reach the cache.
    fn unpack_unit<I: Isa>(bytes: &[u8], out: &mut Int8Unit);
}

/// A format of 32-weight blocks with an f16 scale (and offset) each: Q4_0 … Q8_0, IQ4_NL. A unit
/// is eight of them; their scales are gathered and converted eight at a time.
pub trait Block32: Block {
    const HAS_MIN: bool;
    /// [`Unpack8::BIAS`].
    const BIAS: i32 = 0;
    /// The block's 32 quants into `q`.
    fn quants<I: Isa>(&self, q: &mut [i8]);
    /// The block's scale and offset, as f16 bits (the offset 0 where there is none).
    fn scale_bits(&self) -> (u16, u16);
}

impl<B: Block32> Unpack8 for B {
    const HAS_MIN: bool = <B as Block32>::HAS_MIN;
    const BIAS: i32 = <B as Block32>::BIAS;

    #[inline(always)]
    fn unpack_unit<I: Isa>(bytes: &[u8], out: &mut Int8Unit) {
        const { assert!(B::ELEMS == 32, "a Block32 holds 32 weights") };
        // Four f16s to a word, kept in registers: blocks past the end of a short unit scale by 0.
        let (mut d, mut m) = ([0u64; 2], [0u64; 2]);
        for (i, bytes) in bytes.chunks_exact(size_of::<B>()).enumerate().take(UNIT / 32) {
            let block = read_block::<B>(bytes);
            block.quants::<I>(&mut out.q[32 * i..32 * i + 32]);
            let (scale, offset) = block.scale_bits();
            d[i / 4] |= (scale as u64) << (16 * (i % 4));
            m[i / 4] |= (offset as u64) << (16 * (i % 4));
        }
        I::spread_f16(d, &mut out.scale);
        if B::HAS_MIN {
            I::spread_f16(m, &mut out.min);
        }
    }
}

/// An f16 scale as f32, inline (the portable [`Isa::f32_of_f16`]): the bit-level conversion,
/// exact for every finite f16 (zeros and subnormals, whose exponent field is 0, are
/// `mantissa · 2^-24`). `half`'s conversion looks for F16C at every call, which cost 3 % of a CPU
/// decode step.
#[inline(always)]
pub(super) fn f32_of(h: half::f16) -> f32 {
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

/// The nibbles of `qs` as weights 0..16 (low) and 16..32 (high).
#[inline(always)]
pub(super) fn nibbles(qs: &[u8; 16], q: &mut [i8]) {
    for h in 0..2 {
        let w = u64::from_le_bytes(qs[8 * h..8 * h + 8].try_into().expect("8 bytes"));
        let (lo, hi) = (w & LOW_NIBBLES, (w >> 4) & LOW_NIBBLES);
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

/// Q5_0/Q5_1 quants: nibbles with their fifth bit from `qh` (bit j for weight j).
#[inline(always)]
pub(super) fn five_bits(qs: &[u8; 16], qh: [u8; 4], q: &mut [i8]) {
    for h in 0..2 {
        let w = u64::from_le_bytes(qs[8 * h..8 * h + 8].try_into().expect("8 bytes"));
        let lo = (w & LOW_NIBBLES) | FIFTH_BITS[qh[h] as usize];
        let hi = ((w >> 4) & LOW_NIBBLES) | FIFTH_BITS[qh[2 + h] as usize];
        put8(q, 8 * h, lo);
        put8(q, 16 + 8 * h, hi);
    }
}

impl Block32 for BlockQ4_0 {
    const HAS_MIN: bool = false;
    const BIAS: i32 = 8;
    #[inline(always)]
    fn quants<I: Isa>(&self, q: &mut [i8]) {
        I::nibbles(&self.qs, q);
    }
    #[inline(always)]
    fn scale_bits(&self) -> (u16, u16) {
        (self.d.to_bits(), 0)
    }
}

impl Block32 for BlockQ4_1 {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn quants<I: Isa>(&self, q: &mut [i8]) {
        I::nibbles(&self.qs, q);
    }
    #[inline(always)]
    fn scale_bits(&self) -> (u16, u16) {
        (self.d.to_bits(), self.m.to_bits())
    }
}

impl Block32 for BlockQ5_0 {
    const HAS_MIN: bool = false;
    const BIAS: i32 = 16;
    #[inline(always)]
    fn quants<I: Isa>(&self, q: &mut [i8]) {
        I::five_bits(&self.qs, self.qh, q);
    }
    #[inline(always)]
    fn scale_bits(&self) -> (u16, u16) {
        (self.d.to_bits(), 0)
    }
}

impl Block32 for BlockQ5_1 {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn quants<I: Isa>(&self, q: &mut [i8]) {
        I::five_bits(&self.qs, self.qh, q);
    }
    #[inline(always)]
    fn scale_bits(&self) -> (u16, u16) {
        (self.d.to_bits(), self.m.to_bits())
    }
}

impl Block32 for BlockQ8_0 {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn quants<I: Isa>(&self, q: &mut [i8]) {
        q[..32].copy_from_slice(&self.qs);
    }
    #[inline(always)]
    fn scale_bits(&self) -> (u16, u16) {
        (self.d.to_bits(), 0)
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
/// byte `32h + l` of `qs`; Q3_K (`hmask` given) adds a third bit, bit `4h + j` of `hmask[l]`, as
/// 4 (Q3_K's quant is the two low bits where it is set, 4 lower where it is clear: its bias).
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
                        low | (high << 2)
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
    fn unpack_unit<I: Isa>(bytes: &[u8], out: &mut Int8Unit) {
        let block = read_block::<Self>(bytes);
        let (d, dmin) = (I::f32_of_f16(block.d), I::f32_of_f16(block.dmin));
        // Each byte: the group's scale in its low nibble, its offset in the high one.
        let packed = [word(&block.scales, 0), word(&block.scales, 8)];
        I::group_bytes(packed.map(|w| w & LOW_NIBBLES), false, d, &mut out.scale);
        I::group_bytes(packed.map(|w| (w >> 4) & LOW_NIBBLES), false, -dmin, &mut out.min);
        I::bit_planes(&block.qs, None, &mut out.q);
    }
}

/// Q3_K's sixteen 6-bit scales, minus their bias of 32, eight bytes at a time: scale `j`'s low
/// four bits are the low (j < 8) or high nibble of byte `j % 8`, its top two bits pair `j / 4` of
/// byte `8 + j % 4` ([`crate::format::dequant::q3k_scale`] one at a time).
#[inline(always)]
fn q3k_scales(scales: &[u8; 12]) -> [u64; 2] {
    let nibbles = word(scales, 0);
    let tops = u32::from_le_bytes(scales[8..12].try_into().expect("4 bytes")) as u64;
    let pairs = |k: u32| (tops >> (2 * k)) & 0x0303_0303;
    let first = (nibbles & LOW_NIBBLES) | ((pairs(0) | (pairs(1) << 32)) << 4);
    let second = ((nibbles >> 4) & LOW_NIBBLES) | ((pairs(2) | (pairs(3) << 32)) << 4);
    [centered(first, 6), centered(second, 6)]
}

impl Unpack8 for BlockQ3K {
    const HAS_MIN: bool = false;
    const BIAS: i32 = 4;
    #[inline(always)]
    fn unpack_unit<I: Isa>(bytes: &[u8], out: &mut Int8Unit) {
        let block = read_block::<Self>(bytes);
        I::group_bytes(q3k_scales(&block.scales), true, I::f32_of_f16(block.d), &mut out.scale);
        I::bit_planes(&block.qs, Some(&block.hmask), &mut out.q);
    }
}

/// Q4_K and Q5_K's eight 6-bit (scale, min) pairs as the sub-blocks' scales and offsets, four
/// at a time in 32-bit words: pairs 0..4 are the low six bits of bytes 0..4 (scales) and 4..8
/// (mins); pairs 4..8 take their low four bits from the nibbles of bytes 8..12 and their top two
/// from the top bits of bytes 0..4 and 4..8
/// ([`crate::format::dequant::scale_min_k4`] one at a time).
#[inline(always)]
fn k4_scales<I: Isa>(out: &mut Int8Unit, d: f32, dmin: f32, scales: &[u8; K_SCALE_SIZE]) {
    let w = |i: usize| u32::from_le_bytes(scales[4 * i..4 * i + 4].try_into().expect("4 bytes")) as u64;
    let (low_scales, low_mins, nibbles) = (w(0), w(1), w(2));
    let tops = |v: u64| ((v >> 6) & 0x0303_0303) << 4;
    let six_bits = |v: u64| v & 0x3f3f_3f3f;
    let scale = six_bits(low_scales) | (((nibbles & 0x0f0f_0f0f) | tops(low_scales)) << 32);
    let min = six_bits(low_mins) | ((((nibbles >> 4) & 0x0f0f_0f0f) | tops(low_mins)) << 32);
    I::spread_bytes(scale, false, d, &mut out.scale);
    I::spread_bytes(min, false, -dmin, &mut out.min);
}

impl Unpack8 for BlockQ4K {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn unpack_unit<I: Isa>(bytes: &[u8], out: &mut Int8Unit) {
        let block = read_block::<Self>(bytes);
        let (d, dmin) = (I::f32_of_f16(block.d), I::f32_of_f16(block.dmin));
        // Each 32 bytes of qs hold sub-block 2k in the low nibbles and 2k+1 in the high ones.
        for (k, qs) in block.qs.chunks_exact(32).enumerate() {
            for (l, &b) in qs.iter().enumerate() {
                out.q[64 * k + l] = (b & 0xF) as i8;
                out.q[64 * k + 32 + l] = (b >> 4) as i8;
            }
        }
        k4_scales::<I>(out, d, dmin, &block.scales);
    }
}

impl Unpack8 for BlockQ5K {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn unpack_unit<I: Isa>(bytes: &[u8], out: &mut Int8Unit) {
        let block = read_block::<Self>(bytes);
        let (d, dmin) = (I::f32_of_f16(block.d), I::f32_of_f16(block.dmin));
        for (k, qs) in block.qs.chunks_exact(32).enumerate() {
            let (u0, u1) = (1u8 << (2 * k), 1u8 << (2 * k + 1));
            for (l, &b) in qs.iter().enumerate() {
                let h = block.qh[l];
                out.q[64 * k + l] = ((b & 0xF) | if h & u0 != 0 { 16 } else { 0 }) as i8;
                out.q[64 * k + 32 + l] = ((b >> 4) | if h & u1 != 0 { 16 } else { 0 }) as i8;
            }
        }
        k4_scales::<I>(out, d, dmin, &block.scales);
    }
}

impl Unpack8 for BlockQ6K {
    const HAS_MIN: bool = false;
    const BIAS: i32 = 32;
    #[inline(always)]
    fn unpack_unit<I: Isa>(bytes: &[u8], out: &mut Int8Unit) {
        let block = read_block::<Self>(bytes);
        let d = I::f32_of_f16(block.d);
        // Each 128-weight half uses 64 bytes of ql and 32 of qh; quarter k (32 weights) takes
        // ql's low/high nibbles of bytes 0..32/32..64 and bit pair 2k of qh.
        for half in 0..2 {
            let ql = &block.ql[64 * half..][..64];
            let qh = &block.qh[32 * half..][..32];
            for k in 0..4 {
                let ql = &ql[(k % 2) * 32..][..32];
                let q = &mut out.q[128 * half + 32 * k..][..32];
                for l in 0..32 {
                    let low = (ql[l] >> (4 * (k / 2))) & 0xF;
                    let high = (qh[l] >> (2 * k)) & 3;
                    q[l] = (low | (high << 4)) as i8;
                }
            }
        }
        let scales: &[u8; 16] = bytemuck::cast_ref(&block.scales);
        I::group_bytes([word(scales, 0), word(scales, 8)], true, d, &mut out.scale);
    }
}

impl Block32 for BlockIQ4NL {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn quants<I: Isa>(&self, q: &mut [i8]) {
        I::lookup_nibbles(&KVALUES_IQ4NL, &self.qs, q);
    }
    #[inline(always)]
    fn scale_bits(&self) -> (u16, u16) {
        (self.d.to_bits(), 0)
    }
}

impl Unpack8 for BlockIQ4XS {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn unpack_unit<I: Isa>(bytes: &[u8], out: &mut Int8Unit) {
        let block = read_block::<Self>(bytes);
        for sb in 0..8 {
            I::lookup_nibbles(&KVALUES_IQ4NL, &block.qs[16 * sb..], &mut out.q[32 * sb..]);
        }
        let scales = iq4xs_scales(block.scales_l, block.scales_h);
        I::spread_bytes(scales, true, I::f32_of_f16(block.d), &mut out.scale);
    }
}

/// IQ4_XS's eight 6-bit sub-block scales, minus their bias of 32, a byte each, all at once:
/// scale `sb`'s low four bits are nibble `sb` of `low` (the low nibble of byte `sb / 2` first),
/// its top two bits pair `sb` of `high`. Each is spread to byte `sb` by halving steps (fields
/// moved apart by shifts and masks, no carries between them).
#[inline(always)]
fn iq4xs_scales(low: [u8; 4], high: u16) -> u64 {
    // Bytes 0..4 to the even bytes 0, 2, 4, 6.
    let to_even = |v: u64| {
        let v = (v | (v << 16)) & 0x0000_FFFF_0000_FFFF;
        (v | (v << 8)) & 0x00FF_00FF_00FF_00FF
    };
    let l = u32::from_le_bytes(low) as u64;
    let nibbles = to_even(l & 0x0F0F_0F0F) | (to_even((l >> 4) & 0x0F0F_0F0F) << 8);
    let h = high as u64;
    let pairs = (h & 0xFF) | ((h & 0xFF00) << 24);
    let pairs = (pairs & 0x0000_000F_0000_000F) | ((pairs & 0x0000_00F0_0000_00F0) << 12);
    let pairs = (pairs & 0x0003_0003_0003_0003) | ((pairs & 0x000C_000C_000C_000C) << 6);
    centered(nibbles | (pairs << 4), 6)
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

    /// `scale · q + min` is the scalar reference's weight, bit for bit, for every quantized format,
    /// with the portable helpers and (on a CPU that has it) AVX2's. Six blocks: a short unit for
    /// the 32-weight formats, six units for the others.
    #[test]
    fn unpacked_blocks_rebuild_the_dequantized_weights() {
        use super::super::rebuild;
        use super::super::simd::Portable;
        for ty in GgmlType::all().filter(|&ty| super::super::has_kernel(ty)) {
            let elems = ty.block_elems() as u64 * 6;
            let bytes = random_blocks(ty, elems, 99).unwrap();
            let want = bits(&dequantize_to_vec(ty, &bytes).unwrap());
            assert_eq!(bits(&rebuild::<Portable>(ty, &bytes)), want, "{ty}, portable");
            #[cfg(target_arch = "x86_64")]
            if super::super::simd::Level::Avx2.runs_here() {
                assert_eq!(bits(&rebuild::<super::super::simd::Avx2>(ty, &bytes)), want, "{ty}, avx2");
            }
        }
    }

    /// The word-at-once IQ4_XS scales equal the scales taken one at a time, for every bit of
    /// both fields.
    #[test]
    fn iq4xs_scales_spread_every_bit() {
        let one_at_a_time = |low: [u8; 4], high: u16| -> u64 {
            (0..8)
                .map(|sb| {
                    let l = (low[sb / 2] >> (4 * (sb % 2))) & 0xF;
                    let h = ((high >> (2 * sb)) & 3) as u8;
                    (((l | (h << 4)) as i8 - 32) as u8 as u64) << (8 * sb)
                })
                .sum()
        };
        let mut cases: Vec<([u8; 4], u16)> = (0..32).map(|b| ((1u32 << b).to_le_bytes(), 0)).collect();
        cases.extend((0..16).map(|b| ([0; 4], 1u16 << b)));
        cases.extend((0..1000u32).map(|i| ((i.wrapping_mul(2654435761)).to_le_bytes(), (i * 40503) as u16)));
        for (low, high) in cases {
            assert_eq!(super::iq4xs_scales(low, high), one_at_a_time(low, high), "{low:?} {high:#06x}");
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }
}
