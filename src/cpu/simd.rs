//! The one place with `unsafe` on the CPU side: the 8-bit dot products of the integer kernels, in
//! the widest instructions the CPU has, chosen once at run time.
//!
//! [`Isa`] is the primitive the kernels are generic over: per group of 16, the dot product of 8-bit
//! weights with 8-bit activations. [`Portable`] is plain Rust (the compiler vectorises it for the
//! baseline target: SSE2 on x86-64, NEON on aarch64). `Avx2` uses `vpmaddubsw`/`vpmaddwd`, and
//! the whole row kernel is compiled a second time with AVX2 enabled (`avx2_rows`), so that the
//! unpacking loops around it are vectorised with 256-bit registers too. `Avx2<true>` is the same
//! with AVX-VNNI's `vpdpbusd` for the multiply-adds, compiled a third time (`avx_vnni_rows`).
//! `Avx512` (`Avx2<false, true>`) dots a whole super-block in 512-bit registers with
//! AVX512-VNNI's `vpdpbusd` ([`Isa::dot_into_lanes`]), compiled a fourth time (`avx512_rows`).
//! A prompt's products ([`Isa::dot_columns`]) transpose each decoded unit once into the order its
//! columns' activations are stored in ([`ColumnUnit`]), at every level, so that each group's
//! products sum in its own lane with no reduction across lanes; they run in tiles of four rows
//! ([`Isa::dot_tile`]), which at AVX-512 load each column once for the four rows. Each level's
//! row kernel is compiled twice, for a decode step and for a prompt (`rows_dot`'s `PROMPT`).
//!
//! The 4- and 5-bit formats' unpacking ([`Isa::nibbles`], [`Isa::five_bits`]), the IQ4
//! formats' codebook ([`Isa::lookup_nibbles`], `pshufb`), and the scales' conversion eight at a
//! time ([`Isa::spread_f16`], [`Isa::spread_bytes`], [`Isa::group_bytes`]) have AVX2 forms too;
//! f16 scales convert with F16C's `vcvtph2ps` ([`Isa::f32_of_f16`]), which every AVX2 CPU has.
//! With AVX2, a unit's group sums are scaled into a column's lanes in registers
//! ([`Isa::dot_into_lanes`]), in the portable form's order of operations.
//!
//! Safety argument: the x86 functions are reached only through `avx2_rows`, `avx_vnni_rows` and
//! `avx512_rows`, each compiled with its level's features (AVX2 and F16C; with AVX-VNNI; with
//! AVX-512 F, BW, VL and VNNI) and called only for a level that runs on this CPU
//! ([`Level::runs_here`], from `is_x86_feature_detected!`), or from tests that checked the same
//! first; and they read only inside the slices they are given (whole 32- and 64-byte chunks,
//! lengths asserted) or inside whole fixed-size arrays, in bounds by their types (a decoded
//! [`Int8Unit`], a column's [`ColumnUnit`], a lane array).

use super::unpack::{f32_of, Int8Unit, GROUPS};
use super::{ColumnUnit, Lanes};

/// The activations' scales for a unit's groups: each group's `d`, `Σq`, and `d · Σq` (the
/// offset's term).
#[derive(Clone, Copy)]
pub struct Scales<'a> {
    pub d: &'a [f32],
    pub sum: &'a [i32],
    pub dsum: &'a [f32],
}

/// What a format's unit asks of the dot products, constants wherever the kernels are compiled:
/// its quants are all in 0..=63 (no sign juggling), its groups have offsets, its quants are
/// stored plus a bias, its quants stay in registers (a unit of one super-block, decoded into a
/// local).
#[derive(Clone, Copy)]
pub struct UnitFlags {
    pub unsigned: bool,
    pub with_min: bool,
    /// [`super::unpack::Unpack8::BIAS`]: `bias · Σx` comes off each group's integer sum.
    pub bias: i32,
    /// Set for a unit of one super-block, which a decode step keeps in registers (a local).
    /// Clear for eight 32-weight blocks, decoded into memory 32 bytes at a time: a 64-byte load
    /// of two such stores is not forwarded from them but waits for both to reach the cache
    /// (AVX-512 ran Q4_0 at half speed), so their dot products keep to 32-byte loads. (A prompt's
    /// units are in memory too, but there one such load per unit serves every column.)
    pub in_registers: bool,
}

impl UnitFlags {
    /// The flags of format `B`'s units.
    pub fn of<B: super::unpack::Unpack8>() -> UnitFlags {
        const {
            assert!(B::BIAS == 0 || (B::BIAS as u32).is_power_of_two(), "a bias is taken back by a shift");
            assert!(B::BIAS == 0 || B::UNSIGNED, "quants stored plus a bias are unsigned");
        };
        UnitFlags { unsigned: B::UNSIGNED, with_min: B::HAS_MIN, bias: B::BIAS, in_registers: B::ELEMS == super::UNIT }
    }
}

/// Groups `from..from + isum.len()` of a unit: `lanes[g] += scale · d · (isum − bias · Σx)`, then
/// (`with_min`) `+= min · dsum`, in this order (the AVX2 form keeps it, so both give the same
/// sums).
#[inline(always)]
pub(crate) fn scale_groups(
    lanes: &mut Lanes,
    unit: &Int8Unit,
    isum: &[i32],
    act: Scales<'_>,
    from: usize,
    flags: UnitFlags,
) {
    for (i, &sum) in isum.iter().enumerate() {
        let g = from + i;
        lanes[g] += unit.scale[g] * act.d[g] * (sum - flags.bias * act.sum[g]) as f32;
        if flags.with_min {
            lanes[g] += unit.min[g] * act.dsum[g];
        }
    }
}

/// What the kernels do differently per instruction set.
pub trait Isa {
    /// Per group of 16: the dot products of `q` and `x` (equal lengths, a multiple of 32) into
    /// `out`. `unsigned`: every `q` lies in 0..=63 (the formats with offsets or a bias keep their
    /// quants so), which spares the AVX2 form the sign juggling; a constant wherever the kernels
    /// call this.
    fn dot_groups(q: &[i8], x: &[i8], out: &mut [i32], unsigned: bool);

