//! Speed on the current device: the streaming-read bandwidth (the yardstick, from
//! [`crate::gpu::probe`]), matvec bandwidth over a file's own weight matrices, and prompt and
//! decode tokens per second of the whole model.
//!
//! Kernel times come from timestamp queries when the device has them, else from the wall clock
//! around one submit; each is the best of a few repetitions after a warm-up run that also builds
//! the pipelines.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::format::GgmlType;
use crate::gguf::{GgufFile, TensorInfo};
use crate::gpu::{probe, Context, GpuTensor, MemTag};
use crate::model::gpu::{GpuModel, GpuState};
use crate::model::KvType;

/// How much speed measuring to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SpeedOptions {
    /// Prompt tokens timed for prompt processing (taken from the text).
    pub prompt_tokens: usize,
    /// Tokens generated (greedily) for decode speed.
    pub decode_tokens: usize,
    /// Repetitions of each kernel timing (the best is kept).
    pub reps: usize,
    /// Bytes streamed by the read-bandwidth probe.
    pub probe_bytes: u64,
}

impl Default for SpeedOptions {
    fn default() -> Self {
        SpeedOptions { prompt_tokens: 128, decode_tokens: 32, reps: 2, probe_bytes: 256 << 20 }
    }
}

impl SpeedOptions {
    /// Short runs, for CI and quick looks: numbers are noisier.
    pub fn fast() -> Self {
        SpeedOptions { prompt_tokens: 16, decode_tokens: 4, reps: 1, probe_bytes: 32 << 20 }
    }
}

/// Speed numbers of one file on the device.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Speed {
    /// Weight bytes per second of matvec (one column) over the file's matrices, GB/s.
    pub matvec_gbps: f64,
    /// `matvec_gbps` over the device's streaming-read bandwidth.
    pub read_bw_ratio: f64,
    pub prefill_tps: f64,
    pub decode_tps: f64,
}

/// Times compute passes: timestamp queries when the device has them, else the wall clock.
pub struct PassTimer {
    queries: Option<(wgpu::QuerySet, f64)>,
}

impl PassTimer {
    pub fn new(ctx: &Context) -> PassTimer {
        let queries = ctx.has(wgpu::Features::TIMESTAMP_QUERY).then(|| {
            let desc = wgpu::QuerySetDescriptor { label: Some("bench"), ty: wgpu::QueryType::Timestamp, count: 2 };
            (ctx.device.create_query_set(&desc), ctx.queue.get_timestamp_period() as f64 * 1e-9)
        });
        PassTimer { queries }
    }

    /// Whether times come from timestamp queries.
    pub fn uses_timestamps(&self) -> bool {
        self.queries.is_some()
    }

    /// Seconds taken by the dispatches `record` puts into one compute pass.
    pub fn time_pass(
        &self,
        ctx: &Context,
        record: &mut dyn FnMut(&mut wgpu::ComputePass<'_>) -> Result<()>,
    ) -> Result<f64> {
        let mut enc = ctx.encoder("bench");
        {
            let timestamp_writes = self.queries.as_ref().map(|(set, _)| wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            });
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
            record(&mut pass)?;
        }
        let resolve = match &self.queries {
            Some((set, _)) => {
                let usage = wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC;
                let buf = ctx.create_buffer("timestamps", 16, usage, MemTag::Staging)?;
                enc.resolve_query_set(set, 0..2, &buf, 0);
                Some(buf)
            }
            None => None,
        };
        let t0 = Instant::now();
        ctx.submit_and_wait(enc)?;
        let wall = t0.elapsed().as_secs_f64();
        match (resolve, &self.queries) {
            (Some(buf), Some((_, period))) => {
                let b = ctx.read_bytes(&buf, 0, 16)?;
                let t: &[u64] = bytemuck::cast_slice(&b);
                Ok(t[1].wrapping_sub(t[0]) as f64 * period)
            }
            _ => Ok(wall),
        }
    }

