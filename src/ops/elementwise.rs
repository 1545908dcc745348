//! Element-wise ops on f32 activations (`shaders/elementwise.wgsl`).

use super::dispatch::{bind_range, check_distinct, dispatch_linear, u32_of, View};
use crate::error::{Error, Result};
use crate::gpu::shaders::Kernel;
use crate::gpu::{Context, PipelineKey};
use crate::model::Activation;

const WG: u32 = 64;

/// Which element-wise op; the numbers are the shader's `OP` constant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// `a += b`
    Add,
    /// `a = act(a) * b`, the gated FFN.
    Gated(Activation),
    /// `a += b[i % b_len]`: a bias added to every row.
    AddRow,
    /// `a *= scale`
    Scale(f32),
    /// `a = cap · tanh(a / cap)` (Gemma 2's logits).
    Softcap(f32),
}

impl Op {
    fn code(self) -> u32 {
        match self {
            Op::Add => 0,
            Op::Gated(act) => act_code(act),
            Op::AddRow => 3,
            Op::Scale(_) => 4,
            Op::Softcap(_) => 5,
        }
    }

    /// Ops that read only `a` (any other buffer may be passed as `b`).
    fn unary(self) -> bool {
        matches!(self, Op::Scale(_) | Op::Softcap(_))
    }
}

/// The shaders' number for an activation (`shaders/common/activations.wgsl`).
pub(crate) fn act_code(act: Activation) -> u32 {
    match act {
        Activation::Silu => 1,
        Activation::GeluTanh => 2,
    }
}

pub(crate) fn key(op: Op) -> PipelineKey {
    PipelineKey { kernel: Kernel::Elementwise, format: None, consts: vec![("WG", WG), ("OP", op.code())] }
}

/// Apply `op` to `n` elements of `a`, reading `b` (`b_len` elements: `n`, or a row for `AddRow`;
/// ignored for the unary `Scale` and `Softcap`, where any other buffer may be passed).
pub fn elementwise<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    op: Op,
    a: impl Into<View<'a>>,
    b: impl Into<View<'a>>,
    n: usize,
    b_len: usize,
) -> Result<()> {
    let (a, b) = (a.into(), b.into());
    if n == 0 {
        return Ok(());
    }
    check_distinct(a.buf.buffer(), b.buf.buffer(), "elementwise")?;
    if b_len == 0 || (op != Op::AddRow && !op.unary() && b_len < n) {
        return Err(Error::Shape(format!("elementwise {op:?}: b has {b_len} elements for {n}")));
    }
    let pipeline = ctx.pipeline(&key(op))?;
    let ar = bind_range(ctx, a.buf.buffer(), a.offset, n, "elementwise a")?;
    let b_read = if op.unary() { b_len.min(b.buf.len() - b.offset) } else { b_len.min(n) };
    let br = bind_range(ctx, b.buf.buffer(), b.offset, b_read.max(1), "elementwise b")?;
    let scale = match op {
        Op::Scale(s) | Op::Softcap(s) => s,
        _ => 1.0,
    };
    let p = [u32_of(n, "n")?, ar.base, br.base, u32_of(b_len, "b_len")?, scale.to_bits(), 0, 0, 0];
    let entries = [wgpu::BindingResource::Buffer(ar.binding), wgpu::BindingResource::Buffer(br.binding)];
    let groups = u32_of((n as u64).div_ceil(WG as u64), "workgroups")?;
    dispatch_linear(ctx, pass, &pipeline, &entries, &p, groups)
}
