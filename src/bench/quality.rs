//! Quality on a text, against the F32 reference: perplexity (llama-perplexity's chunking, see
//! [`crate::eval::score_chunks`]), mean KL divergence of the next-token distribution, and top-1
//! agreement.
//!
//! # Method
//! The reference model runs first. At every scored position its full log-softmax row (n_vocab
//! values, computed in f64, stored as f32) is appended to a file in the work directory, with its
//! top-1 token kept in memory. Each quantized model then runs the same chunks in the same order;
//! at each position its own log-softmax is computed in f64 over the whole vocabulary and compared
//! with the stored row: `KL(P_ref ‖ Q) = Σ_v P_ref(v) (ln P_ref(v) − ln Q(v))` over every token
//! `v`, no truncation to a top-k. The reported KL is the mean over positions (also its 99th
//! percentile and maximum). Storing rows on disk keeps memory flat: the default model's 262,144-token
//! vocabulary costs 1 MiB per position on disk and two rows in memory.
//!
//! Everything is deterministic: the same file, text and settings give the same numbers.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::Progress;
use crate::error::{Error, Result};
use crate::eval::score_chunks;
use crate::model::gpu::GpuModel;
use crate::tokenizer::Tokenizer;

/// Quality numbers of one model on the text.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Quality {
    pub ppl: f64,
    /// Mean negative log-likelihood per scored token (natural log).
    pub nll: f64,
    /// Mean KL divergence from the reference's next-token distribution (nats).
    pub kl_mean: f64,
    pub kl_p99: f64,
    pub kl_max: f64,
    /// Fraction of positions where the model's most likely token is the reference's.
    pub top1_agreement: f64,
    /// Scored positions.
    pub positions: usize,
}

/// The reference's stored distributions (see the module docs).
pub struct Reference {
    path: PathBuf,
    n_vocab: usize,
    top1: Vec<u32>,
    /// The reference model's own numbers (KL 0, agreement 1).
    pub quality: Quality,
}

impl Reference {
    /// Scored positions.
    pub fn positions(&self) -> usize {
        self.top1.len()
    }
    /// Where the rows are stored.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        // The rows are scratch data of one run.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The text's tokens as the benchmark scores them: BOS first when the model wants one, cut to
/// `chunks` chunks of `n_ctx` (an error if the text is shorter).
pub fn text_tokens(tokenizer: &Tokenizer, text: &str, n_ctx: usize, chunks: usize) -> Result<Vec<u32>> {
    let mut tokens = tokenizer.encode(text, tokenizer.add_bos(), false)?;
    let want = n_ctx * chunks;
    if tokens.len() < want {
        return Err(Error::Invalid(format!(
            "the text has {} tokens, fewer than {chunks} chunks of {n_ctx}: give a longer text or fewer chunks",
            tokens.len()
        )));
    }
    tokens.truncate(want);
    Ok(tokens)
}

/// Positions [`score_chunks`] visits for `n_tokens` tokens in chunks of `n_ctx`.
pub fn scored_positions(n_tokens: usize, n_ctx: usize) -> usize {
    (n_tokens / n_ctx) * (n_ctx - n_ctx / 2 - 1)
}

/// `out = log_softmax(logits)` in f64.
fn log_softmax(logits: &[f32], out: &mut Vec<f64>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let shift = max + sum.ln();
    out.clear();
    out.extend(logits.iter().map(|&l| l as f64 - shift));
}

/// Index of the largest value (the first on ties).
fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Run the reference model over `tokens`, store its distributions at `path` and return them with
/// its perplexity.
pub fn record_reference(
    model: &GpuModel,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    path: &Path,
    progress: &mut dyn Progress,
) -> Result<Reference> {
    let n_vocab = model.config.n_vocab;
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let (mut nll, mut top1, mut row, mut row32) = (0.0, Vec::new(), Vec::new(), Vec::with_capacity(n_vocab));
    let mut io_error = None;
    progress.start("reference", scored_positions(tokens.len(), n_ctx) as u64);
    score_chunks(model, tokens, n_ctx, bos, |_, _, next, logits| {
        log_softmax(logits, &mut row);
        nll -= row[next as usize];
        top1.push(argmax(logits));
        row32.clear();
        row32.extend(row.iter().map(|&x| x as f32));
        if io_error.is_none() {
            io_error = out.write_all(bytemuck::cast_slice(&row32)).err();
        }
        progress.set(top1.len() as u64);
    })?;
    progress.finish();
    if let Some(e) = io_error.or_else(|| out.flush().err()) {
        return Err(Error::io(path, e));
    }
    let positions = top1.len();
    let nll = nll / positions as f64;
    let quality =
        Quality { ppl: nll.exp(), nll, kl_mean: 0.0, kl_p99: 0.0, kl_max: 0.0, top1_agreement: 1.0, positions };
    Ok(Reference { path: path.to_path_buf(), n_vocab, top1, quality })
}

/// Run `model` over the same tokens as the reference and compare (see the module docs).
pub fn compare(
    model: &GpuModel,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    reference: &Reference,
    progress: &mut dyn Progress,
) -> Result<Quality> {
    if model.config.n_vocab != reference.n_vocab {
        return Err(Error::Invalid(format!(
            "vocabulary of {} tokens, the reference has {}",
            model.config.n_vocab, reference.n_vocab
        )));
    }
    let path = &reference.path;
    let mut input = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| Error::io(path, e))?);
    let mut ref_row = vec![0f32; reference.n_vocab];
    let (mut row, mut kls, mut nll, mut agree) = (Vec::new(), Vec::new(), 0.0, 0usize);
    let mut io_error = None;
    progress.start("quality", reference.positions() as u64);
    score_chunks(model, tokens, n_ctx, bos, |_, _, next, logits| {
        let i = kls.len();
        if io_error.is_none() {
            io_error = input.read_exact(bytemuck::cast_slice_mut(&mut ref_row)).err();
        }
        log_softmax(logits, &mut row);
        nll -= row[next as usize];
        kls.push(kl_divergence(&ref_row, &row));
        agree += (reference.top1.get(i) == Some(&argmax(logits))) as usize;
        progress.set(kls.len() as u64);
    })?;
    progress.finish();
    if let Some(e) = io_error {
        return Err(Error::io(path, e));
    }
    if kls.len() != reference.positions() {
        return Err(Error::Invalid(format!(
            "{} positions scored, the reference has {}",
            kls.len(),
            reference.positions()
        )));
    }
    Ok(summarize(nll, kls, agree))
}

