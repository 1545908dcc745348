//! The forward pass on the CPU, built on the CPU reference kernels of `format`.
//!
//! It is the oracle the GPU forward pass is tested against, and the path that runs the layers a VRAM
//! plan leaves on the host. It reads like the GPU pass: one short step per comment, a shape on every
//! buffer (`[n][n_embd]` is n tokens of n_embd floats, row-major).

use std::sync::Arc;

use rayon::prelude::*;

use crate::cpu::huge_pages::HugePageCopy;
use crate::error::{Error, Result};
use crate::format::{dequant, dot, GgmlType};
use crate::gguf::{GgufFile, TensorInfo};
use crate::model::config::{Activation, Config, KvType, RopeLayout};
use crate::model::weights::{check_matrix, GlobalWeights, LayerWeights};

/// A tensor of the memory-mapped file, read in place.
pub type CpuTensor = TensorInfo;

/// The model's weights as views into the GGUF file.
pub struct CpuWeights {
    pub global: GlobalWeights<CpuTensor>,
    pub layers: Vec<LayerWeights<CpuTensor>>,
}

impl CpuWeights {
    pub fn load(file: &GgufFile, config: &Config) -> Result<CpuWeights> {
        let global = GlobalWeights::load(file, |t| Ok(t.clone()))?;
        let layers = (0..config.n_layer)
            .map(|il| LayerWeights::load(file, config, il, |t| Ok(t.clone())))
            .collect::<Result<Vec<_>>>()?;
        check_shapes(config, &global, &layers)?;
        Ok(CpuWeights { global, layers })
    }
}

/// Check every matrix against the config once, so the forward pass can trust shapes.
pub fn check_shapes(
    config: &Config,
    global: &GlobalWeights<TensorInfo>,
    layers: &[LayerWeights<TensorInfo>],
) -> Result<()> {
    check_matrix(&global.token_embd, config.n_embd, config.n_vocab)?;
    if let Some(out) = &global.output {
        check_matrix(out, config.n_embd, config.n_vocab)?;
    }
    for l in layers {
        check_matrix(&l.wq, config.n_embd, config.q_dim())?;
        check_matrix(&l.wk, config.n_embd, config.kv_dim())?;
        check_matrix(&l.wv, config.n_embd, config.kv_dim_v())?;
        check_matrix(&l.wo, config.n_head * config.head_dim_v, config.n_embd)?;
        check_matrix(&l.ffn_gate, config.n_embd, config.n_ff)?;
        check_matrix(&l.ffn_up, config.n_embd, config.n_ff)?;
        check_matrix(&l.ffn_down, config.n_ff, config.n_embd)?;
    }
    Ok(())
}

/// Keys and values of past positions, per layer, in f32.
pub struct CpuKvCache {
    /// `[layer][n_ctx][kv_dim]`
    k: Vec<Vec<f32>>,
    /// `[layer][n_ctx][kv_dim_v]`
    v: Vec<Vec<f32>>,
    pub n_ctx: usize,
    pub kv_type: KvType,
}

impl CpuKvCache {
    /// A cache for `n_ctx` positions with f16 precision, as the GPU path and llama.cpp keep it.
    pub fn new(config: &Config, n_ctx: usize) -> CpuKvCache {
        Self::with_type(config, n_ctx, KvType::F16)
    }

    /// A cache for `n_ctx` positions whose values are rounded as `kv_type` would store them.
    pub fn with_type(config: &Config, n_ctx: usize, kv_type: KvType) -> CpuKvCache {
        Self::for_layers(config, n_ctx, kv_type, 0..config.n_layer)
    }

    /// A cache that holds only `layers` (the ones a VRAM plan runs on the CPU).
    pub fn for_layers(config: &Config, n_ctx: usize, kv_type: KvType, layers: std::ops::Range<usize>) -> CpuKvCache {
        let alloc = |il: usize, dim: usize| if layers.contains(&il) { vec![0.0; n_ctx * dim] } else { Vec::new() };
        CpuKvCache {
            kv_type,
            k: (0..config.n_layer).map(|il| alloc(il, config.kv_dim())).collect(),
            v: (0..config.n_layer).map(|il| alloc(il, config.kv_dim_v())).collect(),
            n_ctx,
        }
    }
}

