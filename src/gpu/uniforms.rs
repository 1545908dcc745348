//! Kernel parameters without an allocation per dispatch: one uniform buffer per context (the
//! arena), each dispatch's parameters in a slot of it.
//!
//! A slot's bytes are collected on the host while the work is recorded and written with one
//! `write_buffer` just before the submit ([`Context::submit`] calls [`UniformArena::flush`]), which
//! the queue orders before the submitted work. Creating a buffer per dispatch instead cost more
//! host time than the dispatch itself on a GPU (an H200 decoding a 7B model spent 2.6 ms of host
//! time per token on about 290 dispatches). When the slots run out the arena starts over at slot
//! 0, after waiting for the device, so no slot is rewritten while a kernel may still read it;
//! one submission must stay within [`UNIFORM_ARENA_BYTES`] of parameters.

use std::sync::{Arc, Mutex};

use super::context::Context;
use super::memory::{MemTag, MemoryTracker, TrackedBuffer};
use crate::error::{Error, Result};

/// Bytes of the parameter arena (one per context): 4096 slots at the usual 256-byte alignment,
/// ten times a 7B model's dispatches per submit.
pub const UNIFORM_ARENA_BYTES: u64 = 1 << 20;
const _: () = assert!(UNIFORM_ARENA_BYTES <= u32::MAX as u64, "dynamic offsets are u32");

pub(crate) struct UniformArena {
    buffer: TrackedBuffer,
    /// Slots start at multiples of this: the device's uniform offset alignment (at least 16).
    align: u64,
    state: Mutex<ArenaState>,
}

#[derive(Default)]
struct ArenaState {
    /// Byte offset of the next free slot.
    next: u64,
    /// Offset of `pending`'s first byte: the slots recorded since the last flush.
    pending_at: u64,
    pending: Vec<u8>,
}

/// One dispatch's parameters: a window of the arena.
pub struct UniformSlot<'a> {
    buffer: &'a wgpu::Buffer,
    offset: u64,
    size: u64,
}

impl UniformSlot<'_> {
    /// The binding of this slot.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        self.window(self.offset)
    }

    /// The binding of a slot-sized window at the start of the arena, for layouts that bind the
    /// parameters at a dynamic offset: the same for every slot of this size, so bind groups made
    /// with it can be reused; [`UniformSlot::dynamic_offset`] moves it to this slot.
    pub fn dynamic_binding(&self) -> wgpu::BindingResource<'_> {
        self.window(0)
    }

    /// The dynamic offset that moves [`UniformSlot::dynamic_binding`] to this slot.
    pub fn dynamic_offset(&self) -> u32 {
        // The arena is far smaller than 4 GiB.
        self.offset as u32
    }

    fn window(&self, offset: u64) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset,
            size: wgpu::BufferSize::new(self.size),
        })
    }
}

impl UniformArena {
    /// The arena of a device being set up (made before its [`Context`], which owns it), counted
    /// in `memory` under [`MemTag::Uniforms`].
    pub(crate) fn new(device: &wgpu::Device, limits: &wgpu::Limits, memory: Arc<MemoryTracker>) -> UniformArena {
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("parameters"),
            size: UNIFORM_ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let align = u64::from(limits.min_uniform_buffer_offset_alignment).max(16);
        UniformArena { buffer: TrackedBuffer::new(buffer, MemTag::Uniforms, memory), align, state: Mutex::default() }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, ArenaState>> {
        self.state.lock().map_err(|_| Error::Gpu("parameter arena poisoned".into()))
    }

    /// A slot holding `words`, written to the device at the next [`UniformArena::flush`].
    pub(crate) fn push(&self, ctx: &Context, words: &[u32]) -> Result<UniformSlot<'_>> {
        let bytes: &[u8] = bytemuck::cast_slice(words);
        let size = (bytes.len() as u64).next_multiple_of(16);
        let stride = size.next_multiple_of(self.align);
        if stride > UNIFORM_ARENA_BYTES {
            return Err(Error::Shape(format!("{} bytes of kernel parameters exceed the arena", bytes.len())));
        }
        let mut s = self.lock()?;
        if s.next + stride > UNIFORM_ARENA_BYTES {
            // Out of slots: hand over what was recorded, let the device finish with every slot,
            // and start over.
            self.write_pending(ctx, &mut s);
            ctx.wait(None)?;
            *s = ArenaState::default();
        }
        let offset = s.next;
        if s.pending.is_empty() {
            s.pending_at = offset;
        }
        let at = (offset - s.pending_at) as usize;
        s.pending.resize(at + size as usize, 0);
        s.pending[at..at + bytes.len()].copy_from_slice(bytes);
        s.next = offset + stride;
        Ok(UniformSlot { buffer: self.buffer.buffer(), offset, size })
    }

    /// Writes the slots recorded since the last flush; called before every submit.
    pub(crate) fn flush(&self, ctx: &Context) -> Result<()> {
        let mut s = self.lock()?;
        self.write_pending(ctx, &mut s);
        Ok(())
    }

    fn write_pending(&self, ctx: &Context, s: &mut ArenaState) {
        if !s.pending.is_empty() {
            ctx.queue.write_buffer(self.buffer.buffer(), s.pending_at, &s.pending);
            s.pending.clear();
        }
    }
}
