//! Choosing the next token from the logits, in the order of llama.cpp's default sampler chain:
//! repetition penalty → top-k → top-p → min-p → temperature → draw. Temperature 0 is greedy argmax
//! (after the penalty, as in llama.cpp).
//!
//! Built for large vocabularies (Gemma's 262144 logits): top-k keeps a k-sized heap over one pass,
//! top-p sorts only as long a prefix as it needs, and min-p is a threshold on the logit, so no step
//! sorts the whole vocabulary unless every filter is off.
//!
//! ```
//! use wgquant::sampler::{Sampler, SamplerParams};
//! let mut greedy = Sampler::new(SamplerParams { temperature: 0.0, ..SamplerParams::default() });
//! assert_eq!(greedy.sample(&[0.1, 2.0, -1.0], &[]), 1);
//! ```

use crate::rng::SplitMix64;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// The largest top-k a sampler leaves to the device ([`crate::ops::top_k`]); larger ones (and 0,
/// every token) read the logits back.
pub const MAX_DEVICE_TOP_K: usize = crate::ops::top_k::MAX_K;

/// One token's penalty as the device applies it to row `row` of the logits
/// (`shaders/penalize.wgsl`): `logit - subtract`, then divided by `divide` when positive and
/// multiplied by it otherwise. The host samplers apply theirs in this order, so both give the same
/// floats.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct TokenPenalty {
    pub row: u32,
    pub id: u32,
    pub subtract: f32,
    pub divide: f32,
}

/// Sampling settings. The defaults are llama.cpp's, except the seed, which is fixed so that runs
/// repeat unless the caller picks one.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerParams {
    /// Logits are divided by this before drawing; 0 (or less) picks the most likely token.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; 0 keeps all.
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens by this; 1 is off.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens the penalty looks at; 0 is off.
    pub repeat_last_n: usize,
    /// Seed of the random number generator: the same seed, logits and history give the same tokens.
    pub seed: u64,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x5EED,
        }
    }
}

impl SamplerParams {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        SamplerParams { temperature: 0.0, ..Self::default() }
    }

    /// Whether these parameters pick the most likely token of the unmodified logits (temperature
    /// 0 and no repetition penalty): a choice the GPU can make itself, so the logits need not be
    /// read back (see [`crate::model::gpu::GpuModel::forward_greedy`]).
    pub fn is_plain_greedy(&self) -> bool {
        let greedy = self.temperature.is_nan() || self.temperature <= 0.0;
        greedy && (self.repeat_penalty == 1.0 || self.repeat_last_n == 0)
    }
}

/// A token id with its (possibly adjusted) logit.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    id: u32,
    logit: f32,
}

impl Candidate {
    /// Descending logit, then ascending id: a total order that makes every step reproducible.
    fn rank_cmp(&self, other: &Self) -> Ordering {
        other.logit.total_cmp(&self.logit).then_with(|| self.id.cmp(&other.id))
    }
}

/// Heap key for top-k: "greater" means more likely (higher logit, then lower id).
#[derive(Clone, Copy, Debug)]
struct Likelier(Candidate);

impl PartialEq for Likelier {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Likelier {}
impl PartialOrd for Likelier {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Likelier {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.rank_cmp(&self.0)
    }
}

/// Picks tokens from logits with [`SamplerParams`]. Keeps its random state between calls, and its
/// buffers, so sampling allocates nothing after the first call.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplerParams,
    rng: SplitMix64,
    /// The logits after the repetition penalty.
    adjusted: Vec<f32>,
    candidates: Vec<Candidate>,
    /// The distinct recent tokens the penalty applies to.
    recent: Vec<u32>,
}

impl Sampler {
    /// A sampler whose random state starts from `params.seed`.
    pub fn new(params: SamplerParams) -> Sampler {
        let rng = SplitMix64(params.seed);
        Sampler { params, rng, adjusted: Vec::new(), candidates: Vec::new(), recent: Vec::new() }
    }

    /// The settings this sampler was made with.
    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// The next token given the logits over the vocabulary and the tokens seen so far (prompt and
    /// output; only the last `repeat_last_n` matter). NaN logits count as impossible; if every logit
    /// is impossible, or `logits` is empty, the answer is token 0.
    pub fn sample(&mut self, logits: &[f32], recent_tokens: &[u32]) -> u32 {
        if logits.is_empty() {
            return 0;
        }
        self.apply_penalty(logits, recent_tokens);
        let t = self.params.temperature;
        if t.is_nan() || t <= 0.0 {
            return argmax(&self.adjusted);
        }
        self.top_k();
        // top_k() leaves its candidates sorted, unless it kept them all.
        self.top_p(self.params.top_k > 0 && self.params.top_k < self.adjusted.len());
        self.min_p();
        self.draw()
    }

