//! Model quality on a text: perplexity the way llama.cpp's llama-perplexity measures it, and the
//! per-position log-probabilities that KL divergence between two models is built from.

use crate::error::{Error, Result};
use crate::model::cpu::Logits;
use crate::model::gpu::{GpuModel, GpuState};

/// Rows of logits read back per forward pass while scoring (bounds memory: rows × n_vocab floats).
const LOGITS_ROWS: usize = 32;

/// The result of [`perplexity`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Perplexity {
    pub ppl: f64,
    /// Mean negative log-likelihood per scored token (natural log).
    pub nll: f64,
    pub scored_tokens: usize,
    pub chunks: usize,
    /// Running estimate after each chunk, as llama-perplexity prints it.
    pub per_chunk: Vec<f64>,
}

/// Split `tokens` into chunks of `n_ctx`, run each from an empty cache with its first token
/// replaced by `bos` (when given), and call `visit(chunk, j, next_token, logits)` for every
/// scored position: the second half of each chunk, where `logits` predict `next_token`.
pub fn score_chunks(
    model: &GpuModel,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    mut visit: impl FnMut(usize, usize, u32, &[f32]),
) -> Result<usize> {
    if n_ctx < 4 {
        return Err(Error::Invalid(format!("context {n_ctx} is too small to score")));
    }
    let n_chunks = tokens.len() / n_ctx;
    if n_chunks == 0 {
        return Err(Error::Invalid(format!("the text has {} tokens, fewer than one chunk of {n_ctx}", tokens.len())));
    }
    let n_vocab = model.config.n_vocab;
    let first = n_ctx / 2;
    let mut state = GpuState::new(model, n_ctx, LOGITS_ROWS, LOGITS_ROWS, crate::model::KvType::F16)?;
    for chunk in 0..n_chunks {
        let mut input = tokens[chunk * n_ctx..(chunk + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            input[0] = b;
        }
        // The first half only fills the cache; its logits are not needed.
        model.forward(&mut state, &input[..first], 0, Logits::Last)?;
        let logits = model.forward(&mut state, &input[first..], first, Logits::All)?;
        for j in first..n_ctx - 1 {
            let row = &logits[(j - first) * n_vocab..(j - first + 1) * n_vocab];
            visit(chunk, j, input[j + 1], row);
        }
    }
    Ok(n_chunks)
}

/// Log-softmax of `logits` at `index`, computed stably in f64.
pub fn log_prob(logits: &[f32], index: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits[index] as f64 - max - sum.ln()
}

/// Perplexity over chunks of `n_ctx` tokens, scoring the second half of each (llama-perplexity's
/// method, so the numbers are comparable).
pub fn perplexity(model: &GpuModel, tokens: &[u32], n_ctx: usize, bos: Option<u32>) -> Result<Perplexity> {
    let (mut nll, mut count) = (0.0f64, 0usize);
    let mut per_chunk = Vec::new();
    let mut current = 0;
    let chunks = score_chunks(model, tokens, n_ctx, bos, |chunk, _, next, logits| {
        if chunk != current {
            per_chunk.push((nll / count as f64).exp());
            current = chunk;
        }
        nll -= log_prob(logits, next as usize);
        count += 1;
    })?;
    per_chunk.push((nll / count as f64).exp());
    Ok(Perplexity { ppl: (nll / count as f64).exp(), nll: nll / count as f64, scored_tokens: count, chunks, per_chunk })
}

#[cfg(test)]
mod tests {
    use super::log_prob;

    #[test]
    fn log_prob_is_a_log_softmax() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f64 = l.iter().map(|&x| (x as f64).exp()).sum();
        assert!((log_prob(&l, 2) - (3.0f64.exp() / z).ln()).abs() < 1e-12);
        // Stable for large logits.
        assert!(log_prob(&[1000.0, 0.0], 0).abs() < 1e-12);
    }
}