    /// Best of `reps` timings of `record`, after one warm-up run.
    pub fn best_of(
        &self,
        ctx: &Context,
        reps: usize,
        mut record: impl FnMut(&mut wgpu::ComputePass<'_>) -> Result<()>,
    ) -> Result<f64> {
        self.time_pass(ctx, &mut record)?;
        let mut best = f64::MAX;
        for _ in 0..reps.max(1) {
            best = best.min(self.time_pass(ctx, &mut record)?);
        }
        // A zero time (coarse timestamps on a tiny pass) would give infinite bandwidth.
        Ok(best.max(1e-9))
    }
}

/// The device's streaming-read bandwidth in GB/s: the fastest of the device profile's
/// `stream_shapes` reading `bytes` (at most one binding) of a weight tensor, held as the
/// context holds weights, with [`probe::stream_read`].
pub fn read_bandwidth(ctx: &Context, timer: &PassTimer, bytes: u64, reps: usize) -> Result<f64> {
    // Rows of 4096 F32 elements (16 KiB), in one chunk (which also holds a little padding).
    let max = ctx.weight_chunk_limit().saturating_sub(64);
    let rows = (bytes.min(max) >> 14).max(1) as usize;
    let src = GpuTensor::upload(ctx, "stream src", GgmlType::F32, 4096, rows, &vec![0; rows << 14])?;
    let bytes = src.n_bytes() as u64;
    let mut best: f64 = 0.0;
    for &shape in &ctx.profile().stream_shapes {
        let dst = ctx.vec_zeroed::<u32>("stream dst", shape.threads as usize, MemTag::Activations)?;
        let t = timer.best_of(ctx, reps, |pass| probe::stream_read(ctx, pass, shape, &src, &dst))?;
        best = best.max(bytes as f64 / t / 1e9);
    }
    Ok(best)
}

/// Bytes [`host_read_bandwidth`] sums: more than any last-level cache holds.
pub const HOST_READ_BYTES: usize = 256 << 20;

/// The host's read bandwidth in GB/s, the yardstick of the CPU's kernels: the best of a few sums of
/// [`HOST_READ_BYTES`] on all of rayon's threads, in huge pages as the kernels' weights are
/// ([`crate::cpu::huge_pages`]).
pub fn host_read_bandwidth() -> f64 {
    use rayon::prelude::*;
    const BYTES: usize = HOST_READ_BYTES;
    let mut buffer = crate::cpu::huge_pages::huge_page_buffer(BYTES).expect("a buffer for the bandwidth probe");
    buffer.fill(1);
    let words: &[u64] = bytemuck::cast_slice(&buffer);
    (0..5)
        .map(|_| {
            let t0 = Instant::now();
            let sum: u64 = words.par_chunks(1 << 16).map(|c| c.iter().fold(0u64, |a, &w| a.wrapping_add(w))).sum();
            std::hint::black_box(sum);
            BYTES as f64 / t0.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// The matrices the forward pass multiplies by: every 2-D weight, except the embedding table when
/// the model has a separate output head (the table is then only looked up, never multiplied).
pub fn multiplied_matrices(file: &GgufFile) -> Vec<&TensorInfo> {
    let has_output = file.tensor("output.weight").is_some();
    file.tensors()
        .iter()
        .filter(|t| t.dims.len() == 2 && t.name.ends_with(".weight"))
        .filter(|t| !(has_output && t.name == "token_embd.weight"))
        .collect()
}

/// Matvec bandwidth over the file's own matrices in GB/s: each distinct (type, shape) is
/// uploaded once and timed with one activation column, and the total weight bytes a decode step
/// reads are divided by the total time, so each shape counts as often as the model has it.
pub fn matvec_bandwidth(ctx: &Context, timer: &PassTimer, file: &GgufFile, reps: usize) -> Result<f64> {
    const PER_PASS: usize = 4;
    let mut groups: Vec<(&TensorInfo, usize)> = Vec::new();
    for t in multiplied_matrices(file) {
        match groups.iter_mut().find(|(g, _)| g.ty == t.ty && g.dims == t.dims) {
            Some((_, count)) => *count += 1,
            None => groups.push((t, 1)),
        }
    }
    if groups.is_empty() {
        return Err(Error::Invalid("the file has no weight matrices".into()));
    }
    let (mut bytes, mut seconds) = (0.0, 0.0);
    for (info, count) in groups {
        let w = GpuTensor::from_gguf(ctx, file, info)?;
        let x = ctx.f32_buffer("x", w.row_len)?;
        let y = ctx.f32_buffer("y", w.n_rows)?;
        let t = timer.best_of(ctx, reps, |pass| {
            for _ in 0..PER_PASS {
                crate::ops::matvec(ctx, pass, &w, &x, &y, 1)?;
            }
            Ok(())
        })? / PER_PASS as f64;
        bytes += (w.n_bytes() * count) as f64;
        seconds += t * count as f64;
    }
    Ok(bytes / seconds / 1e9)
}

/// Prompt and decode tokens per second of `model`: `prompt` is processed in one call (micro-
/// batches of up to 128 tokens, as [`crate::Session`] does by default), then `decode` tokens are
/// generated greedily one at a time, each picked on the device as a greedy session does. One short untimed warm-up
/// first; the prompt is timed `reps` times (best kept), decode once.
pub fn generation_speed(model: &GpuModel, prompt: &[u32], decode: usize, reps: usize) -> Result<(f64, f64)> {
    if prompt.is_empty() || decode == 0 {
        return Err(Error::Invalid("speed needs a prompt and at least one decode step".into()));
    }
    let batch = prompt.len().min(128);
    let mut state = GpuState::new(model, prompt.len() + decode + 1, batch, 1, KvType::F16)?;
    // Warm-up: a short prompt (over the matvec/matmul threshold) and two decode steps build every
    // pipeline the timed runs use; those then overwrite the cache from position 0.
    run_generation(model, &mut state, &prompt[..prompt.len().min(16)], 2.min(decode))?;
    let mut prefill = f64::MAX;
    let mut decode_s = 0.0;
    for rep in 0..reps.max(1) {
        let (p, d) = run_generation(model, &mut state, prompt, if rep == 0 { decode } else { 0 })?;
        prefill = prefill.min(p);
        if rep == 0 {
            decode_s = d;
        }
    }
    Ok((prompt.len() as f64 / prefill.max(1e-9), decode as f64 / decode_s.max(1e-9)))
}

/// Seconds for the prompt and for `decode` greedy steps after it.
fn run_generation(model: &GpuModel, state: &mut GpuState, prompt: &[u32], decode: usize) -> Result<(f64, f64)> {
    let t0 = Instant::now();
    let mut next = model.forward_greedy(state, prompt, 0)?;
    let prefill = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for i in 0..decode {
        next = model.forward_greedy(state, &[next], prompt.len() + i)?;
    }
    Ok((prefill, t1.elapsed().as_secs_f64()))
}