    /// How many of the likeliest tokens the device must hand back for [`Sampler::sample_top`] to
    /// pick what [`Sampler::sample`] picks over `n_vocab` logits: 1 when greedy, top-k when it is
    /// on, below the vocabulary and at most [`MAX_DEVICE_TOP_K`]; `None` when the sampler needs
    /// every logit, or more penalties than the device holds.
    pub fn device_k(&self, n_vocab: usize) -> Option<usize> {
        let p = &self.params;
        if self.has_penalty() && p.repeat_last_n > crate::ops::top_k::MAX_PENALTIES {
            return None;
        }
        if p.temperature.is_nan() || p.temperature <= 0.0 {
            return Some(1);
        }
        (p.top_k > 0 && p.top_k < n_vocab && p.top_k <= MAX_DEVICE_TOP_K).then_some(p.top_k)
    }

    /// The repetition penalty for the last `repeat_last_n` of `recent` as device entries of row
    /// `row`, appended to `out`: one per distinct token, as [`Sampler::sample`] applies it.
    pub fn penalties(&mut self, recent: &[u32], row: u32, out: &mut Vec<TokenPenalty>) {
        if !self.has_penalty() {
            return;
        }
        self.distinct_recent(recent);
        let divide = self.params.repeat_penalty;
        out.extend(self.recent.iter().map(|&id| TokenPenalty { row, id, subtract: 0.0, divide }));
    }

    /// The next token from the likeliest tokens, penalties applied, best first (as
    /// [`likeliest`] orders them), at least [`Sampler::device_k`] of them: the same token
    /// [`Sampler::sample`] picks from all the logits, and the same random state after.
    pub fn sample_top(&mut self, top: &[(u32, f32)]) -> u32 {
        let Some(&(first, _)) = top.first() else { return 0 };
        let t = self.params.temperature;
        if t.is_nan() || t <= 0.0 {
            return first;
        }
        let k = self.params.top_k.min(top.len());
        self.candidates.clear();
        self.candidates.extend(top[..k].iter().map(|&(id, logit)| Candidate { id, logit }));
        self.top_p(true);
        self.min_p();
        self.draw()
    }

    fn has_penalty(&self) -> bool {
        let penalty = self.params.repeat_penalty;
        !(penalty.is_nan() || penalty <= 0.0 || penalty == 1.0 || self.params.repeat_last_n == 0)
    }

    /// Leaves the distinct tokens of the last `repeat_last_n` of `recent` in `self.recent`.
    fn distinct_recent(&mut self, recent: &[u32]) {
        let window = &recent[recent.len().saturating_sub(self.params.repeat_last_n)..];
        self.recent.clear();
        self.recent.extend_from_slice(window);
        self.recent.sort_unstable();
        self.recent.dedup();
    }

