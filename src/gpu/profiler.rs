//! Device time per kernel: a timestamp before and after every dispatch, summed by pipeline.
//!
//! Enabled with [`PROFILE_ENV`]`=1` (or [`super::ContextOptions::profile_kernels`]) on devices with
//! timestamp queries inside passes. It answers "where does a decode step go" on any device
//! without a vendor profiler. The timestamps serialise nothing on in-order devices such as
//! lavapipe; on GPUs that overlap dispatches the per-kernel split is approximate but the totals
//! stay meaningful.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::context::Context;
use super::memory::{MemTag, TrackedBuffer};
use crate::error::{Error, Result};

/// Environment variable that turns kernel profiling on (`1`).
pub const PROFILE_ENV: &str = "WGQUANT_PROFILE";

/// Dispatches timed per submission; later ones in the same submission go untimed.
const MAX_TIMED: u32 = 2048;

/// One kernel's accumulated device time.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// Pipeline label: kernel family and weight format, e.g. `MatVec/Q8_0`.
    pub kernel: String,
    pub dispatches: u64,
    pub seconds: f64,
}

pub(crate) struct Profiler {
    queries: wgpu::QuerySet,
    /// Seconds per timestamp tick.
    period: f64,
    state: Mutex<ProfileState>,
}

#[derive(Default)]
struct ProfileState {
    /// Labels of the dispatches timed in the submission being recorded, in query order.
    pending: Vec<String>,
    totals: BTreeMap<String, (u64, f64)>,
}

impl Profiler {
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Profiler {
        let desc =
            wgpu::QuerySetDescriptor { label: Some("profile"), ty: wgpu::QueryType::Timestamp, count: 2 * MAX_TIMED };
        Profiler {
            queries: device.create_query_set(&desc),
            period: queue.get_timestamp_period() as f64 * 1e-9,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, ProfileState>> {
        self.state.lock().map_err(|_| Error::Gpu("profiler poisoned".into()))
    }

    /// Records `dispatch` between two timestamps labelled `label`.
    pub(crate) fn timed(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        label: &str,
        dispatch: impl FnOnce(&mut wgpu::ComputePass<'_>),
    ) -> Result<()> {
        let slot = {
            let mut s = self.lock()?;
            let slot = s.pending.len() as u32;
            (slot < MAX_TIMED).then(|| {
                s.pending.push(label.to_string());
                slot
            })
        };
        if let Some(slot) = slot {
            pass.write_timestamp(&self.queries, 2 * slot);
        }
        dispatch(pass);
        if let Some(slot) = slot {
            pass.write_timestamp(&self.queries, 2 * slot + 1);
        }
        Ok(())
    }

    /// Adds to `encoder` the resolution of the timestamps recorded into it; `None` if it timed
    /// nothing.
    pub(crate) fn resolve(&self, ctx: &Context, encoder: &mut wgpu::CommandEncoder) -> Result<Option<Resolved>> {
        let labels = std::mem::take(&mut self.lock()?.pending);
        if labels.is_empty() {
            return Ok(None);
        }
        let bytes = labels.len() as u64 * 16;
        let usage = wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC;
        let buffer = ctx.create_buffer("profile timestamps", bytes, usage, MemTag::Staging)?;
        encoder.resolve_query_set(&self.queries, 0..2 * labels.len() as u32, &buffer, 0);
        Ok(Some(Resolved { labels, buffer }))
    }

    /// Adds the times of a finished submission to the totals.
    pub(crate) fn record(&self, ctx: &Context, resolved: Resolved) -> Result<()> {
        let raw = ctx.read_bytes(&resolved.buffer, 0, resolved.buffer.size())?;
        let ticks: &[u64] = bytemuck::cast_slice(&raw);
        let mut s = self.lock()?;
        for (label, t) in resolved.labels.into_iter().zip(ticks.chunks_exact(2)) {
            let e = s.totals.entry(label).or_default();
            e.0 += 1;
            e.1 += t[1].saturating_sub(t[0]) as f64 * self.period;
        }
        Ok(())
    }
}

/// The timestamps of one submission, resolved into a buffer, with the kernel each pair timed.
pub(crate) struct Resolved {
    labels: Vec<String>,
    buffer: TrackedBuffer,
}

impl Context {
    /// Device time per kernel since the context was made (or the last [`Context::take_profile`]),
    /// slowest first; empty when profiling is off.
    pub fn take_profile(&self) -> Vec<KernelTime> {
        let Some(p) = self.profiler() else { return Vec::new() };
        let Ok(mut s) = p.lock() else { return Vec::new() };
        let mut out: Vec<KernelTime> = std::mem::take(&mut s.totals)
            .into_iter()
            .map(|(kernel, (dispatches, seconds))| KernelTime { kernel, dispatches, seconds })
            .collect();
        out.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        out
    }
}

/// A table of `times` with each kernel's share of the total, `per` dividing counts and times
/// (e.g. the number of tokens decoded).
pub fn format_profile(times: &[KernelTime], per: f64) -> String {
    let total: f64 = times.iter().map(|t| t.seconds).sum();
    let mut out = format!("{:<28} {:>10} {:>10} {:>7}\n", "kernel", "dispatches", "ms", "share");
    for t in times {
        out += &format!(
            "{:<28} {:>10.1} {:>10.3} {:>6.1}%\n",
            t.kernel,
            t.dispatches as f64 / per,
            t.seconds * 1e3 / per,
            100.0 * t.seconds / total.max(f64::MIN_POSITIVE)
        );
    }
    out += &format!("{:<28} {:>10} {:>10.3}\n", "total", "", total * 1e3 / per);
    out
}
