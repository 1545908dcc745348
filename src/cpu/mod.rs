//! CPU kernels built for speed, for the layers and the output head that the VRAM plan leaves on
//! the CPU: activations are rounded to 8 bits once per product ([`Q8Activations`], as llama.cpp's
//! CPU backend rounds them to Q8_0/Q8_K blocks), each weight block is decoded to 8-bit integers
//! with a scale and an offset per group of 16 ([`unpack`]), and the two are dotted with the widest
//! integer instructions the CPU has ([`simd`], chosen at run time, with a portable fallback). Rows
//! are split over rayon's threads, which live for the whole process.
//!
//! The scalar f32 kernels of [`crate::format::dot`] remain the reference: fed the same rounded
//! activations ([`crate::format::dot::quantize_activations`]), they give these kernels' results
//! up to the order of f32 sums (tests check every format, every instruction level, odd shapes).
//! The float formats (F32, F16, BF16) have no integer kernel ([`has_kernel`]) and take the
//! reference path.

pub mod huge_pages;
pub mod simd;
pub mod unpack;

use std::mem::size_of;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::blocks::with_block;
use crate::format::GgmlType;
use simd::{Isa, Level, Portable, Scales, UnitFlags};
use unpack::{Int8Unit, Unpack8, GROUPS, UNIT};

/// How far ahead of the unit being decoded its weights are prefetched, in bytes.
const PREFETCH_AHEAD: usize = 3072;

/// Activations per quantization block.
pub const Q8_BLOCK: usize = 32;

/// Rayon tasks per thread a product is split into: enough for work stealing to even out the
/// threads, few enough that a task's overhead is nothing against its rows (a head of 262144
/// short rows in tasks of 16 rows spent more time scheduling than reading).
const TASKS_PER_THREAD: usize = 8;

/// Rows per rayon task for a matrix of `n_rows` rows times `n_cols` columns: a prompt's tasks
/// are whole tiles of [`TILE_ROWS`] rows.
fn rows_per_task(n_rows: usize, n_cols: usize) -> usize {
    let rows = n_rows.div_ceil(TASKS_PER_THREAD * rayon::current_num_threads()).max(1);
    match n_cols {
        1 => rows,
        _ => rows.next_multiple_of(TILE_ROWS),
    }
}

/// Columns of activations rounded to 8 bits: per block of 32, `x ≈ d · q` with `q` in
/// −127..=127 (`d = max|x| / 127`, rounded to nearest, ties to even, as the GPU's integer matvec
/// and [`crate::format::dot::quantize_activations`] round). Per group of 16 it keeps `d`, `Σq`
/// and `d · Σq` (the offset formats' term), so the kernels' scale arithmetic is one line of 16
/// lanes.
pub struct Q8Activations {
    row_len: usize,
    n_cols: usize,
    q: Vec<i8>,
    /// Per group of 16: its block's `d`.
    d: Vec<f32>,
    /// Per group of 16: `Σq` over the group (what the kernels take back, times the format's bias
    /// or 128, from the sums of quants stored plus a bias or flipped to `q + 128`).
    sum: Vec<i32>,
    /// Per group of 16: `d · Σq`.
    dsum: Vec<f32>,
    /// With several columns (a prompt), each column's units again with their groups' scales,
    /// unit position by unit position (`[unit][column]`: what a decoded unit meets lies in one
    /// stretch), their quads transposed ([`transpose_quads`]): a prompt's products read these
    /// ([`Isa::dot_columns`]); empty for one column.
    by_unit: Vec<ColumnUnit>,
}

/// One column's unit of activations as the prompt kernels read it: its quads transposed
/// (`transpose_quads`) and its 16 groups' scales beside them, seven cache lines. A unit shorter
/// than 256 weights (the end of a row of 32-weight blocks) is padded with zero activations and
/// scales, which add nothing to any group: the kernels that read a whole decoded unit meet its
/// stale quants past the end with zeros, and its scales and offsets there are zero too (a short
/// unit's missing blocks decode to scale 0, [`unpack::Block32`]), so a lane gains `0 · 0`. Kept
/// in the per-column arrays instead, the units and scales of a unit's columns lay a row apart
/// (1 KiB of scales for a 4096-wide matrix), so for 32 columns their lines fell into a few of the
/// L1 cache's sets, more than it has ways.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct ColumnUnit {
    pub(crate) q: [i8; UNIT],
    pub(crate) d: [f32; GROUPS],
    pub(crate) sum: [i32; GROUPS],
    pub(crate) dsum: [f32; GROUPS],
}