/// `KL(P ‖ Q)` from log-probabilities over the same support.
fn kl_divergence(log_p: &[f32], log_q: &[f64]) -> f64 {
    log_p.iter().zip(log_q).map(|(&lp, &lq)| (lp as f64).exp() * (lp as f64 - lq)).sum::<f64>().max(0.0)
}

fn summarize(nll: f64, mut kls: Vec<f64>, agree: usize) -> Quality {
    let n = kls.len();
    let kl_mean = kls.iter().sum::<f64>() / n as f64;
    kls.sort_by(f64::total_cmp);
    // Nearest-rank percentile.
    let p99 = kls[((0.99 * n as f64).ceil() as usize).clamp(1, n) - 1];
    Quality {
        ppl: (nll / n as f64).exp(),
        nll: nll / n as f64,
        kl_mean,
        kl_p99: p99,
        kl_max: kls[n - 1],
        top1_agreement: agree as f64 / n as f64,
        positions: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_is_zero_for_equal_and_positive_otherwise() {
        let mut a = Vec::new();
        log_softmax(&[1.0, 2.0, 3.0], &mut a);
        let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
        assert!(kl_divergence(&a32, &a) < 1e-7);
        let mut b = Vec::new();
        log_softmax(&[3.0, 2.0, 1.0], &mut b);
        // KL between softmax([1,2,3]) and its reverse, computed by hand.
        let p: Vec<f64> = a.iter().map(|x| x.exp()).collect();
        let expected: f64 = (0..3).map(|i| p[i] * (a[i] - b[i])).sum();
        assert!((kl_divergence(&a32, &b) - expected).abs() < 1e-6);
        assert!(expected > 0.5);
    }

    #[test]
    fn summary_percentiles() {
        let q = summarize(0.0, (1..=100).map(|i| i as f64).collect(), 50);
        assert_eq!((q.kl_p99, q.kl_max, q.top1_agreement), (99.0, 100.0, 0.5));
        assert_eq!(scored_positions(512, 256), 2 * 127);
    }
}
