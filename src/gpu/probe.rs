//! Device bandwidth probes for benchmarks: a plain buffer copy and a streaming-read kernel, the
//! yardsticks that matvec bandwidth is compared against.

use super::context::Context;
use super::pipeline::PipelineKey;
use super::shaders::Kernel;
use super::{GpuTensor, U32Buffer};
use crate::error::{Error, Result};

/// Key of the streaming-read kernel: `contiguous` makes each invocation read one contiguous
/// slice (what a CPU driver wants) instead of a grid-strided one (what a GPU wants).
pub fn stream_read_key(wg: u32, contiguous: bool) -> PipelineKey {
    PipelineKey { kernel: Kernel::StreamRead, format: None, consts: vec![("WG", wg), ("CONTIG", contiguous as u32)] }
}

/// Launch shape of the streaming-read probe (the profile's `stream_shapes` lists those worth
/// trying on a device; a benchmark takes the fastest as its yardstick).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamShape {
    pub wg: u32,
    /// Total invocations.
    pub threads: u32,
    /// Each invocation reads one contiguous slice (else a grid-strided one).
    pub contiguous: bool,
}

/// Records a kernel that reads all the bytes of `src` (a weight tensor in one chunk, held as the
/// context holds weights) and writes one folded word per invocation to `dst` (which must hold at
/// least `shape.threads` elements).
pub fn stream_read(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    shape: StreamShape,
    src: &GpuTensor,
    dst: &U32Buffer,
) -> Result<()> {
    let [chunk] = &src.chunks[..] else {
        return Err(Error::DoesNotFit(format!("stream_read: `{}` is split over several bindings", src.name)));
    };
    if dst.len() < shape.threads as usize
        || !src.n_bytes().is_multiple_of(16)
        || !shape.threads.is_multiple_of(shape.wg)
    {
        return Err(Error::Shape(format!(
            "stream_read {shape:?}: dst needs {} elements and src a multiple of 16 bytes",
            shape.threads
        )));
    }
    let pipeline = ctx.pipeline(&stream_read_key(shape.wg, shape.contiguous).reading(src))?;
    let n_vec4 = u32::try_from(src.n_bytes() / 16).map_err(|_| Error::Shape("stream_read: source too large".into()))?;
    let [w_off, w_shift] = chunk.texture_params();
    let entries = [chunk.binding(), dst.buffer().as_entire_binding()];
    crate::ops::dispatch::dispatch(
        ctx,
        pass,
        &pipeline,
        &entries,
        &[n_vec4, w_off, w_shift, 0],
        (shape.threads / shape.wg, 1),
    )?;
    Ok(())
}