impl ColumnUnit {
    const ZERO: ColumnUnit = ColumnUnit { q: [0; UNIT], d: [0.0; GROUPS], sum: [0; GROUPS], dsum: [0.0; GROUPS] };

    /// Its groups' scales, as the kernels take them.
    pub(crate) fn scales(&self) -> Scales<'_> {
        Scales { d: &self.d, sum: &self.sum, dsum: &self.dsum }
    }
}

impl Q8Activations {
    /// Rounds `x`, `[n][row_len]`, to 8 bits; `row_len` must be a multiple of 32.
    pub fn quantize(x: &[f32], row_len: usize) -> Result<Q8Activations> {
        if row_len == 0 || !row_len.is_multiple_of(Q8_BLOCK) || !x.len().is_multiple_of(row_len) {
            return Err(Error::Shape(format!(
                "{} activations in rows of {row_len}: rows must be whole blocks of {Q8_BLOCK}",
                x.len()
            )));
        }
        let groups_per_col = row_len / 16;
        let mut a = Q8Activations {
            row_len,
            n_cols: x.len() / row_len,
            q: vec![0; x.len()],
            d: vec![0.0; x.len() / 16],
            sum: vec![0; x.len() / 16],
            dsum: vec![0.0; x.len() / 16],
            by_unit: Vec::new(),
        };
        // A column per task: a prompt's columns are many, and rounding them cost 3 % of it.
        let columns = a.q.par_chunks_mut(row_len).zip(x.par_chunks(row_len));
        let groups = a.sum.par_chunks_mut(groups_per_col);
        let scales = a.d.par_chunks_mut(groups_per_col).zip(a.dsum.par_chunks_mut(groups_per_col));
        let work = columns.zip(groups.zip(scales));
        work.for_each(|((q, x), (sum, (d, dsum)))| quantize_column(x, q, d, sum, dsum));
        if a.n_cols > 1 {
            a.by_unit = a.column_units();
        }
        Ok(a)
    }

    /// [`Q8Activations::by_unit`], built from the column-major arrays.
    fn column_units(&self) -> Vec<ColumnUnit> {
        let (row_len, n_cols) = (self.row_len, self.n_cols);
        let mut units = vec![ColumnUnit::ZERO; row_len.div_ceil(UNIT) * n_cols];
        units.par_chunks_mut(n_cols).enumerate().for_each(|(u, position)| {
            let len = (row_len - u * UNIT).min(UNIT);
            for (c, out) in position.iter_mut().enumerate() {
                let at = c * row_len + u * UNIT;
                transpose_quads(&self.q[at..at + len], &mut out.q);
                let groups = at / 16..(at + len) / 16;
                out.d[..len / 16].copy_from_slice(&self.d[groups.clone()]);
                out.sum[..len / 16].copy_from_slice(&self.sum[groups.clone()]);
                out.dsum[..len / 16].copy_from_slice(&self.dsum[groups]);
            }
        });
        units
    }

    /// Every column's unit at weight `from` (the start of a unit), one per column.
    fn units_at(&self, from: usize) -> &[ColumnUnit] {
        &self.by_unit[from / UNIT * self.n_cols..][..self.n_cols]
    }

    /// The activations' scales from activation `at` (of the whole buffer) on.
    fn scales(&self, at: usize) -> Scales<'_> {
        Scales { d: &self.d[at / 16..], sum: &self.sum[at / 16..], dsum: &self.dsum[at / 16..] }
    }

    pub fn n_cols(&self) -> usize {
        self.n_cols
    }
}

