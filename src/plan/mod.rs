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

mod budget;
mod report;
mod sizes;

use std::fmt;

use serde::Serialize;

pub use budget::{fmt_bytes, parse_bytes, Budget, BudgetSource};
pub use sizes::{gpu_tensor_bytes, kv_ctx_of, kv_layer_bytes, scratch_bytes, staging_bytes, ModelBytes};

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::gpu::WeightTextures;
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
    /// Rows of logits the forward pass produces (1 for generation: only the last token's; one per
    /// sequence for a server decoding several at once).
    pub logits_rows: usize,
    /// Sequences held at once, each with its own KV cache (a server's `--parallel` slots).
    pub sequences: usize,
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
            sequences: 1,
        }
    }

    /// Plan for `n` sequences decoded together (a server's slots): a KV cache and a row of
    /// logits for each, and a micro-batch of at least `n` rows, so that one decode step holds
    /// them all.
    pub fn set_sequences(&mut self, n: usize) {
        self.sequences = n;
        self.logits_rows = n;
        self.batch = self.batch.max(n);
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
    /// Weights the CPU reads (CPU layers, the embedding when untied, the head when on the CPU):
    /// from the memory map, or, for their matrices where that pays, from a copy in huge pages
    /// ([`crate::cpu::huge_pages`]) that the file's pages, reclaimable, then stand behind.
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
    /// Sequences whose KV caches the plan holds (each layer's KV figure counts them all).
    pub sequences: usize,
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
            kv: (0..config.n_layer)
                .map(|il| req.sequences as u64 * kv_layer_bytes(config, il, n_ctx, batch, kv_type))
                .collect(),
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
    if req.n_ctx == 0 || req.batch == 0 || req.sequences == 0 {
        return Err(Error::Invalid(format!(
            "context ({}), batch ({}) and sequences ({}) must be at least 1",
            req.n_ctx, req.batch, req.sequences
        )));
    }
    if req.logits_rows > req.batch {
        return Err(Error::Invalid(format!(
            "{} rows of logits at once need a micro-batch of as many rows (batch {})",
            req.logits_rows, req.batch
        )));
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
        sequences: req.sequences,
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
    let sequences = match req.sequences {
        1 => String::new(),
        n => format!(" for {n} sequences"),
    };
    let mut msg = format!(
        "{name} does not fit a VRAM budget of {budget}: weights {}, KV cache {}{sequences} ({} context, {:?}), \
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
    if req.sequences > 1 {
        hints.insert(0, "fewer parallel sequences");
    }
    if !req.allow_smaller_ctx && req.n_ctx > MIN_CTX {
        hints.push("allowing a smaller context");
    }
    if !req.allow_smaller_kv && req.kv_type == KvType::F32 {
        hints.push("allowing an F16 KV cache");
    }
    msg += &format!(" (try {})", hints.join(", or "));
    Error::DoesNotFit(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
