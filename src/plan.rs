//! The VRAM planner: decides, from GGUF metadata alone and before anything is uploaded, what goes on
//! the GPU and what runs on the CPU, so that the runtime's tracked GPU bytes stay within a budget.
//!
//! # What it counts
//! - **Weights**: each tensor as [`crate::gpu::GpuTensor::upload`] allocates it (raw blocks split by
//!   rows into chunks within the binding limit, each chunk padded to 4 bytes plus a spare word), per
//!   layer (`blk.{il}.*`), for the output head (`output.weight` + `output_norm.weight`, or
//!   `token_embd.weight` when the head is tied to the embedding), and for other global tensors
//!   (`rope_freqs.weight`). When the head is not tied, the embedding lookup runs on the CPU from the
//!   memory map: the table costs no VRAM. When it is tied, the table is on the GPU with the head.
//! - **KV cache** per layer: K and V of `n_ctx_eff × kv_dim × element bytes` each, with
//!   `n_ctx_eff = min(n_ctx, window)` on sliding-window layers, each rounded up to 4 bytes as the GPU
//!   buffers are ([`kv_layer_bytes`]).
//! - **Scratch**: the forward pass's activations for one micro-batch ([`scratch_bytes`]).
//! - **Staging**: the one host-visible buffer alive at a time for uploads and readbacks
//!   ([`staging_bytes`]).
//!
//! # Decision order ([`plan`])
//! The candidate settings are the requested `(KV type, context)`, then — only where the request
//! allows it — F16 instead of F32 KV, then the context halved step by step down to [`MIN_CTX`]
//! (see [`candidate_settings`]).
//! 1. **Everything on the GPU**, with the requested settings.
//! 2. **Smaller KV type, then smaller context**: the next candidate settings, still everything on
//!    the GPU; the first that fits wins.
//! 3. **Layers on the CPU**: keep the first `N` layers on the GPU (the largest `N` that fits, the
//!    head on the CPU), run the rest on the CPU, then put the output head on the GPU too if it still
//!    fits. This uses the smaller KV type when it was allowed (it costs next to nothing in quality
//!    and gives more GPU layers) but the requested context (CPU layers already make the model fit,
//!    and a shorter context would change what the user can do); only when not even one layer fits
//!    does it go on down the smaller contexts, if allowed.
//! 4. Otherwise [`Error::DoesNotFit`] with the numbers: budget, weights, KV, scratch, and the
//!    smallest plan that could work.

use std::fmt;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, TensorInfo};
use crate::gpu::{activation_bytes, WeightTextures};
use crate::model::config::{Config, KvType};

/// The smallest context [`PlanRequest::allow_smaller_ctx`] may shrink to (or the requested one, if
/// that is smaller already).
pub const MIN_CTX: usize = 512;

/// The budget assumed when the user gives none and the adapter does not report its memory: 4 GiB,
/// the smallest memory of the discrete cards a 7B Q4 model is aimed at, so the default plan errs on
/// the side of fitting.
pub const DEFAULT_BUDGET: u64 = 4 << 30;

/// The default prompt micro-batch (llama.cpp's default `n_ubatch`).
pub const DEFAULT_BATCH: usize = 512;

/// Spare bytes after every weight chunk: mirrors `TAIL_PAD` in `gpu/tensor.rs`, where the WGSL
/// loaders read one word past an unaligned one.
const TAIL_PAD: u64 = 16;

/// What the planner is asked to fit.
#[derive(Clone, Debug, Serialize)]
pub struct PlanRequest {
    /// Context length (positions in the KV cache).
    pub n_ctx: usize,
    /// Prompt micro-batch: tokens per forward pass while reading the prompt (sizes the scratch).
    pub batch: usize,
    /// Element type of the KV cache.
    pub kv_type: KvType,
    /// Bytes of GPU memory the plan may use.
    pub budget_bytes: u64,
    /// The device's largest buffer (`wgpu::Limits::max_buffer_size`).
    pub max_buffer_size: u64,
    /// The device's largest storage binding (`wgpu::Limits::max_storage_buffer_binding_size`).
    pub max_binding_size: u64,
    /// Weights held in textures of this geometry (the runtime's choice on CPU devices, see
    /// [`crate::gpu::ContextOptions::weight_textures`]); `None`: in storage buffers.
    pub weight_textures: Option<WeightTextures>,
    /// Activation buffers are sized for uniform windows (the device profile's
    /// `uniform_activations`, CPU devices), see [`crate::gpu::activation_bytes`].
    pub uniform_activations: bool,
    /// May the planner use an F16 KV cache when F32 was asked for and does not fit?
    pub allow_smaller_kv: bool,
    /// May the planner halve the context (down to [`MIN_CTX`]) when the requested one does not fit?
    pub allow_smaller_ctx: bool,
    /// Rows of logits the forward pass produces (1 for generation: only the last token's).
    pub logits_rows: usize,
}