/// Which logits the forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (generation).
    Last,
    /// Every token's, `[n][n_vocab]` (perplexity, tests).
    All,
}

/// Which kernels the CPU model's matrix products use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuKernels {
    /// The scalar f32 kernels of [`crate::format::dot`]: the oracle the GPU is tested against.
    Reference,
    /// Activations rounded to 8 bits and integer dot products ([`crate::cpu`]), as llama.cpp's
    /// CPU backend computes: the layers and heads the plan leaves on the CPU. Float weights
    /// (F32, F16, BF16) still take the reference kernels.
    Integer,
}

/// Runs the model on the CPU.
pub struct CpuModel {
    pub file: Arc<GgufFile>,
    pub config: Config,
    pub weights: CpuWeights,
    pub kernels: CpuKernels,
    /// The matrices this model multiplies by, copied into huge pages where the plan leaves them
    /// here ([`CpuModel::keep_copy`]); the others are read from the file's map.
    huge_pages: Option<HugePageCopy>,
}

impl CpuModel {
    /// The model with the reference kernels (the tests' oracle).
    pub fn new(file: Arc<GgufFile>) -> Result<CpuModel> {
        Self::with_kernels(file, CpuKernels::Reference)
    }

    /// The same model with the reference kernels (for tests that need the oracle of a model
    /// whose own CPU part takes the integer kernels).
    pub fn reference(&self) -> Result<CpuModel> {
        Self::new(self.file.clone())
    }

    pub fn with_kernels(file: Arc<GgufFile>, kernels: CpuKernels) -> Result<CpuModel> {
        let config = Config::from_gguf(&file)?;
        let weights = CpuWeights::load(&file, &config)?;
        Ok(CpuModel { file, config, weights, kernels, huge_pages: None })
    }

    /// Reads the products' matrices from `copy` where it holds them (those of the layers and head
    /// that run here, in huge pages: [`crate::cpu::huge_pages`]).
    pub fn keep_copy(&mut self, copy: HugePageCopy) {
        self.huge_pages = (!copy.is_empty()).then_some(copy);
    }

    /// Run `tokens` at positions `pos0..`, appending to `cache`; returns the logits asked for.
    pub fn forward(&self, tokens: &[u32], pos0: usize, cache: &mut CpuKvCache, which: Logits) -> Result<Vec<f32>> {
        crate::cpu::on_pool(|| {
            let mut x = self.embed(tokens)?; // [n][n_embd]
            for il in 0..self.config.n_layer {
                self.layer(il, &mut x, pos0, cache)?;
            }
            let last = match which {
                Logits::Last => &x[(tokens.len() - 1) * self.config.n_embd..],
                Logits::All => &x[..],
            };
            self.head(last)
        })
    }

    /// Token embeddings, scaled: `[n][n_embd]`.
    pub fn embed(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let c = &self.config;
        if tokens.is_empty() {
            return Err(Error::Invalid("no tokens to run".into()));
        }
        let table = &self.weights.global.token_embd;
        let row_bytes = table.ty.row_bytes(c.n_embd)?;
        let data = self.file.tensor_data(table);
        let mut x = vec![0.0f32; tokens.len() * c.n_embd];
        for (row, &tok) in x.chunks_exact_mut(c.n_embd).zip(tokens) {
            if tok as usize >= c.n_vocab {
                return Err(Error::Invalid(format!("token id {tok} is outside the vocabulary of {}", c.n_vocab)));
            }
            let start = tok as usize * row_bytes;
            dequant::dequantize(table.ty, &data[start..start + row_bytes], row)?;
            row.iter_mut().for_each(|v| *v *= c.embd_scale);
        }
        Ok(x)
    }

