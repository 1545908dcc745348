//! Accounting of every GPU buffer (and weight texture) the runtime creates.
//!
//! wgpu does not say how much device memory a program holds, and the planner needs to know what a
//! model really costs (weights vs KV cache vs scratch). So every buffer is created through
//! [`crate::gpu::Context::create_buffer`], which wraps it in a [`TrackedBuffer`] (and every weight
//! texture through [`crate::gpu::Context::create_weight_texture`], a [`TrackedTexture`]): the
//! bytes are added to the tag's counter on creation and subtracted when the wrapper is dropped.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a buffer (or texture) is for; each tag has its own current and peak byte counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemTag {
    /// Raw blocks of model tensors.
    Weights,
    /// Attention key/value cache.
    KvCache,
    /// Activations and scratch of the forward pass.
    Activations,
    /// Host-visible buffers used for uploads and readbacks.
    Staging,
    /// Small per-dispatch parameter blocks (uniform buffers).
    Uniforms,
}

impl MemTag {
    /// Every tag, in report order.
    pub const ALL: [MemTag; 5] =
        [MemTag::Weights, MemTag::KvCache, MemTag::Activations, MemTag::Staging, MemTag::Uniforms];

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Default)]
struct Counter {
    current: AtomicU64,
    peak: AtomicU64,
}

impl Counter {
    fn add(&self, bytes: u64) -> u64 {
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        now
    }
    fn sub(&self, bytes: u64) {
        self.current.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Current and peak bytes per [`MemTag`], plus the peak of the total.
#[derive(Default)]
pub struct MemoryTracker {
    tags: [Counter; MemTag::ALL.len()],
    total: Counter,
    /// Buffers and textures freed so far: caches of objects that hold buffers alive (the bind
    /// groups, see `gpu/bind_groups.rs`) start over when it moves.
    frees: AtomicU64,
}

/// A point-in-time copy of the tracker's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// `(tag, current bytes, peak bytes)` for every tag.
    pub tags: Vec<(MemTag, u64, u64)>,
    pub total_current: u64,
    pub total_peak: u64,
}

impl MemoryTracker {
    fn alloc(&self, tag: MemTag, bytes: u64) {
        self.tags[tag.index()].add(bytes);
        self.total.add(bytes);
    }

    fn free(&self, tag: MemTag, bytes: u64) {
        self.tags[tag.index()].sub(bytes);
        self.total.sub(bytes);
        self.frees.fetch_add(1, Ordering::Relaxed);
    }

    /// How many buffers and textures have been freed so far.
    pub(crate) fn frees(&self) -> u64 {
        self.frees.load(Ordering::Relaxed)
    }

    /// Bytes currently held under `tag`.
    pub fn current(&self, tag: MemTag) -> u64 {
        self.tags[tag.index()].current.load(Ordering::Relaxed)
    }

    /// The most bytes ever held at once under `tag`.
    pub fn peak(&self, tag: MemTag) -> u64 {
        self.tags[tag.index()].peak.load(Ordering::Relaxed)
    }

    /// Bytes currently held over all tags.
    pub fn total(&self) -> u64 {
        self.total.current.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> MemoryReport {
        MemoryReport {
            tags: MemTag::ALL.iter().map(|&t| (t, self.current(t), self.peak(t))).collect(),
            total_current: self.total(),
            total_peak: self.total.peak.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: f64 = 1024.0 * 1024.0;
        for (tag, cur, peak) in &self.tags {
            writeln!(
                f,
                "{:<12} {:>10.1} MiB (peak {:>10.1} MiB)",
                format!("{tag:?}"),
                *cur as f64 / MIB,
                *peak as f64 / MIB
            )?;
        }
        write!(
            f,
            "{:<12} {:>10.1} MiB (peak {:>10.1} MiB)",
            "total",
            self.total_current as f64 / MIB,
            self.total_peak as f64 / MIB
        )
    }
}

/// A wgpu buffer whose bytes are counted in a [`MemoryTracker`] until it is dropped.
///
/// Dereferences to [`wgpu::Buffer`], so it can be bound and copied like one.
pub struct TrackedBuffer {
    buffer: wgpu::Buffer,
    tag: MemTag,
    tracker: Arc<MemoryTracker>,
}

impl TrackedBuffer {
    /// Wraps `buffer` and counts its size under `tag`. Only [`crate::gpu::Context`] calls this, so
    /// that no buffer escapes the accounting.
    pub(crate) fn new(buffer: wgpu::Buffer, tag: MemTag, tracker: Arc<MemoryTracker>) -> Self {
        tracker.alloc(tag, buffer.size());
        TrackedBuffer { buffer, tag, tracker }
    }

    pub fn tag(&self) -> MemTag {
        self.tag
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Deref for TrackedBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl fmt::Debug for TrackedBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedBuffer").field("size", &self.buffer.size()).field("tag", &self.tag).finish()
    }
}

impl Drop for TrackedBuffer {
    fn drop(&mut self) {
        // No `destroy()`: a command buffer recorded but not yet submitted may still use the buffer
        // (a scratch buffer may be dropped right after recording); wgpu frees it after the last use.
        self.tracker.free(self.tag, self.buffer.size());
    }
}

/// A texture of raw weight bytes (see [`crate::gpu::GpuTensor`]): rgba32uint texels, `2^row_bits`
/// per row, counted in a [`MemoryTracker`] until it is dropped, with the view kernels bind.
pub struct TrackedTexture {
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    row_bits: u32,
    tag: MemTag,
    tracker: Arc<MemoryTracker>,
}

/// Bytes of one rgba32uint texel.
pub const TEXEL_BYTES: u64 = 16;

impl TrackedTexture {
    /// Wraps `texture` (2-D, rgba32uint, `2^row_bits` texels wide) and counts its bytes under
    /// `tag`. Only [`crate::gpu::Context`] calls this.
    pub(crate) fn new(texture: wgpu::Texture, row_bits: u32, tag: MemTag, tracker: Arc<MemoryTracker>) -> Self {
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        let t = TrackedTexture { texture, view, row_bits, tag, tracker };
        t.tracker.alloc(tag, t.bytes());
        t
    }

    pub fn texture(&self) -> &wgpu::Texture {
        &self.texture
    }
    pub fn view(&self) -> &wgpu::TextureView {
        &self.view
    }
    /// log2 of the texels per row.
    pub fn row_bits(&self) -> u32 {
        self.row_bits
    }
    /// Bytes of one row of texels.
    pub fn row_bytes(&self) -> u64 {
        TEXEL_BYTES << self.row_bits
    }
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.row_bytes() * self.texture.height() as u64
    }
}

impl fmt::Debug for TrackedTexture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedTexture").field("bytes", &self.bytes()).field("tag", &self.tag).finish()
    }
}

impl Drop for TrackedTexture {
    fn drop(&mut self) {
        self.tracker.free(self.tag, self.bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_track_current_and_peak() {
        let t = MemoryTracker::default();
        t.alloc(MemTag::Weights, 100);
        t.alloc(MemTag::Staging, 50);
        t.free(MemTag::Staging, 50);
        t.alloc(MemTag::Staging, 10);
        assert_eq!(t.current(MemTag::Weights), 100);
        assert_eq!(t.current(MemTag::Staging), 10);
        assert_eq!(t.peak(MemTag::Staging), 50);
        assert_eq!(t.report().total_peak, 150);
        assert_eq!(t.total(), 110);
    }
}
