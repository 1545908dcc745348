//! Typed device vectors, chunked uploads through a bounded staging buffer, and readback.

use std::marker::PhantomData;

use bytemuck::Pod;

use super::context::Context;
use super::memory::{MemTag, TrackedBuffer, TrackedTexture};
use super::ready::{mapped, now};
use crate::error::{Error, Result};

/// Bytes staged per upload step: bounds host-visible memory during model loading
/// (`queue.write_buffer` would make a staging copy of the whole tensor).
pub const UPLOAD_CHUNK: u64 = 16 << 20;

/// A device buffer holding `len` elements of `T` (storage, copy source and destination).
/// Allocated rounded up to 16 bytes so it can always be bound as `array<vec4<f32>>`.
pub struct GpuVec<T> {
    buffer: TrackedBuffer,
    len: usize,
    _t: PhantomData<T>,
}

/// f32 activations, logits, scratch.
pub type F32Buffer = GpuVec<f32>;
/// Token ids, positions.
pub type U32Buffer = GpuVec<u32>;

impl<T: Pod> GpuVec<T> {
    /// Elements held.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn buffer(&self) -> &TrackedBuffer {
        &self.buffer
    }
    /// Byte size of the elements (not of the padded allocation).
    pub fn byte_len(&self) -> u64 {
        (self.len * std::mem::size_of::<T>()) as u64
    }
}

const VEC_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

/// Bytes allocated for a device vector of `bytes` bytes: rounded up to 16, at least 16.
pub fn device_vec_bytes(bytes: u64) -> u64 {
    bytes.next_multiple_of(16).max(16)
}

/// Size of the uniform window a CPU-device matvec reads its activations through
/// (`ops::dispatch::bind_uniform_range`) when they span `bytes` bytes from the window's start: a
/// power of two from 1 KiB, the array length the kernel declares, so that few pipelines cover
/// every length.
pub fn uniform_window_bytes(bytes: u64) -> u64 {
    bytes.next_power_of_two().max(1 << 10)
}

/// The largest uniform window activation buffers are sized for: WebGPU's default limit on a
/// uniform binding, and lavapipe's.
const MAX_UNIFORM_WINDOW: u64 = 64 << 10;

/// Bytes allocated for an activation buffer of `bytes` bytes. Where matvec reads activations
/// through uniform windows (`uniform_windows`, the device profile's `uniform_activations`),
/// buffers that a window could cover whole are rounded up to that window's size, so a matvec
/// reading the buffer from its start (every decode step does) gets its window; a window that left
/// the buffer would send it back to storage reads, several times slower on CPU devices for the
/// smallest states. Elsewhere they are rounded to 16 bytes like any device vector.
pub fn activation_bytes(bytes: u64, uniform_windows: bool) -> u64 {
    if uniform_windows && bytes <= MAX_UNIFORM_WINDOW {
        uniform_window_bytes(bytes)
    } else {
        device_vec_bytes(bytes)
    }
}

impl Context {
    /// A zero-filled device vector of `len` elements.
    pub fn vec_zeroed<T: Pod>(&self, label: &str, len: usize, tag: MemTag) -> Result<GpuVec<T>> {
        self.vec_sized(label, len, tag, device_vec_bytes(Self::checked_bytes::<T>(label, len)?), self.vec_usage())
    }

    /// Device vectors may be read as matvec activations: through uniform windows too where the
    /// device profile wants that (CPU devices), through storage bindings only elsewhere.
    fn vec_usage(&self) -> wgpu::BufferUsages {
        match self.profile().uniform_activations {
            true => VEC_USAGE | wgpu::BufferUsages::UNIFORM,
            false => VEC_USAGE,
        }
    }

    fn checked_bytes<T>(label: &str, len: usize) -> Result<u64> {
        (len as u64)
            .checked_mul(std::mem::size_of::<T>() as u64)
            .ok_or_else(|| Error::DoesNotFit(format!("buffer `{label}` of {len} elements overflows")))
    }