    /// Final norm and output head: `[n][n_embd]` → `[n][n_vocab]`.
    pub fn head(&self, x: &[f32]) -> Result<Vec<f32>> {
        let c = &self.config;
        let g = &self.weights.global;
        let h = rms_norm(x, &self.f32s(&g.output_norm)?, c.norm_eps);
        let mut logits = self.matmul(g.head(), &h)?;
        if let Some(cap) = c.final_softcap {
            logits.iter_mut().for_each(|l| *l = softcap(*l, cap));
        }
        Ok(logits)
    }

    /// One transformer block over `x: [n][n_embd]`, in place.
    pub fn layer(&self, il: usize, x: &mut [f32], pos0: usize, cache: &mut CpuKvCache) -> Result<()> {
        let c = &self.config;
        let w = &self.weights.layers[il];
        let n = x.len() / c.n_embd;
        if pos0 + n > cache.n_ctx || cache.k[il].is_empty() {
            return Err(Error::Invalid(format!(
                "positions {pos0}..{} exceed the context of {} tokens (or layer {il} has no CPU cache)",
                pos0 + n,
                cache.n_ctx
            )));
        }

        // attention rmsnorm
        let h = rms_norm(x, &self.f32s(&w.attn_norm)?, c.norm_eps); // [n][n_embd]
                                                                    // q, k, v projections (+ biases)
        let mut q = self.matmul_bias(&w.wq, w.bq.as_ref(), &h)?; // [n][n_head * head_dim]
        let mut k = self.matmul_bias(&w.wk, w.bk.as_ref(), &h)?; // [n][n_head_kv * head_dim]
        let v = self.matmul_bias(&w.wv, w.bv.as_ref(), &h)?; // [n][n_head_kv * head_dim_v]
                                                             // per-head q/k norms
        if let Some(qn) = &w.q_norm {
            q = rms_norm(&q, &self.f32s(qn)?, c.norm_eps);
        }
        if let Some(kn) = &w.k_norm {
            k = rms_norm(&k, &self.f32s(kn)?, c.norm_eps);
        }
        // RoPE
        let freq_factors = self.weights.global.rope.pick(c, cache.n_ctx).map(|t| self.f32s(t)).transpose()?;
        let rope = Rope::new(c, il, freq_factors.as_deref());
        rope.apply(&mut q, c.n_head, c.head_dim, pos0);
        rope.apply(&mut k, c.n_head_kv, c.head_dim, pos0);
        // append to the KV cache
        let (kd, vd) = (c.kv_dim(), c.kv_dim_v());
        let kv_type = cache.kv_type;
        store_kv(kv_type, &mut cache.k[il][pos0 * kd..(pos0 + n) * kd], &k);
        store_kv(kv_type, &mut cache.v[il][pos0 * vd..(pos0 + n) * vd], &v);
        // causal (and sliding-window) attention
        let attn = attention(c, &q, &cache.k[il], &cache.v[il], pos0, c.window_of(il)); // [n][n_head * head_dim_v]
                                                                                        // output projection, post-norm, residual
        let mut o = self.matmul(&w.wo, &attn)?; // [n][n_embd]
        if let Some(pn) = &w.post_attn_norm {
            o = rms_norm(&o, &self.f32s(pn)?, c.norm_eps);
        }
        add_in_place(x, &o);

        // ffn rmsnorm
        let h = rms_norm(x, &self.f32s(&w.ffn_norm)?, c.norm_eps);
        // gated feed-forward: down(act(gate(h)) * up(h))
        let mut gate = self.matmul(&w.ffn_gate, &h)?; // [n][n_ff]
        let up = self.matmul(&w.ffn_up, &h)?; // [n][n_ff]
        gated_activation(c.activation, &mut gate, &up);
        let mut d = self.matmul(&w.ffn_down, &gate)?; // [n][n_embd]
        if let Some(pn) = &w.post_ffn_norm {
            d = rms_norm(&d, &self.f32s(pn)?, c.norm_eps);
        }
        add_in_place(x, &d);
        Ok(())
    }

