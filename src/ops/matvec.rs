//! Matrix × vector(s) for decode: `Y[n][m] = dot(W[m], X[n])` for 1..8 columns per dispatch.

use super::dispatch::{
    bind_range, bind_uniform_range, check_distinct, check_vec4, dispatch_linear, product_strides, resolve, u32_of, View,
};
use super::elementwise::act_code;
use crate::error::{Error, Result};
use crate::format::GgmlType;
use crate::gpu::shaders::{block_geometry, load_unit, Kernel};
use crate::gpu::{Context, GpuTensor, MatVecRule, PipelineKey, StackedTensor};
use crate::model::Activation;

/// Most activation columns one matvec dispatch handles (the kernel keeps NCOLS × RPI
/// accumulators in registers).
pub const MAX_COLS: usize = 8;

/// How the matvec kernel maps rows to invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatVecShape {
    /// Invocations per workgroup.
    pub wg: u32,
    /// Invocations cooperating on one row (power of two); their partial sums are reduced with
    /// subgroupAdd (`subgroup`) or through workgroup memory.
    pub tpr: u32,
    /// Rows per invocation: each activation loaded is reused for this many rows.
    pub rpi: u32,
    /// Reduce rows with subgroupAdd; requires `tpr` to equal the device's fixed subgroup size.
    pub subgroup: bool,
    /// Read each invocation's rows into cache, one word per cache line, before decoding them
    /// (`warm_rows` in `shaders/matvec.wgsl`): for CPU devices, where a matrix streamed from
    /// memory otherwise stalls the decode loop line by line.
    pub warm: bool,
    /// Share each unit's activations across the workgroup through subgroupShuffle: one gather
    /// per unit instead of two per group (`XS` in `shaders/matvec.wgsl`; see [`MatVecShape::shares_x`] for
    /// where it applies). Requires `tpr == 1` and `wg` equal to the device's fixed subgroup size.
    pub shuffle_x: bool,
    /// When several invocations share a row: each takes units of up to 8 groups (64 weights,
    /// three or four 16-byte loads of a k-quant) instead of one group, so that a block header is
    /// decoded once per 64 weights and every load moves 16 bytes (see
    /// [`MatVecShape::unit_groups`]).
    pub wide_units: bool,
}

/// The cache line the CPU warm-up steps by: 64 bytes on x86-64 and most Arm cores. Touching
/// every other line instead left the stalls in place (no gain end to end on lavapipe).
const CACHE_LINE_BYTES: u32 = 64;

/// Rows up to this size are warmed on CPU devices even when weights are in storage buffers: too
/// short for the hardware prefetcher to ramp up, so a cold row stalls the decode loop line by line.
const WARM_MAX_ROW_BYTES: usize = 2048;

/// Whether a CPU matvec should warm its rows of `row_len` elements into cache before decoding
/// them, with weights in textures or in storage buffers.
///
/// Textures (the CPU default): every quantized matrix. Loads are then cheap enough that a matrix
/// streamed from memory is bound by cache misses, and the decode loop holds few in flight
/// (lavapipe, kernel bench, 7B shapes, no warm-up → warm-up: Q8_0 4.8 → 10.4 GB/s, Q4_0 5.2 →
/// 7.3, Q4_1 4.7 → 8.3, Q5_1 5.6 → 7.8, Q4_K 6.2 → 7.3, Q5_K 5.4 → 6.9; the default model's
/// decode step about 80 → 45 ms).
///
/// Storage buffers (cold matrices, A/B): short rows gain (K = 640: Q8_0 +8 %, Q5_0 +19 %;
/// K = 2048: Q2_K +21 %, Q3_K +14 %, Q6_K +36 %), long rows of the fast formats lose (K = 4096:
/// Q8_0 −14 %, Q4_0/Q4_1/Q5_0/Q5_1 −5 to −8 %, Q4_K −7 %), as the prefetcher keeps up with the
/// slower loads by itself, while the slowest decoders gain at any length (K = 4096: Q2_K +12 %,
/// Q3_K +17 %, Q6_K +30 %).
///
/// F32, F16 and BF16 rows stream at about the read bandwidth already: warming them only reads
/// them twice (F32 14.2 → 11.4 GB/s).
pub fn warm_pays(ty: GgmlType, row_len: usize, weights_in_textures: bool) -> bool {
    use GgmlType::*;
    let short = ty.row_bytes(row_len).is_ok_and(|b| b <= WARM_MAX_ROW_BYTES);
    ty.is_quantized() && (weights_in_textures || short || matches!(ty, Q2_K | Q3_K | Q6_K))
}