/// One column of [`Q8Activations::quantize`]: its 8-bit values, and per group of 16 the block's
/// `d`, `Σq` and `d · Σq`.
fn quantize_column(x: &[f32], q: &mut [i8], d: &mut [f32], sum: &mut [i32], dsum: &mut [f32]) {
    let blocks = x.chunks_exact(Q8_BLOCK).zip(q.chunks_exact_mut(Q8_BLOCK));
    let scales = d.chunks_exact_mut(2).zip(sum.chunks_exact_mut(2)).zip(dsum.chunks_exact_mut(2));
    for ((xs, qs), ((d, sum), dsum)) in blocks.zip(scales) {
        let scale = xs.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
        let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        for (q, &v) in qs.iter_mut().zip(xs) {
            *q = round_ties_even(v * inverse) as i8;
        }
        for (((half, d), sum), dsum) in qs.chunks_exact(16).zip(d).zip(sum).zip(dsum) {
            *d = scale;
            *sum = half.iter().map(|&q| q as i32).sum::<i32>();
            *dsum = scale * *sum as f32;
        }
    }
}

/// A unit's 64 quads (four weights each) transposed from group-major to quad-major: position
/// `64c + 4k + i` takes weight `16k + 4c + i`, quad c of group k. Then the c-th 64 bytes hold
/// quad c of every group, group k's in 32-bit lane k, and summing a unit's products lane by lane
/// over its four chunks sums each group in its own lane, with no reduction across lanes. A short
/// `unit` (whole groups) leaves the rest of `out` as it was.
fn transpose_quads(unit: &[i8], out: &mut [i8; UNIT]) {
    for (k, group) in unit.chunks_exact(16).enumerate() {
        for (c, quad) in group.chunks_exact(4).enumerate() {
            out[64 * c + 4 * k..][..4].copy_from_slice(quad);
        }
    }
}

/// A row kernel's working memory, made once per rayon task: a prompt's tile of decoded units and
/// each row's and column's running sums (`[row][column]`, a lane per group of a unit); a decode
/// step of 32-weight blocks decodes into the first unit. The units are boxed: inline, a unit sat
/// on the worker's stack at a distance from the row kernel's spilled lanes fixed by the frames'
/// layout, and in one build each load of decoded weights just after a store of the lanes stalled
/// (the pattern of 4K aliasing; Gemma's CPU decode ran 13 % slower); on the heap it did not.
pub(crate) struct Scratch {
    /// A unit per row of a prompt's tile ([`TILE_ROWS`]); a decode step uses the first.
    units: Box<[Int8Unit; TILE_ROWS]>,
    lanes: Vec<Lanes>,
}

impl Scratch {
    fn new(n_cols: usize) -> Scratch {
        let units = Box::new(std::array::from_fn(|_| Int8Unit::default()));
        Scratch { units, lanes: vec![[0.0; GROUPS]; TILE_ROWS * n_cols] }
    }
}

/// One column's running sums, a lane per group of a unit.
pub(crate) type Lanes = [f32; GROUPS];

/// `v` rounded to the nearest integer, ties to even, for |v| ≤ 2^22: adding and removing
/// 1.5 · 2^23 leaves no fraction bits, so the FPU's round-to-nearest-even does the rounding. The
/// same result as `f32::round_ties_even`, which on the baseline x86-64 target (no SSE4.1) is a
/// call to libm's `rintf` per activation.
#[inline(always)]
fn round_ties_even(v: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    (v + SHIFT) - SHIFT
}