    /// `x: [n][row_len]` times the matrix `t` (rows of `row_len`): `[n][rows]`.
    fn matmul(&self, t: &TensorInfo, x: &[f32]) -> Result<Vec<f32>> {
        let (row_len, rows) = (t.row_len(), t.n_rows());
        let n = x.len() / row_len;
        let mut y = vec![0.0f32; n * rows];
        let copied = self.huge_pages.as_ref().and_then(|copy| copy.get(t));
        let data = copied.unwrap_or_else(|| self.file.tensor_data(t));
        match self.kernels {
            CpuKernels::Integer if crate::cpu::has_kernel(t.ty) => {
                crate::cpu::matmul(t.ty, data, &crate::cpu::Q8Activations::quantize(x, row_len)?, &mut y)?
            }
            _ => dot::matmul(t.ty, data, row_len, x, n, &mut y)?,
        }
        Ok(y)
    }

    fn matmul_bias(&self, t: &TensorInfo, bias: Option<&TensorInfo>, x: &[f32]) -> Result<Vec<f32>> {
        let mut y = self.matmul(t, x)?;
        if let Some(b) = bias {
            let b = self.f32s(b)?;
            y.chunks_exact_mut(b.len()).for_each(|row| add_in_place(row, &b));
        }
        Ok(y)
    }

    /// A small tensor (norm weight, bias) as f32.
    fn f32s(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        if t.ty == GgmlType::F32 {
            return Ok(bytemuck::pod_collect_to_vec(self.file.tensor_data(t)));
        }
        dequant::dequantize_to_vec(t.ty, self.file.tensor_data(t))
    }
}

/// Copy keys or values into the cache, rounded to the cache's precision.
fn store_kv(kv_type: KvType, dst: &mut [f32], src: &[f32]) {
    match kv_type {
        KvType::F32 => dst.copy_from_slice(src),
        KvType::F16 => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = half::f16::from_f32(s).to_f32()),
    }
}

/// RMSNorm of each row of `x` (rows as long as `weight`), times `weight`. The sum of squares is
/// taken in f64, as ggml does.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let d = weight.len();
    let mut out = vec![0.0f32; x.len()];
    for (o, row) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let mean = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / d as f64;
        let scale = 1.0 / (mean as f32 + eps).sqrt();
        for ((o, &v), &w) in o.iter_mut().zip(row).zip(weight) {
            *o = v * scale * w;
        }
    }
    out
}

pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// `gate = act(gate) * up`, element-wise.
pub fn gated_activation(act: Activation, gate: &mut [f32], up: &[f32]) {
    let f = match act {
        Activation::Silu => silu,
        Activation::GeluTanh => gelu_tanh,
    };
    // In parallel: a prompt's activations are large, and each costs a libm `exp`.
    const CHUNK: usize = 4096;
    gate.par_chunks_mut(CHUNK).zip(up.par_chunks(CHUNK)).for_each(|(gate, up)| {
        gate.iter_mut().zip(up).for_each(|(g, &u)| *g = f(*g) * u);
    });
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `cap · tanh(x / cap)`: Gemma 2's soft-capping of attention scores and logits.
pub fn softcap(x: f32, cap: f32) -> f32 {
    cap * (x / cap).tanh()
}

/// GELU, tanh approximation: `0.5 · x · (1 + tanh(u))`, computed as `x · sigmoid(2u)` (the same
/// function): one `exp` instead of libm's `tanhf`, which cost 9 % of a prompt on the CPU.
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x);
    x / (1.0 + (-2.0 * u).exp())
}

/// Rotary position embedding of one layer.
pub struct Rope<'a> {
    layout: RopeLayout,
    base: f32,
    freq_scale: f32,
    /// Multiplies the rotated pairs (LongRoPE's `attn_factor`, as ggml's rope applies it).
    attn_factor: f32,
    freq_factors: Option<&'a [f32]>,
}