impl PlanRequest {
    /// A request for `n_ctx` positions under `budget_bytes`, with defaults for the rest: batch
    /// [`DEFAULT_BATCH`], F16 KV cache, no reductions allowed, one row of logits, and WebGPU's
    /// guaranteed limits (`wgpu::Limits::default()`: 256 MiB buffers, 128 MiB bindings) — the
    /// safe choice when no device is at hand; the runtime passes its device's real limits.
    pub fn new(n_ctx: usize, budget_bytes: u64) -> PlanRequest {
        let limits = wgpu::Limits::default();
        PlanRequest {
            n_ctx,
            batch: DEFAULT_BATCH,
            kv_type: KvType::F16,
            budget_bytes,
            max_buffer_size: limits.max_buffer_size,
            max_binding_size: limits.max_storage_buffer_binding_size,
            weight_textures: None,
            uniform_activations: false,
            allow_smaller_kv: false,
            allow_smaller_ctx: false,
            logits_rows: 1,
        }
    }

    /// The largest buffer (or texture) a weight chunk may use: the smaller of the two device
    /// limits and of what a weight texture holds, and at most 4 GiB because offsets inside a
    /// chunk are u32 in the shaders ([`crate::gpu::Context::weight_chunk_limit`]'s rule).
    pub fn chunk_limit(&self) -> u64 {
        let texture = self.weight_textures.map_or(u64::MAX, |t| t.capacity());
        self.max_buffer_size.min(self.max_binding_size).min(texture).min(u32::MAX as u64)
    }
}

/// Where a part of the model lives and runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Placement {
    Gpu,
    Cpu,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Placement::Gpu => "GPU",
            Placement::Cpu => "CPU",
        })
    }
}

/// How the plan fits (the step of the decision order that succeeded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Strategy {
    /// Every layer and the head on the GPU (possibly with a smaller KV type or context).
    AllGpu,
    /// The first layers on the GPU, the rest (and maybe the head) on the CPU.
    CpuLayers,
}

/// One transformer block in the plan.
#[derive(Clone, Debug, Serialize)]
pub struct LayerPlan {
    pub index: usize,
    pub placement: Placement,
    /// Bytes of the layer's weights (as allocated on the GPU, when it is placed there).
    pub weight_bytes: u64,
    /// Bytes of the layer's K and V caches (GPU or host memory, following the layer).
    pub kv_bytes: u64,
    /// Positions the layer's cache holds: the context, or the window on sliding-window layers.
    pub kv_ctx: usize,
}

/// Byte totals per category.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Weights uploaded to the GPU.
    pub weights_gpu: u64,
    /// Weights the CPU reads from the memory map (CPU layers, the embedding when untied, the head
    /// when on the CPU).
    pub weights_host: u64,
    /// KV cache of the GPU layers.
    pub kv_gpu: u64,
    /// KV cache of the CPU layers, in host memory.
    pub kv_host: u64,
    pub scratch: u64,
    pub staging: u64,
    /// Everything on the GPU: weights + KV + scratch + staging.
    pub gpu: u64,
}

/// The planner's answer: what goes where, and what it costs.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `general.name`, or the architecture when the file has no name.
    pub model: String,
    pub arch: String,
    pub budget_bytes: u64,
    /// The context chosen (smaller than requested only when allowed and needed).
    pub n_ctx: usize,
    pub n_ctx_requested: usize,
    /// The KV type chosen (F16 instead of F32 only when allowed and needed).
    pub kv_type: KvType,
    pub kv_type_requested: KvType,
    /// Micro-batch the scratch is sized for (the request's, capped at the context).
    pub batch: usize,
    pub logits_rows: usize,
    pub layers: Vec<LayerPlan>,
    /// Where the output head (final norm + output matrix) runs.
    pub head: Placement,
    pub head_bytes: u64,
    /// The output matrix is `token_embd.weight`: the embedding table goes with the head.
    pub head_tied: bool,
    /// Where the embedding lookup runs (CPU from the memory map unless tied to a GPU head).
    pub embedding: Placement,
    /// Bytes of `token_embd.weight` (counted in `head_bytes` as well when tied).
    pub embedding_bytes: u64,
    /// Other global tensors (`rope_freqs.weight`), on the GPU with the layers.
    pub globals_bytes: u64,
    pub totals: Totals,
    /// Budget minus the GPU total.
    pub headroom_bytes: u64,
    pub strategy: Strategy,
}

impl Plan {
    /// How many layers run on the GPU (always the first ones).
    pub fn gpu_layers(&self) -> usize {
        self.layers.iter().filter(|l| l.placement == Placement::Gpu).count()
    }
    /// Whether layer `il` runs on the GPU.
    pub fn layer_on_gpu(&self, il: usize) -> bool {
        self.layers.get(il).is_some_and(|l| l.placement == Placement::Gpu)
    }
    pub fn head_on_gpu(&self) -> bool {
        self.head == Placement::Gpu
    }
    pub fn embedding_on_gpu(&self) -> bool {
        self.embedding == Placement::Gpu
    }
    /// Bytes the plan allocates on the GPU.
    pub fn gpu_total(&self) -> u64 {
        self.totals.gpu
    }
    /// Weight bytes of the whole model (every tensor, wherever it runs; the tied table once).
    pub fn model_weight_bytes(&self) -> u64 {
        let layers: u64 = self.layers.iter().map(|l| l.weight_bytes).sum();
        let embedding = if self.head_tied { 0 } else { self.embedding_bytes };
        layers + self.head_bytes + embedding + self.globals_bytes
    }
}

