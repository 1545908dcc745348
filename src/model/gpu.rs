//! The forward pass on the GPU: every layer as a few dispatches recorded into one compute pass,
//! one submit per micro-batch, and only the logits read back.
//!
//! Layers a VRAM plan leaves on the host run on the CPU path ([`super::cpu::CpuModel`]) between
//! the GPU layers and the head; the hidden state crosses the bus once per micro-batch each way.

use std::sync::Arc;
use web_time::Instant;

use super::config::{Config, KvType};
use super::cpu::{CpuKernels, CpuKvCache, CpuModel, Logits};
use super::stream::{HeldTensors, TensorStream};
use super::weights::{LayerWeights, RopeFactors};
#[cfg(not(target_arch = "wasm32"))]
use crate::cpu::huge_pages::HugePageCopy;
use crate::error::{Error, Result};
use crate::format::{dequant, GgmlType};
use crate::gguf::{GgufFile, TensorInfo};
use crate::gpu::shaders::has_int_decoder;
use crate::gpu::{now, Context, F32Buffer, GpuTensor, MemTag, StackedTensor, Submitted, TrackedBuffer, U32Buffer};
use crate::ops::argmax::argmax;
use crate::ops::attention::{attention, scratch_floats, AttentionShape, KvBuffer};
use crate::ops::elementwise::{elementwise, Op};
use crate::ops::matvec::{matvec_gate_up, matvec_stack};
use crate::ops::matvec_q8::{matvec_q8, quantize_q8, Q8Column};
use crate::ops::norm::{add_rms_norm, rms_norm, NormOut};
use crate::ops::qkv::{prepare_qkv, QkvPrep, RopeParams};
use crate::ops::top_k::{top_k, TopKBuffers};
use crate::ops::{get_rows, mul_mat, mul_mat_gated, View};
use crate::sampler::{apply_penalties, likeliest, TokenPenalty};

/// A weight on the device: matrices stay raw blocks, vectors (norms, biases) become f32.
pub enum GpuWeight {
    Matrix(GpuTensor),
    Vector(F32Buffer),
}

impl GpuWeight {
    /// Uploads `data`, the bytes of tensor `info`.
    fn upload(ctx: &Context, info: &TensorInfo, data: &[u8]) -> Result<GpuWeight> {
        if info.dims.len() == 1 {
            let values = match info.ty {
                GgmlType::F32 => bytemuck::pod_collect_to_vec(data),
                ty => dequant::dequantize_to_vec(ty, data)?,
            };
            return Ok(GpuWeight::Vector(ctx.vec_from(&info.name, &values, MemTag::Weights)?));
        }
        Ok(GpuWeight::Matrix(GpuTensor::upload(ctx, &info.name, info.ty, info.row_len(), info.n_rows(), data)?))
    }

    fn into_matrix(self) -> Result<GpuTensor> {
        match self {
            GpuWeight::Matrix(t) => Ok(t),
            GpuWeight::Vector(_) => Err(Error::Shape("a vector weight used as a matrix".into())),
        }
    }

    fn into_vector(self) -> Result<F32Buffer> {
        match self {
            GpuWeight::Vector(v) => Ok(v),
            GpuWeight::Matrix(t) => Err(Error::Shape(format!("matrix `{}` used as a vector", t.name))),
        }
    }

    fn matrix(&self) -> Result<&GpuTensor> {
        match self {
            GpuWeight::Matrix(t) => Ok(t),
            GpuWeight::Vector(_) => Err(Error::Shape("a vector weight used as a matrix".into())),
        }
    }

    fn vector(&self) -> Result<&F32Buffer> {
        match self {
            GpuWeight::Vector(v) => Ok(v),
            GpuWeight::Matrix(t) => Err(Error::Shape(format!("matrix `{}` used as a vector", t.name))),
        }
    }
}

/// Where each part of the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Offload {
    /// Layers `0..gpu_layers` run on the GPU, the rest on the CPU.
    pub gpu_layers: usize,
    /// Whether the final norm and output head run on the GPU.
    pub head_on_gpu: bool,
}

impl Offload {
    pub fn all_gpu(config: &Config) -> Offload {
        Offload { gpu_layers: config.n_layer, head_on_gpu: true }
    }

    /// Every layer and the head on the CPU's own kernels ([`crate::cpu`]).
    pub const ALL_CPU: Offload = Offload { gpu_layers: 0, head_on_gpu: false };
}

/// The model's weights on the GPU (per the placement) and the CPU path for the rest.
pub struct GpuModel {
    pub ctx: Arc<Context>,
    pub config: Config,
    pub placement: Offload,
    layers: Vec<LayerWeights<GpuWeight>>,
    /// Per GPU layer, the projections uploaded as stacks (their parts are also in `layers`).
    stacks: Vec<LayerStacks>,
    output_norm: Option<F32Buffer>,
    /// The output head (the embedding table when tied), when on the GPU.
    head: Option<GpuTensor>,
    /// Whether `head` is the embedding table, so token lookup can read it on the GPU.
    head_is_embedding: bool,
    rope_factors: RopeFactors<F32Buffer>,
    /// Bound where a kernel needs a buffer it does not read (no rope factors, no q/k norms).
    placeholder: F32Buffer,
    pub cpu: CpuModel,
}

/// Where the loader reads tensors: a whole file, or one streaming past ([`TensorStream`]).
enum Source<'a> {
    File(&'a GgufFile),
    Stream(&'a TensorStream),
}

/// Tensors the loader may read now: the whole file, or those taken from the stream.
enum Held<'a> {
    File(&'a GgufFile),
    Taken(HeldTensors),
}

impl Source<'_> {
    /// The bytes of `infos`, once they are there.
    async fn take(&self, infos: &[&TensorInfo]) -> Result<Held<'_>> {
        match self {
            Source::File(file) => Ok(Held::File(file)),
            Source::Stream(stream) => Ok(Held::Taken(stream.take(infos).await?)),
        }
    }
}

impl Held<'_> {
    fn bytes(&self, info: &TensorInfo) -> Result<&[u8]> {
        match self {
            Held::File(file) => Ok(file.tensor_data(info)),
            Held::Taken(held) => held.bytes(info),
        }
    }
}

/// What the loader uploads at once: a layer, the final norm, the head, the rope factors.
#[derive(Clone, Copy)]
enum Group {
    Layer(usize),
    OutputNorm,
    Head,
    Rope,
}

impl GpuModel {
    /// Upload the weights the placement puts on the GPU; `progress(bytes_done, bytes_total)`.
    pub fn load(
        ctx: Arc<Context>,
        file: Arc<GgufFile>,
        placement: Offload,
        progress: impl FnMut(u64, u64),
    ) -> Result<GpuModel> {
        if file.is_header_only() {
            return Err(Error::Invalid("a bare header has no weights to load: load it from its stream".into()));
        }
        now(Self::load_from(ctx, file.clone(), &Source::File(&file), placement, progress))
    }