impl MatVecShape {
    /// The shape for `ctx`'s device and weights, weight format, column count and rows of
    /// `row_len` elements (see [`MatVecShape::pick`]).
    pub fn for_device(ctx: &Context, ty: GgmlType, ncols: u32, row_len: usize) -> MatVecShape {
        let warm = warm_pays(ty, row_len, ctx.weight_textures());
        MatVecShape::pick(ctx.profile().matvec, ctx.subgroup_size(), ty, ncols, warm)
    }

    /// The shape a device profile's matvec rule gives (with the device's fixed subgroup size, if
    /// it has one usable for reductions) for a weight format and column count; `warm`: whether
    /// warming rows pays for these rows (see [`warm_pays`]), for rules that warm.
    ///
    /// [`MatVecRule::Cooperative`] (GPUs): a subgroup (or 32 invocations) per row slot: coalesced
    /// reads and one reduction, by subgroupAdd when the subgroup size is fixed, else through
    /// workgroup memory; each invocation takes units of up to 64 weights and, for one column,
    /// two rows at a time, so a workgroup of 4 subgroups covers 8 rows. On an H200 the previous
    /// shape (one 8-weight group per invocation, one row) read cold 7B matrices at 6-9 % of the
    /// streaming-read bandwidth (Q4_0 228 GB/s, Q4_K 282, Q8_0 389, against 4120), and a decode
    /// step's matvecs took 85 % of its device time (docs/gpu.md).
    ///
    /// [`MatVecRule::WholeRows`] (CPU devices, lavapipe): one invocation walks whole rows,
    /// several rows at a time, so each activation load and each decoded header feeds several
    /// rows; about 8 rows × columns of reuse was fastest (`cargo bench --bench kernels --
    /// --tune`, weights in textures, one column at 16384 × 640 and 4096 × 2048: 8 rows; Q2_K,
    /// Q4_K, Q5_K, IQ4_XS 5-8 % faster with 16; F32 rows, which stream fastest, 4).
    pub fn pick(rule: MatVecRule, subgroup: Option<u32>, ty: GgmlType, ncols: u32, warm: bool) -> MatVecShape {
        match rule {
            MatVecRule::Cooperative { slots, rows_one_column, wide_units } => {
                let width = subgroup.unwrap_or(32);
                MatVecShape {
                    wg: slots * width,
                    tpr: width,
                    // Each activation vec4 loaded feeds this many rows; with several columns
                    // the accumulators multiply, so one row.
                    rpi: if ncols == 1 { rows_one_column } else { 1 },
                    subgroup: subgroup.is_some(),
                    warm: false,
                    shuffle_x: false,
                    wide_units,
                }
            }
            MatVecRule::WholeRows { workgroup, warm: warms, shuffle_x } => {
                use GgmlType::*;
                // Rows per invocation for one column; with more, about 8 rows × columns.
                let single = match ty {
                    F32 => 4,
                    Q2_K | Q4_K | Q5_K | IQ4_XS => 16,
                    _ => 8,
                };
                let rpi = if ncols <= 1 { single } else { (8 / ncols).clamp(1, single) };
                let shuffle_x = shuffle_x && subgroup == Some(workgroup);
                MatVecShape {
                    wg: workgroup,
                    tpr: 1,
                    rpi,
                    subgroup: false,
                    warm: warms && warm,
                    shuffle_x,
                    wide_units: false,
                }
            }
        }
    }

    /// Whether the kernel shares activations across the subgroup (`shuffle_x`) for `ty` and
    /// `ncols` columns: one column, quantized whole-block units whose activations (2 vec4s per
    /// group) are at most one vec4 per invocation, which is the 32-weight formats (8 vec4s a
    /// block). Lavapipe, 65536 x 640, A/B: Q8_0 +13 %, Q5_0, Q4_0, Q5_1 and IQ4_NL +11-12 %,
    /// Q4_1 +8 %; the float formats' 8-element units lose 3-6 %, so they read their own.
    pub fn shares_x(&self, ty: GgmlType, ncols: u32) -> bool {
        let groups = self.unit_groups(ty);
        let whole_blocks = groups == block_geometry(ty).0 / 8;
        let fits = ty.is_quantized() && whole_blocks && 2 * groups <= self.wg;
        self.shuffle_x && self.tpr == 1 && ncols == 1 && fits
    }

    /// The fixed subgroup sizes the shape relies on: its row width when rows are reduced with
    /// subgroupAdd, its workgroup when activations are shared with subgroupShuffle.
    fn subgroup_sizes(&self) -> impl Iterator<Item = u32> {
        [(self.subgroup, self.tpr), (self.shuffle_x, self.wg)].into_iter().filter_map(|(on, n)| on.then_some(n))
    }