// ---------------------------------------------------------------------------------------------
// Sizes

/// Bytes of activations (scratch) the GPU forward pass allocates for a micro-batch of `batch`
/// tokens with a cache of `n_ctx` positions, all f32:
///
/// `4 × [batch × (3·n_embd + q_dim + kv_dim + kv_dim_v + n_head·head_dim_v + 2·n_ff)
///       + logits_rows × n_vocab + attention scratch] + ids + the parameter arena`
///
/// - `3·n_embd`: the residual stream, its normed copy, and a layer output before the residual add;
/// - `q_dim + kv_dim + kv_dim_v`: Q, K and V of the batch;
/// - `n_head·head_dim_v`: the attention output;
/// - `2·n_ff`: FFN gate and up;
/// - `logits_rows × n_vocab`: the logits;
/// - the attention kernels' split results ([`crate::ops::attention::scratch_floats`]: bounded
///   whatever the context, where a score per cached position took `n_head × batch × n_ctx`);
/// - 4 bytes per token id, and the context's kernel parameters
///   ([`crate::gpu::UNIFORM_ARENA_BYTES`]).
///
/// Each of these buffers is allocated [`crate::gpu::activation_bytes`] large (with
/// `uniform_windows`, buffers of up to 64 KiB are rounded up to a power of two). The forward pass allocates exactly these; a test
/// compares the two.
pub fn scratch_bytes(config: &Config, batch: usize, n_ctx: usize, logits_rows: usize, uniform_windows: bool) -> u64 {
    let c = config;
    // The f32 buffers of `GpuState`: x, h, o, q/k/v (one buffer), attention output, gate, up,
    // attention scratch, logits.
    let qkv = c.q_dim() + c.kv_dim() + c.kv_dim_v();
    let per_token = [c.n_embd, c.n_embd, c.n_embd, qkv, c.n_head * c.head_dim_v, c.n_ff, c.n_ff];
    let attention = crate::ops::attention::scratch_floats(c.n_head, c.head_dim_v, batch, n_ctx);
    let buffers = per_token.iter().map(|&n| batch * n).chain([attention, logits_rows * c.n_vocab]);
    let f32_bytes: u64 = buffers.map(|n| activation_bytes(4 * n as u64, uniform_windows)).sum();
    let ids = device_vec_bytes(4 * batch as u64);
    f32_bytes + ids + crate::gpu::UNIFORM_ARENA_BYTES
}

/// Bytes of the staging buffer alive at one time: an upload chunk ([`crate::gpu::UPLOAD_CHUNK`])
/// while loading, the logits readback, or one micro-batch's hidden states going between GPU and
/// CPU layers — whichever is largest.
pub fn staging_bytes(config: &Config, batch: usize, logits_rows: usize) -> u64 {
    let logits = 4 * (logits_rows * config.n_vocab) as u64;
    let hidden = 4 * (batch * config.n_embd) as u64;
    crate::gpu::UPLOAD_CHUNK.max(logits).max(hidden)
}

/// Positions layer `il`'s cache holds: the context, capped at the window on sliding-window layers.
pub fn kv_ctx_of(config: &Config, il: usize, n_ctx: usize, batch: usize) -> usize {
    config.kv_rows(il, n_ctx, batch)
}

/// Bytes of layer `il`'s K and V caches for `n_ctx` positions: each is
/// `kv_ctx × kv_dim × element bytes` (V with `kv_dim_v`) in its own buffer, rounded up like every
/// device vector ([`device_vec_bytes`]).
pub fn kv_layer_bytes(config: &Config, il: usize, n_ctx: usize, batch: usize, kv_type: KvType) -> u64 {
    let rows = kv_ctx_of(config, il, n_ctx, batch) as u64;
    let elem = kv_type.bytes() as u64;
    let k = device_vec_bytes(rows * config.kv_dim() as u64 * elem);
    let v = device_vec_bytes(rows * config.kv_dim_v() as u64 * elem);
    k + v
}

/// Bytes a device vector of `bytes` bytes allocates (the KV cache, and weight vectors, are such
/// vectors): the allocator's own rule, so the plan cannot drift from it.
pub use crate::gpu::device_vec_bytes;