    /// A unit's dot products with one column, scaled into that column's lanes: per group g of
    /// `q` (decoded weights) and `x` (8-bit activations), `lanes[g] += scale · d · Σ((q − bias)·x)`,
    /// and with `with_min` `+= min · dsum` (the weights' scales and offsets from `unit`, the
    /// activations' `d`, `Σx` and `dsum` per group from the unit's first).
    #[inline(always)]
    fn dot_into_lanes(q: &[i8], x: &[i8], lanes: &mut Lanes, unit: &Int8Unit, act: Scales<'_>, flags: UnitFlags) {
        let mut isum = [0i32; GROUPS];
        let groups = q.len() / 16;
        Self::dot_groups(q, x, &mut isum[..groups], flags.unsigned);
        scale_groups(lanes, unit, &isum[..groups], act, 0, flags);
    }

    /// A unit's dot products (its decoded weights `q`, whole groups) with every column of a
    /// prompt (`columns`, that unit position of each, [`ColumnUnit`]), into each column's lanes
    /// as [`Isa::dot_into_lanes`] would.
    #[inline(always)]
    fn dot_columns(q: &[i8], columns: &[ColumnUnit], unit: &Int8Unit, lanes: &mut [Lanes], flags: UnitFlags) {
        super::transposed_columns(q, columns, unit, lanes, flags)
    }

    /// [`Isa::dot_columns`] for a tile of rows' units at one unit position (`len` weights each),
    /// into `lanes` (`[row][column]`).
    #[inline(always)]
    fn dot_tile(units: &[Int8Unit], len: usize, columns: &[ColumnUnit], lanes: &mut [Lanes], flags: UnitFlags) {
        row_by_row::<Self>(units, len, columns, lanes, flags)
    }

    /// The nibbles of `qs` as 32 weights into `q` (low nibbles weights 0..16, high ones 16..32).
    #[inline(always)]
    fn nibbles(qs: &[u8; 16], q: &mut [i8]) {
        super::unpack::nibbles(qs, q)
    }

    /// [`Isa::nibbles`] with each weight's fifth bit from `qh` (bit j for weight j).
    #[inline(always)]
    fn five_bits(qs: &[u8; 16], qh: [u8; 4], q: &mut [i8]) {
        super::unpack::five_bits(qs, qh, q)
    }

    /// Q2_K's and Q3_K's 256 quants into `q` ([`super::unpack::bit_planes`]).
    #[inline(always)]
    fn bit_planes(qs: &[u8; 64], hmask: Option<&[u8; 32]>, q: &mut [i8]) {
        super::unpack::bit_planes(qs, hmask, q)
    }

    /// An f16 scale as f32 (exactly, for every finite f16).
    #[inline(always)]
    fn f32_of_f16(h: half::f16) -> f32 {
        f32_of(h)
    }

    /// Eight f16 values (four to a word, the first in the low bits) as f32, each the scale of two
    /// consecutive groups of `out` (a unit of 32-weight blocks' scales or offsets).
    #[inline(always)]
    fn spread_f16(halves: [u64; 2], out: &mut [f32; GROUPS]) {
        for (i, pair) in out.chunks_exact_mut(2).enumerate() {
            let bits = (halves[i / 4] >> (16 * (i % 4))) as u16;
            pair.fill(f32_of(half::f16::from_bits(bits)));
        }
    }

    /// Eight integers, the bytes of `bytes` (the first in the low bits; `signed` or not), times
    /// `factor`, each the scale of two consecutive groups of `out` (a super-block's scales or
    /// offsets per 32 weights).
    #[inline(always)]
    fn spread_bytes(bytes: u64, signed: bool, factor: f32, out: &mut [f32; GROUPS]) {
        for (i, pair) in out.chunks_exact_mut(2).enumerate() {
            pair.fill(factor * byte_value(bytes >> (8 * i), signed) as f32);
        }
    }

    /// Sixteen integers, the bytes of `bytes` (`signed` or not), times `factor`, one per group of
    /// `out` (a super-block's scales or offsets per 16 weights).
    #[inline(always)]
    fn group_bytes(bytes: [u64; 2], signed: bool, factor: f32, out: &mut [f32; GROUPS]) {
        for (g, s) in out.iter_mut().enumerate() {
            *s = factor * byte_value(bytes[g / 8] >> (8 * (g % 8)), signed) as f32;
        }
    }

    /// `table` looked up with the nibbles of `packed`: the low nibbles' values into `out[..16]`,
    /// the high nibbles' into `out[16..32]` (the IQ4 formats' codebook).
    #[inline(always)]
    fn lookup_nibbles(table: &[i8; 16], packed: &[u8], out: &mut [i8]) {
        for (j, &b) in packed[..16].iter().enumerate() {
            out[j] = table[(b & 0xF) as usize];
            out[j + 16] = table[(b >> 4) as usize];
        }
    }
}

/// [`Isa::dot_tile`] a row at a time.
#[inline(always)]
fn row_by_row<I: Isa + ?Sized>(
    units: &[Int8Unit],
    len: usize,
    columns: &[ColumnUnit],
    lanes: &mut [Lanes],
    flags: UnitFlags,
) {
    for (unit, lanes) in units.iter().zip(lanes.chunks_exact_mut(columns.len())) {
        I::dot_columns(&unit.q[..len], columns, unit, lanes, flags);
    }
}

/// The low byte of `word` as an integer, `signed` or not.
#[inline(always)]
fn byte_value(word: u64, signed: bool) -> i32 {
    match signed {
        true => word as u8 as i8 as i32,
        false => word as u8 as i32,
    }
}