    /// Rows covered by one workgroup.
    pub fn rows_per_workgroup(&self) -> u32 {
        self.wg / self.tpr * self.rpi
    }

    /// The same shape reading each output row from two matrices (gate and up): two rows per
    /// invocation at least, half of them the up rows.
    pub(crate) fn paired(self) -> MatVecShape {
        MatVecShape { rpi: self.rpi.max(2) & !1, ..self }
    }

    fn check(&self) -> Result<()> {
        // The warm-up reads an invocation's whole rows, and shared activations need every
        // invocation on its own rows: only for shapes that give it whole rows.
        let ok = self.tpr.is_power_of_two()
            && self.wg.is_multiple_of(self.tpr)
            && self.rpi >= 1
            && self.wg >= 1
            && (!(self.warm || self.shuffle_x) || self.tpr == 1);
        ok.then_some(()).ok_or_else(|| Error::Shape(format!("bad matvec shape {self:?}")))
    }

    /// The pipeline key (and so the generated constants) for `ty` and `ncols` columns, reading X
    /// from a uniform window of `uniform_x` vec4s (0: from a storage buffer), with the gated
    /// activation `gate` applied to the output (see [`matvec_gated`]; with `pair`, to the first
    /// of two stacked matrices, see [`matvec_gate_up`]).
    pub fn key(&self, ty: GgmlType, ncols: u32, uniform_x: u32, gate: Option<Activation>, pair: bool) -> PipelineKey {
        let red = if self.tpr > 1 && !self.subgroup { self.wg * self.rpi * ncols } else { 1 };
        let groups = self.unit_groups(ty);
        PipelineKey {
            kernel: Kernel::MatVec,
            format: Some(ty),
            consts: vec![
                ("WG", self.wg),
                ("TPR", self.tpr),
                ("RPI", self.rpi),
                ("WARM", if self.warm { CACHE_LINE_BYTES / 16 } else { 0 }),
                ("NCOLS", ncols),
                ("RED", red),
                ("UG", groups),
                ("XS", self.shares_x(ty, ncols) as u32),
                ("UNROLL", unroll_groups(ty, groups) as u32),
                ("SG", self.subgroup as u32),
                ("XU", uniform_x),
                ("GATE", gate.map_or(0, act_code)),
                ("PAIR", pair as u32),
            ],
        }
    }
}

/// Whether the kernel spells out a unit's `unit_groups` groups instead of looping over them
/// (`UNROLL` in `shaders/matvec.wgsl`): at most 8, and not for IQ4_NL and Q6_K, whose larger
/// decoders make the spelled-out body slower. Lavapipe, 8192 x 2048 (A/B): Q4_0 +14 %, Q4_1 and
/// Q5_1 +10-15 %, Q5_K +10 %, Q4_K +1-4 %, IQ4_NL -12 to -35 %; at 65536 x 640 Q5_0 +8 %, Q8_0
/// unchanged; decoding the default model (four interleaved runs each) Q5_0 -2 % time, Q4_K
/// unchanged, Q6_K +13 %.
pub(crate) fn unroll_groups(ty: GgmlType, unit_groups: u32) -> bool {
    unit_groups <= 8 && !matches!(ty, GgmlType::IQ4_NL | GgmlType::Q6_K)
}

impl MatVecShape {
    /// Groups per unit of work for `ty`: the format's load unit (usually a whole block) when one
    /// invocation walks the row or the block is small (32-weight formats keep the whole block in
    /// registers); with several invocations per row, up to 8 groups ([`MatVecShape::wide_units`])
    /// or one group of a 256-weight block, so that the invocations sharing a row have enough
    /// units to go round.
    pub(crate) fn unit_groups(&self, ty: GgmlType) -> u32 {
        let gpb = block_geometry(ty).0 / 8;
        if self.tpr == 1 || gpb <= 4 {
            load_unit(ty)
        } else if self.wide_units {
            load_unit(ty).min(8)
        } else {
            1
        }
    }
}

/// `Y[n][m] = dot(W[m], X[n])` for `n` in `0..n_cols` with the device's default shape.
/// Views: X rows of `W.row_len` (offset and stride multiples of 4), Y rows of `W.n_rows`.
/// More than [`MAX_COLS`] columns are done in several dispatches (use [`super::matmul()`] for
/// prompts).
pub fn matvec<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    w: &GpuTensor,
    x: impl Into<View<'a>>,
    y: impl Into<View<'a>>,
    n_cols: usize,
) -> Result<()> {
    matvec_with(ctx, pass, None, w, x.into(), y.into(), n_cols)
}