/// Bytes the GPU allocates for one weight tensor, mirroring how the GPU model uploads weights.
/// A vector (1-D: norms, biases) becomes an f32 device vector ([`device_vec_bytes`]). A matrix
/// keeps its raw blocks as [`crate::gpu::GpuTensor::upload`] does: rows split into chunks of at
/// most `chunk_limit` bytes (with padding), each padded to a multiple of 16 plus a spare vec4, and
/// in `textures` to whole texture rows ([`WeightTextures::allocated`]). A matrix with one row
/// larger than the limit cannot be split: that is an error naming it.
/// Projections the GPU model stacks into one buffer ([`crate::gpu::GpuTensor::upload_stack`])
/// share one padding, so this is an upper bound for them (by at most 32 bytes per stack).
pub fn gpu_tensor_bytes(info: &TensorInfo, chunk_limit: u64, textures: Option<WeightTextures>) -> Result<u64> {
    if info.dims.len() == 1 {
        return Ok(device_vec_bytes(4 * info.n_elements()));
    }
    let n_rows = info.n_rows().max(1) as u64;
    let row_bytes = info.n_bytes / n_rows;
    let rows_per_chunk = chunk_limit.saturating_sub(TAIL_PAD + 16) / row_bytes.max(1);
    if rows_per_chunk == 0 {
        return Err(Error::DoesNotFit(format!(
            "tensor `{}`: one row of {} exceeds the device's largest buffer/binding of {} ({} bytes), \
             and a tensor cannot be split inside a row",
            info.name,
            fmt_bytes(row_bytes),
            fmt_bytes(chunk_limit),
            chunk_limit
        )));
    }
    let rows_per_chunk = rows_per_chunk.min(n_rows);
    let full = n_rows / rows_per_chunk;
    let rest = n_rows % rows_per_chunk;
    let chunk = |rows: u64| {
        let bytes = (rows * row_bytes).next_multiple_of(16) + TAIL_PAD;
        // The chunk limit keeps a chunk within one texture.
        textures.and_then(|t| t.allocated(bytes)).unwrap_or(bytes)
    };
    Ok(full * chunk(rows_per_chunk) + if rest > 0 { chunk(rest) } else { 0 })
}

/// Weight bytes of a model, grouped the way the planner places them.
#[derive(Clone, Debug, Serialize)]
pub struct ModelBytes {
    /// GPU bytes of each layer's weights.
    pub layers: Vec<u64>,
    /// GPU bytes of the output head: `output_norm.weight` + `output.weight` (or `token_embd.weight`
    /// when tied).
    pub head: u64,
    /// Raw bytes of `token_embd.weight`.
    pub embedding: u64,
    /// GPU bytes of other global tensors (`rope_freqs.weight`).
    pub globals: u64,
    /// Whether the head is tied to the embedding (the file has no `output.weight`).
    pub tied: bool,
}

impl ModelBytes {
    /// Sizes of `file`'s tensors as `req` would have them allocated ([`PlanRequest::chunk_limit`],
    /// [`PlanRequest::weight_textures`]). A tensor that cannot be split to the limit, or one that
    /// names a layer the model does not have, is an error.
    pub fn from_gguf(file: &GgufFile, config: &Config, req: &PlanRequest) -> Result<ModelBytes> {
        let tied = file.tensor("output.weight").is_none();
        let embedding = file.require_tensor("token_embd.weight")?.n_bytes;
        let mut bytes = ModelBytes { layers: vec![0; config.n_layer], head: 0, embedding, globals: 0, tied };
        for info in file.tensors() {
            bytes.add(info, req.chunk_limit(), req.weight_textures)?;
        }
        Ok(bytes)
    }

    fn add(&mut self, info: &TensorInfo, chunk_limit: u64, textures: Option<WeightTextures>) -> Result<()> {
        let gpu = gpu_tensor_bytes(info, chunk_limit, textures)?;
        if let Some(il) = layer_index(&info.name) {
            let n_layer = self.layers.len();
            let slot = self.layers.get_mut(il).ok_or_else(|| {
                Error::Invalid(format!(
                    "tensor `{}` belongs to layer {il}, but the model has {n_layer} layers",
                    info.name
                ))
            })?;
            *slot += gpu;
        } else if info.name == "output.weight" || info.name == "output_norm.weight" {
            self.head += gpu;
        } else if info.name == "token_embd.weight" {
            // The embedding is the head's matrix when tied; otherwise it stays in the memory map.
            if self.tied {
                self.head += gpu;
            }
        } else {
            self.globals += gpu;
        }
        Ok(())
    }
}

