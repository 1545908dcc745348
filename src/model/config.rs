//! Model hyperparameters read from GGUF metadata, for every architecture wgquant runs.
//!
//! The per-architecture facts (which layers slide, which rope layout, what attention scale) follow
//! how llama.cpp runs each architecture; each is noted where it is set.

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// Architectures with a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Arch {
    /// Gemma 3: GELU-gated FFN, q/k RMSNorm, post-attention and post-FFN norms, scaled embeddings,
    /// interleaved sliding-window layers.
    Gemma3,
    /// Llama 2/3, Mistral: SiLU-gated FFN, grouped-query attention.
    Llama,
    /// Qwen2: Llama with q/k/v biases and NeoX rope.
    Qwen2,
    /// Qwen3: Llama with per-head q/k RMSNorm and NeoX rope, no biases.
    Qwen3,
    /// Phi-3: Llama with q/k/v fused in `attn_qkv`, gate and up fused in `ffn_up`, NeoX rope and
    /// LongRoPE factors (`rope_factors_long` / `rope_factors_short`).
    Phi3,
    /// Gemma 2: Gemma's scaled embeddings, GELU and post-norms, soft-capped attention scores and
    /// logits, sliding windows on every other layer.
    Gemma2,
}

impl Arch {
    pub fn from_name(name: &str) -> Result<Arch> {
        match name {
            "gemma3" => Ok(Arch::Gemma3),
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "qwen3" => Ok(Arch::Qwen3),
            "phi3" => Ok(Arch::Phi3),
            "gemma2" => Ok(Arch::Gemma2),
            other => Err(Error::UnsupportedArch(other.to_string())),
        }
    }

    /// The metadata prefix (`llama.block_count`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Gemma3 => "gemma3",
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Phi3 => "phi3",
            Arch::Gemma2 => "gemma2",
        }
    }
}

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RopeLayout {
    /// Adjacent pairs (`x[2i]`, `x[2i+1]`): llama's GGUF files permute q/k weights for this layout.
    Normal,
    /// Halves (`x[i]`, `x[i + d/2]`): GPT-NeoX style, used by Gemma and Qwen2.
    Neox,
}

/// The FFN's gate activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation.
    GeluTanh,
}

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum KvType {
    /// Half precision: half the memory; what llama.cpp uses by default.
    F16,
    /// Full precision, for devices that cannot pack f16.
    F32,
}

impl KvType {
    pub fn bytes(self) -> usize {
        match self {
            KvType::F16 => 2,
            KvType::F32 => 4,
        }
    }
}

/// Hyperparameters of one model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Config {
    pub arch: Arch,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Dimension of each query/key head.
    pub head_dim: usize,
    /// Dimension of each value head.
    pub head_dim_v: usize,
    pub n_ff: usize,
    pub norm_eps: f32,
    /// The context length the model was trained with.
    pub n_ctx_train: usize,
    pub rope_layout: RopeLayout,
    /// Rope base of the global (full-attention) layers.
    pub rope_base: f32,
    /// Rope base of the sliding-window layers (same as `rope_base` where the model has no such layers).
    pub rope_base_swa: f32,
    /// Linear rope scaling: positions are multiplied by this (1 / `rope.scaling.factor`).
    pub rope_freq_scale: f32,
    /// Multiplies the rotated q and k (`rope.scaling.attn_factor`, LongRoPE's magnitude
    /// correction; 1 elsewhere).
    pub rope_attn_factor: f32,
    /// The training context the rope was made for (`rope.scaling.original_context_length`, else
    /// `n_ctx_train`): longer contexts use Phi-3's long rope factors.
    pub n_ctx_orig: usize,
    /// Sliding-window size; `None` when every layer attends to the whole context.
    pub sliding_window: Option<usize>,
    /// For each layer, whether it uses the sliding window.
    pub layer_is_swa: Vec<bool>,
    /// Multiplies q·k (before softmax).
    pub attn_scale: f32,
    /// Gemma 2: attention scores become `cap · tanh(score / cap)` before the softmax.
    pub attn_softcap: Option<f32>,
    /// Gemma 2: logits become `cap · tanh(logit / cap)`.
    pub final_softcap: Option<f32>,
    /// Multiplies the token embeddings (Gemma: sqrt(n_embd)).
    pub embd_scale: f32,
    pub activation: Activation,
}

