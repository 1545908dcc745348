//! The GPU context: adapter choice, device with the adapter's real limits, optional features,
//! the memory tracker and the pipeline cache.

use std::sync::{Arc, Mutex};

use super::bind_groups::BindGroupCache;
use super::memory::{MemTag, MemoryTracker, TrackedBuffer, TrackedTexture, TEXEL_BYTES};
use super::pipeline::PipelineCache;
use super::profile::DeviceProfile;
use super::profiler::{Profiler, PROFILE_ENV};
use super::uniforms::UniformArena;
use crate::error::{Error, Result};

/// Environment variable that picks the adapter: an index into [`list_adapters`] or a
/// case-insensitive substring of the adapter's name. Read once, when a context is created.
pub const ADAPTER_ENV: &str = "WGQUANT_ADAPTER";

/// Environment variable that overrides where weights are held: `1` in textures, `0` in storage
/// buffers (see [`ContextOptions::weight_textures`]). Read once, when a context is created.
pub const WEIGHT_TEXTURES_ENV: &str = "WGQUANT_WEIGHT_TEXTURES";

/// Overrides whether kernels get wgpu's runtime bounds checks (`1` or `0`; see
/// [`ContextOptions::shader_checks`]).
pub const SHADER_CHECKS_ENV: &str = "WGQUANT_SHADER_CHECKS";

/// Overrides whether decode takes the integer matvec (`1` or `0`; see
/// [`super::DeviceProfile::int_matvec`]).
pub const INT_MATVEC_ENV: &str = "WGQUANT_INT_MATVEC";

/// Overrides whether sampled decode steps select the likeliest tokens on the device (`1` or
/// `0`; see [`super::DeviceProfile::device_sampling`]).
pub const DEVICE_SAMPLING_ENV: &str = "WGQUANT_DEVICE_SAMPLING";

/// A boolean environment switch: `Some` for `1` or `0`, `None` when unset or anything else.
pub(crate) fn env_switch(name: &str) -> Option<bool> {
    match std::env::var(name).as_deref() {
        Ok("1") => Some(true),
        Ok("0") => Some(false),
        _ => None,
    }
}

/// Widest weight texture row, as log2 of its texels: 16384 texels (256 KiB), the largest 2-D
/// texture dimension Vulkan devices commonly have.
const MAX_TEXTURE_ROW_BITS: u32 = 14;

/// Narrowest weight texture row: 16 texels, 256 bytes, the row alignment of buffer-to-texture
/// copies.
const MIN_TEXTURE_ROW_BITS: u32 = 4;

/// Weight textures have at least this many rows where their width allows: a texture is padded to
/// whole rows (and the driver may round its height, llvmpipe to 4 rows), so short, wide textures
/// would waste up to a few rows' bytes each.
const MIN_TEXTURE_ROWS: u64 = 256;

/// Weight texture heights are rounded up to this many rows, as llvmpipe rounds them, so that the
/// memory tracker counts what the driver allocates.
const TEXTURE_ROW_ALIGN: u64 = 4;

/// The geometry of a context's weight textures: rows of up to `2^max_row_bits` texels, at most
/// `max_height` rows. The planner counts weights with it as the context allocates them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WeightTextures {
    pub max_row_bits: u32,
    pub max_height: u32,
}

impl WeightTextures {
    /// The shape of a texture for `bytes` bytes: `(row_bits, height)`, `2^row_bits` texels per
    /// row, as wide as `max_row_bits` allows while keeping `MIN_TEXTURE_ROWS` (256) rows (and at
    /// least `MIN_TEXTURE_ROW_BITS`, 16 texels), the height rounded to `TEXTURE_ROW_ALIGN` (4);
    /// `None` when it would be higher than `max_height`.
    pub fn shape(&self, bytes: u64) -> Option<(u32, u32)> {
        let texels = bytes.div_ceil(TEXEL_BYTES).max(1);
        let bits = (texels / MIN_TEXTURE_ROWS).max(1).ilog2().clamp(MIN_TEXTURE_ROW_BITS, self.max_row_bits);
        let height = texels.div_ceil(1 << bits).next_multiple_of(TEXTURE_ROW_ALIGN);
        let height = u32::try_from(height).ok().filter(|&h| h <= self.max_height)?;
        Some((bits, height))
    }