/// The layer a tensor belongs to (`blk.{il}.…`), if any.
fn layer_index(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Planning

/// One `(KV type, context)` setting with the byte counts that follow from it.
struct Setting {
    kv_type: KvType,
    n_ctx: usize,
    batch: usize,
    /// KV bytes of each layer.
    kv: Vec<u64>,
    scratch: u64,
    staging: u64,
}

impl Setting {
    fn new(config: &Config, req: &PlanRequest, kv_type: KvType, n_ctx: usize) -> Setting {
        let batch = req.batch.min(n_ctx);
        Setting {
            kv_type,
            n_ctx,
            batch,
            kv: (0..config.n_layer).map(|il| kv_layer_bytes(config, il, n_ctx, batch, kv_type)).collect(),
            scratch: scratch_bytes(config, batch, n_ctx, req.logits_rows, req.uniform_activations),
            staging: staging_bytes(config, batch, req.logits_rows),
        }
    }

    /// GPU bytes with the first `n` layers on the GPU, and the head there too when `head`.
    fn gpu_bytes(&self, m: &ModelBytes, n: usize, head: bool) -> u64 {
        let layers: u64 = m.layers[..n].iter().sum::<u64>() + self.kv[..n].iter().sum::<u64>();
        layers + m.globals + self.scratch + self.staging + if head { m.head } else { 0 }
    }
}

/// The settings the planner may use, in the order it tries them: the requested one; F16 KV in
/// place of F32 if allowed; then (if allowed) the context halved step by step, never below
/// [`MIN_CTX`] (the last step is clamped to it).
pub fn candidate_settings(req: &PlanRequest) -> Vec<(KvType, usize)> {
    let mut out = vec![(req.kv_type, req.n_ctx)];
    let kv = if req.allow_smaller_kv && req.kv_type == KvType::F32 { KvType::F16 } else { req.kv_type };
    if kv != req.kv_type {
        out.push((kv, req.n_ctx));
    }
    if req.allow_smaller_ctx {
        let floor = MIN_CTX.min(req.n_ctx);
        let mut ctx = req.n_ctx;
        while ctx > floor {
            ctx = (ctx / 2).max(floor);
            out.push((kv, ctx));
        }
    }
    out
}

/// Plan how to run `file`'s model under `req` (see the module documentation for the order).
pub fn plan(file: &GgufFile, req: &PlanRequest) -> Result<Plan> {
    let config = Config::from_gguf(file)?;
    // Before the tensor sizes: a context the model cannot take is the error to report first.
    check_request(&config, req)?;
    let bytes = ModelBytes::from_gguf(file, &config, req)?;
    let name = file.get_str("general.name").unwrap_or(config.arch.name());
    plan_model(name, &config, &bytes, req)
}

/// Plan from a config and tensor sizes (what [`plan`] does once it has read the file).
pub fn plan_model(name: &str, config: &Config, bytes: &ModelBytes, req: &PlanRequest) -> Result<Plan> {
    check_request(config, req)?;
    if bytes.layers.len() != config.n_layer || config.n_layer == 0 {
        return Err(Error::Invalid(format!(
            "sizes of {} layers for a model of {} layers",
            bytes.layers.len(),
            config.n_layer
        )));
    }
    let settings: Vec<Setting> =
        candidate_settings(req).into_iter().map(|(kv, ctx)| Setting::new(config, req, kv, ctx)).collect();
    let n_layer = config.n_layer;
    let budget = req.budget_bytes;

    // Steps 1 and 2: everything on the GPU, with the first setting that fits.
    if let Some(s) = settings.iter().find(|s| s.gpu_bytes(bytes, n_layer, true) <= budget) {
        return Ok(build(name, config, bytes, req, s, n_layer, true, Strategy::AllGpu));
    }
    // Step 3: the first N layers on the GPU; the requested KV type only when no smaller is allowed.
    let kv_reduced = settings.get(1).is_some_and(|s| s.kv_type != req.kv_type);
    for s in &settings[usize::from(kv_reduced)..] {
        let Some(n) = (1..=n_layer).rev().find(|&n| s.gpu_bytes(bytes, n, false) <= budget) else { continue };
        let head = s.gpu_bytes(bytes, n, true) <= budget;
        return Ok(build(name, config, bytes, req, s, n, head, Strategy::CpuLayers));
    }
    // Step 4: nothing works.
    Err(does_not_fit(name, bytes, req, &settings))
}

fn check_request(config: &Config, req: &PlanRequest) -> Result<()> {
    if req.n_ctx == 0 || req.batch == 0 {
        return Err(Error::Invalid(format!("context ({}) and batch ({}) must be at least 1", req.n_ctx, req.batch)));
    }
    if req.n_ctx > config.n_ctx_train {
        return Err(Error::Invalid(format!(
            "a context of {} is longer than the model's training context of {} ({}.context_length)",
            req.n_ctx,
            config.n_ctx_train,
            config.arch.name()
        )));
    }
    Ok(())
}

/// Assemble the plan for setting `s` with the first `n_gpu` layers (and the head when `head_gpu`)
/// on the GPU.
#[allow(clippy::too_many_arguments)]
fn build(
    name: &str,
    config: &Config,
    m: &ModelBytes,
    req: &PlanRequest,
    s: &Setting,
    n_gpu: usize,
    head_gpu: bool,
    strategy: Strategy,
) -> Plan {
    let place = |gpu: bool| if gpu { Placement::Gpu } else { Placement::Cpu };
    let layers: Vec<LayerPlan> = (0..config.n_layer)
        .map(|il| LayerPlan {
            index: il,
            placement: place(il < n_gpu),
            weight_bytes: m.layers[il],
            kv_bytes: s.kv[il],
            kv_ctx: kv_ctx_of(config, il, s.n_ctx, s.batch),
        })
        .collect();
    let head = place(head_gpu);
    let embedding = place(m.tied && head_gpu);
    let totals = totals(&layers, m, s, head_gpu);
    Plan {
        model: name.to_string(),
        arch: config.arch.name().to_string(),
        budget_bytes: req.budget_bytes,
        n_ctx: s.n_ctx,
        n_ctx_requested: req.n_ctx,
        kv_type: s.kv_type,
        kv_type_requested: req.kv_type,
        batch: s.batch,
        logits_rows: req.logits_rows,
        layers,
        head,
        head_bytes: m.head,
        head_tied: m.tied,
        embedding,
        embedding_bytes: m.embedding,
        globals_bytes: m.globals,
        headroom_bytes: req.budget_bytes.saturating_sub(totals.gpu),
        totals,
        strategy,
    }
}

fn totals(layers: &[LayerPlan], m: &ModelBytes, s: &Setting, head_gpu: bool) -> Totals {
    let sum = |gpu: bool, f: fn(&LayerPlan) -> u64| -> u64 {
        layers.iter().filter(|l| (l.placement == Placement::Gpu) == gpu).map(f).sum()
    };
    let (head_gpu_bytes, head_host) = if head_gpu { (m.head, 0) } else { (0, m.head) };
    let embedding_host = if m.tied { 0 } else { m.embedding };
    let mut t = Totals {
        weights_gpu: sum(true, |l| l.weight_bytes) + m.globals + head_gpu_bytes,
        weights_host: sum(false, |l| l.weight_bytes) + head_host + embedding_host,
        kv_gpu: sum(true, |l| l.kv_bytes),
        kv_host: sum(false, |l| l.kv_bytes),
        scratch: s.scratch,
        staging: s.staging,
        gpu: 0,
    };
    t.gpu = t.weights_gpu + t.kv_gpu + t.scratch + t.staging;
    t
}

/// The error when no plan works: the budget against what everything needs, and the smallest plan
/// that could run (one layer on the GPU, the head on the CPU, the most reduced setting allowed).
fn does_not_fit(name: &str, m: &ModelBytes, req: &PlanRequest, settings: &[Setting]) -> Error {
    let budget = fmt_bytes(req.budget_bytes);
    let first = &settings[0];
    let smallest = settings.last().unwrap_or(first);
    if req.budget_bytes < m.layers[0] {
        return Error::DoesNotFit(format!(
            "the VRAM budget of {budget} is smaller than one layer of {name} (layer 0: {} of weights)",
            fmt_bytes(m.layers[0])
        ));
    }
    let n = m.layers.len();
    let weights = m.layers.iter().sum::<u64>() + m.head + m.globals;
    let kv: u64 = first.kv.iter().sum();
    let mut msg = format!(
        "{name} does not fit a VRAM budget of {budget}: weights {}, KV cache {} ({} context, {:?}), \
         scratch {} (batch {}), staging {}: {} in all; even the smallest plan (1 of {n} layers on the GPU, \
         {} context, {:?} KV) needs {}",
        fmt_bytes(weights),
        fmt_bytes(kv),
        first.n_ctx,
        first.kv_type,
        fmt_bytes(first.scratch),
        first.batch,
        fmt_bytes(first.staging),
        fmt_bytes(first.gpu_bytes(m, n, true)),
        smallest.n_ctx,
        smallest.kv_type,
        fmt_bytes(smallest.gpu_bytes(m, 1, false)),
    );
    let mut hints = vec!["a smaller batch"];
    if !req.allow_smaller_ctx && req.n_ctx > MIN_CTX {
        hints.push("allowing a smaller context");
    }
    if !req.allow_smaller_kv && req.kv_type == KvType::F32 {
        hints.push("allowing an F16 KV cache");
    }
    msg += &format!(" (try {})", hints.join(", or "));
    Error::DoesNotFit(msg)
}

// ---------------------------------------------------------------------------------------------
// Budget

/// Where the budget came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum BudgetSource {
    /// `--vram-budget` / `vram_budget`.
    User,
    /// What the adapter reported.
    Adapter,
    /// [`DEFAULT_BUDGET`]: neither was available.
    Default,
}

