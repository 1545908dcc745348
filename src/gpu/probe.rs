//! Device bandwidth probes for benchmarks: a plain buffer copy and a streaming-read kernel, the
//! yardsticks that matvec bandwidth is compared against.

use super::context::Context;
use super::pipeline::PipelineKey;
use super::shaders::Kernel;
use super::{F32Buffer, KernelProfile};
use crate::error::{Error, Result};

/// Key of the streaming-read kernel: `contiguous` makes each invocation read one contiguous
/// slice (what a CPU driver wants) instead of a grid-strided one (what a GPU wants).
pub fn stream_read_key(wg: u32, contiguous: bool) -> PipelineKey {
    PipelineKey { kernel: Kernel::StreamRead, format: None, consts: vec![("WG", wg), ("CONTIG", contiguous as u32)] }
}

/// Workgroup size and invocation count of the probe for a device kind.
fn probe_shape(ctx: &Context) -> (u32, u32, bool) {
    match ctx.profile() {
        // Enough invocations to fill a large GPU.
        KernelProfile::Gpu => (256, 256 * 1024, false),
        // A few invocations per core, each streaming one slice.
        KernelProfile::Cpu => (8, 8 * 64, true),
    }
}

/// Records a kernel that reads all of `src` and writes one partial sum per invocation to `dst`
/// (which must hold at least [`stream_read_outputs`] elements).
pub fn stream_read(ctx: &Context, pass: &mut wgpu::ComputePass<'_>, src: &F32Buffer, dst: &F32Buffer) -> Result<()> {
    let (wg, threads, contiguous) = probe_shape(ctx);
    if dst.len() < threads as usize || src.len() % 4 != 0 {
        return Err(Error::Shape(format!("stream_read: dst needs {threads} elements and src a multiple of 4")));
    }
    let pipeline = ctx.pipeline(&stream_read_key(wg, contiguous))?;
    let n_vec4 = u32::try_from(src.len() / 4).map_err(|_| Error::Shape("stream_read: source too large".into()))?;
    let uniform = ctx.uniform("stream_read params", &[n_vec4, 0, 0, 0])?;
    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("stream_read"),
        layout: &pipeline.layout,
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: src.buffer().as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: dst.buffer().as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: uniform.as_entire_binding() },
        ],
    });
    pass.set_pipeline(&pipeline.pipeline);
    pass.set_bind_group(0, &bind_group, &[]);
    pass.dispatch_workgroups(threads / wg, 1, 1);
    Ok(())
}

/// Elements `dst` of [`stream_read`] must hold on this device.
pub fn stream_read_outputs(ctx: &Context) -> usize {
    probe_shape(ctx).1 as usize
}
