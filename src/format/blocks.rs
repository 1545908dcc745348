//! One `#[repr(C)]`, [`bytemuck::Pod`] struct per GGML block format, laid out byte for byte as
//! ggml's `block_*` structs in `ggml-common.h`, with ggml's field names so the code can be read
//! next to the format's description.
//!
//! Every block here has alignment 1 or 2 (f16 fields), while GGUF packs blocks back to back at
//! any offset, so blocks are read out of byte slices with [`read_block`] (an unaligned copy)
//! rather than by casting a slice in place.
//!
//! The plain float formats F32, F16 and BF16 are "blocks" of one element: [`Block`] is
//! implemented for `f32`, [`half::f16`] and [`half::bf16`] so that every format goes through
//! the same generic code.

use std::mem::size_of;

use bytemuck::{Pod, Zeroable};
use half::{bf16, f16};

use super::GgmlType;

// GGUF stores little-endian data and blocks are read by reinterpreting bytes; on a big-endian
// target every multi-byte field would come out byte-swapped.
#[cfg(target_endian = "big")]
compile_error!("wgquant's block formats assume a little-endian target");

/// Elements in a k-quant super-block (ggml's `QK_K`).
pub const QK_K: usize = 256;

/// Size in bytes of the packed 6-bit scales and mins of Q4_K and Q5_K (ggml's `K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;

/// The 16 signed levels of IQ4_NL and IQ4_XS (ggml's `kvalues_iq4nl`): a non-linear 4-bit grid,
/// denser near zero where most weights are.
pub const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// A block of some GGML format: a fixed number of bytes that decodes to `ELEMS` values.
pub trait Block: Pod + Send + Sync {
    /// The format this block belongs to.
    const TYPE: GgmlType;
    /// Elements one block holds.
    const ELEMS: usize;
}

/// Reads one block from the start of `bytes`, whatever its alignment.
///
/// Panics if `bytes` is shorter than the block; callers split rows with `chunks_exact` after
/// checking lengths, so that cannot happen from user input.
#[inline(always)]
pub fn read_block<B: Block>(bytes: &[u8]) -> B {
    bytemuck::pod_read_unaligned(&bytes[..size_of::<B>()])
}

macro_rules! impl_block {
    ($($block:ty => $ty:ident, $elems:expr;)*) => {
        $(
            impl Block for $block {
                const TYPE: GgmlType = GgmlType::$ty;
                const ELEMS: usize = $elems;
            }
        )*
    };
}

/// Q4_0: 32 weights as `d * (q - 8)` with 4-bit `q`.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Block scale.
    pub d: f16,
    /// Nibbles: element `j` in the low nibble of byte `j`, element `j + 16` in the high nibble.
    pub qs: [u8; 16],
}

/// Q4_1: 32 weights as `d * q + m` with 4-bit `q`.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: f16,
    /// Block minimum.
    pub m: f16,
    pub qs: [u8; 16],
}

/// Q5_0: 32 weights as `d * (q - 16)` with 5-bit `q`; the fifth bits live in `qh`.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: f16,
    /// Fifth bit of element `j` at bit `j` of this little-endian u32.
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// Q5_1: 32 weights as `d * q + m` with 5-bit `q`.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// Q8_0: 32 weights as `d * q` with signed 8-bit `q`.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}

/// Q2_K: 256 weights in 16 sub-blocks of 16, `d * sc * q - dmin * m` with 2-bit `q` and 4-bit
/// sub-block scale `sc` and min `m`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ2K {
    /// Sub-block scale in the low nibble, sub-block min in the high nibble.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants, four per byte.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
}

/// Q3_K: 256 weights in 16 sub-blocks of 16, `d * (sc - 32) * q` with 3-bit signed `q` and
/// 6-bit sub-block scales.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ3K {
    /// High (third) bit of each quant; a set bit means "no -4 offset".
    pub hmask: [u8; QK_K / 8],
    /// Low two bits of each quant.
    pub qs: [u8; QK_K / 4],
    /// 16 six-bit scales: low nibbles in bytes 0..8, high bit pairs in bytes 8..12.
    pub scales: [u8; 12],
    pub d: f16,
}

/// Q4_K: 256 weights in 8 sub-blocks of 32, `d * sc * q - dmin * m` with 4-bit `q` and 6-bit
/// sub-block scales and mins.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    /// 8 scales and 8 mins of 6 bits each, packed as ggml's `get_scale_min_k4` reads them.
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}

/// Q5_K: as Q4_K with a fifth bit per quant in `qh`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// Q6_K: 256 weights in 16 sub-blocks of 16, `d * sc * (q - 32)` with 6-bit `q` and signed
/// 8-bit sub-block scales.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low four bits of each quant.
    pub ql: [u8; QK_K / 2],
    /// High two bits of each quant.
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

/// IQ4_NL: 32 weights as `d * KVALUES_IQ4NL[q]` with 4-bit index `q`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIQ4NL {
    pub d: f16,
    pub qs: [u8; 16],
}

/// IQ4_XS: 256 weights in 8 sub-blocks of 32, `d * (ls - 32) * KVALUES_IQ4NL[q]` with 6-bit
/// sub-block scales `ls`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIQ4XS {
    pub d: f16,
    /// High two bits of the eight sub-block scales.
    pub scales_h: u16,
    /// Low four bits of the eight sub-block scales.
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}