/// A VRAM budget and its origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub bytes: u64,
    pub source: BudgetSource,
}

impl Budget {
    /// The budget: the user's when given (it always wins), else the adapter's figure, else
    /// [`DEFAULT_BUDGET`]. The adapter figure should be the memory available to this process
    /// (Vulkan's `VK_EXT_memory_budget` heap budget minus usage where present, the device-local
    /// heap size otherwise); a reported size of 0 counts as unknown.
    pub fn resolve(user: Option<u64>, adapter: Option<u64>) -> Budget {
        match (user, adapter.filter(|&b| b > 0)) {
            (Some(bytes), _) => Budget { bytes, source: BudgetSource::User },
            (None, Some(bytes)) => Budget { bytes, source: BudgetSource::Adapter },
            (None, None) => Budget { bytes: DEFAULT_BUDGET, source: BudgetSource::Default },
        }
    }

    /// One line for the user saying what budget is used and why.
    pub fn describe(&self) -> String {
        let b = fmt_bytes(self.bytes);
        match self.source {
            BudgetSource::User => format!("VRAM budget {b} (given)"),
            BudgetSource::Adapter => format!("VRAM budget {b} (reported by the adapter)"),
            BudgetSource::Default => format!(
                "VRAM budget {b}: no budget was given and the adapter does not report its memory, so the \
                 default is assumed; set it with --vram-budget (or `vram_budget`)"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bytes as text

/// Parse a byte count: a plain number of bytes (`6000000000`), or a number (fractions allowed)
/// with a unit, case-insensitive, spaces allowed: `KiB`/`MiB`/`GiB`/`TiB` are powers of 1024,
/// `KB`/`MB`/`GB`/`TB` powers of 1000, and the bare `K`/`M`/`G`/`T` powers of 1024 (as in `6g`).
pub fn parse_bytes(text: &str) -> Result<u64> {
    let bad = |why: &str| Error::Invalid(format!("`{text}` is not a byte count ({why}; e.g. 6GiB, 512MiB, 6 GB)"));
    let s = text.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    if number.is_empty() {
        return Err(bad("no number"));
    }
    let scale = unit_scale(unit).ok_or_else(|| bad(&format!("unknown unit `{unit}`")))?;
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(scale).ok_or_else(|| bad("too large"));
    }
    let x: f64 = number.parse().map_err(|_| bad("bad number"))?;
    let bytes = (x * scale as f64).round();
    // `x` is finite and non-negative here (the number is digits and dots only).
    if bytes >= u64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(bytes as u64)
}

fn unit_scale(unit: &str) -> Option<u64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    })
}