/// Consecutive rows' dot products with every column of `x`, into `out` (`[row][column]`): the
/// row loop lives inside the kernel (compiled with the caller's instruction set), not around a
/// call per row, which for short rows (a 640-wide output head) cost a third of the time.
#[inline(always)]
pub(crate) fn rows_dot<B: Unpack8, I: Isa, const PROMPT: bool>(
    rows: &[u8],
    x: &Q8Activations,
    out: &mut [f32],
    scratch: &mut Scratch,
) {
    assert!(PROMPT == (x.n_cols > 1), "a decode step's kernel takes one column, a prompt's several");
    let row_bytes = rows.len() / (out.len() / x.n_cols).max(1);
    let Scratch { units, lanes } = scratch;
    if !PROMPT {
        // A decode step: the one column's lanes on the stack, a slice of known length once
        // inlined, so they stay in registers across the row instead of in memory. A unit that is
        // one super-block is decoded by straight-line code, and as a local too its quants and
        // scales stay in registers, their stores left out (a quarter of Q2_K's instructions);
        // eight 32-weight blocks as a local are spilled instead (Q4_0 on AVX2 30 % slower), so
        // they stay in the scratch memory, whose stores the dot products' loads are forwarded from.
        // (Loops, not closures: a closure would not inherit the AVX2 caller's features.)
        let mut lanes = [[0.0; GROUPS]; 1];
        let mut local = Int8Unit::default();
        let unit = if B::ELEMS == UNIT { &mut local } else { &mut units[0] };
        for (row, out) in rows.chunks_exact(row_bytes).zip(out.chunks_exact_mut(x.n_cols)) {
            row_dot::<B, I>(row, x, out, unit, &mut lanes);
        }
    } else {
        let tiles = rows.chunks(TILE_ROWS * row_bytes).zip(out.chunks_mut(TILE_ROWS * x.n_cols));
        for (rows, out) in tiles {
            tile_dot::<B, I>(rows, row_bytes, x, out, units, lanes);
        }
    }
}

/// Rows a prompt's product decodes side by side: each column's activations, loaded once, serve
/// that many rows' units ([`Isa::dot_tile`]).
pub(crate) const TILE_ROWS: usize = 4;

/// Up to [`TILE_ROWS`] rows' dot products with every column of `x` (a prompt), into `out`
/// (`[row][column]`): unit position by unit position, the rows' units decoded, then dotted with
/// every column together.
#[inline(always)]
fn tile_dot<B: Unpack8, I: Isa>(
    rows: &[u8],
    row_bytes: usize,
    x: &Q8Activations,
    out: &mut [f32],
    units: &mut [Int8Unit; TILE_ROWS],
    lanes: &mut [Lanes],
) {
    let (n_rows, n_cols) = (rows.len() / row_bytes, x.n_cols);
    let lanes = &mut lanes[..n_rows * n_cols];
    lanes.fill([0.0; GROUPS]);
    let unit_bytes = (UNIT / B::ELEMS) * size_of::<B>();
    let flags = UnitFlags::of::<B>();
    for (u, from) in (0..row_bytes).step_by(unit_bytes).enumerate() {
        let bytes = unit_bytes.min(row_bytes - from);
        for (row, unit) in rows.chunks_exact(row_bytes).zip(units.iter_mut()) {
            let unit_row = &row[from..from + bytes];
            simd::prefetch(unit_row.as_ptr().wrapping_add(PREFETCH_AHEAD), bytes);
            B::unpack_unit::<I>(unit_row, unit);
        }
        let len = bytes / size_of::<B>() * B::ELEMS;
        I::dot_tile(&units[..n_rows], len, x.units_at(u * UNIT), lanes, flags);
    }
    for (o, lanes) in out.iter_mut().zip(lanes.iter()) {
        *o = tree_sum(lanes);
    }
}

/// One row's dot products with the one column of `x` (a decode step), into `out`. The row is
/// decoded a unit of 256 weights at a time (the last unit of a row of small blocks may be
/// shorter) and each unit is dotted with the column; its sums gather in 16 lanes, added up once
/// at the end of the row.
#[inline(always)]
fn row_dot<B: Unpack8, I: Isa>(
    row: &[u8],
    x: &Q8Activations,
    out: &mut [f32],
    unit: &mut Int8Unit,
    lanes: &mut [Lanes],
) {
    lanes.fill([0.0; GROUPS]);
    let unit_bytes = (UNIT / B::ELEMS) * size_of::<B>();
    // Whole units first, whose length is a constant to the compiler (no bounds to check, loops
    // unrolled), then what a row of 32-weight blocks may have left (a super-block's row is whole
    // units: the compiler is told so, and keeps the row's loop alone, its lanes in registers).
    let whole = row.len() / unit_bytes * unit_bytes;
    for (u, unit_row) in row[..whole].chunks_exact(unit_bytes).enumerate() {
        unit_dot::<B, I>(unit_row, u * UNIT, UNIT, x, unit, lanes);
    }
    if B::ELEMS < UNIT && whole < row.len() {
        let len = (row.len() - whole) / size_of::<B>() * B::ELEMS;
        unit_dot::<B, I>(&row[whole..], whole / unit_bytes * UNIT, len, x, unit, lanes);
    }
    for (o, lanes) in out.iter_mut().zip(lanes.iter()) {
        *o = tree_sum(lanes);
    }
}