/// Asks the CPU to start loading the cache lines of `len` bytes from `at` into its caches: a hint
/// that never faults, so `at` may lie past the end of the weights.
#[inline(always)]
pub fn prefetch(at: *const u8, len: usize) {
    // Elsewhere the hardware prefetcher alone (aarch64's prefetch intrinsic is not stable yet).
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, len);
    #[cfg(target_arch = "x86_64")]
    for line in (0..len).step_by(64) {
        // SAFETY: a prefetch reads nothing the program sees and never faults; SSE is part of
        // the x86-64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.wrapping_add(line) as *const i8)
        }
    }
}

/// Plain Rust, for every CPU.
pub struct Portable;

impl Isa for Portable {
    #[inline(always)]
    fn dot_groups(q: &[i8], x: &[i8], out: &mut [i32], _unsigned: bool) {
        for ((q, x), o) in q.chunks_exact(16).zip(x.chunks_exact(16)).zip(out) {
            *o = q.iter().zip(x).map(|(&a, &b)| a as i32 * b as i32).sum();
        }
    }
}

/// The instruction sets the kernels can use, from the plainest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Portable,
    Avx2,
    /// AVX2 with AVX-VNNI's `vpdpbusd`, which multiplies and sums four byte pairs into a 32-bit
    /// lane in one instruction where AVX2 takes two (`vpmaddubsw`, `vpmaddwd`).
    AvxVnni,
    /// AVX2, with a whole unit's dot products in AVX-512's 512-bit registers (`vpdpbusd` of
    /// AVX512-VNNI, which CPUs without AVX-VNNI have too: Ice Lake, Zen 4; F, BW and VL too).
    Avx512,
}

impl Level {
    /// Every level, from the plainest.
    const ALL: [Level; 4] = [Level::Portable, Level::Avx2, Level::AvxVnni, Level::Avx512];

    /// The best level this CPU runs.
    pub fn detect() -> Level {
        Self::ALL.into_iter().rev().find(|l| l.runs_here()).unwrap_or(Level::Portable)
    }

    /// Every level this CPU runs, from the plainest (the tests compare them all).
    pub fn available() -> Vec<Level> {
        Self::ALL.into_iter().filter(|l| l.runs_here()).collect()
    }