    /// A zero-filled device vector of `len` elements in a buffer of `bytes` bytes.
    fn vec_sized<T: Pod>(
        &self,
        label: &str,
        len: usize,
        tag: MemTag,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<GpuVec<T>> {
        // wgpu zero-initialises new buffers.
        let buffer = self.create_buffer(label, bytes, usage, tag)?;
        Ok(GpuVec { buffer, len, _t: PhantomData })
    }

    /// A device vector holding `data`.
    pub fn vec_from<T: Pod>(&self, label: &str, data: &[T], tag: MemTag) -> Result<GpuVec<T>> {
        let v = self.vec_zeroed(label, data.len(), tag)?;
        self.upload_bytes(&v.buffer, 0, bytemuck::cast_slice(data))?;
        Ok(v)
    }

    /// f32 activations (tagged [`MemTag::Activations`]), allocated [`activation_bytes`] large;
    /// usable as uniform windows where the device profile reads activations through them.
    pub fn f32_buffer(&self, label: &str, len: usize) -> Result<F32Buffer> {
        let bytes = activation_bytes(Self::checked_bytes::<f32>(label, len)?, self.profile().uniform_activations);
        self.vec_sized(label, len, MemTag::Activations, bytes, self.vec_usage())
    }

    /// Queues a small write (token ids, per-step values) at element `offset` of `dst`. It lands
    /// before the next submitted command buffer; no staging buffer of ours is involved.
    pub fn write<T: Pod>(&self, dst: &GpuVec<T>, offset: usize, data: &[T]) -> Result<()> {
        if offset + data.len() > dst.len {
            return Err(Error::Shape(format!(
                "writing {} elements at {offset} into a buffer of {}",
                data.len(),
                dst.len
            )));
        }
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let at = (offset * std::mem::size_of::<T>()) as u64;
        if !at.is_multiple_of(4) {
            return Err(Error::Shape(format!("write offset {at} bytes is not 4-byte aligned")));
        }
        let mut owned;
        let bytes = if !bytes.len().is_multiple_of(4) {
            owned = bytes.to_vec();
            owned.resize(bytes.len().next_multiple_of(4), 0);
            &owned[..]
        } else {
            bytes
        };
        self.queue.write_buffer(&dst.buffer, at, bytes);
        Ok(())
    }

    /// Copies `bytes` into `dst` at byte `offset` (4-aligned) through one staging buffer of at most
    /// [`UPLOAD_CHUNK`] bytes, so host memory stays flat however large the data. Waits for the
    /// copies to finish.
    pub fn upload_bytes(&self, dst: &wgpu::Buffer, offset: u64, bytes: &[u8]) -> Result<()> {
        let padded_len = (bytes.len() as u64).next_multiple_of(4);
        if !offset.is_multiple_of(4) || offset + padded_len > dst.size() {
            return Err(Error::Shape(format!(
                "upload of {} bytes at {offset} into a buffer of {} bytes",
                bytes.len(),
                dst.size()
            )));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        self.staged_upload(&[bytes], padded_len, UPLOAD_CHUNK.min(padded_len), |enc, staging, at, n| {
            enc.copy_buffer_to_buffer(staging, 0, dst, offset + at, n);
        })
    }

    /// Copies `datas`, back to back, into `dst` from its first texel, through one staging buffer
    /// of about [`UPLOAD_CHUNK`] bytes (whole texture rows); the last row is padded with zeros.
    /// Waits for the copies to finish.
    pub fn upload_texture(&self, dst: &TrackedTexture, datas: &[&[u8]]) -> Result<()> {
        let total: u64 = datas.iter().map(|d| d.len() as u64).sum();
        if total > dst.bytes() {
            return Err(Error::Shape(format!("upload of {total} bytes into a texture of {} bytes", dst.bytes())));
        }
        let row_bytes = dst.row_bytes();
        let rows = total.div_ceil(row_bytes);
        let batch_rows = (UPLOAD_CHUNK / row_bytes).clamp(1, rows.max(1));
        self.staged_upload(datas, rows * row_bytes, batch_rows * row_bytes, |enc, staging, at, n| {
            enc.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: staging,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(row_bytes as u32),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: dst.texture(),
                    mip_level: 0,
                    origin: wgpu::Origin3d { x: 0, y: (at / row_bytes) as u32, z: 0 },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d { width: 1 << dst.row_bits(), height: (n / row_bytes) as u32, depth_or_array_layers: 1 },
            );
        })
    }

    /// Streams `datas`, back to back and zero-padded to `total` bytes, through one staging buffer
    /// of `batch` bytes: each batch is written into the mapped staging buffer and `copy` records
    /// its copy onward (staging buffer, the batch's start in the stream, its length). Natively
    /// waits for the copies to finish; a browser runs them in order with later work.
    fn staged_upload(
        &self,
        datas: &[&[u8]],
        total: u64,
        batch: u64,
        mut copy: impl FnMut(&mut wgpu::CommandEncoder, &wgpu::Buffer, u64, u64),
    ) -> Result<()> {
        let usage = wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC;
        // Natively one staging buffer is mapped again for each batch, once the device is done
        // with the last. A browser cannot wait for a map: there each batch has its own buffer,
        // mapped at creation and released once its copy is submitted.
        #[cfg(not(target_arch = "wasm32"))]
        let reused = self.create_buffer("upload staging", batch, usage, MemTag::Staging)?;
        let mut source = datas.iter().copied();
        let mut pending: &[u8] = &[];
        for at in (0..total).step_by(batch as usize) {
            let n = batch.min(total - at);
            #[cfg(not(target_arch = "wasm32"))]
            let staging = {
                now(mapped(self, reused.slice(..n), wgpu::MapMode::Write))?;
                &reused
            };
            #[cfg(target_arch = "wasm32")]
            let staging =
                &self.create_buffer_mapped_if("upload staging", n.next_multiple_of(4), usage, MemTag::Staging, true)?;
            let slice = staging.slice(..n);
            {
                let mut view = slice.get_mapped_range_mut().map_err(|e| Error::Gpu(e.to_string()))?;
                let mut filled = 0;
                while filled < view.len() {
                    if pending.is_empty() {
                        match source.next() {
                            Some(next) => pending = next,
                            None => break,
                        }
                    }
                    let k = pending.len().min(view.len() - filled);
                    view.slice(filled..filled + k).copy_from_slice(&pending[..k]);
                    (filled, pending) = (filled + k, &pending[k..]);
                }
                view.slice(filled..).fill(0);
            }
            staging.unmap();
            let mut enc = self.encoder("upload");
            copy(&mut enc, staging, at, n);
            self.queue.submit([enc.finish()]);
            // A browser frees a dropped buffer only when its garbage collector gets to it; the
            // copy already submitted keeps what it needs.
            #[cfg(target_arch = "wasm32")]
            staging.destroy();
        }
        self.wait(None)
    }

    /// Reads the whole vector back.
    pub fn read<T: Pod>(&self, src: &GpuVec<T>) -> Result<Vec<T>> {
        self.read_range(src, 0, src.len)
    }

    /// Reads elements `offset..offset + len` back (waits for all submitted work).
    pub fn read_range<T: Pod>(&self, src: &GpuVec<T>, offset: usize, len: usize) -> Result<Vec<T>> {
        now(self.read_range_async(src, offset, len))
    }

    /// [`Context::read_range`] as a future: the form a browser needs (see [`super::ready`]).
    pub async fn read_range_async<T: Pod>(&self, src: &GpuVec<T>, offset: usize, len: usize) -> Result<Vec<T>> {
        let size = std::mem::size_of::<T>() as u64;
        if offset + len > src.len {
            return Err(Error::Shape(format!("reading {len} elements at {offset} from a buffer of {}", src.len)));
        }
        let (at, n) = (offset as u64 * size, len as u64 * size);
        // Copies need 4-byte aligned offsets and sizes: read the enclosing words.
        let (start, end) = (at & !3, (at + n).next_multiple_of(4));
        let bytes = self.read_bytes_async(&src.buffer, start, end - start).await?;
        let skip = (at - start) as usize;
        Ok(bytemuck::pod_collect_to_vec(&bytes[skip..skip + n as usize]))
    }

    /// Reads `len` bytes at `offset` (both 4-aligned) of any buffer with COPY_SRC usage.
    pub fn read_bytes(&self, src: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<u8>> {
        now(self.read_bytes_async(src, offset, len))
    }

    async fn read_bytes_async(&self, src: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let staging = self.create_buffer("readback staging", len, usage, MemTag::Staging)?;
        let mut enc = self.encoder("readback");
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, len);
        self.queue.submit([enc.finish()]);
        let slice = staging.slice(..);
        mapped(self, slice, wgpu::MapMode::Read).await?;
        let out = slice.get_mapped_range().map_err(|e| Error::Gpu(e.to_string()))?.to_vec();
        staging.unmap();
        Ok(out)
    }

    /// Elements `0..len` of a MAP_READ buffer that submitted work has filled: mapped once that
    /// work is done, copied out and unmapped, with no buffer or submit of its own.
    pub async fn read_mapped<T: Pod>(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        if bytes > buffer.size() {
            return Err(Error::Shape(format!("reading {bytes} bytes from a buffer of {}", buffer.size())));
        }
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let slice = buffer.slice(..bytes);
        mapped(self, slice, wgpu::MapMode::Read).await?;
        let out = bytemuck::pod_collect_to_vec(&slice.get_mapped_range().map_err(|e| Error::Gpu(e.to_string()))?);
        buffer.unmap();
        Ok(out)
    }

    /// One dispatch's parameters, in a slot of the context's parameter arena (see
    /// [`super::uniforms`]): written to the device with everything else recorded before the next
    /// [`Context::submit`].
    pub(crate) fn uniform(&self, words: &[u32]) -> Result<super::UniformSlot<'_>> {
        self.uniforms().push(self, words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uniform_window_from_the_start_of_an_activation_buffer_lies_inside_it() {
        for floats in 1..=(MAX_UNIFORM_WINDOW / 4 + 4096) {
            let (bytes, window) = (4 * floats, uniform_window_bytes(4 * floats));
            assert!(window >= bytes);
            if window <= MAX_UNIFORM_WINDOW {
                assert!(window <= activation_bytes(bytes, true), "{floats} floats");
            }
        }
        // Larger buffers keep their size (rounded to 16 bytes).
        assert_eq!(activation_bytes(65540, true), 65552);
        assert_eq!(activation_bytes(40, false), 48);
    }
}