    /// Bytes a texture holding `bytes` bytes allocates (padding included).
    pub fn allocated(&self, bytes: u64) -> Option<u64> {
        self.shape(bytes).map(|(bits, height)| (TEXEL_BYTES << bits) * height as u64)
    }

    /// The most bytes one texture holds.
    pub fn capacity(&self) -> u64 {
        (TEXEL_BYTES << self.max_row_bits) * (self.max_height as u64 / TEXTURE_ROW_ALIGN * TEXTURE_ROW_ALIGN)
    }
}

/// How to pick an adapter when the automatic choice is not wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdapterSelector {
    /// Index into [`list_adapters`].
    Index(usize),
    /// Case-insensitive substring of the adapter name.
    Name(String),
}

impl AdapterSelector {
    /// Parses the [`ADAPTER_ENV`] syntax: a number is an index, anything else a name substring.
    pub fn parse(s: &str) -> AdapterSelector {
        match s.trim().parse::<usize>() {
            Ok(i) => AdapterSelector::Index(i),
            Err(_) => AdapterSelector::Name(s.trim().to_string()),
        }
    }
}

/// Knobs for [`Context::with_options`]. `Default` gives the automatic behaviour.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Adapter to use; `None` reads [`ADAPTER_ENV`], and if that is unset picks the best adapter.
    pub adapter: Option<AdapterSelector>,
    /// Caps the bytes of one storage binding (and of one weight chunk, in buffers or textures)
    /// below the device's limit. Tests use it to force tensors to be split into several chunks.
    pub max_binding_size: Option<u64>,
    /// Replaces the device profile (default: [`DeviceProfile::for_device_type`] of the adapter).
    /// `shader_checks` and `weight_textures` below still override its fields of those names.
    pub profile: Option<DeviceProfile>,
    /// Features not to enable even when the adapter has them, to exercise fallback paths.
    pub disable_features: wgpu::Features,
    /// Whether wgpu adds its runtime bounds checks to the kernels. `None`: [`SHADER_CHECKS_ENV`]
    /// when set, else the profile's choice (on for GPUs, where they cost little; off for CPU
    /// devices, where they cost 15-40 % of matvec speed: the kernels stay in bounds by
    /// construction, see `gpu/pipeline.rs`).
    pub shader_checks: Option<bool>,
    /// Time every dispatch with timestamp queries (see [`super::profiler`]); `None` reads
    /// [`super::PROFILE_ENV`]. Ignored on devices without timestamps inside passes.
    pub profile_kernels: Option<bool>,
    /// Hold weights in rgba32uint storage textures instead of storage buffers (the same bytes;
    /// the kernels read them with `textureLoad`), where the device can read such textures.
    /// `None` reads [`WEIGHT_TEXTURES_ENV`] (`1` or `0`; other values are ignored), and if that is
    /// unset follows the profile (textures on CPU devices, where llvmpipe gathers texels for all
    /// SIMD lanes at once but loads storage words lane by lane: a matrix streams several times as
    /// fast, see `shaders/common/w_texture.wgsl`).
    pub weight_textures: Option<bool>,
}

/// Optional features that kernels use when present; every kernel also has a path without them.
const WANTED_FEATURES: wgpu::Features =
    wgpu::Features::SHADER_F16.union(wgpu::Features::SUBGROUP).union(wgpu::Features::TIMESTAMP_QUERY);

/// Features kernel profiling needs.
const PROFILE_FEATURES: wgpu::Features =
    wgpu::Features::TIMESTAMP_QUERY.union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);