/// `Y[n][m] = act(Y[n][m]) * dot(W[m], X[n])`: the up projection of a gated feed-forward block
/// with its activation fused in, `Y` holding the gate projection on entry (as
/// [`super::elementwise::Op::Gated`] after a plain matvec, without the extra pass over Y).
pub fn matvec_gated<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    w: &GpuTensor,
    x: impl Into<View<'a>>,
    y: impl Into<View<'a>>,
    n_cols: usize,
    act: Activation,
) -> Result<()> {
    matvec_impl(ctx, pass, None, w, x.into(), y.into(), n_cols, Output::Gated(act))
}

/// `y[m] = act(dot(G[m], x)) * dot(U[m], x)` for one column, from a stack of a gated FFN's gate
/// and up matrices ([`GpuTensor::upload_stack`]): the whole gated projection in one dispatch.
pub fn matvec_gate_up<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    gate_up: &StackedTensor,
    x: impl Into<View<'a>>,
    y: impl Into<View<'a>>,
    act: Activation,
) -> Result<()> {
    let w = &gate_up.whole;
    if gate_up.part_rows.len() != 2 || gate_up.part_rows[0] != gate_up.part_rows[1] {
        return Err(Error::Shape(format!("`{}`: gate and up stacked as {:?} rows", w.name, gate_up.part_rows)));
    }
    let shape = MatVecShape::for_device(ctx, w.ty, 1, w.row_len).paired();
    // The kernel reads the up rows `m` rows after the gate rows, from the stack's one binding.
    matvec_impl(ctx, pass, Some(shape), w, x.into(), y.into(), 1, Output::Paired(act))
}

/// One column through every matrix of a stack ([`GpuTensor::upload_stack`]) in one dispatch:
/// `outs[i][m] = dot(W_i[m], x)`, the outputs views of one buffer (a layer's q, k and v).
pub fn matvec_stack<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    stack: &StackedTensor,
    x: impl Into<View<'a>>,
    outs: &[View<'_>],
) -> Result<()> {
    let (n_parts, name) = (stack.part_rows.len(), &stack.whole.name);
    if n_parts != outs.len() || !(1..=3).contains(&n_parts) {
        return Err(Error::Shape(format!("`{name}`: {n_parts} stacked matrices (1 to 3) for {} outputs", outs.len())));
    }
    let buffer: &wgpu::Buffer = outs[0].buf.buffer();
    if outs.iter().any(|o| **o.buf.buffer() != *buffer) {
        return Err(Error::Shape(format!("`{name}`: the outputs of a stack must share one buffer")));
    }
    // Segment i starts at the stack's row `first[i]` and lands at element `outs[i].offset`.
    let first: Vec<usize> =
        stack.part_rows.iter().scan(0, |at, &rows| Some(std::mem::replace(at, *at + rows))).collect();
    for (i, (&rows, out)) in stack.part_rows.iter().zip(outs).enumerate() {
        resolve(out, &format_args!("matvec `{name}` output {i}"), 1, rows)?;
    }
    let segments: Vec<(usize, usize)> = first.into_iter().zip(outs.iter().map(|o| o.offset)).collect();
    let y = View { buf: outs[0].buf, offset: 0, stride: None };
    matvec_impl(ctx, pass, None, &stack.whole, x.into(), y, 1, Output::Split(&segments))
}

/// [`matvec`] with an explicit kernel shape (benchmarks and tuning); `None` picks
/// [`MatVecShape::for_device`] for each batch of columns.
pub fn matvec_with(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    shape: Option<MatVecShape>,
    w: &GpuTensor,
    x: View<'_>,
    y: View<'_>,
    n_cols: usize,
) -> Result<()> {
    matvec_impl(ctx, pass, shape, w, x, y, n_cols, Output::Plain)
}

/// What a matvec writes.
enum Output<'a> {
    /// The products.
    Plain,
    /// `act(Y) * products`, Y holding the gate projection on entry.
    Gated(Activation),
    /// `act(products) * the products of the up rows`, stacked `m` rows after W's rows.
    Paired(Activation),
    /// Rows of a stack to several places of Y: (first row of the segment, element index it
    /// lands at), in row order, the first starting at row 0.
    Split(&'a [(usize, usize)]),
}

