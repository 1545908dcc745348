//! Greedy sampling on the device (`shaders/argmax.wgsl`): the index of the largest logit, the
//! first of equals, as [`crate::sampler::Sampler`] picks at temperature 0. CPU reference: that
//! sampler's argmax.

use super::dispatch::{bind_range, dispatch, u32_of, View};
use crate::error::{Error, Result};
use crate::gpu::shaders::Kernel;
use crate::gpu::{Context, PipelineKey, U32Buffer};

/// Invocations of the one workgroup: the largest count every WebGPU device runs.
const WG: u32 = 256;

pub(crate) fn key() -> PipelineKey {
    PipelineKey { kernel: Kernel::Argmax, format: None, consts: vec![("WG", WG)] }
}

/// `best[0] = argmax(logits[0..n])` for the `n` logits a view starts with.
pub fn argmax<'a>(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    logits: impl Into<View<'a>>,
    n: usize,
    best: &U32Buffer,
) -> Result<()> {
    let logits = logits.into();
    if n == 0 || logits.offset + n > logits.buf.len() || best.is_empty() {
        return Err(Error::Shape(format!(
            "argmax of {n} logits at {} in a buffer of {} (into {} words)",
            logits.offset,
            logits.buf.len(),
            best.len()
        )));
    }
    let lr = bind_range(ctx, logits.buf.buffer(), logits.offset, n, "argmax logits")?;
    let pipeline = ctx.pipeline(&key())?;
    let entries = [wgpu::BindingResource::Buffer(lr.binding), best.buffer().as_entire_binding()];
    dispatch(ctx, pass, &pipeline, &entries, &[u32_of(n, "logits")?, lr.base, 0, 0], (1, 1))
}