/// A device and queue plus everything the ops need to know about them.
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    /// `unpack2x16float` is usable (downlevel flag SHADER_F16_IN_F32); otherwise f16 is decoded
    /// with integer arithmetic.
    f16_in_f32: bool,
    profile: DeviceProfile,
    max_binding: u64,
    /// The weight textures' geometry; `None`: weights are in storage buffers.
    weight_textures: Option<WeightTextures>,
    /// Largest byte size of one chunk of a weight tensor.
    weight_chunk_limit: u64,
    memory: Arc<MemoryTracker>,
    pub(crate) pipelines: PipelineCache,
    profiler: Option<Profiler>,
    /// Every dispatch's parameters.
    uniforms: UniformArena,
    /// Bind groups made once and reused (see `gpu/bind_groups.rs`).
    bind_groups: BindGroupCache,
    errors: Arc<Mutex<Vec<String>>>,
}

/// Work handed to the queue by [`Context::submit`], not yet waited for.
pub struct Submitted {
    index: wgpu::SubmissionIndex,
    timed: Option<super::profiler::Resolved>,
}

/// One adapter as [`list_adapters`] reports it.
#[derive(Clone, Debug)]
pub struct AdapterEntry {
    pub index: usize,
    pub info: wgpu::AdapterInfo,
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Vulkan / Metal / D3D12 adapters, and GL ones only when those backends offer none at all: GL is
/// a last resort (no f16, no subgroups), and probing it is slow, and noisy on headless machines
/// (Mesa's EGL complains about XDG_RUNTIME_DIR on every start).
fn adapters() -> Vec<wgpu::Adapter> {
    let primary = wgpu::Backends::PRIMARY;
    let mut found = pollster::block_on(instance(primary).enumerate_adapters(primary));
    if found.is_empty() {
        let gl = wgpu::Backends::GL;
        found.extend(pollster::block_on(instance(gl).enumerate_adapters(gl)));
    }
    found
}

/// Every adapter wgpu can see, in the order [`AdapterSelector::Index`] refers to.
pub fn list_adapters() -> Vec<AdapterEntry> {
    adapters().iter().enumerate().map(|(index, a)| AdapterEntry { index, info: a.get_info() }).collect()
}

/// The adapter a context picks when none is named, if there is one.
pub fn best_adapter_entry() -> Option<AdapterEntry> {
    let all = list_adapters();
    let infos: Vec<wgpu::AdapterInfo> = all.iter().map(|a| a.info.clone()).collect();
    best_adapter(&infos).map(|i| all[i].clone())
}

fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal | wgpu::Backend::Dx12 => 1,
        _ => 2,
    }
}

/// A GL adapter that is a software rasteriser: never wanted when anything else exists (it lacks
/// f16 and subgroups, and the Vulkan software driver is faster).
fn is_software_gl(info: &wgpu::AdapterInfo) -> bool {
    info.backend == wgpu::Backend::Gl
        && (info.device_type == wgpu::DeviceType::Cpu || info.name.to_ascii_lowercase().contains("llvmpipe"))
}

/// Index of the best adapter: discrete > integrated > virtual > CPU, Vulkan before other backends.
pub(crate) fn best_adapter(infos: &[wgpu::AdapterInfo]) -> Option<usize> {
    let has_other = infos.iter().any(|i| !is_software_gl(i));
    infos
        .iter()
        .enumerate()
        .filter(|(_, i)| !(has_other && is_software_gl(i)))
        .min_by_key(|(idx, i)| (type_rank(i.device_type), backend_rank(i.backend), *idx))
        .map(|(idx, _)| idx)
}

fn select(infos: &[wgpu::AdapterInfo], sel: Option<&AdapterSelector>) -> Result<usize> {
    let names = || {
        infos
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{i}: {} ({:?})", a.name, a.backend))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match sel {
        None => {
            best_adapter(infos).ok_or_else(|| Error::Gpu("no GPU adapter found (is a Vulkan driver installed?)".into()))
        }
        Some(AdapterSelector::Index(i)) if *i < infos.len() => Ok(*i),
        Some(AdapterSelector::Index(i)) => {
            Err(Error::Gpu(format!("adapter index {i} out of range; adapters: [{}]", names())))
        }
        Some(AdapterSelector::Name(n)) => {
            let want = n.to_ascii_lowercase();
            let matching: Vec<usize> =
                (0..infos.len()).filter(|&i| infos[i].name.to_ascii_lowercase().contains(&want)).collect();
            // Among several matches (the same driver through Vulkan and GL) take the best ranked.
            let sub: Vec<wgpu::AdapterInfo> = matching.iter().map(|&i| infos[i].clone()).collect();
            best_adapter(&sub)
                .map(|j| matching[j])
                .ok_or_else(|| Error::Gpu(format!("no adapter name contains `{n}`; adapters: [{}]", names())))
        }
    }
}