    /// [`GpuModel::load`] from a stream whose header is `file` (see [`crate::model::stream`]):
    /// each group of tensors is uploaded once it has arrived, and forgotten.
    pub async fn load_streamed(
        ctx: Arc<Context>,
        file: Arc<GgufFile>,
        stream: &TensorStream,
        placement: Offload,
        progress: impl FnMut(u64, u64),
    ) -> Result<GpuModel> {
        Self::load_from(ctx, file, &Source::Stream(stream), placement, progress).await
    }

    async fn load_from(
        ctx: Arc<Context>,
        file: Arc<GgufFile>,
        source: &Source<'_>,
        placement: Offload,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<GpuModel> {
        // Offloaded layers and heads run the CPU's integer kernels, as llama.cpp's CPU backend.
        let mut cpu = CpuModel::with_kernels(file.clone(), CpuKernels::Integer)?;
        let config = cpu.config.clone();
        if placement.gpu_layers > config.n_layer {
            return Err(Error::Invalid(format!(
                "{} GPU layers for a model of {}",
                placement.gpu_layers, config.n_layer
            )));
        }
        keep_cpu_matrices_in_huge_pages(&mut cpu, &file, placement);
        let global_infos = &cpu.weights.global;
        let head_info = global_infos.head();
        let total = upload_bytes(&cpu, placement, head_info);
        let mut done = 0u64;
        // `stacked`: the tensor's view in a stack already uploaded.
        let mut up = |held: &Held<'_>, info: &TensorInfo, stacked: Option<GpuTensor>| {
            let w = match stacked {
                Some(view) => Ok(GpuWeight::Matrix(view)),
                None => GpuWeight::upload(&ctx, info, held.bytes(info)?),
            };
            done += info.n_bytes;
            progress(done, total);
            w
        };
        let infos = |group: Group| -> Vec<&TensorInfo> {
            match group {
                Group::Layer(il) => cpu.weights.layers[il].iter().collect(),
                Group::OutputNorm => vec![&global_infos.output_norm],
                Group::Head => vec![head_info],
                Group::Rope => global_infos.rope.iter().collect(),
            }
        };
        // In the order in which they are complete in the file, so that a stream keeps few tensors
        // waiting; a stream drops the bytes of every other tensor.
        let mut groups: Vec<Group> = (0..placement.gpu_layers).map(Group::Layer).collect();
        if placement.head_on_gpu {
            groups.extend([Group::OutputNorm, Group::Head]);
        }
        groups.push(Group::Rope);
        groups.sort_by_cached_key(|&g| infos(g).iter().map(|i| i.offset + i.n_bytes).max().unwrap_or(0));
        if let Source::Stream(stream) = source {
            stream.retain(&groups.iter().flat_map(|&g| infos(g)).collect::<Vec<_>>())?;
        }

        let mut layers: Vec<Option<(LayerWeights<GpuWeight>, LayerStacks)>> =
            (0..placement.gpu_layers).map(|_| None).collect();
        let (mut output_norm, mut head, mut rope_factors) = (None, None, RopeFactors::default());
        for group in groups {
            let held = source.take(&infos(group)).await?;
            match group {
                Group::Layer(il) => {
                    // The stacks first; their parts then stand in for the separate uploads.
                    let (layer_stacks, mut parts) = LayerStacks::upload(&ctx, &held, il, &cpu.weights.layers[il])?;
                    let layer = LayerWeights::load(&file, &config, il, |info| {
                        let view = parts.iter().position(|(n, _)| *n == info.name).map(|i| parts.swap_remove(i).1);
                        up(&held, info, view)
                    })?;
                    layers[il] = Some((layer, layer_stacks));
                }
                Group::OutputNorm => output_norm = Some(up(&held, &global_infos.output_norm, None)?.into_vector()?),
                Group::Head => head = Some(up(&held, head_info, None)?.into_matrix()?),
                Group::Rope => rope_factors = global_infos.rope.try_map(|info| up(&held, info, None)?.into_vector())?,
            }
        }
        let (layers, stacks) = layers.into_iter().map(|l| l.expect("every layer is a group")).unzip();
        let placeholder = ctx.vec_zeroed("placeholder", 4, MemTag::Activations)?;
        Ok(GpuModel {
            head_is_embedding: global_infos.output.is_none(),
            ctx,
            config,
            placement,
            layers,
            stacks,
            output_norm,
            head,
            rope_factors,
            placeholder,
            cpu,
        })
    }
}

/// A layer's projections that read the same input and share a format and row length, uploaded
/// back to back so that decode reads them in one dispatch: q, k and v (or q and k when v has
/// another format), and the FFN's gate and up. `None` where they differ or cannot share a
/// binding; the layer then runs them one by one.
#[derive(Default)]
struct LayerStacks {
    qkv: Option<StackedTensor>,
    gate_up: Option<StackedTensor>,
}

impl LayerStacks {
    /// Uploads the stacks of a layer whose tensors are `w`; also returns the views of their parts,
    /// by tensor name.
    fn upload(
        ctx: &Context,
        held: &Held<'_>,
        il: usize,
        w: &LayerWeights<TensorInfo>,
    ) -> Result<(LayerStacks, Vec<(String, GpuTensor)>)> {
        let mut parts = Vec::new();
        let mut stack = |infos: &[&TensorInfo], what: &str| -> Result<Option<StackedTensor>> {
            let first = infos[0];
            let alike = |i: &&TensorInfo| i.ty == first.ty && i.dims.len() == 2 && i.dims[0] == first.dims[0];
            if !infos.iter().all(alike) {
                return Ok(None);
            }
            let datas: Vec<(&str, usize, &[u8])> =
                infos.iter().map(|i| Ok((i.name.as_str(), i.n_rows(), held.bytes(i)?))).collect::<Result<_>>()?;
            let name = format!("blk.{il}.{what}");
            let Some((stack, views)) = GpuTensor::upload_stack(ctx, &name, first.ty, first.row_len(), &datas)? else {
                return Ok(None);
            };
            parts.extend(infos.iter().map(|i| i.name.clone()).zip(views));
            Ok(Some(stack))
        };
        let qkv = match stack(&[&w.wq, &w.wk, &w.wv], "q+k+v")? {
            Some(s) => Some(s),
            None => stack(&[&w.wq, &w.wk], "q+k")?,
        };
        let gate_up = stack(&[&w.ffn_gate, &w.ffn_up], "gate+up")?;
        Ok((LayerStacks { qkv, gate_up }, parts))
    }
}