/// Bytes for people: `3.80 GiB`, `118.3 MiB`, `16.0 KiB`, `12 B`.
pub fn fmt_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB * KIB {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}

// ---------------------------------------------------------------------------------------------
// The table

/// Consecutive layers with the same placement, for the table: `(first, last, placement)`.
fn layer_runs(layers: &[LayerPlan]) -> Vec<(usize, usize, Placement)> {
    let mut runs: Vec<(usize, usize, Placement)> = Vec::new();
    for l in layers {
        match runs.last_mut() {
            Some(run) if run.2 == l.placement => run.1 = l.index,
            _ => runs.push((l.index, l.index, l.placement)),
        }
    }
    runs
}

/// One row of the table: what, where, VRAM bytes, host bytes (`None` prints as `-`).
fn row(f: &mut fmt::Formatter<'_>, what: &str, place: &str, vram: Option<u64>, host: Option<u64>) -> fmt::Result {
    let cell = |b: Option<u64>| b.map_or("-".to_string(), fmt_bytes);
    writeln!(f, "  {what:<34} {place:<11} {:>11} {:>11}", cell(vram), cell(host))
}

impl Plan {
    fn write_layers(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (a, b, p) in layer_runs(&self.layers) {
            let run = &self.layers[a..=b];
            let w: u64 = run.iter().map(|l| l.weight_bytes).sum();
            let kv: u64 = run.iter().map(|l| l.kv_bytes).sum();
            let label = format!("layers {a}-{b} ({}): weights", b - a + 1);
            let kv_label = format!("layers {a}-{b}: KV cache");
            match p {
                Placement::Gpu => {
                    row(f, &label, "GPU", Some(w), None)?;
                    row(f, &kv_label, "GPU", Some(kv), None)?;
                }
                Placement::Cpu => {
                    row(f, &label, "CPU (mmap)", None, Some(w))?;
                    row(f, &kv_label, "CPU", None, Some(kv))?;
                }
            }
        }
        Ok(())
    }

    fn write_globals(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.head_tied {
            row(f, "token embedding", "CPU (mmap)", None, Some(self.embedding_bytes))?;
        }
        let head = if self.head_tied { "output head (tied embedding)" } else { "output head" };
        match self.head {
            Placement::Gpu => row(f, head, "GPU", Some(self.head_bytes), None)?,
            Placement::Cpu => row(f, head, "CPU (mmap)", None, Some(self.head_bytes))?,
        }
        if self.globals_bytes > 0 {
            row(f, "other tensors (rope_freqs)", "GPU", Some(self.globals_bytes), None)?;
        }
        Ok(())
    }

