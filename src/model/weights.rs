//! Which tensors a model has, by GGUF name, generic over where they live (a tensor index entry for
//! the CPU path, an uploaded buffer for the GPU path), so that one table of names serves both.

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, TensorInfo};
use crate::model::config::{Arch, Config};

/// One transformer block's tensors.
#[derive(Debug)]
pub struct LayerWeights<T> {
    pub attn_norm: T,
    pub wq: T,
    pub wk: T,
    pub wv: T,
    pub wo: T,
    /// Qwen2's q/k/v biases.
    pub bq: Option<T>,
    pub bk: Option<T>,
    pub bv: Option<T>,
    /// Gemma 3's per-head RMSNorm of q and k.
    pub q_norm: Option<T>,
    pub k_norm: Option<T>,
    /// Gemma 3's norm of the attention output, before the residual.
    pub post_attn_norm: Option<T>,
    pub ffn_norm: T,
    pub ffn_gate: T,
    pub ffn_up: T,
    pub ffn_down: T,
    /// Gemma 3's norm of the FFN output, before the residual.
    pub post_ffn_norm: Option<T>,
}

/// Tensors outside the blocks.
#[derive(Debug)]
pub struct GlobalWeights<T> {
    pub token_embd: T,
    pub output_norm: T,
    /// `None` when the output head is tied to `token_embd`.
    pub output: Option<T>,
    pub rope: RopeFactors<T>,
}

/// Per-pair rope frequency divisors, where the model has them.
#[derive(Debug)]
pub struct RopeFactors<T> {
    /// Llama 3.1's `rope_freqs`.
    pub freqs: Option<T>,
    /// Phi-3's LongRoPE divisors for contexts longer than the original training context, and
    /// for the others.
    pub long: Option<T>,
    pub short: Option<T>,
}

impl<T> Default for RopeFactors<T> {
    fn default() -> Self {
        RopeFactors { freqs: None, long: None, short: None }
    }
}

impl<T> RopeFactors<T> {
    /// The divisors for a context of `n_ctx` tokens, as llama.cpp picks them: `rope_freqs`, else
    /// Phi-3's long factors past the original training context and its short ones within it.
    pub fn pick(&self, config: &Config, n_ctx: usize) -> Option<&T> {
        let long_short = if n_ctx > config.n_ctx_orig { &self.long } else { &self.short };
        self.freqs.as_ref().or(long_short.as_ref())
    }