    /// Whether this CPU runs this level (std caches the CPU's answer: a few loads).
    pub fn runs_here(self) -> bool {
        match self {
            Level::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c"),
            #[cfg(target_arch = "x86_64")]
            Level::AvxVnni => Level::Avx2.runs_here() && std::arch::is_x86_feature_detected!("avxvnni"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => {
                Level::Avx2.runs_here()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::AvxVnni => "avx-vnni",
            Level::Avx512 => "avx-512",
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) use x86::Avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{avx2_rows, avx512_rows, avx_vnni_rows};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::unpack::{Int8Unit, Unpack8, GROUPS};
    use super::super::{ColumnUnit, Lanes, Q8Activations, Scratch};
    use super::{scale_groups, Isa, Scales, UnitFlags};
    use std::arch::x86_64::*;

    /// AVX2: `|q| · sign(x, q)` in unsigned × signed byte pairs (`vpmaddubsw`, which needs one
    /// unsigned side; the product's sign moves to x), then pairs of i16 to i32 (`vpmaddwd`):
    /// lanes 0..4 hold the first group of a 32-byte chunk, lanes 4..8 the second. |q| ≤ 128 and
    /// |x| ≤ 127, so a pair's sum (at most 2 · 128 · 127) never saturates i16.
    ///
    /// With `VNNI`, a chunk's products are summed in fours by AVX-VNNI's `vpdpbusd` instead.
    /// With `ZMM`, a whole unit's dot products run in 512-bit registers ([`sixteen_groups`]).
    ///
    /// Not public: its methods assume AVX2 and F16C (with `VNNI` AVX-VNNI, with `ZMM` AVX-512 F,
    /// BW, VL and VNNI), which only `avx2_rows`', `avx_vnni_rows`' and `avx512_rows`' callers
    /// have checked.
    pub(crate) struct Avx2<const VNNI: bool = false, const ZMM: bool = false>;

    /// The AVX-512 level's instruction set: AVX2's, with 512-bit dot products.
    type Avx512 = Avx2<false, true>;

    impl<const VNNI: bool, const ZMM: bool> Isa for Avx2<VNNI, ZMM> {
        #[inline(always)]
        fn dot_groups(q: &[i8], x: &[i8], out: &mut [i32], unsigned: bool) {
            assert!(q.len() == x.len() && q.len().is_multiple_of(32) && out.len() >= q.len() / 16);
            let chunks = q.len() / 32;
            // SAFETY: the level's features are present (see the module's safety argument); every chunk read lies inside
            // both slices and every store inside `out` (lengths asserted above); unaligned
            // loads and stores.
            unsafe {
                let mut c = 0;
                while c + 4 <= chunks {
                    let groups = eight_groups::<VNNI, ZMM>(q.as_ptr().add(32 * c), x.as_ptr().add(32 * c), unsigned);
                    _mm256_storeu_si256(out.as_mut_ptr().add(2 * c) as *mut __m256i, groups);
                    c += 4;
                }
                for c in c..chunks {
                    let quads = chunk_quads::<VNNI, ZMM>(q.as_ptr().add(32 * c), x.as_ptr().add(32 * c), unsigned);
                    out[2 * c] = hsum(_mm256_castsi256_si128(quads));
                    out[2 * c + 1] = hsum(_mm256_extracti128_si256::<1>(quads));
                }
            }
        }

        #[inline(always)]
        fn dot_columns(q: &[i8], columns: &[ColumnUnit], unit: &Int8Unit, lanes: &mut [Lanes], flags: UnitFlags) {
            assert!(q.len().is_multiple_of(16) && q.len() <= unit.q.len() && columns.len() == lanes.len());
            // SAFETY: the level's features are present (see the module's safety argument); the
            // decoded unit is read whole (its 256 bytes, of which only `q` counts: the columns'
            // activations past it are zero), and each column's record and lanes whole.
            unsafe {
                match ZMM {
                    true => unit_into_columns(&unit.q, columns, unit, lanes, flags),
                    false => unit_into_columns256::<VNNI>(q, columns, unit, lanes, flags),
                }
            }
        }

        #[inline(always)]
        fn dot_tile(units: &[Int8Unit], len: usize, columns: &[ColumnUnit], lanes: &mut [Lanes], flags: UnitFlags) {
            match units.try_into() {
                Ok(tile) if ZMM => {
                    assert!(lanes.len() == TILE * columns.len());
                    // SAFETY: AVX-512 F, BW and VNNI are present (see the module's safety
                    // argument); each unit and column record is read whole and each of the
                    // tile's lanes lies inside `lanes` (asserted).
                    unsafe { tile_into_columns(tile, columns, lanes, flags) }
                }
                _ => super::row_by_row::<Self>(units, len, columns, lanes, flags),
            }
        }

        #[inline(always)]
        fn nibbles(qs: &[u8; 16], q: &mut [i8]) {
            assert!(q.len() >= 32);
            // SAFETY: AVX2 is present (see the module's safety argument); 16 bytes read from `qs`, 32
            // written inside `q` (asserted).
            unsafe { _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, nibbles32(qs)) }
        }

        #[inline(always)]
        fn five_bits(qs: &[u8; 16], qh: [u8; 4], q: &mut [i8]) {
            assert!(q.len() >= 32);
            // SAFETY: as in `nibbles`.
            unsafe {
                let fifth = _mm256_and_si256(bytes_of_bits(u32::from_le_bytes(qh)), _mm256_set1_epi8(0x10));
                _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, _mm256_or_si256(nibbles32(qs), fifth));
            }
        }

        #[inline(always)]
        fn bit_planes(qs: &[u8; 64], hmask: Option<&[u8; 32]>, q: &mut [i8]) {
            assert!(q.len() >= 256);
            // SAFETY: as in `nibbles`: 64 bytes read from `qs`, 32 from `hmask`, 256 written
            // inside `q` (asserted). Shifting 16-bit lanes right by at most 7 and masking keeps
            // each byte's own bits: what crosses from the neighbouring byte lands above the mask.
            unsafe {
                let hmask = hmask.map(|m| _mm256_loadu_si256(m.as_ptr() as *const __m256i));
                let (three, one) = (_mm256_set1_epi8(3), _mm256_set1_epi8(1));
                for h in 0..2 {
                    let bytes = _mm256_loadu_si256(qs.as_ptr().add(32 * h) as *const __m256i);
                    for j in 0..4 {
                        let low = _mm256_and_si256(shift_right16(bytes, 2 * j), three);
                        let quants = match hmask {
                            None => low,
                            Some(m) => {
                                let high = _mm256_and_si256(shift_right16(m, 4 * h + j), one);
                                _mm256_or_si256(low, _mm256_slli_epi16::<2>(high))
                            }
                        };
                        _mm256_storeu_si256(q.as_mut_ptr().add(128 * h + 32 * j) as *mut __m256i, quants);
                    }
                }
            }
        }

        #[inline(always)]
        fn dot_into_lanes(q: &[i8], x: &[i8], lanes: &mut Lanes, unit: &Int8Unit, act: Scales<'_>, flags: UnitFlags) {
            let groups = q.len() / 16;
            assert!(q.len() == x.len() && q.len().is_multiple_of(32) && groups <= GROUPS);
            assert!(act.d.len() >= groups && act.sum.len() >= groups && act.dsum.len() >= groups);
            if ZMM && groups == GROUPS && flags.in_registers {
                // SAFETY: AVX-512 F, BW and VNNI are present (see the module's safety argument);
                // a whole unit: 256 weights and activations, 16 of each scale (asserted above).
                unsafe { unit_into_lanes(q, x, lanes, unit, act, flags) };
                return;
            }
            // Eight groups at a time, their integer sums scaled in registers (no round trip
            // through memory), in the portable form's order of operations.
            let whole = groups / 8 * 8;
            for g in (0..whole).step_by(8) {
                // SAFETY: the level's features are present (see the module's safety argument); the 128 weights and
                // activations read lie inside `q` and `x`, and every load and store of eight
                // floats inside its array or slice (g + 8 ≤ groups ≤ each length, asserted).
                unsafe {
                    let sums =
                        eight_groups::<VNNI, ZMM>(q.as_ptr().add(16 * g), x.as_ptr().add(16 * g), flags.unsigned);
                    scale8_into_lanes(
                        less_bias8(sums, act.sum.as_ptr().add(g), flags.bias),
                        g,
                        lanes,
                        unit,
                        act,
                        flags,
                    );
                }
            }
            if whole < groups {
                let mut isum = [0i32; GROUPS];
                let rest = &mut isum[..groups - whole];
                Self::dot_groups(&q[16 * whole..], &x[16 * whole..], rest, flags.unsigned);
                scale_groups(lanes, unit, rest, act, whole, flags);
            }
        }

        #[inline(always)]
        fn spread_f16(halves: [u64; 2], out: &mut [f32; GROUPS]) {
            // SAFETY: AVX2 and F16C are present (see the module's safety argument); 64 bytes
            // written inside `out`.
            unsafe { spread_pairs(_mm256_cvtph_ps(_mm_set_epi64x(halves[1] as i64, halves[0] as i64)), out) }
        }

        #[inline(always)]
        fn f32_of_f16(h: half::f16) -> f32 {
            // SAFETY: F16C is present (see the module's safety argument).
            unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32))) }
        }

        #[inline(always)]
        fn spread_bytes(bytes: u64, signed: bool, factor: f32, out: &mut [f32; GROUPS]) {
            // SAFETY: as in `spread_f16`.
            unsafe { spread_pairs(scaled_bytes(bytes, signed, factor), out) }
        }

        #[inline(always)]
        fn group_bytes(bytes: [u64; 2], signed: bool, factor: f32, out: &mut [f32; GROUPS]) {
            // SAFETY: as in `spread_f16`.
            unsafe {
                _mm256_storeu_ps(out.as_mut_ptr(), scaled_bytes(bytes[0], signed, factor));
                _mm256_storeu_ps(out.as_mut_ptr().add(8), scaled_bytes(bytes[1], signed, factor));
            }
        }

        #[inline(always)]
        fn lookup_nibbles(table: &[i8; 16], packed: &[u8], out: &mut [i8]) {
            // SAFETY: AVX2, and so SSSE3, is present (the module's safety argument); the lengths
            // are asserted inside.
            unsafe { lookup16(table, packed, out) }
        }
    }

    /// The products of 32 weights `q` and activations `x` summed in fours: lanes 0..4 hold the
    /// first 16's, lanes 4..8 the second 16's. Unsigned weights (at most 63, so a pair's sum,
    /// 2 · 63 · 127, fits i16) go into `vpmaddubsw` as they are. A function, not a closure, so
    /// that it is inlined into the AVX2 caller with its features (a closure's body would call the
    /// intrinsics).
    #[inline(always)]
    unsafe fn chunk_quads<const VNNI: bool, const ZMM: bool>(q: *const i8, x: *const i8, unsigned: bool) -> __m256i {
        let a = _mm256_loadu_si256(q as *const __m256i);
        let b = _mm256_loadu_si256(x as *const __m256i);
        let (a, b) = match unsigned {
            true => (a, b),
            false => (_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a)),
        };
        match (VNNI, ZMM) {
            (true, _) => _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), a, b),
            // AVX512-VNNI's form of the same (AVX-512 CPUs need not have AVX-VNNI).
            (false, true) => _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b),
            (false, false) => _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)),
        }
    }

    /// Eight values as sixteen in `out`, each twice in a row: the 32-weight scales as their
    /// groups' (two vector stores, which the scale arithmetic's vector loads are forwarded from).
    #[inline(always)]
    unsafe fn spread_pairs(v: __m256, out: &mut [f32; GROUPS]) {
        let low = _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
        let high = _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7));
        _mm256_storeu_ps(out.as_mut_ptr(), low);
        _mm256_storeu_ps(out.as_mut_ptr().add(8), high);
    }

    /// The eight bytes of `bytes` as integers (`signed` or not) times `factor`.
    #[inline(always)]
    unsafe fn scaled_bytes(bytes: u64, signed: bool, factor: f32) -> __m256 {
        let b = _mm_cvtsi64_si128(bytes as i64);
        let ints = if signed { _mm256_cvtepi8_epi32(b) } else { _mm256_cvtepu8_epi32(b) };
        _mm256_mul_ps(_mm256_set1_ps(factor), _mm256_cvtepi32_ps(ints))
    }

    /// The dot products of 128 weights `q` and activations `x` per group of 16, in order: four
    /// chunks' sums of four, two rounds of pairwise adds (which leave groups 0, 2, 4, 6 in the low
    /// half and 1, 3, 5, 7 in the high one) and a permute.
    #[inline(always)]
    unsafe fn eight_groups<const VNNI: bool, const ZMM: bool>(q: *const i8, x: *const i8, unsigned: bool) -> __m256i {
        let chunk = |c: usize| (q.add(32 * c), x.add(32 * c));
        let ((q0, x0), (q1, x1), (q2, x2), (q3, x3)) = (chunk(0), chunk(1), chunk(2), chunk(3));
        let h01 =
            _mm256_hadd_epi32(chunk_quads::<VNNI, ZMM>(q0, x0, unsigned), chunk_quads::<VNNI, ZMM>(q1, x1, unsigned));
        let h23 =
            _mm256_hadd_epi32(chunk_quads::<VNNI, ZMM>(q2, x2, unsigned), chunk_quads::<VNNI, ZMM>(q3, x3, unsigned));
        _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(h01, h23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }

    /// [`less_bias`] for eight groups: their sums less `bias` (a power of two,
    /// [`UnitFlags::bias`]) times the activations' sums (`sum`, eight of them): a stored bias,
    /// or 128 for signed quants flipped to `q + 128` (AVX-VNNI prompts, [`unit_into_columns256`]);
    /// the decode path handles signed quants apart ([`chunk_quads`]).
    #[inline(always)]
    unsafe fn less_bias8(sums: __m256i, sum: *const i32, bias: i32) -> __m256i {
        match bias {
            0 => sums,
            bias => {
                _mm256_sub_epi32(sums, _mm256_sll_epi32(_mm256_loadu_si256(sum as *const __m256i), bias_shift(bias)))
            }
        }
    }

    /// Groups `g..g + 8`'s integer sums scaled into a column's lanes, `lanes += scale · d · sums`
    /// then (`with_min`) `+= min · dsum`, in the portable form's order of operations. The caller
    /// guarantees `g + 8 ≤ 16` and that `act`'s slices hold groups `g..g + 8`.
    #[inline(always)]
    unsafe fn scale8_into_lanes(
        sums: __m256i,
        g: usize,
        lanes: &mut Lanes,
        unit: &Int8Unit,
        act: Scales<'_>,
        flags: UnitFlags,
    ) {
        let scale = _mm256_loadu_ps(unit.scale.as_ptr().add(g));
        let weight = _mm256_mul_ps(scale, _mm256_loadu_ps(act.d.as_ptr().add(g)));
        let term = _mm256_mul_ps(weight, _mm256_cvtepi32_ps(sums));
        let mut sum = _mm256_add_ps(_mm256_loadu_ps(lanes.as_ptr().add(g)), term);
        if flags.with_min {
            let min = _mm256_loadu_ps(unit.min.as_ptr().add(g));
            sum = _mm256_add_ps(sum, _mm256_mul_ps(min, _mm256_loadu_ps(act.dsum.as_ptr().add(g))));
        }
        _mm256_storeu_ps(lanes.as_mut_ptr().add(g), sum);
    }

    /// [`Isa::dot_columns`] in 256-bit registers: the unit's quads transposed once as the columns'
    /// are, so a column's 256 products sum in eight multiply-adds into two registers, groups 0..8
    /// and 8..16 in order, with no reduction across lanes. Signed weights: with VNNI flipped to
    /// `q + 128` once (`128 · Σx` taken back per column, as [`less_bias`] does); without, their
    /// magnitudes kept once and each column's activations given their signs (`vpmaddubsw` would
    /// saturate on `q + 128`). Groups past `q` (a short unit) have zero activations and scales
    /// and add nothing.
    #[inline(always)]
    unsafe fn unit_into_columns256<const VNNI: bool>(
        q: &[i8],
        columns: &[ColumnUnit],
        unit: &Int8Unit,
        lanes: &mut [Lanes],
        flags: UnitFlags,
    ) {
        let mut transposed = [0i8; 256];
        super::super::transpose_quads(q, &mut transposed);
        let (flip, signed) = (VNNI && !flags.unsigned, !VNNI && !flags.unsigned);
        let mut weights = [_mm256_setzero_si256(); 8];
        for (i, w) in weights.iter_mut().enumerate() {
            let v = _mm256_loadu_si256(transposed.as_ptr().add(32 * i) as *const __m256i);
            *w = match (flip, signed) {
                (true, _) => _mm256_xor_si256(v, _mm256_set1_epi8(-128)),
                (_, true) => _mm256_sign_epi8(v, v),
                _ => v,
            };
        }
        let bias = if flip { 128 } else { flags.bias };
        for (column, lanes) in columns.iter().zip(lanes.iter_mut()) {
            let mut sums = [_mm256_setzero_si256(); 2];
            for (i, &w) in weights.iter().enumerate() {
                let x = _mm256_loadu_si256(column.q.as_ptr().add(32 * i) as *const __m256i);
                let x = match signed {
                    true => _mm256_sign_epi8(x, _mm256_loadu_si256(transposed.as_ptr().add(32 * i) as *const __m256i)),
                    false => x,
                };
                sums[i % 2] = match VNNI {
                    true => _mm256_dpbusd_avx_epi32(sums[i % 2], w, x),
                    false => _mm256_add_epi32(
                        sums[i % 2],
                        _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)),
                    ),
                };
            }
            for (half, &sums) in sums.iter().enumerate() {
                let g = 8 * half;
                let sums = less_bias8(sums, column.sum.as_ptr().add(g), bias);
                scale8_into_lanes(sums, g, lanes, unit, column.scales(), flags);
            }
        }
    }

    /// The shift that multiplies by `bias`, a power of two.
    #[inline(always)]
    unsafe fn bias_shift(bias: i32) -> __m128i {
        _mm_cvtsi32_si128(bias.trailing_zeros() as i32)
    }

    /// Each 16-bit lane of `v` shifted right by `by` bits.
    #[inline(always)]
    unsafe fn shift_right16(v: __m256i, by: usize) -> __m256i {
        _mm256_srl_epi16(v, _mm_cvtsi32_si128(by as i32))
    }

    /// The 16 bytes of `qs` as 32 nibbles, one per byte: the low nibbles first, then the high ones.
    #[inline(always)]
    unsafe fn nibbles32(qs: &[u8; 16]) -> __m256i {
        let b = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
        let mask = _mm_set1_epi8(0x0F);
        _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16::<4>(b), mask), _mm_and_si128(b, mask))
    }

    /// Byte j all ones where bit j of `bits` is set, zero where it is clear: each 128-bit lane
    /// spreads its two bytes of `bits` over eight bytes each (`pshufb`), then byte j is or-ed with
    /// every bit but bit j mod 8, which leaves all ones only where that bit was set.
    #[inline(always)]
    unsafe fn bytes_of_bits(bits: u32) -> __m256i {
        let spread = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
        );
        let v = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread);
        let all_but_own_bit = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
        _mm256_cmpeq_epi8(_mm256_or_si256(v, all_but_own_bit), _mm256_set1_epi8(-1))
    }

    /// `vpshufb`: 32 lookups of a 16-entry table (in both 128-bit lanes) in one instruction, into
    /// one 32-byte store, which the dot product's 32-byte load can then be forwarded from.
    #[inline(always)]
    unsafe fn lookup16(table: &[i8; 16], packed: &[u8], out: &mut [i8]) {
        assert!(packed.len() >= 16 && out.len() >= 32);
        let t = _mm256_broadcastsi128_si256(_mm_loadu_si128(table.as_ptr() as *const __m128i));
        let nibbles = nibbles32(packed[..16].try_into().expect("16 bytes"));
        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, _mm256_shuffle_epi8(t, nibbles));
    }

    #[inline(always)]
    unsafe fn hsum(v: __m128i) -> i32 {
        let v = _mm_add_epi32(v, _mm_shuffle_epi32::<0b01_00_11_10>(v));
        let v = _mm_add_epi32(v, _mm_shuffle_epi32::<0b10_11_00_01>(v));
        _mm_cvtsi128_si32(v)
    }

    /// A whole unit's [`Isa::dot_into_lanes`] in 512-bit registers: the 16 groups' integer sums
    /// ([`sixteen_groups`]) scaled into the column's lanes, one register, in the portable form's
    /// order of operations.
    #[inline(always)]
    unsafe fn unit_into_lanes(
        q: &[i8],
        x: &[i8],
        lanes: &mut Lanes,
        unit: &Int8Unit,
        act: Scales<'_>,
        flags: UnitFlags,
    ) {
        scale_into_lanes(sixteen_groups(q.as_ptr(), x.as_ptr(), act.sum.as_ptr(), flags), lanes, unit, act, flags);
    }

    /// A unit's 16 groups' integer sums scaled into a column's lanes, `lanes += scale · d · sums`
    /// then (`with_min`) `+= min · dsum`, in the portable form's order of operations.
    #[inline(always)]
    unsafe fn scale_into_lanes(sums: __m512i, lanes: &mut Lanes, unit: &Int8Unit, act: Scales<'_>, flags: UnitFlags) {
        let dsum = if flags.with_min { _mm512_loadu_ps(act.dsum.as_ptr()) } else { _mm512_setzero_ps() };
        scale_with(sums, lanes, unit, _mm512_loadu_ps(act.d.as_ptr()), dsum, flags);
    }

    /// [`scale_into_lanes`] with the activations' `d` and `dsum` already in registers.
    #[inline(always)]
    unsafe fn scale_with(sums: __m512i, lanes: &mut Lanes, unit: &Int8Unit, d: __m512, dsum: __m512, flags: UnitFlags) {
        let weight = _mm512_mul_ps(_mm512_loadu_ps(unit.scale.as_ptr()), d);
        let term = _mm512_mul_ps(weight, _mm512_cvtepi32_ps(sums));
        let mut sum = _mm512_add_ps(_mm512_loadu_ps(lanes.as_ptr()), term);
        if flags.with_min {
            sum = _mm512_add_ps(sum, _mm512_mul_ps(_mm512_loadu_ps(unit.min.as_ptr()), dsum));
        }
        _mm512_storeu_ps(lanes.as_mut_ptr(), sum);
    }

    /// The dot products of a unit's 256 weights `q` (less the format's bias) and activations `x`
    /// per group of 16, in order, given the activations' sums per group (`sum`). `vpdpbusd` wants
    /// one side unsigned: signed weights are flipped to `q + 128` (an xor of the top bit) and
    /// `128 · Σx` taken back from each group's sum as a bias is, exactly, which costs one
    /// instruction per 64 weights where the sign juggling of [`chunk_quads`] costs three. Each
    /// 64-byte chunk c leaves group 4c + k's products, in fours, in 128-bit lane k; two rounds of
    /// unpacks and adds gather group 4c + k in lane 4k + c, and a permute puts the groups in order.
    #[inline(always)]
    unsafe fn sixteen_groups(q: *const i8, x: *const i8, sum: *const i32, flags: UnitFlags) -> __m512i {
        let unsigned = flags.unsigned;
        let (q0, x0, q1, x1) = (q, x, q.add(64), x.add(64));
        let (q2, x2, q3, x3) = (q.add(128), x.add(128), q.add(192), x.add(192));
        let ab = pair_sums(wide_quads(q0, x0, unsigned), wide_quads(q1, x1, unsigned));
        let cd = pair_sums(wide_quads(q2, x2, unsigned), wide_quads(q3, x3, unsigned));
        let by_lane = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        less_bias(_mm512_permutexvar_epi32(order, by_lane), sum, flags)
    }

    /// Group sums of quants stored plus their bias, or flipped to `q + 128` (signed ones), less
    /// that bias times the activations' sums (`sum`, 16 of them): the sums of the quants as they
    /// are, exactly.
    #[inline(always)]
    unsafe fn less_bias(sums: __m512i, sum: *const i32, flags: UnitFlags) -> __m512i {
        match if flags.unsigned { flags.bias } else { 128 } {
            0 => sums,
            bias => _mm512_sub_epi32(sums, _mm512_sll_epi32(_mm512_loadu_si512(sum as *const _), bias_shift(bias))),
        }
    }

    /// [`Isa::dot_columns`] of a unit with many columns (a prompt) in 512-bit registers: the
    /// unit's quads are transposed once ([`super::super::transpose_quads`]'s order, in which the
    /// activations were stored), so each column costs four `vpdpbusd` into one register, already
    /// one group per lane, where [`sixteen_groups`] spends nine instructions more gathering them.
    /// `q` is the whole decoded unit: of a short one, the quants past its end meet zero
    /// activations and scales and add nothing.
    #[inline(always)]
    unsafe fn unit_into_columns(
        q: &[i8; 256],
        columns: &[ColumnUnit],
        unit: &Int8Unit,
        lanes: &mut [Lanes],
        flags: UnitFlags,
    ) {
        // (Loops, not closures, around the intrinsics: see `chunk_quads`.)
        let mut quads = transposed_quads(q.as_ptr());
        if !flags.unsigned {
            for quad in &mut quads {
                *quad = _mm512_xor_si512(*quad, _mm512_set1_epi8(-128));
            }
        }
        for (column, lanes) in columns.iter().zip(lanes.iter_mut()) {
            let mut sums = _mm512_setzero_si512();
            for (i, &quad) in quads.iter().enumerate() {
                sums = _mm512_dpbusd_epi32(sums, quad, _mm512_loadu_si512(column.q.as_ptr().add(64 * i) as *const _));
            }
            let sums = less_bias(sums, column.sum.as_ptr(), flags);
            scale_into_lanes(sums, lanes, unit, column.scales(), flags);
        }
    }

    /// Rows in a tile of [`tile_into_columns`]: the prompt path's tiles.
    const TILE: usize = super::super::TILE_ROWS;

    /// [`unit_into_columns`] for four rows' units at once: each column's activations, scales and
    /// bias term are loaded once and serve the four units' quads, all sixteen registers of them
    /// held across the columns. `lanes` is `[row][column]`.
    #[inline(always)]
    unsafe fn tile_into_columns(
        units: &[Int8Unit; TILE],
        columns: &[ColumnUnit],
        lanes: &mut [Lanes],
        flags: UnitFlags,
    ) {
        // (Loops, not closures, around the intrinsics: see `chunk_quads`.)
        let mut quads = [[_mm512_setzero_si512(); 4]; TILE];
        for (quads, unit) in quads.iter_mut().zip(units) {
            *quads = transposed_quads(unit.q.as_ptr());
            if !flags.unsigned {
                for quad in quads.iter_mut() {
                    *quad = _mm512_xor_si512(*quad, _mm512_set1_epi8(-128));
                }
            }
        }
        let n_cols = columns.len();
        for (c, column) in columns.iter().enumerate() {
            let mut x = [_mm512_setzero_si512(); 4];
            for (i, x) in x.iter_mut().enumerate() {
                *x = _mm512_loadu_si512(column.q.as_ptr().add(64 * i) as *const _);
            }
            let bias = less_bias(_mm512_setzero_si512(), column.sum.as_ptr(), flags);
            let d = _mm512_loadu_ps(column.d.as_ptr());
            let dsum = if flags.with_min { _mm512_loadu_ps(column.dsum.as_ptr()) } else { _mm512_setzero_ps() };
            for (r, (unit, quads)) in units.iter().zip(&quads).enumerate() {
                let mut sums = bias;
                for (&quad, &x) in quads.iter().zip(&x) {
                    sums = _mm512_dpbusd_epi32(sums, quad, x);
                }
                scale_with(sums, &mut lanes[r * n_cols + c], unit, d, dsum, flags);
            }
        }
    }

    /// The 256 weights at `q` with their quads transposed ([`super::super::transpose_quads`]):
    /// output c's lane k is quad c of group k, that is 64-byte chunk k / 4's lane 4 (k % 4) + c;
    /// two two-source permutes (chunks 0 and 1, 2 and 3) and a blend.
    #[inline(always)]
    unsafe fn transposed_quads(q: *const i8) -> [__m512i; 4] {
        let (a, b) = (_mm512_loadu_si512(q as *const _), _mm512_loadu_si512(q.add(64) as *const _));
        let (c, d) = (_mm512_loadu_si512(q.add(128) as *const _), _mm512_loadu_si512(q.add(192) as *const _));
        let mut out = [_mm512_setzero_si512(); 4];
        for (quad, out) in out.iter_mut().enumerate() {
            let q = quad as i32;
            // Lane k: lane 4 (k % 4) + quad of the first source (k / 4 even) or the second.
            let index = _mm512_setr_epi32(
                q,
                4 + q,
                8 + q,
                12 + q,
                16 + q,
                20 + q,
                24 + q,
                28 + q, //
                q,
                4 + q,
                8 + q,
                12 + q,
                16 + q,
                20 + q,
                24 + q,
                28 + q,
            );
            let low = _mm512_permutex2var_epi32(a, index, b);
            let high = _mm512_permutex2var_epi32(c, index, d);
            *out = _mm512_mask_blend_epi32(0xFF00, low, high);
        }
        out
    }

    /// The products of 64 weights `q` (flipped to `q + 128` unless `unsigned`) and activations
    /// `x`, summed in fours. (Functions, not closures, as [`chunk_quads`].)
    #[inline(always)]
    unsafe fn wide_quads(q: *const i8, x: *const i8, unsigned: bool) -> __m512i {
        let (a, b) = (_mm512_loadu_si512(q as *const _), _mm512_loadu_si512(x as *const _));
        let a = if unsigned { a } else { _mm512_xor_si512(a, _mm512_set1_epi8(-128)) };
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), a, b)
    }

    /// Per 128-bit lane, `[a0 + a2, b0 + b2, a1 + a3, b1 + b3]`.
    #[inline(always)]
    unsafe fn pair_sums(a: __m512i, b: __m512i) -> __m512i {
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    }

    /// [`super::super::rows_dot`] compiled with AVX2 (and F16C, which every AVX2 CPU has).
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C ([`super::Level::detect`]).
    #[target_feature(enable = "avx2,f16c")]
    pub(crate) unsafe fn avx2_rows<B: Unpack8, const PROMPT: bool>(
        rows: &[u8],
        x: &Q8Activations,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) {
        super::super::rows_dot::<B, Avx2, PROMPT>(rows, x, out, scratch)
    }

    /// [`super::super::rows_dot`] compiled with AVX2 and AVX-VNNI.
    ///
    /// # Safety
    /// The CPU must have AVX2, F16C and AVX-VNNI ([`super::Level::detect`]).
    #[target_feature(enable = "avx2,f16c,avxvnni")]
    pub(crate) unsafe fn avx_vnni_rows<B: Unpack8, const PROMPT: bool>(
        rows: &[u8],
        x: &Q8Activations,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) {
        super::super::rows_dot::<B, Avx2<true>, PROMPT>(rows, x, out, scratch)
    }

    /// [`super::super::rows_dot`] compiled with AVX2 and AVX-512 (F, BW, VL, VNNI), whose
    /// super-blocks' dot products use 512-bit registers; the 32-weight blocks' use 256-bit ones
    /// with AVX512-VNNI's `vpdpbusd` (a CPU with AVX-512 VNNI need not have AVX-VNNI).
    ///
    /// # Safety
    /// The CPU must have AVX2, F16C and AVX-512 F, BW, VL and VNNI ([`super::Level::detect`]).
    #[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(crate) unsafe fn avx512_rows<B: Unpack8, const PROMPT: bool>(
        rows: &[u8],
        x: &Q8Activations,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) {
        super::super::rows_dot::<B, Avx512, PROMPT>(rows, x, out, scratch)
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::super::unpack::GROUPS;
    use super::{Avx2, Isa, Portable};

    /// AVX2's f16 conversions (eight at a time, and one) give the portable one's bits for every
    /// f16, infinities included, each of the eight spread over its two groups.
    #[test]
    fn avx2_spreads_every_f16_as_the_portable_form() {
        if !super::Level::Avx2.runs_here() {
            eprintln!("no AVX2 and F16C on this CPU: nothing to compare");
            return;
        }
        for first in (0..=u16::MAX as u32).step_by(8) {
            let word = |i: u32| (0..4).map(|j| ((first + 4 * i + j) as u64) << (16 * j)).sum::<u64>();
            let halves = [word(0), word(1)];
            let (mut want, mut got) = ([0.0f32; GROUPS], [0.0f32; GROUPS]);
            Portable::spread_f16(halves, &mut want);
            <Avx2>::spread_f16(halves, &mut got);
            assert_eq!(want.map(comparable), got.map(comparable), "f16s from {first:#06x}");
            for bits in first..first + 8 {
                let h = half::f16::from_bits(bits as u16);
                let (want, got) = (Portable::f32_of_f16(h), <Avx2>::f32_of_f16(h));
                assert_eq!(comparable(want), comparable(got), "{bits:#06x}");
            }
        }
    }

    /// A float's bits, every NaN as one (F16C quiets signalling NaNs; no scale is a NaN that
    /// matters).
    fn comparable(v: f32) -> u32 {
        if v.is_nan() {
            f32::NAN.to_bits()
        } else {
            v.to_bits()
        }
    }
}