/// The matrices of the layers and head that `placement` leaves on the CPU, copied into huge pages
/// for its products where that can pay (see [`crate::cpu::huge_pages`]). A copy that cannot be
/// made leaves them where they are: in the file's map, which works as well, only slower.
#[cfg(not(target_arch = "wasm32"))]
fn keep_cpu_matrices_in_huge_pages(cpu: &mut CpuModel, file: &GgufFile, placement: Offload) {
    use crate::cpu::huge_pages::worth_copying;
    let weights = &cpu.weights;
    let layers = weights.layers[placement.gpu_layers..].iter().flat_map(|l| l.iter());
    let head = (!placement.head_on_gpu).then_some(weights.global.head());
    // Matrices only: norms and biases are read once per layer, as floats, from the file.
    let matrices: Vec<&TensorInfo> = layers.chain(head).filter(|t| t.dims.len() >= 2).collect();
    if !worth_copying(matrices.iter().map(|t| t.n_bytes).sum()) {
        return;
    }
    if let Ok(copy) = HugePageCopy::new(file, matrices) {
        cpu.keep_copy(copy);
    }
}

/// A page reads the file as it streams past, and has no huge pages to ask for.
#[cfg(target_arch = "wasm32")]
fn keep_cpu_matrices_in_huge_pages(_: &mut CpuModel, _: &GgufFile, _: Offload) {}

/// Bytes the placement uploads, for progress.
fn upload_bytes(cpu: &CpuModel, placement: Offload, head: &TensorInfo) -> u64 {
    let layers: u64 = cpu.weights.layers[..placement.gpu_layers].iter().flat_map(|l| l.iter()).map(|t| t.n_bytes).sum();
    let head = if placement.head_on_gpu { head.n_bytes + cpu.weights.global.output_norm.n_bytes } else { 0 };
    layers + head
}

/// One sequence's state: activation buffers for micro-batches of up to `batch` tokens and the
/// sequence's caches.
pub struct GpuState {
    pub batch: usize,
    pub n_ctx: usize,
    /// Rows of logits the state can return at once.
    pub logits_rows: usize,
    acts: Activations,
    caches: KvCaches,
}

impl GpuState {
    pub fn new(model: &GpuModel, n_ctx: usize, batch: usize, logits_rows: usize, kv_type: KvType) -> Result<GpuState> {
        let acts = Activations::new(model, n_ctx, batch, logits_rows)?;
        let caches = KvCaches::new(model, n_ctx, batch, kv_type)?;
        Ok(GpuState { batch, n_ctx, logits_rows, acts, caches })
    }

    /// Host seconds the last [`GpuModel::forward`] spent recording and submitting its GPU work,
    /// up to the submit: what a decode step costs the CPU beyond waiting for the device.
    pub fn last_host_seconds(&self) -> f64 {
        self.acts.host_seconds
    }

    /// Seconds the last [`GpuModel::forward`] spent in the layers and head the plan leaves on the
    /// CPU: with the step's wall time, the CPU's and the GPU's shares of a split model's step.
    pub fn last_cpu_seconds(&self) -> f64 {
        self.acts.cpu_seconds
    }
}

/// The keys and values of one sequence: a cache per layer on the GPU (a ring for sliding-window
/// layers) and the caches of the layers on the CPU. Several sequences (a server's slots) share
/// one [`Activations`] and run their decode steps together ([`GpuModel::decode_batch`]).
pub struct KvCaches {
    pub n_ctx: usize,
    k: Vec<KvBuffer>,
    v: Vec<KvBuffer>,
    cpu: CpuKvCache,
}

impl KvCaches {
    /// Caches for `n_ctx` positions, fed in micro-batches of up to `batch` tokens (a ring keeps
    /// the window plus a micro-batch).
    pub fn new(model: &GpuModel, n_ctx: usize, batch: usize, kv_type: KvType) -> Result<KvCaches> {
        let (c, ctx) = (&model.config, &model.ctx);
        if n_ctx == 0 || batch == 0 {
            return Err(Error::Invalid(format!("context {n_ctx}, batch {batch}")));
        }
        let mut k = Vec::new();
        let mut v = Vec::new();
        for il in 0..model.placement.gpu_layers {
            let rows = c.kv_rows(il, n_ctx, batch);
            k.push(KvBuffer::new(ctx, &format!("k_cache.{il}"), rows, c.kv_dim(), kv_type)?);
            v.push(KvBuffer::new(ctx, &format!("v_cache.{il}"), rows, c.kv_dim_v(), kv_type)?);
        }
        let cpu = CpuKvCache::for_layers(c, n_ctx, kv_type, model.placement.gpu_layers..c.n_layer);
        Ok(KvCaches { n_ctx, k, v, cpu })
    }
}

/// Activation buffers for up to `batch` rows (tokens of one sequence, or one token of each of
/// several sequences). Every buffer's shape is in its comment; `B` is `batch`.
pub struct Activations {
    batch: usize,
    logits_rows: usize,
    x: F32Buffer,   // [B][n_embd] residual stream
    h: F32Buffer,   // [B][n_embd] normed input of a block
    o: F32Buffer,   // [B][n_embd] block output before the residual
    qkv: F32Buffer, // [B][q_dim], then [B][kv_dim] from k_at, then [B][kv_dim_v] from v_at
    k_at: usize,
    v_at: usize,
    attn: F32Buffer,         // [B][n_head * head_dim_v]
    gate: F32Buffer,         // [B][n_ff]
    up: F32Buffer,           // [B][n_ff]
    attn_scratch: F32Buffer, // the flash kernel's split results (ops::attention::scratch_floats)
    logits: F32Buffer,       // [logits_rows][n_vocab]
    /// The logits' copy the host reads, filled in the same submit as the forward pass.
    readback: TrackedBuffer, // [logits_rows][n_vocab]
    next_id: U32Buffer,      // [1] the greedy next token (ops::argmax)
    next_id_readback: TrackedBuffer, // [1] its copy the host reads
    /// Device sampling of the logits rows: penalties, top-k levels and their readback.
    top: TopKBuffers,
    /// The penalties of the next forward that samples on the device, as last written.
    penalties: Vec<TokenPenalty>,
    ids: U32Buffer, // [B] token ids
    q8: Q8Column,   // one column at 8 bits for the integer matvec (ops::matvec_q8)
    /// Host seconds the last forward spent recording and submitting its GPU work (waits for the
    /// device and CPU layers excluded).
    host_seconds: f64,
    /// Seconds the last forward spent in the CPU's layers and head.
    cpu_seconds: f64,
}