impl Output<'_> {
    /// The kernel's epilogue constants: the activation applied (GATE) and whether it pairs rows.
    fn epilogue(&self) -> (Option<Activation>, bool) {
        match *self {
            Output::Gated(act) => (Some(act), false),
            Output::Paired(act) => (Some(act), true),
            Output::Plain | Output::Split(_) => (None, false),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn matvec_impl(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    shape: Option<MatVecShape>,
    w: &GpuTensor,
    x: View<'_>,
    y: View<'_>,
    n_cols: usize,
    out: Output<'_>,
) -> Result<()> {
    let k = w.row_len;
    let (split, paired) = (matches!(out, Output::Split(_)), matches!(out, Output::Paired(_)));
    let (xs, ys) = if split || paired {
        // Stacks: one column, one chunk; Y is checked by the caller (split) or here (paired).
        if n_cols != 1 || w.chunks.len() != 1 || (paired && !w.n_rows.is_multiple_of(2)) {
            return Err(Error::Shape(format!("matvec `{}`: a stack is read one column at a time", w.name)));
        }
        if paired {
            resolve(&y, &"matvec Y", 1, w.n_rows / 2)?;
        }
        let xs = resolve(&x, &"matvec X", 1, k)?;
        check_vec4(&x, xs, &"matvec X")?;
        check_distinct(x.buf.buffer(), y.buf.buffer(), "matvec")?;
        (xs, 0)
    } else {
        product_strides(w, &x, &y, n_cols, "matvec")?
    };
    for col0 in (0..n_cols).step_by(MAX_COLS) {
        let nc = MAX_COLS.min(n_cols - col0);
        let shape = shape.unwrap_or_else(|| MatVecShape::for_device(ctx, w.ty, nc as u32, k));
        shape.check()?;
        if let Some(n) = shape.subgroup_sizes().find(|&n| ctx.subgroup_size() != Some(n)) {
            return Err(Error::Shape(format!("matvec shape {shape:?} needs a fixed subgroup size of {n}")));
        }
        let (x_start, x_len) = (x.offset + col0 * xs, (nc - 1) * xs + k);
        // On CPU devices X is read through a uniform window (shaders/common/x_uniform.wgsl).
        let uniform = match ctx.profile().uniform_activations {
            true => bind_uniform_range(ctx, x.buf.buffer(), x_start, x_len),
            false => None,
        };
        let (xr, uniform_x) = match uniform {
            Some(window) => window,
            None => (bind_range(ctx, x.buf.buffer(), x_start, x_len, "matvec X")?, 0),
        };
        let (gate, pair) = out.epilogue();
        let pipeline = ctx.pipeline(&shape.key(w.ty, nc as u32, uniform_x, gate, pair).reading(w))?;
        // Paired: the kernel's rows are the gate rows, the first half of the stack.
        let pairs = if paired { 2 } else { 1 };
        for chunk in &w.chunks {
            let rows = chunk.rows / pairs;
            let y_start = y.offset + col0 * ys + chunk.row0;
            let y_len = if split { y.buf.len() - y.offset } else { (nc - 1) * ys + rows };
            let yr = bind_range(ctx, y.buf.buffer(), y_start, y_len, "matvec Y")?;
            // Segments 1 and 2 (absent: starting past the last row), relative to the binding.
            let mut seg = [(rows, 0), (rows, 0)];
            if let Output::Split(segments) = out {
                for (slot, &(row, at)) in seg.iter_mut().zip(segments.iter().skip(1)) {
                    *slot = (row, at - y_start);
                }
            }
            let [w_off, w_shift] = chunk.texture_params();
            let params = [
                u32_of(k, "K")?,
                u32_of(rows, "rows")?,
                u32_of(w.row_bytes, "row bytes")?,
                xr.base / 4,
                u32_of(xs / 4, "X stride")?,
                yr.base + if let Output::Split(segments) = out { u32_of(segments[0].1 - y_start, "Y")? } else { 0 },
                u32_of(ys, "Y stride")?,
                0, // `zero`: masks the warm-up words away
                u32_of(seg[0].0, "segment")?,
                u32_of(seg[1].0, "segment")?,
                yr.base + u32_of(seg[0].1, "segment offset")?,
                yr.base + u32_of(seg[1].1, "segment offset")?,
                w_off,
                w_shift,
            ];
            let rows_per_group = shape.rows_per_workgroup() / pairs as u32;
            let groups = u32_of(rows.div_ceil(rows_per_group as usize), "workgroups")?;
            let entries = [
                chunk.binding(),
                wgpu::BindingResource::Buffer(xr.binding.clone()),
                wgpu::BindingResource::Buffer(yr.binding),
            ];
            dispatch_linear(ctx, pass, &pipeline, &entries, &params, groups)?;
        }
    }
    Ok(())
}
