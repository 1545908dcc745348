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
    /// Llama 3.1's per-dimension rope frequency factors.
    pub rope_freqs: Option<T>,
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
        let mut req = |n: String| load(file.require_tensor(&n)?);
        let (attn_norm, wq, wk, wv, wo) = (
            req(name(il, "attn_norm"))?,
            req(name(il, "attn_q"))?,
            req(name(il, "attn_k"))?,
            req(name(il, "attn_v"))?,
            req(name(il, "attn_output"))?,
        );
        let (ffn_norm, ffn_gate, ffn_up, ffn_down) = (
            req(name(il, "ffn_norm"))?,
            req(name(il, "ffn_gate"))?,
            req(name(il, "ffn_up"))?,
            req(name(il, "ffn_down"))?,
        );
        let gemma = config.arch == Arch::Gemma3;
        let qwen = config.arch == Arch::Qwen2;
        let mut opt = |n: String, required: bool| -> Result<Option<T>> {
            match file.tensor(&n) {
                Some(info) => load(info).map(Some),
                None if required => Err(Error::MissingTensor(n)),
                None => Ok(None),
            }
        };
        Ok(LayerWeights {
            bq: opt(bias(il, "attn_q"), qwen)?,
            bk: opt(bias(il, "attn_k"), qwen)?,
            bv: opt(bias(il, "attn_v"), qwen)?,
            q_norm: opt(name(il, "attn_q_norm"), gemma)?,
            k_norm: opt(name(il, "attn_k_norm"), gemma)?,
            post_attn_norm: opt(name(il, "post_attention_norm"), gemma)?,
            post_ffn_norm: opt(name(il, "post_ffw_norm"), gemma)?,
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
        Ok(GlobalWeights {
            token_embd: load(file.require_tensor("token_embd.weight")?)?,
            output_norm: load(file.require_tensor("output_norm.weight")?)?,
            output: file.tensor("output.weight").map(&mut load).transpose()?,
            rope_freqs: file.tensor("rope_freqs.weight").map(&mut load).transpose()?,
        })
    }
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