impl Context {
    /// A context on the best adapter (or the one [`ADAPTER_ENV`] names).
    pub fn new() -> Result<Context> {
        Context::with_options(ContextOptions::default())
    }

    pub fn with_options(opts: ContextOptions) -> Result<Context> {
        let adapters = adapters();
        let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
        let env_sel =
            std::env::var(ADAPTER_ENV).ok().filter(|s| !s.trim().is_empty()).map(|s| AdapterSelector::parse(&s));
        let idx = select(&infos, opts.adapter.as_ref().or(env_sel.as_ref()))?;
        let adapter = &adapters[idx];
        Context::from_adapter(adapter, &opts)
    }

    /// A context on wgpu's noop backend, which creates and maps buffers and runs nothing: where a
    /// machine has no adapter at all, a model with every layer and the head on the CPU keeps its
    /// few device buffers there (and never submits work; see `GpuModel::forward`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn host_only() -> Result<Context> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::NOOP;
        desc.backend_options.noop = wgpu::NoopBackendOptions { enable: true, ..Default::default() };
        let adapter = pollster::block_on(wgpu::Instance::new(desc).request_adapter(&Default::default()))
            .map_err(|e| Error::Gpu(format!("wgpu's noop backend: {e}")))?;
        let opts = ContextOptions { profile_kernels: Some(false), weight_textures: Some(false), ..Default::default() };
        Context::from_adapter(&adapter, &opts)
    }

    /// A context on the adapter wgpu offers for high performance, made without blocking: the
    /// form a web page needs, where the adapter is the browser's WebGPU one. `opts.adapter` and
    /// [`ADAPTER_ENV`] are not consulted: the browser has one adapter to give.
    pub async fn request(opts: ContextOptions) -> Result<Context> {
        let backends = match cfg!(target_arch = "wasm32") {
            true => wgpu::Backends::BROWSER_WEBGPU,
            false => wgpu::Backends::PRIMARY,
        };
        let adapter = instance(backends)
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::Gpu(format!("no adapter ({e}): is WebGPU enabled (in a browser), or a Vulkan driver installed?"))
            })?;
        Context::from_adapter_async(&adapter, &opts).await
    }

    fn from_adapter(adapter: &wgpu::Adapter, opts: &ContextOptions) -> Result<Context> {
        pollster::block_on(Context::from_adapter_async(adapter, opts))
    }

    async fn from_adapter_async(adapter: &wgpu::Adapter, opts: &ContextOptions) -> Result<Context> {
        let info = adapter.get_info();
        let profiling = opts.profile_kernels.unwrap_or_else(|| std::env::var(PROFILE_ENV).is_ok_and(|v| v == "1"));
        let wanted = if profiling { WANTED_FEATURES | PROFILE_FEATURES } else { WANTED_FEATURES };
        let features = adapter.features() & wanted & !opts.disable_features;
        // The adapter's real limits: wgpu's defaults would cap buffers at 256 MiB.
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("wgquant"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|e| Error::Gpu(format!("requesting a device on {}: {e}", info.name)))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        // The default handler panics; a library must report errors instead.
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let f16_in_f32 = adapter.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32);
        let device_max = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let max_binding = opts.max_binding_size.map_or(device_max, |m| m.min(device_max));
        let mut profile = opts.profile.clone().unwrap_or_else(|| DeviceProfile::for_device_type(info.device_type));
        profile.shader_checks =
            opts.shader_checks.or_else(|| env_switch(SHADER_CHECKS_ENV)).unwrap_or(profile.shader_checks);
        profile.int_matvec = env_switch(INT_MATVEC_ENV).unwrap_or(profile.int_matvec);
        profile.device_sampling = env_switch(DEVICE_SAMPLING_ENV).unwrap_or(profile.device_sampling);
        let textures =
            opts.weight_textures.or_else(|| env_switch(WEIGHT_TEXTURES_ENV)).unwrap_or(profile.weight_textures);
        let max_dim = limits.max_texture_dimension_2d;
        // Kernels bind weight textures as read-only storage textures.
        let format = adapter.get_texture_format_features(wgpu::TextureFormat::Rgba32Uint);
        let readable = format.allowed_usages.contains(wgpu::TextureUsages::STORAGE_BINDING)
            && format.flags.contains(wgpu::TextureFormatFeatureFlags::STORAGE_READ_ONLY)
            && limits.max_storage_textures_per_shader_stage > 0;
        let weight_textures = (textures && readable && max_dim >= 1 << MIN_TEXTURE_ROW_BITS)
            .then(|| WeightTextures { max_row_bits: max_dim.ilog2().min(MAX_TEXTURE_ROW_BITS), max_height: max_dim });
        // One rule for both kinds of weights, which the planner mirrors: a chunk is at most one
        // storage binding (and one allocation, and what a texture holds).
        let weight_chunk_limit = max_binding.min(weight_textures.map_or(u64::MAX, |t| t.capacity()));
        let profiler = features.contains(PROFILE_FEATURES).then(|| Profiler::new(&device, &queue));
        let memory = Arc::new(MemoryTracker::default());
        let uniforms = UniformArena::new(&device, &limits, memory.clone());
        Ok(Context {
            device,
            queue,
            info,
            limits,
            features,
            f16_in_f32,
            profile,
            max_binding,
            weight_textures,
            weight_chunk_limit,
            memory,
            pipelines: PipelineCache::default(),
            profiler,
            uniforms,
            bind_groups: BindGroupCache::default(),
            errors,
        })
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }
    /// The optional features that were enabled on the device.
    pub fn features(&self) -> wgpu::Features {
        self.features
    }
    /// The subgroup size when the SUBGROUP feature is enabled and the size is fixed (min = max)
    /// and a power of two from 4 to 128: only then can a kernel map one row to one subgroup.
    pub fn subgroup_size(&self) -> Option<u32> {
        let (min, max) = (self.info.subgroup_min_size, self.info.subgroup_max_size);
        (self.has(wgpu::Features::SUBGROUP) && min == max && min.is_power_of_two() && (4..=128).contains(&min))
            .then_some(min)
    }

    pub fn has(&self, f: wgpu::Features) -> bool {
        self.features.contains(f)
    }
    pub(crate) fn f16_in_f32(&self) -> bool {
        self.f16_in_f32
    }
    /// The bind group of `resources` and then the parameter slot `params` for `layout`, from the
    /// cache (see `gpu/bind_groups.rs`).
    pub(crate) fn bind_group(
        &self,
        layout: &wgpu::BindGroupLayout,
        resources: &[wgpu::BindingResource<'_>],
        params: wgpu::BindingResource<'_>,
    ) -> Result<wgpu::BindGroup> {
        self.bind_groups.get(&self.device, layout, resources, params, self.memory.frees())
    }

    /// Bind groups created so far (a warm decode step creates none).
    pub fn bind_groups_created(&self) -> u64 {
        self.bind_groups.created()
    }

    /// The kernel parameters' arena.
    pub(crate) fn uniforms(&self) -> &UniformArena {
        &self.uniforms
    }
    /// Every device-dependent choice the kernels make (see [`DeviceProfile`]).
    pub fn profile(&self) -> &DeviceProfile {
        &self.profile
    }
    /// Whether kernels are compiled with wgpu's runtime bounds checks.
    pub fn shader_checks(&self) -> bool {
        self.profile.shader_checks
    }
    /// Largest byte size of one storage binding (and one buffer) that activations may use; weight
    /// chunks also stay within it ([`Context::weight_chunk_limit`]).
    pub fn max_binding_size(&self) -> u64 {
        self.max_binding
    }
    pub fn memory(&self) -> &MemoryTracker {
        &self.memory
    }
    /// Whether weights are held in textures (see [`ContextOptions::weight_textures`]).
    pub fn weight_textures(&self) -> bool {
        self.weight_textures.is_some()
    }
    /// The weight textures' geometry, when weights are held in textures.
    pub fn weight_texture_geometry(&self) -> Option<WeightTextures> {
        self.weight_textures
    }
    /// Largest byte size of one chunk of a weight tensor (see [`super::GpuTensor`]).
    pub fn weight_chunk_limit(&self) -> u64 {
        self.weight_chunk_limit
    }

    /// A one-line description: adapter name, backend, device type, driver.
    pub fn describe(&self) -> String {
        let i = &self.info;
        format!("{} ({:?}, {:?}, {} {})", i.name, i.backend, i.device_type, i.driver, i.driver_info)
    }

    /// Creates a buffer counted under `tag`. Every buffer of the runtime goes through here.
    pub fn create_buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
        tag: MemTag,
    ) -> Result<TrackedBuffer> {
        self.create_buffer_mapped_if(label, size, usage, tag, false)
    }

    /// [`Context::create_buffer`], mapped for writing from the start when `mapped_at_creation`
    /// (as a browser's uploads need: it cannot wait for a map; `size` then a multiple of 4).
    pub(crate) fn create_buffer_mapped_if(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
        tag: MemTag,
        mapped_at_creation: bool,
    ) -> Result<TrackedBuffer> {
        if size > self.limits.max_buffer_size {
            return Err(Error::DoesNotFit(format!(
                "buffer `{label}` of {size} bytes exceeds the device's max_buffer_size {}",
                self.limits.max_buffer_size
            )));
        }
        let buffer =
            self.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation });
        Ok(TrackedBuffer::new(buffer, tag, self.memory.clone()))
    }

    /// Creates a weight texture of at least `bytes` bytes (see [`WeightTextures::shape`]), counted
    /// under [`MemTag::Weights`]. wgpu zeroes what the first copies into it leave unwritten.
    pub fn create_weight_texture(&self, label: &str, bytes: u64) -> Result<TrackedTexture> {
        let shape = self.weight_textures.and_then(|t| t.shape(bytes));
        let (row_bits, height) = shape.ok_or_else(|| {
            Error::DoesNotFit(format!(
                "weight texture `{label}` of {bytes} bytes: the device's textures hold at most {} bytes",
                self.weight_chunk_limit
            ))
        })?;
        let texture = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d { width: 1 << row_bits, height, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Uint,
            usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        Ok(TrackedTexture::new(texture, row_bits, MemTag::Weights, self.memory.clone()))
    }

    /// Creates a buffer with `contents`, counted under `tag` (small buffers: goes through a
    /// mapping of the whole size, see [`Context::upload_bytes`] for large data).
    pub fn create_buffer_init(
        &self,
        label: &str,
        contents: &[u8],
        usage: wgpu::BufferUsages,
        tag: MemTag,
    ) -> Result<TrackedBuffer> {
        let size = (contents.len() as u64).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT).max(4);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: true,
        });
        {
            let mut view = buffer.slice(..).get_mapped_range_mut().map_err(|e| Error::Gpu(e.to_string()))?;
            view.slice(..contents.len()).copy_from_slice(contents);
        }
        buffer.unmap();
        Ok(TrackedBuffer::new(buffer, tag, self.memory.clone()))
    }

    /// Returns (and clears) the errors wgpu reported outside error scopes, as one error.
    pub fn take_errors(&self) -> Result<()> {
        let mut v = self.errors.lock().map_err(|_| Error::Gpu("error sink poisoned".into()))?;
        if v.is_empty() {
            return Ok(());
        }
        let msg = v.join("; ");
        v.clear();
        Err(Error::Gpu(msg))
    }

    /// Submits `encoder` and waits until the device is idle, then reports any wgpu error.
    /// With kernel profiling on, the dispatches' timestamps are resolved too and added to the
    /// profile.
    pub fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        let submitted = self.submit(encoder)?;
        self.wait_for(submitted)
    }

    /// Submits `encoder` without waiting: the host's part of running it ends here, which is where
    /// the forward pass stops its host-time clock. Pass the result to [`Context::wait_for`].
    pub fn submit(&self, mut encoder: wgpu::CommandEncoder) -> Result<Submitted> {
        let timed = match &self.profiler {
            Some(p) => p.resolve(self, &mut encoder)?,
            None => None,
        };
        self.uniforms.flush(self)?;
        Ok(Submitted { index: self.queue.submit([encoder.finish()]), timed })
    }

    /// Waits for a [`Context::submit`] to finish, reports any wgpu error, and adds its kernel
    /// timestamps to the profile when profiling is on.
    pub fn wait_for(&self, submitted: Submitted) -> Result<()> {
        self.wait(Some(submitted.index))?;
        match (&self.profiler, submitted.timed) {
            (Some(p), Some(timed)) => p.record(self, timed),
            _ => Ok(()),
        }
    }

    /// Waits for submission `idx` (or everything submitted) to finish.
    pub fn wait(&self, idx: Option<wgpu::SubmissionIndex>) -> Result<()> {
        // A failed submission (its error went to the uncaptured-error sink) makes the poll fail
        // too; report the cause rather than the poll's complaint.
        self.take_errors()?;
        let polled = self.device.poll(wgpu::PollType::Wait { submission_index: idx, timeout: None });
        self.take_errors()?;
        polled.map(|_| ()).map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))
    }

    /// The kernel profiler, when profiling is on.
    pub(crate) fn profiler(&self) -> Option<&Profiler> {
        self.profiler.as_ref()
    }

    /// A command encoder with a label.
    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, backend: wgpu::Backend, device_type: wgpu::DeviceType) -> wgpu::AdapterInfo {
        wgpu::AdapterInfo {
            name: name.into(),
            vendor: 0,
            device: 0,
            device_type,
            device_pci_bus_id: String::new(),
            driver: String::new(),
            driver_info: String::new(),
            backend,
            subgroup_min_size: 0,
            subgroup_max_size: 0,
            transient_saves_memory: None,
            limit_bucket: None,
        }
    }

    #[test]
    fn weight_textures_keep_their_rows_many_and_their_padding_small() {
        let t = WeightTextures { max_row_bits: 14, max_height: 16384 };
        // 450 KB: 64-texel rows, 440 of them (4-aligned).
        assert_eq!(t.shape(450_560), Some((6, 440)));
        // 178 MB: the widest rows.
        assert_eq!(t.shape(178_257_920), Some((14, 680)));
        // Padding stays under 2 % (or the four smallest rows, 1 KiB) whatever the size.
        for bytes in [16u64, 1000, 65_536, 1 << 20, 5_000_000, 1 << 30] {
            let held = t.allocated(bytes).unwrap();
            assert!(held >= bytes && held - bytes <= (bytes / 50).max(1 << 10), "{bytes}: {held}");
        }
        assert_eq!(t.capacity(), 4 << 30);
        assert_eq!(t.shape(5 << 30), None);
    }

    #[test]
    fn adapter_ranking_prefers_real_gpus_and_never_gl_llvmpipe() {
        use wgpu::{Backend::*, DeviceType::*};
        let lavapipe = info("llvmpipe (LLVM 15.0.6, 256 bits)", Vulkan, Cpu);
        let gl = info("llvmpipe (LLVM 15.0.6, 256 bits)", Gl, Other);
        let igpu = info("Intel UHD", Vulkan, IntegratedGpu);
        let dgpu = info("NVIDIA RTX", Vulkan, DiscreteGpu);
        assert_eq!(best_adapter(&[gl.clone(), lavapipe.clone()]), Some(1));
        assert_eq!(best_adapter(&[lavapipe.clone(), igpu.clone(), dgpu.clone()]), Some(2));
        assert_eq!(best_adapter(std::slice::from_ref(&gl)), Some(0));
        assert_eq!(select(&[gl.clone(), lavapipe.clone()], Some(&AdapterSelector::parse("llvm"))).unwrap(), 1);
        assert_eq!(select(&[gl, lavapipe], Some(&AdapterSelector::parse("0"))).unwrap(), 0);
        assert!(select(&[igpu], Some(&AdapterSelector::parse("amd"))).is_err());
    }
}