/// One unit of a row, its `len` weights from weight `from` on, decoded into `unit` and dotted with
/// the column of `x` into its lanes. (A decode step's one column, though the lanes are a slice and
/// a prompt's form is kept: written for one column alone, with the lanes an array, the same inner
/// loop read cold weights a third slower, as did the decode and prompt paths in one function.)
#[inline(always)]
fn unit_dot<B: Unpack8, I: Isa>(
    unit_row: &[u8],
    from: usize,
    len: usize,
    x: &Q8Activations,
    unit: &mut Int8Unit,
    lanes: &mut [Lanes],
) {
    let flags = UnitFlags::of::<B>();
    simd::prefetch(unit_row.as_ptr().wrapping_add(PREFETCH_AHEAD), unit_row.len());
    B::unpack_unit::<I>(unit_row, unit);
    match x.n_cols {
        1 => I::dot_into_lanes(&unit.q[..len], &x.q[from..from + len], &mut lanes[0], unit, x.scales(from), flags),
        // Never taken (`rows_dot` asserts one column here); kept for the layout above.
        _ => I::dot_columns(&unit.q[..len], x.units_at(from), unit, lanes, flags),
    }
}

/// [`Isa::dot_columns`] in plain Rust: the unit's quads transposed as the columns' were, then
/// per column each group's products summed in its own lane.
#[inline(always)]
fn transposed_columns(q: &[i8], columns: &[ColumnUnit], unit: &Int8Unit, lanes: &mut [Lanes], flags: UnitFlags) {
    let mut quads = [0i8; UNIT];
    transpose_quads(q, &mut quads);
    let groups = q.len() / 16;
    for (column, lanes) in columns.iter().zip(lanes) {
        // Position by position over the four chunks (the form compilers vectorise), then each
        // group's four positions.
        let mut by_position = [0i32; 64];
        for (chunk, x) in quads.chunks_exact(64).zip(column.q.chunks_exact(64)) {
            for ((sum, &w), &x) in by_position.iter_mut().zip(chunk).zip(x) {
                *sum += w as i32 * x as i32;
            }
        }
        let mut isum = [0i32; GROUPS];
        for (sum, quad) in isum.iter_mut().zip(by_position.chunks_exact(4)) {
            *sum = quad.iter().sum();
        }
        simd::scale_groups(lanes, unit, &isum[..groups], column.scales(), 0, flags);
    }
}

/// The 16 lanes added pairwise (vectorisable, unlike a running sum).
#[inline(always)]
fn tree_sum(lanes: &Lanes) -> f32 {
    let mut v = *lanes;
    let mut n = GROUPS;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            v[i] += v[i + n];
        }
    }
    v[0]
}

/// A kernel: consecutive rows of a format against every column ([`rows_dot`]).
type RowKernel = fn(&[u8], &Q8Activations, &mut [f32], &mut Scratch);