    /// The same factors through `f` (an upload).
    pub fn try_map<U>(&self, mut f: impl FnMut(&T) -> Result<U>) -> Result<RopeFactors<U>> {
        Ok(RopeFactors {
            freqs: self.freqs.as_ref().map(&mut f).transpose()?,
            long: self.long.as_ref().map(&mut f).transpose()?,
            short: self.short.as_ref().map(&mut f).transpose()?,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        [&self.freqs, &self.long, &self.short].into_iter().flatten()
    }
}

fn name(il: usize, t: &str) -> String {
    format!("blk.{il}.{t}.weight")
}

fn bias(il: usize, t: &str) -> String {
    format!("blk.{il}.{t}.bias")
}

impl<T> LayerWeights<T> {
    /// Load layer `il`'s tensors with `load`; a tensor the architecture requires but the file lacks
    /// is an error naming it.
    pub fn load(
        file: &GgufFile,
        config: &Config,
        il: usize,
        mut load: impl FnMut(&TensorInfo) -> Result<T>,
    ) -> Result<Self> {
        let c = config;
        let (q, kv, kv_v) = (c.q_dim(), c.kv_dim(), c.kv_dim_v());
        // Phi-3 fuses q, k and v into `attn_qkv` and the FFN's gate and up into `ffn_up` (gate
        // rows first, as llama.cpp's SwiGLU splits it): their parts are row ranges of one tensor.
        let (wq, wk, wv) = match file.tensor(&name(il, "attn_qkv")) {
            Some(fused) => {
                let [wq, wk, wv] = split_rows(fused, [("q", q), ("k", kv), ("v", kv_v)])?;
                (wq, wk, wv)
            }
            None => (
                file.require_tensor(&name(il, "attn_q"))?.clone(),
                file.require_tensor(&name(il, "attn_k"))?.clone(),
                file.require_tensor(&name(il, "attn_v"))?.clone(),
            ),
        };
        let (ffn_gate, ffn_up) = match file.tensor(&name(il, "ffn_gate")) {
            Some(gate) => (gate.clone(), file.require_tensor(&name(il, "ffn_up"))?.clone()),
            None if c.arch == Arch::Phi3 => {
                let [gate, up] =
                    split_rows(file.require_tensor(&name(il, "ffn_up"))?, [("gate", c.n_ff), ("up", c.n_ff)])?;
                (gate, up)
            }
            None => return Err(Error::MissingTensor(name(il, "ffn_gate"))),
        };
        let mut req = |n: String| load(file.require_tensor(&n)?);
        let (attn_norm, wo, ffn_norm, ffn_down) = (
            req(name(il, "attn_norm"))?,
            req(name(il, "attn_output"))?,
            req(name(il, "ffn_norm"))?,
            req(name(il, "ffn_down"))?,
        );
        let (wq, wk, wv, ffn_gate, ffn_up) = (load(&wq)?, load(&wk)?, load(&wv)?, load(&ffn_gate)?, load(&ffn_up)?);
        let biases = c.arch == Arch::Qwen2;
        let qk_norms = matches!(c.arch, Arch::Gemma3 | Arch::Qwen3);
        let post_norms = matches!(c.arch, Arch::Gemma3 | Arch::Gemma2);
        let mut opt = |n: String, required: bool| -> Result<Option<T>> {
            match file.tensor(&n) {
                Some(info) => load(info).map(Some),
                None if required => Err(Error::MissingTensor(n)),
                None => Ok(None),
            }
        };
        Ok(LayerWeights {
            bq: opt(bias(il, "attn_q"), biases)?,
            bk: opt(bias(il, "attn_k"), biases)?,
            bv: opt(bias(il, "attn_v"), biases)?,
            q_norm: opt(name(il, "attn_q_norm"), qk_norms)?,
            k_norm: opt(name(il, "attn_k_norm"), qk_norms)?,
            post_attn_norm: opt(name(il, "post_attention_norm"), post_norms)?,
            post_ffn_norm: opt(name(il, "post_ffw_norm"), post_norms)?,
            attn_norm,
            wq,
            wk,
            wv,
            wo,
            ffn_norm,
            ffn_gate,
            ffn_up,
            ffn_down,
        })
    }

    /// Every tensor of the layer, for accounting.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        let required = [
            &self.attn_norm,
            &self.wq,
            &self.wk,
            &self.wv,
            &self.wo,
            &self.ffn_norm,
            &self.ffn_gate,
            &self.ffn_up,
            &self.ffn_down,
        ];
        let optional =
            [&self.bq, &self.bk, &self.bv, &self.q_norm, &self.k_norm, &self.post_attn_norm, &self.post_ffn_norm];
        required.into_iter().chain(optional.into_iter().flatten())
    }
}

impl<T> GlobalWeights<T> {
    pub fn load(file: &GgufFile, mut load: impl FnMut(&TensorInfo) -> Result<T>) -> Result<Self> {
        let mut opt = |n: &str| file.tensor(&format!("{n}.weight")).map(&mut load).transpose();
        Ok(GlobalWeights {
            output: opt("output")?,
            rope: RopeFactors {
                freqs: opt("rope_freqs")?,
                long: opt("rope_factors_long")?,
                short: opt("rope_factors_short")?,
            },
            token_embd: load(file.require_tensor("token_embd.weight")?)?,
            output_norm: load(file.require_tensor("output_norm.weight")?)?,
        })
    }

    /// The output head's matrix: `output`, or the token embedding where the model ties them.
    pub fn head(&self) -> &T {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}

/// Rows `[start, start + rows)` of a fused tensor as a tensor of their own, for each `(part,
/// rows)` in order; the parts must cover the tensor exactly.
fn split_rows<const N: usize>(fused: &TensorInfo, parts: [(&str, usize); N]) -> Result<[TensorInfo; N]> {
    let total: usize = parts.iter().map(|p| p.1).sum();
    if fused.dims.len() != 2 || fused.n_rows() != total {
        return Err(Error::Shape(format!(
            "fused tensor `{}` has shape {:?}, expected {total} rows ({parts:?})",
            fused.name, fused.dims
        )));
    }
    let row_bytes = fused.row_bytes() as u64;
    let mut start = 0u64;
    Ok(parts.map(|(part, rows)| {
        let t = TensorInfo {
            name: format!("{}[{part}]", fused.name),
            ty: fused.ty,
            dims: vec![fused.dims[0], rows as u64],
            offset: fused.offset + start * row_bytes,
            n_bytes: rows as u64 * row_bytes,
        };
        start += rows as u64;
        t
    }))
}

/// Check that a weight matrix has the shape the config says: `rows` rows of `row_len`.
pub fn check_matrix(info: &TensorInfo, row_len: usize, rows: usize) -> Result<()> {
    if info.dims.len() != 2 || info.dims[0] != row_len as u64 || info.dims[1] != rows as u64 {
        return Err(Error::Shape(format!(
            "tensor `{}` has shape {:?}, expected [{row_len}, {rows}]",
            info.name, info.dims
        )));
    }
    Ok(())
}