impl<'a> Rope<'a> {
    pub fn new(c: &Config, il: usize, freq_factors: Option<&'a [f32]>) -> Self {
        Rope {
            layout: c.rope_layout,
            base: c.rope_base_of(il),
            freq_scale: c.rope_freq_scale,
            attn_factor: c.rope_attn_factor,
            freq_factors,
        }
    }

    /// Rotate every head of `x: [n][n_heads * head_dim]`; row t is at position `pos0 + t`.
    pub fn apply(&self, x: &mut [f32], n_heads: usize, head_dim: usize, pos0: usize) {
        let half = head_dim / 2;
        // θ_i = pos · base^(-2i/d) / factor_i: the angle table is shared by every head of a row.
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let f = self.base.powf(-2.0 * i as f32 / head_dim as f32);
                f / self.freq_factors.map_or(1.0, |ff| ff[i])
            })
            .collect();
        for (t, row) in x.chunks_exact_mut(n_heads * head_dim).enumerate() {
            let pos = (pos0 + t) as f32 * self.freq_scale;
            for head in row.chunks_exact_mut(head_dim) {
                for (i, &f) in inv_freq.iter().enumerate() {
                    let (sin, cos) = (pos * f).sin_cos();
                    let (sin, cos) = (sin * self.attn_factor, cos * self.attn_factor);
                    let (a, b) = match self.layout {
                        RopeLayout::Normal => (2 * i, 2 * i + 1),
                        RopeLayout::Neox => (i, i + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * cos - x1 * sin;
                    head[b] = x0 * sin + x1 * cos;
                }
            }
        }
    }
}

/// Attention of queries `q: [n][n_head * head_dim]` at positions `pos0..pos0+n` over the cache,
/// causal and limited to `window` past positions where given. Returns `[n][n_head * head_dim_v]`.
pub fn attention(
    c: &Config,
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    pos0: usize,
    window: Option<usize>,
) -> Vec<f32> {
    let (hd, hdv) = (c.head_dim, c.head_dim_v);
    let n = q.len() / c.q_dim();
    let group = c.n_head / c.n_head_kv;
    let mut out = vec![0.0f32; n * c.n_head * hdv];
    out.par_chunks_mut(hdv).enumerate().for_each(|(i, o)| {
        let (t, h) = (i / c.n_head, i % c.n_head);
        let kvh = h / group;
        let pos = pos0 + t;
        let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let qh = &q[t * c.q_dim() + h * hd..][..hd];
        let scores: Vec<f32> = (first..=pos)
            .map(|j| dot::dot_f32(qh, &k_cache[j * c.kv_dim() + kvh * hd..][..hd]) * c.attn_scale)
            .map(|s| c.attn_softcap.map_or(s, |cap| softcap(s, cap)))
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        for (j, e) in (first..=pos).zip(&exps) {
            let vj = &v_cache[j * c.kv_dim_v() + kvh * hdv..][..hdv];
            let p = e / sum;
            o.iter_mut().zip(vj).for_each(|(o, &v)| *o += p * v);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    /// `x · sigmoid(2u)` is the tanh form of GELU, `0.5 · x · (1 + tanh(u))`, to float rounding,
    /// and saturates without overflow at both ends.
    #[test]
    fn gelu_by_sigmoid_is_the_tanh_form() {
        for i in -4000..=4000 {
            let x = i as f32 / 200.0;
            let u = 0.797_884_6 * x * (1.0 + 0.044715 * x * x);
            let tanh_form = 0.5 * x * (1.0 + u.tanh());
            let got = super::gelu_tanh(x);
            assert!((got - tanh_form).abs() <= 2e-6 * (1.0 + x.abs()), "{x}: {got} against {tanh_form}");
        }
        assert_eq!(super::gelu_tanh(-1e4), 0.0);
        assert_eq!(super::gelu_tanh(1e4), 1e4);
    }
}
