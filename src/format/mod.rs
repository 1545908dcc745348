//! GGML tensor formats: the one table that says how each format is laid out, and the CPU reference
//! implementations (dequantize, quantize, dot) that every GPU kernel is checked against.
//!
//! Everything that depends on "which format is this" goes through [`GgmlType`] and its [`FormatInfo`];
//! code elsewhere should never carry its own per-format constants.

pub mod blocks;
pub mod dequant;
pub mod dot;
pub mod quant;
pub mod random;

use crate::error::{Error, Result};

/// GGML tensor types, with the ids they have in GGUF files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    IQ4_NL,
    IQ4_XS,
}

/// Static facts about one format.
#[derive(Clone, Copy, Debug)]
pub struct FormatInfo {
    pub ty: GgmlType,
    /// The GGUF type id.
    pub id: u32,
    /// The name GGUF tools print ("Q4_K").
    pub name: &'static str,
    /// Elements per block (1 for plain float formats).
    pub block_elems: usize,
    /// Bytes per block.
    pub block_bytes: usize,
    /// Byte offsets of the block's f16 scale fields (`d`, and `dmin` or `m` where the format has
    /// one): the fields that must hold finite numbers for random bytes to be a valid block.
    pub f16_scales: &'static [usize],
}

macro_rules! format_table {
    ($($ty:ident = $id:literal, $elems:literal, $bytes:literal, $scales:expr;)*) => {
        /// The single source of truth for format ids and block geometry.
        pub const FORMATS: &[FormatInfo] = &[
            $(FormatInfo {
                ty: GgmlType::$ty,
                id: $id,
                name: stringify!($ty),
                block_elems: $elems,
                block_bytes: $bytes,
                f16_scales: &$scales,
            },)*
        ];
    };
}

format_table! {
    // name  = id, elems, bytes, f16 scale fields (floats have none: they are random values)
    F32    = 0,  1,   4,   [];
    F16    = 1,  1,   2,   [];
    Q4_0   = 2,  32,  18,  [0];
    Q4_1   = 3,  32,  20,  [0, 2];
    Q5_0   = 6,  32,  22,  [0];
    Q5_1   = 7,  32,  24,  [0, 2];
    Q8_0   = 8,  32,  34,  [0];
    Q2_K   = 10, 256, 84,  [80, 82];
    Q3_K   = 11, 256, 110, [108];
    Q4_K   = 12, 256, 144, [0, 2];
    Q5_K   = 13, 256, 176, [0, 2];
    Q6_K   = 14, 256, 210, [208];
    IQ4_NL = 20, 32,  18,  [0];
    IQ4_XS = 23, 256, 136, [0];
    BF16   = 30, 1,   2,   [];
}

impl GgmlType {
    /// Every supported type, in table order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        FORMATS.iter().map(|f| f.ty)
    }

    pub fn info(self) -> &'static FormatInfo {
        FORMATS.iter().find(|f| f.ty == self).expect("every GgmlType has a table row")
    }

    /// The type with this GGUF id, or an error naming the id (ids of formats we do not run included).
    pub fn from_id(id: u32) -> Result<GgmlType> {
        FORMATS
            .iter()
            .find(|f| f.id == id)
            .map(|f| f.ty)
            .ok_or_else(|| Error::UnsupportedType { id, name: unsupported_type_name(id) })
    }

    pub fn from_name(name: &str) -> Option<GgmlType> {
        FORMATS.iter().find(|f| f.name.eq_ignore_ascii_case(name)).map(|f| f.ty)
    }

    pub fn id(self) -> u32 {
        self.info().id
    }
    pub fn name(self) -> &'static str {
        self.info().name
    }
    pub fn block_elems(self) -> usize {
        self.info().block_elems
    }
    pub fn block_bytes(self) -> usize {
        self.info().block_bytes
    }
    pub fn is_quantized(self) -> bool {
        self.block_elems() > 1
    }

    /// Bits per weight of the format itself (block bytes × 8 / block elements).
    pub fn bits_per_weight(self) -> f64 {
        self.block_bytes() as f64 * 8.0 / self.block_elems() as f64
    }

    /// Bytes of `n_elems` elements, or an error if `n_elems` is not a whole number of blocks or
    /// the byte count overflows.
    pub fn bytes_for(self, n_elems: u64) -> Result<u64> {
        let be = self.block_elems() as u64;
        if !n_elems.is_multiple_of(be) {
            return Err(Error::Shape(format!(
                "{} elements is not a multiple of {}'s block of {be}",
                n_elems,
                self.name()
            )));
        }
        (n_elems / be)
            .checked_mul(self.block_bytes() as u64)
            .ok_or_else(|| Error::Shape(format!("{n_elems} elements of {} overflow u64 bytes", self.name())))
    }

    /// Bytes of one row of `row_elems` elements.
    pub fn row_bytes(self, row_elems: usize) -> Result<usize> {
        Ok(self.bytes_for(row_elems as u64)? as usize)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Names of GGML types that exist but that wgquant does not run, so an error can say what the file has.
fn unsupported_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        9 => "Q8_1",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        21 => "IQ3_S",
        22 => "IQ2_S",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_ids_and_names_are_unique() {
        for (i, a) in FORMATS.iter().enumerate() {
            for b in &FORMATS[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.name, b.name);
            }
        }
        assert_eq!(GgmlType::from_id(12).unwrap(), GgmlType::Q4_K);
        assert_eq!(GgmlType::Q6_K.bits_per_weight(), 6.5625);
        assert!(matches!(GgmlType::from_id(16), Err(Error::UnsupportedType { id: 16, name: Some("IQ2_XXS") })));
        assert!(GgmlType::Q4_K.bytes_for(100).is_err());
    }
}