impl Activations {
    /// Buffers for `batch` rows, `logits_rows` of which can return logits at once, attending over
    /// up to `n_ctx` positions.
    pub fn new(model: &GpuModel, n_ctx: usize, batch: usize, logits_rows: usize) -> Result<Activations> {
        let c = &model.config;
        let ctx = &model.ctx;
        if n_ctx == 0 || batch == 0 || logits_rows == 0 || logits_rows > batch {
            return Err(Error::Invalid(format!("context {n_ctx}, batch {batch}, logits rows {logits_rows}")));
        }
        let f = |label: &str, n: usize| ctx.f32_buffer(label, n);
        Ok(Activations {
            batch,
            logits_rows,
            x: f("x", batch * c.n_embd)?,
            h: f("h", batch * c.n_embd)?,
            o: f("o", batch * c.n_embd)?,
            // One buffer, so that a stacked projection writes all three in one dispatch.
            qkv: f("qkv", batch * (c.q_dim() + c.kv_dim() + c.kv_dim_v()))?,
            k_at: batch * c.q_dim(),
            v_at: batch * (c.q_dim() + c.kv_dim()),
            attn: f("attn", batch * c.n_head * c.head_dim_v)?,
            gate: f("gate", batch * c.n_ff)?,
            up: f("up", batch * c.n_ff)?,
            attn_scratch: f("attention scratch", scratch_floats(c.n_head, c.head_dim_v, batch, n_ctx))?,
            logits: f("logits", logits_rows * c.n_vocab)?,
            readback: ctx.create_buffer(
                "logits readback",
                (4 * logits_rows * c.n_vocab) as u64,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                MemTag::Staging,
            )?,
            next_id: ctx.vec_zeroed("next token", 1, MemTag::Activations)?,
            next_id_readback: ctx.create_buffer(
                "next token readback",
                16,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                MemTag::Staging,
            )?,
            top: TopKBuffers::new(ctx, c.n_vocab, logits_rows)?,
            penalties: Vec::new(),
            ids: ctx.vec_zeroed("ids", batch, MemTag::Activations)?,
            q8: Q8Column::new(ctx, c.max_row_len())?,
            host_seconds: 0.0,
            cpu_seconds: 0.0,
        })
    }

    /// Keeps the penalties the next sampled forward pass applies to its `rows` rows of logits.
    fn set_penalties(&mut self, penalties: &[TokenPenalty], rows: usize) -> Result<()> {
        if let Some(bad) = penalties.iter().find(|t| t.row as usize >= rows) {
            return Err(Error::Invalid(format!("a penalty for row {} of a step of {rows} rows", bad.row)));
        }
        self.penalties.clear();
        self.penalties.extend_from_slice(penalties);
        Ok(())
    }

    /// Row `row` of q, k and v.
    fn q(&self, c: &Config, row: usize) -> View<'_> {
        self.qkv.at(row * c.q_dim())
    }

    fn k(&self, c: &Config, row: usize) -> View<'_> {
        self.qkv.at(self.k_at + row * c.kv_dim())
    }

    fn v(&self, c: &Config, row: usize) -> View<'_> {
        self.qkv.at(self.v_at + row * c.kv_dim_v())
    }
}

/// Consecutive rows of a micro-batch that belong to one sequence: `n` tokens at positions
/// `pos0..`, appended to `caches`.
struct Seq<'c> {
    pos0: usize,
    n: usize,
    caches: &'c mut KvCaches,
}

/// What the GPU's part of a forward pass leaves: the output itself, or the hidden state for the
/// layers and head on the CPU.
enum GpuPart {
    Done(Output),
    Hidden(Vec<f32>),
}

/// The GPU's part of a micro-batch, submitted: what collecting its result needs.
struct GpuWork {
    submitted: Submitted,
    rows: usize,
    want: Want,
}

/// One sequence's next decode step in [`GpuModel::decode_batch`]: `token` at position `pos`.
pub struct DecodeStep<'c> {
    pub caches: &'c mut KvCaches,
    pub token: u32,
    pub pos: usize,
}

/// What a micro-batch hands back to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Nothing,
    Logits(Logits),
    /// The greedy next token, picked on the device.
    NextToken,
    /// The `k` likeliest next tokens of the last row of each sequence (after the penalties in
    /// `Activations::penalties`), selected on the device.
    Top {
        k: usize,
        rows: Logits,
    },
}

impl Want {
    /// The rows of logits the head computes for it, if any.
    fn head_rows(self) -> Option<Logits> {
        match self {
            Want::Nothing => None,
            Want::Logits(rows) => Some(rows),
            Want::NextToken => Some(Logits::Last),
            Want::Top { rows, .. } => Some(rows),
        }
    }
}

/// What came back.
enum Output {
    Logits(Vec<f32>),
    Token(u32),
    /// Per row, the likeliest tokens as `(id, logit)`, best first.
    Top(Vec<Vec<(u32, f32)>>),
}

impl GpuModel {
    /// Run `tokens` at positions `pos0..` (appending to the caches) and return the logits asked
    /// for: `[n_vocab]` for [`Logits::Last`], `[n][n_vocab]` for [`Logits::All`].
    pub fn forward(&self, state: &mut GpuState, tokens: &[u32], pos0: usize, which: Logits) -> Result<Vec<f32>> {
        self.forward_in(&mut state.acts, &mut state.caches, tokens, pos0, which)
    }

    /// [`GpuModel::forward`] as a future: the form a browser needs (see [`crate::gpu::ready`]).
    pub async fn forward_async(
        &self,
        state: &mut GpuState,
        tokens: &[u32],
        pos0: usize,
        which: Logits,
    ) -> Result<Vec<f32>> {
        self.forward_in_async(&mut state.acts, &mut state.caches, tokens, pos0, which).await
    }

    /// [`GpuModel::forward`] with the activations and the sequence's caches given apart (a
    /// server's slots share one set of activations).
    pub fn forward_in(
        &self,
        acts: &mut Activations,
        caches: &mut KvCaches,
        tokens: &[u32],
        pos0: usize,
        which: Logits,
    ) -> Result<Vec<f32>> {
        now(self.forward_in_async(acts, caches, tokens, pos0, which))
    }

    /// [`GpuModel::forward_in`] as a future.
    pub async fn forward_in_async(
        &self,
        acts: &mut Activations,
        caches: &mut KvCaches,
        tokens: &[u32],
        pos0: usize,
        which: Logits,
    ) -> Result<Vec<f32>> {
        match self.run(acts, caches, tokens, pos0, Want::Logits(which)).await? {
            Output::Logits(logits) => Ok(logits),
            _ => Err(Error::Invalid("a forward pass asked for logits returned tokens".into())),
        }
    }

    /// Run `tokens` at positions `pos0..` and return the most likely next token: the argmax of
    /// [`GpuModel::forward`]'s last logits (the first of equals), picked on the device when the
    /// head is there, so a decode step reads back one word instead of `n_vocab` floats.
    pub fn forward_greedy(&self, state: &mut GpuState, tokens: &[u32], pos0: usize) -> Result<u32> {
        now(self.forward_greedy_async(state, tokens, pos0))
    }

    /// [`GpuModel::forward_greedy`] as a future.
    pub async fn forward_greedy_async(&self, state: &mut GpuState, tokens: &[u32], pos0: usize) -> Result<u32> {
        match self.run(&mut state.acts, &mut state.caches, tokens, pos0, Want::NextToken).await? {
            Output::Token(token) => Ok(token),
            _ => Err(Error::Invalid("a greedy forward pass returned something else than a token".into())),
        }
    }

