//! Compute pipelines, built once per (kernel, format, shape constants) and cached on the context.
//!
//! The constants a pipeline was generated with are stored beside it, and the ops compute their
//! dispatch sizes from the same shape struct that produced them, so host arithmetic and shader
//! constants cannot drift apart.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHasher;

use super::context::Context;
use super::shaders::{compose, Kernel, ShaderCaps};
use super::tensor::GpuTensor;
use crate::error::{Error, Result};
use crate::format::GgmlType;

/// Identifies one compiled pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineKey {
    pub kernel: Kernel,
    /// Weight format (None for kernels that read no weights).
    pub format: Option<GgmlType>,
    /// Generated `const NAME: u32` values (workgroup size, tile sizes, ...), in emission order.
    pub consts: Vec<(&'static str, u32)>,
}

/// Looked up on every dispatch: hashes the constants' values but not their names, which the kernel
/// determines (keys equal as a whole still hash equal).
impl Hash for PipelineKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.kernel.hash(h);
        self.format.hash(h);
        for &(_, value) in &self.consts {
            value.hash(h);
        }
    }
}

impl PipelineKey {
    /// The value of a generated constant, if the key has it.
    pub fn constant(&self, name: &str) -> Option<u32> {
        self.consts.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }

    /// The key of a weight-reading kernel for the weights `w`: where they are held (see
    /// [`PipelineKey::weights_in_texture`]).
    pub fn reading(self, w: &GpuTensor) -> PipelineKey {
        self.weights_in_texture(w.in_texture())
    }

    /// The key with its weights read from a texture or a storage buffer (the `WT` constant, which
    /// composes common/w_texture.wgsl or w_storage.wgsl), replacing any earlier choice.
    pub fn weights_in_texture(mut self, texture: bool) -> PipelineKey {
        self.consts.retain(|&(n, _)| n != "WT");
        self.consts.push(("WT", texture as u32));
        self
    }
}

/// The name of every kernel's parameter block, `var<uniform> p: Params`, its last binding: bound
/// from the parameter arena with a dynamic offset, so that bind groups do not depend on it.
const PARAMS: &str = "p";

/// A compiled pipeline with its bind group layout (read from the shader, the parameters at a
/// dynamic offset) and its key.
pub struct Pipeline {
    pub key: PipelineKey,
    /// `Kernel/FORMAT`, for error messages and profiles.
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    map: Mutex<HashMap<PipelineKey, Arc<Pipeline>, BuildHasherDefault<FxHasher>>>,
}

impl Context {
    /// The pipeline for `key`, compiled on first use.
    pub fn pipeline(&self, key: &PipelineKey) -> Result<Arc<Pipeline>> {
        let poisoned = || Error::Gpu("pipeline cache poisoned".into());
        if let Some(p) = self.pipelines.map.lock().map_err(|_| poisoned())?.get(key) {
            return Ok(p.clone());
        }
        // Built outside the lock: compiling can take a while and must not block other kernels.
        let built = Arc::new(self.build_pipeline(key)?);
        let mut map = self.pipelines.map.lock().map_err(|_| poisoned())?;
        Ok(map.entry(key.clone()).or_insert(built).clone())
    }

    /// Number of pipelines compiled so far.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn build_pipeline(&self, key: &PipelineKey) -> Result<Pipeline> {
        let caps = ShaderCaps { f16_in_f32: self.f16_in_f32() };
        let source = compose(key.kernel, key.format, &key.consts, caps);
        let label = format!("{:?}/{}", key.kernel, key.format.map_or("-", |f| f.name()));
        // Parsed once: the layout is read from the module, which then goes to wgpu as it is.
        let parsed = naga::front::wgsl::parse_str(&source)
            .map_err(|e| Error::Gpu(format!("{label}: {}", e.emit_to_string(&source))))?;
        let entries = layout_entries(&parsed).map_err(|e| Error::Gpu(format!("{label}: {e}")))?;
        // A browser cannot block on an error scope: there the errors go to the device's error
        // sink, and surface at the next readback.
        #[cfg(not(target_arch = "wasm32"))]
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Naga(std::borrow::Cow::Owned(parsed)),
        };
        let module = if self.shader_checks() {
            self.device.create_shader_module(desc)
        } else {
            // SAFETY: every kernel in `shaders/` keeps its accesses in bounds by construction:
            // weight rows are clamped to the chunk and chunks carry a spare word for the two-word
            // unaligned loads; activation indices stay inside windows the ops check on the host
            // (`ops::dispatch::resolve` / `bind_range`); writes are guarded by row and column
            // tests; loops have uniform, finite bounds. The tests run these kernels with and
            // without the checks and require identical results.
            unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        };
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&label), entries: &entries });
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("building pipeline {label} {:?}: {e}", key.consts)));
        }

        Ok(Pipeline { key: key.clone(), label, pipeline, layout })
    }
}

/// The bind group layout of a kernel, read from its parsed WGSL: every binding of group 0 as the
/// shader declares it, the parameter block ([`PARAMS`]) with a dynamic offset.
fn layout_entries(module: &naga::Module) -> std::result::Result<Vec<wgpu::BindGroupLayoutEntry>, String> {
    use naga::{AddressSpace, ImageClass, StorageAccess, StorageFormat, TypeInner};
    let mut entries = Vec::new();
    for (_, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else { continue };
        if binding.group != 0 {
            return Err(format!("binding in group {}: kernels use group 0 only", binding.group));
        }
        let buffer =
            |ty, has_dynamic_offset| wgpu::BindingType::Buffer { ty, has_dynamic_offset, min_binding_size: None };
        let ty = match (var.space, &module.types[var.ty].inner) {
            (AddressSpace::Uniform, _) => buffer(wgpu::BufferBindingType::Uniform, var.name.as_deref() == Some(PARAMS)),
            (AddressSpace::Storage { access }, _) => {
                buffer(wgpu::BufferBindingType::Storage { read_only: !access.contains(StorageAccess::STORE) }, false)
            }
            (
                AddressSpace::Handle,
                TypeInner::Image { class: ImageClass::Storage { format: StorageFormat::Rgba32Uint, access }, .. },
            ) if !access.contains(StorageAccess::STORE) => wgpu::BindingType::StorageTexture {
                access: wgpu::StorageTextureAccess::ReadOnly,
                format: wgpu::TextureFormat::Rgba32Uint,
                view_dimension: wgpu::TextureViewDimension::D2,
            },
            (space, _) => return Err(format!("binding {} in {space:?}: not a kind kernels use", binding.binding)),
        };
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: binding.binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        });
    }
    entries.sort_by_key(|e| e.binding);
    Ok(entries)
}