impl Config {
    /// Read the configuration of the model in `file`; an unknown architecture or a missing key is an
    /// error naming it.
    pub fn from_gguf(file: &GgufFile) -> Result<Config> {
        let arch = Arch::from_name(file.architecture()?)?;
        let key = |k: &str| format!("{}.{k}", arch.name());
        let u = |k: &str| file.get_u32(&key(k)).map(|v| v as usize);

        let n_embd = u("embedding_length")?;
        let n_layer = u("block_count")?;
        let n_head = u("attention.head_count")?;
        let n_head_kv = u("attention.head_count_kv").unwrap_or(n_head);
        let n_ff = u("feed_forward_length")?;
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 || n_layer == 0 || n_embd == 0 {
            return Err(Error::Invalid(format!(
                "{}: {n_head} heads, {n_head_kv} KV heads, {n_layer} layers, {n_embd} embedding: not a valid model",
                arch.name()
            )));
        }
        let head_dim = u("attention.key_length").unwrap_or(n_embd / n_head);
        let head_dim_v = u("attention.value_length").unwrap_or(head_dim);
        let norm_eps = file.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
        let n_ctx_train = u("context_length")?;
        let rope_base = file.get_f32(&key("rope.freq_base")).unwrap_or(10_000.0);
        let n_vocab = vocab_size(file, arch)?;
        let rope_freq_scale = rope_freq_scale(file, arch)?;
        let rope_attn_factor = file.get_f32(&key("rope.scaling.attn_factor")).unwrap_or(1.0);
        let n_ctx_orig = u("rope.scaling.original_context_length").unwrap_or(n_ctx_train);
        let softcap = |k: &str| file.get_f32(&key(k)).ok().filter(|&c| c > 0.0);

        let mut config = Config {
            arch,
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_ff,
            norm_eps,
            n_ctx_train,
            rope_layout: RopeLayout::Normal,
            rope_base,
            rope_base_swa: rope_base,
            rope_freq_scale,
            rope_attn_factor,
            n_ctx_orig,
            sliding_window: None,
            layer_is_swa: vec![false; n_layer],
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            attn_softcap: None,
            final_softcap: None,
            embd_scale: 1.0,
            activation: Activation::Silu,
        };
        match arch {
            Arch::Gemma3 => {
                config.rope_layout = RopeLayout::Neox;
                config.activation = Activation::GeluTanh;
                config.embd_scale = (n_embd as f32).sqrt();
                // llama.cpp: local layers use rope base 10000; every sixth layer (il % 6 == 5) is global.
                config.rope_base_swa = 10_000.0;
                config.sliding_window = Some(u("attention.sliding_window")?);
                config.layer_is_swa = (0..n_layer).map(|il| il % 6 != 5).collect();
                // llama.cpp: 1/sqrt(n_embd / n_head) for the 27B model, 1/sqrt(head_dim) otherwise.
                if n_layer == 62 {
                    config.attn_scale = 1.0 / ((n_embd / n_head) as f32).sqrt();
                }
            }
            Arch::Gemma2 => {
                config.rope_layout = RopeLayout::Neox;
                config.activation = Activation::GeluTanh;
                config.embd_scale = (n_embd as f32).sqrt();
                // llama.cpp: a window of 4096 unless the file says otherwise, on even layers.
                config.sliding_window = Some(u("attention.sliding_window").unwrap_or(4096));
                config.layer_is_swa = (0..n_layer).map(|il| il % 2 == 0).collect();
                config.attn_softcap = softcap("attn_logit_softcapping");
                config.final_softcap = softcap("final_logit_softcapping");
                // llama.cpp: 1/sqrt(n_embd / n_head) for the 27B model (46 layers).
                if n_layer == 46 {
                    config.attn_scale = 1.0 / ((n_embd / n_head) as f32).sqrt();
                }
            }
            // llama.cpp ignores Phi-3's sliding window ("currently disabled").
            Arch::Qwen2 | Arch::Qwen3 | Arch::Phi3 => config.rope_layout = RopeLayout::Neox,
            Arch::Llama => {
                // Mistral v0.1 files carry a sliding window that llama.cpp ignores for the llama graph.
            }
        }
        Ok(config)
    }

    /// Rows of K (or V) per token in one layer's cache: KV heads × head dim.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
    pub fn kv_dim_v(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// The longest row of any matrix: the widest input a product takes (the embedding, the
    /// attention output, the FFN's hidden layer).
    pub fn max_row_len(&self) -> usize {
        self.n_embd.max(self.n_head * self.head_dim_v).max(self.n_ff)
    }

    /// Rope base frequency of layer `il`.
    pub fn rope_base_of(&self, il: usize) -> f32 {
        if self.layer_is_swa[il] {
            self.rope_base_swa
        } else {
            self.rope_base
        }
    }

    /// Rows of layer `il`'s KV cache for a context of `n_ctx` and prompt micro-batches of `batch`:
    /// a sliding-window layer keeps a ring of `window + batch` rows (a micro-batch writes `batch`
    /// new rows while its first query still needs the `window` before it), others keep `n_ctx`.
    pub fn kv_rows(&self, il: usize, n_ctx: usize, batch: usize) -> usize {
        self.window_of(il).map_or(n_ctx, |w| n_ctx.min(w + batch))
    }

    /// The window of layer `il`: how many past positions (itself included) a query may attend to.
    pub fn window_of(&self, il: usize) -> Option<usize> {
        if self.layer_is_swa[il] {
            self.sliding_window
        } else {
            None
        }
    }
}

fn vocab_size(file: &GgufFile, arch: Arch) -> Result<usize> {
    if let Ok(n) = file.get_u32(&format!("{}.vocab_size", arch.name())) {
        return Ok(n as usize);
    }
    if let Some(t) = file.tensor("token_embd.weight") {
        if t.dims.len() == 2 {
            return Ok(t.dims[1] as usize);
        }
    }
    Ok(file.get_array("tokenizer.ggml.tokens")?.len())
}

fn rope_freq_scale(file: &GgufFile, arch: Arch) -> Result<f32> {
    let key = |k: &str| format!("{}.rope.scaling.{k}", arch.name());
    let kind = file.get_str(&key("type")).unwrap_or("none");
    match kind {
        "none" => Ok(1.0),
        "linear" => {
            let factor = file.get_f32(&key("factor")).unwrap_or(1.0);
            if factor <= 0.0 {
                return Err(Error::Invalid(format!("rope scaling factor {factor} is not positive")));
            }
            Ok(1.0 / factor)
        }
        other => Err(Error::Invalid(format!("rope scaling type `{other}` is not supported (none and linear are)"))),
    }
}