    /// Run `tokens` at positions `pos0..` and return the `k` likeliest next tokens (at most
    /// [`crate::ops::top_k::MAX_K`]) after `penalties` (row 0), as `(id, logit)`, best first:
    /// what [`crate::sampler::Sampler::sample_top`] needs, selected on the device when the head is
    /// there, so a sampled decode step reads back `k` pairs instead of `n_vocab` floats.
    pub fn forward_top_k(
        &self,
        state: &mut GpuState,
        tokens: &[u32],
        pos0: usize,
        k: usize,
        penalties: &[TokenPenalty],
    ) -> Result<Vec<(u32, f32)>> {
        now(self.forward_top_k_async(state, tokens, pos0, k, penalties))
    }

    /// [`GpuModel::forward_top_k`] as a future.
    pub async fn forward_top_k_async(
        &self,
        state: &mut GpuState,
        tokens: &[u32],
        pos0: usize,
        k: usize,
        penalties: &[TokenPenalty],
    ) -> Result<Vec<(u32, f32)>> {
        state.acts.set_penalties(penalties, 1)?;
        let want = Want::Top { k, rows: Logits::Last };
        match self.run(&mut state.acts, &mut state.caches, tokens, pos0, want).await? {
            Output::Top(mut rows) if rows.len() == 1 => Ok(rows.pop().unwrap_or_default()),
            _ => Err(Error::Invalid("a sampled forward pass returned something else than candidates".into())),
        }
    }