    /// Lines saying which reductions were made, and how sliding windows capped the cache.
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        match self.strategy {
            Strategy::AllGpu => notes.push("everything on the GPU".to_string()),
            Strategy::CpuLayers if self.gpu_layers() == self.layers.len() => {
                notes.push("every layer on the GPU; the output head runs on the CPU".to_string())
            }
            Strategy::CpuLayers => notes.push(format!(
                "{} of {} layers on the GPU, the rest on the CPU; the output head on the {}",
                self.gpu_layers(),
                self.layers.len(),
                self.head
            )),
        }
        if self.kv_type != self.kv_type_requested {
            notes.push(format!("KV cache {:?} instead of {:?} to fit", self.kv_type, self.kv_type_requested));
        }
        if self.n_ctx != self.n_ctx_requested {
            notes.push(format!("context {} instead of {} to fit", self.n_ctx, self.n_ctx_requested));
        }
        let capped: Vec<usize> = self.layers.iter().filter(|l| l.kv_ctx < self.n_ctx).map(|l| l.kv_ctx).collect();
        if let Some(w) = capped.first() {
            notes.push(format!("{} sliding-window layers keep only {w} positions in their KV cache", capped.len()));
        }
        notes
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Plan for {} ({}, {} layers): context {}, {:?} KV, batch {}, VRAM budget {}",
            self.model,
            self.arch,
            self.layers.len(),
            self.n_ctx,
            self.kv_type,
            self.batch,
            fmt_bytes(self.budget_bytes)
        )?;
        writeln!(f, "  {:<34} {:<11} {:>11} {:>11}", "part", "where", "VRAM", "host")?;
        self.write_globals(f)?;
        self.write_layers(f)?;
        row(f, &format!("scratch (batch {})", self.batch), "GPU", Some(self.totals.scratch), None)?;
        row(f, "staging", "GPU", Some(self.totals.staging), None)?;
        writeln!(f, "  {}", "-".repeat(70))?;
        let host = self.totals.weights_host + self.totals.kv_host;
        row(f, "total", "", Some(self.totals.gpu), Some(host))?;
        writeln!(
            f,
            "  GPU: weights {}, KV {}, scratch {}, staging {}; headroom {} of {}",
            fmt_bytes(self.totals.weights_gpu),
            fmt_bytes(self.totals.kv_gpu),
            fmt_bytes(self.totals.scratch),
            fmt_bytes(self.totals.staging),
            fmt_bytes(self.headroom_bytes),
            fmt_bytes(self.budget_bytes)
        )?;
        for note in self.notes() {
            writeln!(f, "  - {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names() {
        assert_eq!(layer_index("blk.12.attn_q.weight"), Some(12));
        assert_eq!(layer_index("output.weight"), None);
        assert_eq!(layer_index("blk.x.attn_q.weight"), None);
    }

    #[test]
    fn candidate_order() {
        let mut req = PlanRequest::new(4096, 1 << 30);
        assert_eq!(candidate_settings(&req), vec![(KvType::F16, 4096)]);
        req.kv_type = KvType::F32;
        req.allow_smaller_kv = true;
        req.allow_smaller_ctx = true;
        let ctxs: Vec<usize> = candidate_settings(&req).iter().map(|c| c.1).collect();
        assert_eq!(ctxs, vec![4096, 4096, 2048, 1024, 512]);
        req.n_ctx = 3000;
        let ctxs: Vec<usize> = candidate_settings(&req).iter().map(|c| c.1).collect();
        assert_eq!(ctxs, vec![3000, 3000, 1500, 750, 512]);
        req.n_ctx = 256;
        assert_eq!(candidate_settings(&req).len(), 2);
    }

    #[test]
    fn chunked_tensor_bytes() {
        let info = |rows: u64, n_bytes: u64| TensorInfo {
            name: "t".into(),
            ty: crate::GgmlType::Q8_0,
            dims: vec![32, rows],
            offset: 0,
            n_bytes,
        };
        // 10 rows of 34 bytes in one chunk: 340 → padded to 352, plus the spare vec4.
        assert_eq!(gpu_tensor_bytes(&info(10, 340), 1 << 20, None).unwrap(), 368);
        // A limit of 32 + 3 rows: chunks of 3, 3, 3, 1 rows (102 → 112 + 16, 34 → 48 + 16).
        assert_eq!(gpu_tensor_bytes(&info(10, 340), 32 + 102, None).unwrap(), 3 * (112 + 16) + (48 + 16));
        assert!(matches!(gpu_tensor_bytes(&info(10, 340), 60, None), Err(Error::DoesNotFit(_))));
        // In textures: whole rows of at least 16 texels, 4 rows at least (368 bytes → 1 KiB).
        let textures = Some(WeightTextures { max_row_bits: 14, max_height: 16384 });
        assert_eq!(gpu_tensor_bytes(&info(10, 340), 1 << 20, textures).unwrap(), 1024);
        // 4096 rows of 4096 Q4_K weights: 9 437 200 bytes in 292 rows of 2048 texels.
        let q4k = TensorInfo { ty: crate::GgmlType::Q4_K, dims: vec![4096, 4096], n_bytes: 4096 * 2304, ..info(1, 34) };
        assert_eq!(gpu_tensor_bytes(&q4k, 128 << 20, textures).unwrap(), 292 * 2048 * 16);
    }
}