impl_block! {
    f32        => F32,    1;
    f16        => F16,    1;
    bf16       => BF16,   1;
    BlockQ4_0  => Q4_0,   32;
    BlockQ4_1  => Q4_1,   32;
    BlockQ5_0  => Q5_0,   32;
    BlockQ5_1  => Q5_1,   32;
    BlockQ8_0  => Q8_0,   32;
    BlockQ2K   => Q2_K,   QK_K;
    BlockQ3K   => Q3_K,   QK_K;
    BlockQ4K   => Q4_K,   QK_K;
    BlockQ5K   => Q5_K,   QK_K;
    BlockQ6K   => Q6_K,   QK_K;
    BlockIQ4NL => IQ4_NL, 32;
    BlockIQ4XS => IQ4_XS, QK_K;
}

// Sizes as ggml's static_asserts state them; a wrong field would silently shift every later block.
const _: () = assert!(size_of::<BlockQ4_0>() == 18);
const _: () = assert!(size_of::<BlockQ4_1>() == 20);
const _: () = assert!(size_of::<BlockQ5_0>() == 22);
const _: () = assert!(size_of::<BlockQ5_1>() == 24);
const _: () = assert!(size_of::<BlockQ8_0>() == 34);
const _: () = assert!(size_of::<BlockQ2K>() == 84);
const _: () = assert!(size_of::<BlockQ3K>() == 110);
const _: () = assert!(size_of::<BlockQ4K>() == 144);
const _: () = assert!(size_of::<BlockQ5K>() == 176);
const _: () = assert!(size_of::<BlockQ6K>() == 210);
const _: () = assert!(size_of::<BlockIQ4NL>() == 18);
const _: () = assert!(size_of::<BlockIQ4XS>() == 136);

/// Runs `$body` with the type alias `$B` bound to the block type of the runtime format `$ty`.
/// With `floats => $float`, only the quantized formats bind `$B` (for code that has no float
/// version, such as the CPU's integer kernels), and the float formats run `$float`.
///
/// This is the one place that maps a [`GgmlType`] to its block type; dequantize, quantize, dot and
/// the integer kernels all dispatch through it instead of each carrying its own match over formats.
#[rustfmt::skip]
macro_rules! with_block {
    ($ty:expr, $B:ident => $body:expr) => {{
        use $crate::format::GgmlType as T;
        match $ty {
            T::F32 => { type $B = f32; $body }
            T::F16 => { type $B = half::f16; $body }
            T::BF16 => { type $B = half::bf16; $body }
            quantized => $crate::format::blocks::with_block!(quantized, $B => $body, floats => {
                unreachable!("{quantized} is a quantized format")
            }),
        }
    }};
    ($ty:expr, $B:ident => $body:expr, floats => $float:expr) => {{
        use $crate::format::blocks::*;
        use $crate::format::GgmlType as T;
        match $ty {
            T::F32 | T::F16 | T::BF16 => $float,
            T::Q4_0 => { type $B = BlockQ4_0; $body }
            T::Q4_1 => { type $B = BlockQ4_1; $body }
            T::Q5_0 => { type $B = BlockQ5_0; $body }
            T::Q5_1 => { type $B = BlockQ5_1; $body }
            T::Q8_0 => { type $B = BlockQ8_0; $body }
            T::Q2_K => { type $B = BlockQ2K; $body }
            T::Q3_K => { type $B = BlockQ3K; $body }
            T::Q4_K => { type $B = BlockQ4K; $body }
            T::Q5_K => { type $B = BlockQ5K; $body }
            T::Q6_K => { type $B = BlockQ6K; $body }
            T::IQ4_NL => { type $B = BlockIQ4NL; $body }
            T::IQ4_XS => { type $B = BlockIQ4XS; $body }
        }
    }};
}
pub(crate) use with_block;

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry<B: Block>() -> (GgmlType, usize, usize) {
        (B::TYPE, B::ELEMS, size_of::<B>())
    }

    /// Every block type agrees with the FORMATS table, which the GGUF reader and GPU code use.
    #[test]
    fn blocks_match_format_table() {
        for ty in GgmlType::all() {
            let (t, elems, bytes) = with_block!(ty, B => geometry::<B>());
            assert_eq!(t, ty);
            assert_eq!(elems, ty.block_elems(), "{ty}");
            assert_eq!(bytes, ty.block_bytes(), "{ty}");
        }
    }

    /// The table's f16 scale offsets are where the block structs keep `d` (and `dmin` or `m`).
    #[test]
    fn f16_scale_offsets_match_the_blocks() {
        use std::mem::offset_of;
        let expected: [(GgmlType, &[usize]); 12] = [
            (GgmlType::Q4_0, &[offset_of!(BlockQ4_0, d)]),
            (GgmlType::Q4_1, &[offset_of!(BlockQ4_1, d), offset_of!(BlockQ4_1, m)]),
            (GgmlType::Q5_0, &[offset_of!(BlockQ5_0, d)]),
            (GgmlType::Q5_1, &[offset_of!(BlockQ5_1, d), offset_of!(BlockQ5_1, m)]),
            (GgmlType::Q8_0, &[offset_of!(BlockQ8_0, d)]),
            (GgmlType::Q2_K, &[offset_of!(BlockQ2K, d), offset_of!(BlockQ2K, dmin)]),
            (GgmlType::Q3_K, &[offset_of!(BlockQ3K, d)]),
            (GgmlType::Q4_K, &[offset_of!(BlockQ4K, d), offset_of!(BlockQ4K, dmin)]),
            (GgmlType::Q5_K, &[offset_of!(BlockQ5K, d), offset_of!(BlockQ5K, dmin)]),
            (GgmlType::Q6_K, &[offset_of!(BlockQ6K, d)]),
            (GgmlType::IQ4_NL, &[offset_of!(BlockIQ4NL, d)]),
            (GgmlType::IQ4_XS, &[offset_of!(BlockIQ4XS, d)]),
        ];
        for (ty, offsets) in expected {
            assert_eq!(ty.info().f16_scales, offsets, "{ty}");
        }
    }
}