/// Format `B`'s kernel at `level`, for one column (`PROMPT` false: a decode step) or many. The
/// two are compiled apart: in one function, the prompt path's code cost the decode path's cold
/// reads a third of their speed (identical inner loops; the cause was not found).
fn kernel<B: Unpack8, const PROMPT: bool>(level: Level) -> RowKernel {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `matmul` takes `level()`, one `Level::available` lists for this CPU (the best
        // detected, or the one `WGQUANT_CPU_LEVEL` names, checked against that list), and `matmul_at`
        // refuses one that does not run here (`Level::runs_here`).
        Level::Avx2 => |rows, x, out, scratch| unsafe { simd::avx2_rows::<B, PROMPT>(rows, x, out, scratch) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Level::AvxVnni => |rows, x, out, scratch| unsafe { simd::avx_vnni_rows::<B, PROMPT>(rows, x, out, scratch) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Level::Avx512 => |rows, x, out, scratch| unsafe { simd::avx512_rows::<B, PROMPT>(rows, x, out, scratch) },
        _ => rows_dot::<B, Portable, PROMPT>,
    }
}

/// The integer kernel of `ty` at `level` for one column or (`prompt`) many; `None` for the float
/// formats.
fn row_kernel(ty: GgmlType, level: Level, prompt: bool) -> Option<RowKernel> {
    with_block!(ty, B => Some(match prompt {
        false => kernel::<B, false>(level),
        true => kernel::<B, true>(level),
    }), floats => None)
}

/// Whether `ty` has an integer kernel (every quantized format).
pub fn has_kernel(ty: GgmlType) -> bool {
    row_kernel(ty, Level::Portable, false).is_some()
}

/// Runs `work` on one of rayon's threads, so that the products inside it split their rows from
/// there. Called from any other thread, every product would wake the pool and put its caller to
/// sleep until the product ended: a futex round trip per product, 10 % of a CPU decode step.
#[cfg(not(target_arch = "wasm32"))]
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return work();
    }
    rayon::scope(|_| work())
}

/// A page has no thread pool (and its GPU objects are not `Send`): `work` runs where it is.
#[cfg(target_arch = "wasm32")]
pub fn on_pool<R>(work: impl FnOnce() -> R) -> R {
    work()
}

/// Why the CPU's own kernels should run `file` when no device is named, if they should: every
/// matrix of the model has an integer kernel, and the adapter a context would pick emulates a GPU
/// on the CPU (lavapipe, SwiftShader; there these kernels decode about three times faster), or
/// there is no adapter at all. Naming an adapter ([`crate::gpu::ADAPTER_ENV`]) or asking for the
/// kernel profile ([`crate::gpu::PROFILE_ENV`], a GPU measure) keeps the adapter.
#[cfg(not(target_arch = "wasm32"))]
pub fn cpu_by_default(file: &crate::gguf::GgufFile) -> Option<String> {
    let set = |var: &str| std::env::var(var).is_ok_and(|v| !v.trim().is_empty());
    let all_have_kernels = file.tensors().iter().all(|t| t.dims.len() < 2 || has_kernel(t.ty));
    if set(crate::gpu::ADAPTER_ENV) || set(crate::gpu::PROFILE_ENV) || !all_have_kernels {
        return None;
    }
    match crate::gpu::best_adapter_entry() {
        None => Some("no GPU adapter found".into()),
        Some(best) if best.info.device_type == wgpu::DeviceType::Cpu => {
            Some(format!("{} emulates a GPU on the CPU (`--device gpu` runs on it)", best.info.name))
        }
        Some(_) => None,
    }
}

/// Names an instruction level for the CPU kernels (`portable`, `avx2`, `avx-vnni`, `avx-512`)
/// in place of the best one this CPU runs: to compare levels end to end, or to step around one.
pub const LEVEL_ENV: &str = "WGQUANT_CPU_LEVEL";

/// The instruction level this process uses, chosen once: the one [`LEVEL_ENV`] names if this
/// CPU runs it, else the best it runs (a name it does not run, or does not know, is reported).
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let Some(asked) = std::env::var(LEVEL_ENV).ok().filter(|v| !v.trim().is_empty()) else {
            return Level::detect();
        };
        match Level::available().into_iter().find(|l| l.name().eq_ignore_ascii_case(asked.trim())) {
            Some(level) => level,
            None => {
                let here: Vec<&str> = Level::available().iter().map(|l| l.name()).collect();
                eprintln!("{LEVEL_ENV}={asked}: not a level this CPU runs ({}); using the best", here.join(", "));
                Level::detect()
            }
        }
    })
}

/// What runs on the CPU, for reports: `CPU (avx2 kernels, 2 threads)`.
pub fn describe() -> String {
    format!("CPU ({} kernels, {} threads)", level().name(), rayon::current_num_threads())
}

/// `y = X Wᵀ` on the CPU: `weights` is a row-major matrix of `ty` with rows of `x`'s row length,
/// `y` is `[n_cols][n_rows]`; at this CPU's best [`level`].
pub fn matmul(ty: GgmlType, weights: &[u8], x: &Q8Activations, y: &mut [f32]) -> Result<()> {
    matmul_at(level(), ty, weights, x, y)
}