    /// Copies the logits (NaN → −∞) and penalises each distinct recent token once, like llama.cpp's
    /// penalties sampler with only the repeat penalty set.
    fn apply_penalty(&mut self, logits: &[f32], recent: &[u32]) {
        self.adjusted.clear();
        self.adjusted.extend(logits.iter().map(|&l| if l.is_nan() { f32::NEG_INFINITY } else { l }));
        if !self.has_penalty() {
            return;
        }
        let penalty = self.params.repeat_penalty;
        self.distinct_recent(recent);
        for &id in &self.recent {
            if let Some(l) = self.adjusted.get_mut(id as usize) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }

    /// Leaves the k likeliest candidates, sorted, or all of them unsorted when top-k is off.
    fn top_k(&mut self) {
        let n = self.adjusted.len();
        let k = self.params.top_k;
        self.candidates.clear();
        if k == 0 || k >= n {
            let all = self.adjusted.iter().enumerate().map(|(id, &logit)| Candidate { id: id as u32, logit });
            self.candidates.extend(all);
            return;
        }
        likeliest_into(&self.adjusted, k, &mut self.candidates);
    }

    /// Keeps the shortest likeliest prefix whose probability (softmax over the current candidates)
    /// reaches top_p.
    ///
    /// When unsorted, only the tokens min-p would keep anyway are sorted: both filters keep a prefix
    /// of the sorted list and min-p's threshold does not depend on what top-p removed, so the result
    /// is the shorter of the two prefixes either way.
    fn top_p(&mut self, sorted: bool) {
        let p = self.params.top_p;
        let max = max_logit(&self.candidates);
        if p.is_nan() || p >= 1.0 || max == f32::NEG_INFINITY {
            return;
        }
        let total: f64 = self.candidates.iter().map(|c| ((c.logit - max) as f64).exp()).sum();
        if !sorted {
            if let Some(threshold) = self.min_p_threshold(max) {
                self.candidates.retain(|c| c.logit >= threshold);
            }
        }
        let mut prefix = if sorted { self.candidates.len() } else { 256 };
        loop {
            prefix = prefix.min(self.candidates.len());
            if !sorted {
                sort_prefix(&mut self.candidates, prefix);
            }
            let mut cum = 0.0;
            for i in 0..prefix {
                cum += ((self.candidates[i].logit - max) as f64).exp() / total;
                if cum >= p as f64 {
                    self.candidates.truncate(i + 1);
                    return;
                }
            }
            if prefix == self.candidates.len() {
                return;
            }
            prefix *= 4;
        }
    }

    /// Drops candidates below the min-p threshold.
    fn min_p(&mut self) {
        let max = max_logit(&self.candidates);
        if let Some(threshold) = self.min_p_threshold(max) {
            self.candidates.retain(|c| c.logit >= threshold);
        }
    }

    /// p_i ≥ min_p · p_max is logit_i ≥ max + ln(min_p): no softmax needed. The threshold never
    /// exceeds `max` (min_p above 1 keeps the likeliest token), so a candidate always survives.
    fn min_p_threshold(&self, max: f32) -> Option<f32> {
        let m = self.params.min_p;
        (m > 0.0 && max > f32::NEG_INFINITY).then(|| max + m.ln().min(0.0))
    }

    /// Applies the temperature and draws from the softmax of the remaining candidates.
    fn draw(&mut self) -> u32 {
        let t = self.params.temperature;
        let max = max_logit(&self.candidates);
        let Some(first) = self.candidates.iter().find(|c| c.logit == max) else { return 0 };
        if max == f32::NEG_INFINITY {
            return first.id;
        }
        let weight = |c: &Candidate| (((c.logit - max) / t) as f64).exp();
        let total: f64 = self.candidates.iter().map(weight).sum();
        let mut target = self.rng.next_f64() * total;
        for c in &self.candidates {
            let w = weight(c);
            if target < w {
                return c.id;
            }
            target -= w;
        }
        // Rounding left the target past the last weight: it belongs to the last positive one.
        self.candidates.iter().rev().find(|c| weight(c) > 0.0).map_or(first.id, |c| c.id)
    }
}

/// Applies device penalty entries to `[rows][n_vocab]` logits on the host, as
/// `shaders/penalize.wgsl` does (entries out of range are ignored).
pub fn apply_penalties(logits: &mut [f32], n_vocab: usize, penalties: &[TokenPenalty]) {
    for t in penalties {
        if let Some(l) = logits.get_mut(t.row as usize * n_vocab + t.id as usize) {
            let v = *l - t.subtract;
            *l = if v > 0.0 { v / t.divide } else { v * t.divide };
        }
    }
}

/// The `k` likeliest tokens of `logits` (NaN as −∞) as `(id, logit)`, best first, equal logits
/// by ascending id: what the device's top-k ([`crate::ops::top_k`]) hands back.
pub fn likeliest(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let clean: Vec<f32> = logits.iter().map(|&l| if l.is_nan() { f32::NEG_INFINITY } else { l }).collect();
    let mut out = Vec::with_capacity(k.min(logits.len()));
    likeliest_into(&clean, k, &mut out);
    out.into_iter().map(|c| (c.id, c.logit)).collect()
}

/// Appends the `k` likeliest of `logits` to `out`, sorted.
fn likeliest_into(logits: &[f32], k: usize, out: &mut Vec<Candidate>) {
    if k == 0 {
        return;
    }
    // A min-heap of the best k so far; most logits lose against its minimum and cost one compare.
    let mut heap: BinaryHeap<Reverse<Likelier>> = BinaryHeap::with_capacity(k + 1);
    for (id, &logit) in logits.iter().enumerate() {
        let c = Likelier(Candidate { id: id as u32, logit });
        if heap.len() < k {
            heap.push(Reverse(c));
        } else if heap.peek().is_some_and(|min| c > min.0) {
            heap.pop();
            heap.push(Reverse(c));
        }
    }
    let start = out.len();
    out.extend(heap.into_iter().map(|Reverse(Likelier(c))| c));
    out[start..].sort_unstable_by(Candidate::rank_cmp);
}

/// Index of the largest logit, the lowest index on ties; NaN counts as −∞ (so it never wins, and
/// with nothing else the answer is 0). `shaders/argmax.wgsl` picks the same on the GPU.
pub(crate) fn argmax(logits: &[f32]) -> u32 {
    let rank = |l: f32| if l.is_nan() { f32::NEG_INFINITY } else { l };
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if rank(l) > rank(logits[best]) {
            best = i;
        }
    }
    best as u32
}

fn max_logit(candidates: &[Candidate]) -> f32 {
    candidates.iter().map(|c| c.logit).fold(f32::NEG_INFINITY, f32::max)
}

/// Puts the `k` likeliest candidates first, in order (the rest in any order).
fn sort_prefix(candidates: &mut [Candidate], k: usize) {
    if k == 0 {
        return;
    }
    if k < candidates.len() {
        candidates.select_nth_unstable_by(k - 1, Candidate::rank_cmp);
    }
    candidates[..k].sort_unstable_by(Candidate::rank_cmp);
}
