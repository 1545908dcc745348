//! Bind groups made once and reused: a decode step binds the same buffer windows step after
//! step, so creating a bind group per dispatch (about a third of the host time it took to record
//! one on lavapipe, and the larger part of the H200's 9.8 µs) is wasted work.
//!
//! Kernel parameters do not live in the bind group: they are bound from the parameter arena with a
//! dynamic offset (see `gpu/uniforms.rs` and [`super::Pipeline`]'s layout), so a group depends only
//! on the pipeline's layout and the buffer windows and textures bound. It is looked up by a hash of
//! those, computed without allocating, and compared entry by entry.
//!
//! A cached group holds its buffers alive, so the cache starts over whenever the memory tracker
//! sees a buffer or texture freed (a session dropped, a scratch buffer replaced), and when it
//! holds [`MAX_CACHED`] groups.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::num::NonZeroU64;
use std::sync::Mutex;

use rustc_hash::FxHasher;

use crate::error::{Error, Result};

type Resource<'a> = wgpu::BindingResource<'a>;

/// Most groups held; past it the cache starts over (a decode step of a 7B model binds about
/// 300 distinct groups, a prompt's micro-batches a few hundred more).
const MAX_CACHED: usize = 4096;

/// One bound resource, owned: what a cached group was made from.
#[derive(PartialEq)]
enum Bound {
    Buffer { buffer: wgpu::Buffer, offset: u64, size: Option<NonZeroU64> },
    View(wgpu::TextureView),
}

impl Bound {
    fn of(resource: &Resource<'_>) -> Result<Bound> {
        match resource {
            wgpu::BindingResource::Buffer(b) => {
                Ok(Bound::Buffer { buffer: b.buffer.clone(), offset: b.offset, size: b.size })
            }
            wgpu::BindingResource::TextureView(v) => Ok(Bound::View((*v).clone())),
            _ => Err(Error::Gpu("kernels bind only buffers and texture views".into())),
        }
    }

    fn matches(&self, resource: &Resource<'_>) -> bool {
        match (self, resource) {
            (Bound::Buffer { buffer, offset, size }, wgpu::BindingResource::Buffer(b)) => {
                buffer == b.buffer && *offset == b.offset && *size == b.size
            }
            (Bound::View(view), wgpu::BindingResource::TextureView(v)) => view == *v,
            _ => false,
        }
    }
}

/// Hashes what identifies a group, borrowing it.
fn key_hash<'r>(layout: &wgpu::BindGroupLayout, resources: impl Iterator<Item = &'r Resource<'r>>) -> u64 {
    let mut h = FxHasher::default();
    layout.hash(&mut h);
    for r in resources {
        match r {
            wgpu::BindingResource::Buffer(b) => (b.buffer, b.offset, b.size).hash(&mut h),
            wgpu::BindingResource::TextureView(v) => v.hash(&mut h),
            _ => 0u8.hash(&mut h),
        }
    }
    h.finish()
}

struct Cached {
    layout: wgpu::BindGroupLayout,
    resources: Vec<Bound>,
    group: wgpu::BindGroup,
}

impl Cached {
    fn matches(&self, layout: &wgpu::BindGroupLayout, resources: &[Resource<'_>], params: &Resource<'_>) -> bool {
        self.layout == *layout
            && self.resources.len() == resources.len() + 1
            && self.resources.iter().zip(resources.iter().chain([params])).all(|(b, r)| b.matches(r))
    }
}

#[derive(Default)]
struct CacheState {
    /// Groups by [`key_hash`]; a bucket holds the (rare) groups whose hashes collide.
    groups: HashMap<u64, Vec<Cached>, BuildHasherDefault<FxHasher>>,
    len: usize,
    /// The memory tracker's free count when the cache was last emptied.
    frees: u64,
    /// Groups created so far (tests check that a decode step creates none once warm).
    created: u64,
}

impl CacheState {
    fn clear(&mut self, frees: u64) {
        self.groups.clear();
        self.len = 0;
        self.frees = frees;
    }
}

#[derive(Default)]
pub(crate) struct BindGroupCache {
    state: Mutex<CacheState>,
}

impl BindGroupCache {
    /// The group binding `resources` and then `params` (bindings 0, 1, ... in order) to
    /// `layout`, made on first use. `frees`: the memory tracker's current free count.
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        layout: &wgpu::BindGroupLayout,
        resources: &[Resource<'_>],
        params: Resource<'_>,
        frees: u64,
    ) -> Result<wgpu::BindGroup> {
        let mut s = self.state.lock().map_err(|_| Error::Gpu("bind group cache poisoned".into()))?;
        if s.frees != frees {
            s.clear(frees);
        }
        let hash = key_hash(layout, resources.iter().chain([&params]));
        if let Some(hit) = s.groups.get(&hash).and_then(|b| b.iter().find(|c| c.matches(layout, resources, &params))) {
            return Ok(hit.group.clone());
        }
        if s.len >= MAX_CACHED {
            s.clear(frees);
        }
        let all: Vec<&Resource<'_>> = resources.iter().chain([&params]).collect();
        let entries: Vec<wgpu::BindGroupEntry<'_>> = all
            .iter()
            .enumerate()
            .map(|(i, &r)| wgpu::BindGroupEntry { binding: i as u32, resource: r.clone() })
            .collect();
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout, entries: &entries });
        let cached =
            Cached { layout: layout.clone(), resources: all.into_iter().map(Bound::of).collect::<Result<_>>()?, group };
        let group = cached.group.clone();
        s.groups.entry(hash).or_default().push(cached);
        s.len += 1;
        s.created += 1;
        Ok(group)
    }

    /// Bind groups created so far.
    pub(crate) fn created(&self) -> u64 {
        self.state.lock().map(|s| s.created).unwrap_or(0)
    }
}