    /// One decode step of several sequences in one forward pass: every weight is read once for
    /// all of them (the products take one column per sequence), while each sequence's rope,
    /// cache append and attention use its own position and caches. Returns `[steps][n_vocab]`
    /// logits, in order. At most `acts`' logits rows (and batch) at once.
    pub fn decode_batch(&self, acts: &mut Activations, steps: &mut [DecodeStep<'_>]) -> Result<Vec<f32>> {
        match self.decode_batch_for(acts, steps, Want::Logits(Logits::All))? {
            Output::Logits(logits) => Ok(logits),
            _ => Err(Error::Invalid("a batched decode step returned tokens".into())),
        }
    }

    /// [`GpuModel::decode_batch`] returning each sequence's `k` likeliest next tokens after
    /// `penalties` (row `i` is step `i`), as [`GpuModel::forward_top_k`] does for one.
    pub fn decode_batch_top_k(
        &self,
        acts: &mut Activations,
        steps: &mut [DecodeStep<'_>],
        k: usize,
        penalties: &[TokenPenalty],
    ) -> Result<Vec<Vec<(u32, f32)>>> {
        acts.set_penalties(penalties, steps.len())?;
        match self.decode_batch_for(acts, steps, Want::Top { k, rows: Logits::All })? {
            Output::Top(rows) => Ok(rows),
            _ => Err(Error::Invalid("a sampled batched decode step returned logits".into())),
        }
    }

    fn decode_batch_for(&self, acts: &mut Activations, steps: &mut [DecodeStep<'_>], want: Want) -> Result<Output> {
        let n = steps.len();
        if n == 0 || n > acts.logits_rows {
            return Err(Error::Invalid(format!("{n} sequences in one step (at most {})", acts.logits_rows)));
        }
        let tokens: Vec<u32> = steps.iter().map(|s| s.token).collect();
        self.check_tokens(&tokens)?;
        let mut seqs: Vec<Seq<'_>> = steps
            .iter_mut()
            .map(|s| {
                if s.pos >= s.caches.n_ctx {
                    return Err(Error::Invalid(format!(
                        "position {} is past the context of {}",
                        s.pos, s.caches.n_ctx
                    )));
                }
                Ok(Seq { pos0: s.pos, n: 1, caches: &mut *s.caches })
            })
            .collect::<Result<_>>()?;
        acts.host_seconds = 0.0;
        acts.cpu_seconds = 0.0;
        now(self.forward_batch(acts, &tokens, &mut seqs, want))
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        match tokens.iter().find(|&&t| t as usize >= self.config.n_vocab) {
            Some(bad) => {
                Err(Error::Invalid(format!("token id {bad} is outside the vocabulary of {}", self.config.n_vocab)))
            }
            None => Ok(()),
        }
    }

    /// The forward pass of one sequence over micro-batches; the last one hands back `last`.
    async fn run(
        &self,
        acts: &mut Activations,
        caches: &mut KvCaches,
        tokens: &[u32],
        pos0: usize,
        last: Want,
    ) -> Result<Output> {
        if tokens.is_empty() {
            return Err(Error::Invalid("no tokens to run".into()));
        }
        if pos0 + tokens.len() > caches.n_ctx {
            return Err(Error::Invalid(format!(
                "{} tokens at position {pos0} exceed the context of {} tokens",
                tokens.len(),
                caches.n_ctx
            )));
        }
        self.check_tokens(tokens)?;
        // With every logit wanted, a micro-batch is no larger than the logits buffer.
        let all = last == Want::Logits(Logits::All);
        let step = if all { acts.logits_rows } else { acts.batch };
        acts.host_seconds = 0.0;
        acts.cpu_seconds = 0.0;
        let split = (1..self.config.n_layer).contains(&self.placement.gpu_layers);
        if split && !all && tokens.len() > step {
            return self.run_overlapped(acts, caches, tokens, pos0, last).await;
        }
        let mut logits = Vec::new();
        for (i, chunk) in tokens.chunks(step).enumerate() {
            let last_chunk = (i + 1) * step >= tokens.len();
            let want = if all || last_chunk { last } else { Want::Nothing };
            let mut seq = [Seq { pos0: pos0 + i * step, n: chunk.len(), caches: &mut *caches }];
            match self.forward_batch(acts, chunk, &mut seq, want).await? {
                Output::Logits(l) => logits.extend(l),
                token => return Ok(token),
            }
        }
        Ok(Output::Logits(logits))
    }

    /// [`GpuModel::run`] over several micro-batches of a model split between the GPU and the CPU:
    /// while the CPU runs micro-batch i's layers, the GPU runs micro-batch i + 1's. Each
    /// micro-batch's CPU layers need its GPU layers, and the next micro-batch's GPU layers need
    /// only the GPU's caches, so the two sides work at once instead of in turn; only the last
    /// micro-batch goes through the head.
    async fn run_overlapped(
        &self,
        acts: &mut Activations,
        caches: &mut KvCaches,
        tokens: &[u32],
        pos0: usize,
        last: Want,
    ) -> Result<Output> {
        // The micro-batch whose GPU layers are done and whose CPU layers are not: (position, x).
        let mut on_cpu: Option<(usize, Vec<f32>)> = None;
        for (i, chunk) in tokens.chunks(acts.batch).enumerate() {
            let chunk_pos = pos0 + i * acts.batch;
            let work = {
                let mut seq = [Seq { pos0: chunk_pos, n: chunk.len(), caches: &mut *caches }];
                self.submit_gpu_part(acts, chunk, &mut seq, Want::Nothing)?
            };
            if let Some((at, mut x)) = on_cpu.take() {
                let mut seq = [Seq { pos0: at, n: x.len() / self.config.n_embd, caches: &mut *caches }];
                if let Err(e) = self.run_cpu_part(acts, &mut x, &mut seq, Want::Nothing).await {
                    // The GPU's micro-batch is still in flight: wait for it (its readback and
                    // timestamps) before the error leaves, so the next call starts from an idle queue.
                    let _ = self.collect_gpu_part(acts, work).await;
                    return Err(e);
                }
            }
            match self.collect_gpu_part(acts, work).await? {
                GpuPart::Hidden(x) => on_cpu = Some((chunk_pos, x)),
                GpuPart::Done(_) => return Err(Error::Invalid("a split model finished on the GPU".into())),
            }
        }
        let (at, mut x) = on_cpu.ok_or_else(|| Error::Invalid("no tokens to run".into()))?;
        let mut seq = [Seq { pos0: at, n: x.len() / self.config.n_embd, caches }];
        self.run_cpu_part(acts, &mut x, &mut seq, last).await
    }

    /// One micro-batch (at most `acts.batch` rows): the rows of `seqs` in order, `tokens` theirs.
    async fn forward_batch(
        &self,
        acts: &mut Activations,
        tokens: &[u32],
        seqs: &mut [Seq<'_>],
        want: Want,
    ) -> Result<Output> {
        let n = tokens.len();
        if n > acts.batch || seqs.iter().map(|s| s.n).sum::<usize>() != n {
            return Err(Error::Invalid(format!("{n} tokens for a batch of {} rows", acts.batch)));
        }
        let mut x = if self.placement.gpu_layers == 0 && !self.embeds_on_gpu() {
            // Everything on the CPU: the GPU has nothing to do (and may be wgpu's noop device).
            self.cpu.embed(tokens)?
        } else {
            match self.run_gpu_part(acts, tokens, seqs, want).await? {
                GpuPart::Done(output) => return Ok(output),
                GpuPart::Hidden(x) => x,
            }
        };
        self.run_cpu_part(acts, &mut x, seqs, want).await
    }

    /// The embedding (where the GPU holds the table) and the layers the plan puts on the GPU, and
    /// the head and the pick where everything is there; otherwise the hidden state for the CPU.
    async fn run_gpu_part(
        &self,
        acts: &mut Activations,
        tokens: &[u32],
        seqs: &mut [Seq<'_>],
        want: Want,
    ) -> Result<GpuPart> {
        let work = self.submit_gpu_part(acts, tokens, seqs, want)?;
        self.collect_gpu_part(acts, work).await
    }

    /// [`GpuModel::run_gpu_part`] up to the submit, which returns at once.
    fn submit_gpu_part(
        &self,
        acts: &mut Activations,
        tokens: &[u32],
        seqs: &mut [Seq<'_>],
        want: Want,
    ) -> Result<GpuWork> {
        let c = &self.config;
        let n = tokens.len();
        let state = &*acts;
        let started = Instant::now();
        // Everything on the GPU: one submit, and only logits (or a token id) come back.
        let (all_gpu, embed_on_gpu) = (self.all_on_gpu(), self.embeds_on_gpu());
        if !embed_on_gpu {
            self.ctx.write(&state.x, 0, &self.cpu.embed(tokens)?)?;
        } else {
            self.ctx.write(&state.ids, 0, tokens)?;
        }
        if all_gpu {
            self.write_penalties(state, want)?;
        }

        let mut enc = self.ctx.encoder("forward");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            if embed_on_gpu {
                let table = self.head.as_ref().expect("embed_on_gpu implies a head on the GPU");
                get_rows(&self.ctx, &mut pass, table, &state.ids, 0, n, &state.x)?;
                elementwise(&self.ctx, &mut pass, Op::Scale(c.embd_scale), &state.x, &state.h, n * c.n_embd, 1)?;
            }
            for il in 0..self.placement.gpu_layers {
                self.layer(&mut pass, state, seqs, il, n)?;
            }
            if all_gpu {
                self.head_and_pick(&mut pass, state, n, want)?;
            }
        }
        if all_gpu {
            self.copy_output(&mut enc, state, n, want);
        }
        let submitted = self.ctx.submit(enc)?;
        acts.host_seconds += started.elapsed().as_secs_f64();
        Ok(GpuWork { submitted, rows: n, want })
    }

    /// Waits for `work` and reads its result back.
    async fn collect_gpu_part(&self, acts: &Activations, work: GpuWork) -> Result<GpuPart> {
        let GpuWork { submitted, rows, want } = work;
        self.ctx.wait_for(submitted)?;
        Ok(match self.all_on_gpu() {
            true => GpuPart::Done(self.read_output(acts, rows, want).await?),
            false => GpuPart::Hidden(self.ctx.read_range_async(&acts.x, 0, rows * self.config.n_embd).await?),
        })
    }

    /// The layers the plan left on the CPU over the hidden state `x`, then the head wherever it
    /// lives.
    async fn run_cpu_part(
        &self,
        acts: &mut Activations,
        x: &mut [f32],
        seqs: &mut [Seq<'_>],
        want: Want,
    ) -> Result<Output> {
        let c = &self.config;
        let n = x.len() / c.n_embd;
        let cpu_started = Instant::now();
        let head_rows = want.head_rows();
        let cpu_head = head_rows.filter(|_| self.head.is_none());
        let logits = crate::cpu::on_pool(|| -> Result<Option<Vec<f32>>> {
            for il in self.placement.gpu_layers..c.n_layer {
                let mut row0 = 0;
                for seq in seqs.iter_mut() {
                    let span = &mut x[row0 * c.n_embd..(row0 + seq.n) * c.n_embd];
                    self.cpu.layer(il, span, seq.pos0, &mut seq.caches.cpu)?;
                    row0 += seq.n;
                }
            }
            let Some(rows) = cpu_head else { return Ok(None) };
            let rows = if rows == Logits::Last { &x[(n - 1) * c.n_embd..] } else { &x[..] };
            self.cpu.head(rows).map(Some)
        })?;
        acts.cpu_seconds += cpu_started.elapsed().as_secs_f64();
        let state = &*acts;
        if head_rows.is_none() {
            return Ok(Output::Logits(Vec::new()));
        }
        if let Some(logits) = logits {
            return Ok(self.pick_on_host(state, logits, want));
        }
        self.ctx.write(&state.x, 0, x)?;
        self.write_penalties(state, want)?;
        let mut enc = self.ctx.encoder("head");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.head_and_pick(&mut pass, state, n, want)?;
        }
        self.copy_output(&mut enc, state, n, want);
        self.ctx.submit_and_wait(enc)?;
        self.read_output(state, n, want).await
    }

    /// Whether every layer and the head run on the GPU (a forward pass is then one submission).
    fn all_on_gpu(&self) -> bool {
        self.placement.gpu_layers == self.config.n_layer && self.head.is_some()
    }

    /// Whether the GPU looks the tokens up itself: the head is on the GPU and is the embedding table.
    fn embeds_on_gpu(&self) -> bool {
        self.head_is_embedding && self.head.is_some()
    }

    /// The sampling penalties for the device's top-k, where `want` asks for it: written with the
    /// head's own submission (a GPU part submitted before it may have wanted nothing).
    fn write_penalties(&self, state: &Activations, want: Want) -> Result<()> {
        match want {
            Want::Top { .. } => state.top.write_penalties(&self.ctx, &state.penalties),
            _ => Ok(()),
        }
    }

    /// The head for what `want` needs, and the greedy pick on the device for a token.
    fn head_and_pick(&self, pass: &mut wgpu::ComputePass<'_>, state: &Activations, n: usize, want: Want) -> Result<()> {
        if let Some(rows) = want.head_rows() {
            self.head_pass(pass, state, n, rows)?;
        }
        match want {
            Want::NextToken => argmax(&self.ctx, pass, &state.logits, self.config.n_vocab, &state.next_id),
            Want::Top { k, rows } => {
                let rows = GpuModel::logits_rows(n, rows);
                top_k(&self.ctx, pass, &state.logits, rows, k, state.penalties.len(), &state.top)
            }
            _ => Ok(()),
        }
    }

    /// What `want` asks of logits the CPU head computed: the logits, the greedy token, or the
    /// likeliest tokens after the penalties, as the device would pick them.
    fn pick_on_host(&self, state: &Activations, mut logits: Vec<f32>, want: Want) -> Output {
        match want {
            Want::NextToken => Output::Token(crate::sampler::argmax(&logits)),
            Want::Top { k, .. } => {
                let n_vocab = self.config.n_vocab;
                apply_penalties(&mut logits, n_vocab, &state.penalties);
                Output::Top(logits.chunks(n_vocab).map(|row| likeliest(row, k)).collect())
            }
            _ => Output::Logits(logits),
        }
    }

    /// Copies what the host reads to its readback buffer, in the forward pass's own submit.
    fn copy_output(&self, enc: &mut wgpu::CommandEncoder, state: &Activations, n: usize, want: Want) {
        match want {
            Want::Nothing => {}
            Want::Logits(rows) => {
                let bytes = (4 * GpuModel::logits_rows(n, rows) * self.config.n_vocab) as u64;
                enc.copy_buffer_to_buffer(state.logits.buffer(), 0, &state.readback, 0, bytes);
            }
            Want::NextToken => enc.copy_buffer_to_buffer(state.next_id.buffer(), 0, &state.next_id_readback, 0, 4),
            Want::Top { k, rows } => state.top.copy_out(enc, GpuModel::logits_rows(n, rows), k),
        }
    }

    async fn read_output(&self, state: &Activations, n: usize, want: Want) -> Result<Output> {
        let ctx = &self.ctx;
        Ok(match want {
            Want::Nothing => Output::Logits(Vec::new()),
            Want::Logits(rows) => {
                let len = GpuModel::logits_rows(n, rows) * self.config.n_vocab;
                Output::Logits(ctx.read_mapped(&state.readback, len).await?)
            }
            Want::NextToken => Output::Token(ctx.read_mapped::<u32>(&state.next_id_readback, 1).await?[0]),
            Want::Top { k, rows } => Output::Top(state.top.read(ctx, GpuModel::logits_rows(n, rows), k).await?),
        })
    }

    /// Rows of logits the host wants: the last token's, or every token's.
    fn logits_rows(n: usize, want: Logits) -> usize {
        if want == Logits::Last {
            1
        } else {
            n
        }
    }

    /// Final norm and output head of the last token (or of every token).
    fn head_pass(&self, pass: &mut wgpu::ComputePass<'_>, s: &Activations, n: usize, want: Logits) -> Result<()> {
        let c = &self.config;
        let ctx = &self.ctx;
        let (first, rows) = if want == Logits::Last { (n - 1, 1) } else { (0, n) };
        let norm = self.output_norm.as_ref().ok_or_else(|| Error::Invalid("the head is not on the GPU".into()))?;
        let head = self.head.as_ref().ok_or_else(|| Error::Invalid("the head is not on the GPU".into()))?;
        rms_norm(ctx, pass, s.x.at(first * c.n_embd), norm, &s.h, rows, c.norm_eps, NormOut::Store)?;
        self.project(pass, s, rows == 1 && self.decode_int(), head, &s.h, s.logits.at(0), rows)?;
        match c.final_softcap {
            Some(cap) => elementwise(ctx, pass, Op::Softcap(cap), &s.logits, &s.h, rows * c.n_vocab, 1),
            None => Ok(()),
        }
    }

    /// One transformer block over `n` tokens of `s.x`, in place.
    /// One transformer block over the `n` rows of `s.x` (the rows of `seqs`, in order), in place:
    /// the products take every row at once, rope, cache append and attention go sequence by
    /// sequence.
    fn layer(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        s: &Activations,
        seqs: &[Seq<'_>],
        il: usize,
        n: usize,
    ) -> Result<()> {
        let c = &self.config;
        let ctx = &self.ctx;
        let w = &self.layers[il];
        let eps = c.norm_eps;

        // attention rmsnorm (from layer 1 on, the previous layer's end computed it)
        if il == 0 {
            rms_norm(ctx, pass, &s.x, w.attn_norm.vector()?, &s.h, n, eps, NormOut::Store)?;
        }
        // A decode step may take the integer matvec (see `decode_int`).
        let int = n == 1 && self.decode_int();
        // q, k, v projections: one dispatch per stack when decoding
        let stacks = &self.stacks[il];
        let (q, k, v) = (s.q(c, 0), s.k(c, 0), s.v(c, 0));
        match &stacks.qkv {
            _ if int => {
                quantize_q8(ctx, pass, &s.h, c.n_embd, &s.q8)?;
                for (m, out) in [(&w.wq, q), (&w.wk, k), (&w.wv, v)] {
                    self.product_q8(pass, s, m.matrix()?, s.h.at(0), out)?;
                }
            }
            Some(stack) if n == 1 => {
                matvec_stack(ctx, pass, stack, &s.h, &[q, k, v][..stack.part_rows.len()])?;
                if stack.part_rows.len() == 2 {
                    mul_mat(ctx, pass, w.wv.matrix()?, &s.h, v, n)?;
                }
            }
            _ => {
                mul_mat(ctx, pass, w.wq.matrix()?, &s.h, q, n)?;
                mul_mat(ctx, pass, w.wk.matrix()?, &s.h, k, n)?;
                mul_mat(ctx, pass, w.wv.matrix()?, &s.h, v, n)?;
            }
        }
        // biases (Qwen2)
        for (bias, out, dim) in [(&w.bq, q, c.q_dim()), (&w.bk, k, c.kv_dim()), (&w.bv, v, c.kv_dim_v())] {
            if let Some(b) = bias {
                elementwise(ctx, pass, Op::AddRow, out, b.vector()?, n * dim, dim)?;
            }
        }
        let mut row = 0;
        for seq in seqs {
            self.attend(pass, s, seq, il, row)?;
            row += seq.n;
        }
        // output projection, post-norm and residual, ffn rmsnorm
        self.project(pass, s, int, w.wo.matrix()?, &s.attn, s.o.at(0), n)?;
        let post_attn = w.post_attn_norm.as_ref().map(GpuWeight::vector).transpose()?;
        add_rms_norm(ctx, pass, &s.o, post_attn, &s.x, w.ffn_norm.vector()?, &s.h, n, eps)?;
        // gated feed-forward: down(act(gate(h)) * up(h))
        match &stacks.gate_up {
            _ if int => {
                quantize_q8(ctx, pass, &s.h, c.n_embd, &s.q8)?;
                self.product_q8(pass, s, w.ffn_gate.matrix()?, s.h.at(0), s.gate.at(0))?;
                self.product_q8(pass, s, w.ffn_up.matrix()?, s.h.at(0), s.up.at(0))?;
                elementwise(ctx, pass, Op::Gated(c.activation), &s.gate, &s.up, c.n_ff, c.n_ff)?;
            }
            Some(stack) if n == 1 => matvec_gate_up(ctx, pass, stack, &s.h, &s.gate, c.activation)?,
            _ => {
                mul_mat(ctx, pass, w.ffn_gate.matrix()?, &s.h, &s.gate, n)?;
                mul_mat_gated(ctx, pass, w.ffn_up.matrix()?, &s.h, &s.gate, &s.up, n, c.activation)?;
            }
        }
        self.project(pass, s, int, w.ffn_down.matrix()?, &s.gate, s.o.at(0), n)?;
        // post-norm and residual; with the next layer's attention rmsnorm when it runs here too
        match self.layers.get(il + 1) {
            Some(next) => {
                let post_ffn = w.post_ffn_norm.as_ref().map(GpuWeight::vector).transpose()?;
                add_rms_norm(ctx, pass, &s.o, post_ffn, &s.x, next.attn_norm.vector()?, &s.h, n, eps)
            }
            None => self.residual(pass, s, w.post_ffn_norm.as_ref(), n),
        }
    }

    /// Whether decode steps take the integer matvec: the device profile asks for it
    /// ([`crate::gpu::DeviceProfile::int_matvec`]) and every product's input is whole blocks of
    /// 32 activations.
    fn decode_int(&self) -> bool {
        let c = &self.config;
        self.ctx.profile().int_matvec && [c.n_embd, c.n_head * c.head_dim_v, c.n_ff].iter().all(|d| d % 32 == 0)
    }

    /// `y = W x` for `n` rows of `x`: on the integer path (`int`, one row) `x` rounded to 8 bits
    /// first, else the float products.
    #[allow(clippy::too_many_arguments)]
    fn project(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        s: &Activations,
        int: bool,
        w: &GpuTensor,
        x: &F32Buffer,
        y: View<'_>,
        n: usize,
    ) -> Result<()> {
        if !int {
            return mul_mat(&self.ctx, pass, w, x, y, n);
        }
        quantize_q8(&self.ctx, pass, x, w.row_len, &s.q8)?;
        self.product_q8(pass, s, w, x.at(0), y)
    }

    /// One decode product `y = W x` on the integer path: the integer matvec on `s.q8` (which holds
    /// `x` at 8 bits) where `W`'s format has an integer decoder, else the float matvec on `x`.
    fn product_q8(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        s: &Activations,
        w: &GpuTensor,
        x: View<'_>,
        y: View<'_>,
    ) -> Result<()> {
        match has_int_decoder(w.ty) {
            true => matvec_q8(&self.ctx, pass, w, &s.q8, y),
            false => mul_mat(&self.ctx, pass, w, x, y, 1),
        }
    }

    /// Attention of one sequence's rows (from `row` on) in layer `il`: per-head q/k norms,
    /// rope and the append to its caches in one dispatch, then causal (and sliding-window)
    /// attention over them.
    fn attend(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        s: &Activations,
        seq: &Seq<'_>,
        il: usize,
        row: usize,
    ) -> Result<()> {
        let (c, ctx, w) = (&self.config, &self.ctx, &self.layers[il]);
        let (k_cache, v_cache) = (&seq.caches.k[il], &seq.caches.v[il]);
        let q = s.q(c, row);
        let prep = QkvPrep {
            q,
            k: s.k(c, row),
            v: s.v(c, row),
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim: c.head_dim,
            head_dim_v: c.head_dim_v,
            q_norm: w.q_norm.as_ref().map(GpuWeight::vector).transpose()?,
            k_norm: w.k_norm.as_ref().map(GpuWeight::vector).transpose()?,
            eps: c.norm_eps,
            rope: RopeParams {
                layout: c.rope_layout,
                base: c.rope_base_of(il),
                freq_scale: c.rope_freq_scale,
                factors: self.rope_factors.pick(c, seq.caches.n_ctx),
                attn_factor: c.rope_attn_factor,
            },
            k_cache,
            v_cache,
        };
        prepare_qkv(ctx, pass, &prep, seq.n, seq.pos0, &self.placeholder)?;
        let shape = AttentionShape {
            n_tokens: seq.n,
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim: c.head_dim,
            head_dim_v: c.head_dim_v,
            pos0: seq.pos0,
            window: c.window_of(il),
            scale: c.attn_scale,
            softcap: c.attn_softcap,
            n_ctx: seq.caches.n_ctx,
        };
        let out = s.attn.at(row * c.n_head * c.head_dim_v);
        attention(ctx, pass, &shape, q, k_cache, v_cache, &s.attn_scratch, out)
    }

    /// `x += o`, or `x += norm(o)` for models with post-norms.
    fn residual(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        s: &Activations,
        post_norm: Option<&GpuWeight>,
        n: usize,
    ) -> Result<()> {
        let c = &self.config;
        match post_norm {
            Some(pn) => rms_norm(&self.ctx, pass, &s.o, pn.vector()?, &s.x, n, c.norm_eps, NormOut::Add),
            None => elementwise(&self.ctx, pass, Op::Add, &s.x, &s.o, n * c.n_embd, n * c.n_embd),
        }
    }
}