/// [`matmul`] at a given instruction level (tests and benchmarks compare them). A level this CPU
/// does not have is an error.
pub fn matmul_at(level: Level, ty: GgmlType, weights: &[u8], x: &Q8Activations, y: &mut [f32]) -> Result<()> {
    if !level.runs_here() {
        return Err(Error::Invalid(format!("this CPU cannot run the {} kernels", level.name())));
    }
    let kernel =
        row_kernel(ty, level, x.n_cols > 1).ok_or_else(|| Error::Invalid(format!("{ty} has no integer CPU kernel")))?;
    let n_cols = x.n_cols;
    if !y.len().is_multiple_of(n_cols) {
        return Err(Error::Shape(format!("output of {} floats is not {n_cols} columns", y.len())));
    }
    let n_rows = y.len() / n_cols;
    let row_bytes = ty.row_bytes(x.row_len)?;
    if weights.len() != row_bytes * n_rows {
        return Err(Error::Shape(format!(
            "{n_rows} rows of {} {ty} elements take {} bytes, the weights have {}",
            x.row_len,
            row_bytes * n_rows,
            weights.len()
        )));
    }
    let rows = rows_per_task(n_rows, n_cols);
    let in_tasks = |out: &mut [f32]| {
        let tasks = out.par_chunks_mut(n_cols * rows).zip(weights.par_chunks(row_bytes * rows));
        tasks.for_each_init(|| Scratch::new(n_cols), |scratch, (out, w)| kernel(w, x, out, scratch));
    };
    if n_cols == 1 {
        in_tasks(y);
        return Ok(());
    }
    // [row][col] in parallel over rows, then transposed into the [col][row] output, a column per
    // task (strided reads, sequential writes; done on one thread it cost 5 % of a prompt).
    let mut by_row = vec![0.0f32; n_rows * n_cols];
    in_tasks(&mut by_row);
    y.par_chunks_mut(n_rows).enumerate().for_each(|(c, column)| {
        for (v, row) in column.iter_mut().zip(by_row.chunks_exact(n_cols)) {
            *v = row[c];
        }
    });
    Ok(())
}

/// The weights of `bytes` (whole blocks of `ty`) rebuilt from their integer form, `scale · (q −
/// BIAS) + min`, decoded with `I`'s helpers, for the test that compares them with the scalar decoder.
#[cfg(test)]
fn rebuild<I: Isa>(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    fn blocks<B: Unpack8, I: Isa>(bytes: &[u8]) -> Vec<f32> {
        let mut blk = Int8Unit::default();
        let mut out = Vec::new();
        for unit in bytes.chunks(UNIT / B::ELEMS * size_of::<B>()) {
            B::unpack_unit::<I>(unit, &mut blk);
            let weight = |i: usize| blk.scale[i / 16] * (blk.q[i] as i32 - B::BIAS) as f32;
            let len = unit.len() / size_of::<B>() * B::ELEMS;
            // What the dot products' `unsigned` shortcut relies on.
            assert!(!B::UNSIGNED || blk.q[..len].iter().all(|q| (0..=63).contains(q)), "unsigned quants in 0..=63");
            match B::HAS_MIN {
                true => out.extend((0..len).map(|i| weight(i) + blk.min[i / 16])),
                false => out.extend((0..len).map(weight)),
            }
        }
        out
    }
    with_block!(ty, B => blocks::<B, I>(bytes), floats => Vec::new())
}

#[cfg(test)]
mod tests {
    /// The shift trick rounds as `f32::round_ties_even` over the range activations take (±127),
    /// ties included.
    #[test]
    fn rounding_is_ties_to_even() {
        for i in -(127 * 64)..=(127 * 64) {
            let v = i as f32 / 64.0;
            assert_eq!(super::round_ties_even(v), v.round_ties_even(), "{v}");
        }
        for v in [0.5f32, 1.5, 2.5, -0.5, -1.5, 126.5, -126.5, 0.49999997, 1e-30] {
            assert_eq!(super::round_ties_even(v), v.round_ties_even(), "{v}");
        }
    }
}
