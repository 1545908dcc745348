//! The engine: one thread owns the model and its slots and runs continuous batching.
//!
//! Each of the `--parallel` slots holds one request's KV cache. A request waits in the queue until
//! a slot is free; its prompt is then fed in micro-batches, one per round, between decode steps,
//! so a long prompt does not stall the others. Every round, the slots that are decoding take one
//! step together ([`GpuModel::decode_batch`]: the weights are read once for all of them). A
//! request whose client went away (its event channel closed) leaves its slot at the next round.
//!
//! Where the device profile samples on the device, a round whose requests all can
//! ([`Sampler::device_k`], no log-probabilities asked) reads back each slot's likeliest tokens
//! after its penalties ([`GpuModel::decode_batch_top_k`]) instead of every slot's logits.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use wgquant::model::cpu::Logits;
use wgquant::model::gpu::{Activations, DecodeStep, KvCaches};
use wgquant::sampler::{Sampler, TokenPenalty};
use wgquant::{Model, Result, SamplerParams, StopText};

/// One request, tokenized and checked.
pub struct Job {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampler: SamplerParams,
    /// Ends generation without being shown (besides the vocabulary's end-of-generation tokens).
    pub stop_tokens: Vec<u32>,
    pub stop: Vec<String>,
    /// OpenAI's penalties on tokens already generated: `logit -= frequency · count + presence`.
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// Log-probabilities of each generated token and of this many alternatives.
    pub logprobs: Option<usize>,
    pub events: UnboundedSender<Event>,
}

/// What a request hears back, in order: tokens, then one `Done`.
#[derive(Debug)]
pub enum Event {
    Token { text: String, logprob: Option<TokenLogprob> },
    Done { finish: Finish, prompt_tokens: usize, completion_tokens: usize },
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// End of generation, an end-of-turn token or a stop string.
    Stop,
    /// `max_tokens`, or the context is full.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// A generated token's log-probability and the most likely alternatives'.
#[derive(Debug)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// Counters for `/metrics`, shared with the HTTP side.
#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub queued: AtomicU64,
    pub active: AtomicU64,
    /// Tokens per second of the last decode round, as f64 bits.
    pub decode_tps_bits: AtomicU64,
}

enum Phase {
    /// Feeding the prompt; `fed` tokens of it are in the cache.
    Prefill { fed: usize },
    /// `next` was sampled and is fed at the next decode round.
    Decode { next: u32 },
}

struct Active {
    job: Job,
    phase: Phase,
    sampler: Sampler,
    text: StopText,
    /// Tokens generated, in order.
    generated: Vec<u32>,
    /// How often each generated token occurs (the frequency and presence penalties).
    counts: HashMap<u32, u32>,
}

impl Active {
    /// The `k` likeliest tokens the device must select for this request's next token, if it can
    /// sample from those alone.
    fn device_k(&self, n_vocab: usize) -> Option<usize> {
        self.job.logprobs.is_none().then(|| self.sampler.device_k(n_vocab)).flatten()
    }

    /// This request's penalties as device entries of row `row`, appended to `out`: the repetition
    /// penalty of the recent generated tokens and the frequency and presence penalties of all of
    /// them, one entry per token, in the order `emit` applies them on the host.
    fn penalties(&mut self, row: u32, out: &mut Vec<TokenPenalty>) {
        let start = out.len();
        self.sampler.penalties(&self.generated, row, out);
        let (frequency, presence) = (self.job.frequency_penalty, self.job.presence_penalty);
        if frequency == 0.0 && presence == 0.0 {
            return;
        }
        let repeated = out.len();
        for (&id, &n) in &self.counts {
            let subtract = frequency * n as f32 + presence;
            // The sampler's entries are sorted by id.
            match out[start..repeated].binary_search_by_key(&id, |t| t.id) {
                Ok(i) => out[start + i].subtract = subtract,
                Err(_) => out.push(TokenPenalty { row, id, subtract, divide: 1.0 }),
            }
        }
    }
}

/// What a request's next token is sampled from.
enum Scores<'a> {
    /// Every logit, penalties not applied.
    Logits(&'a [f32]),
    /// The likeliest tokens after the penalties, best first, selected on the device.
    Top(&'a [(u32, f32)]),
}

struct Slot {
    caches: KvCaches,
    active: Option<Active>,
}

impl Slot {
    /// Tokens in the cache.
    fn pos(&self) -> usize {
        match &self.active {
            Some(a) => match a.phase {
                Phase::Prefill { fed } => fed,
                Phase::Decode { .. } => a.job.prompt.len() + a.generated.len() - 1,
            },
            None => 0,
        }
    }
}

pub struct Engine {
    model: Arc<Model>,
    acts: Activations,
    slots: Vec<Slot>,
    queue: VecDeque<Job>,
    jobs: Receiver<Job>,
    stats: Arc<Stats>,
}

impl Engine {
    pub fn new(model: Arc<Model>, jobs: Receiver<Job>, stats: Arc<Stats>) -> Result<Engine> {
        let (acts, caches) = model.slots()?;
        let slots = caches.into_iter().map(|caches| Slot { caches, active: None }).collect();
        Ok(Engine { model, acts, slots, queue: VecDeque::new(), jobs, stats })
    }

    /// Serves until every sender of jobs is gone.
    pub fn run(mut self) {
        loop {
            if !self.take_jobs() {
                return;
            }
            self.drop_abandoned();
            self.admit();
            // A failed forward pass (an error, or a bug's panic) fails the requests of that round;
            // the engine keeps serving the queue and new requests.
            let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.round()));
            let failure = match round {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("internal error in the forward pass".to_string()),
            };
            if let Some(message) = failure {
                for slot in &mut self.slots {
                    if let Some(a) = slot.active.take() {
                        let _ = a.job.events.send(Event::Failed(message.clone()));
                    }
                }
            }
            self.publish();
        }
    }

    /// Moves arrived jobs to the queue, waiting for one when there is nothing to do; false when
    /// the server is gone.
    fn take_jobs(&mut self) -> bool {
        let idle = self.queue.is_empty() && self.slots.iter().all(|s| s.active.is_none());
        if idle {
            match self.jobs.recv() {
                Ok(job) => self.queue.push_back(job),
                Err(_) => return false,
            }
        }
        loop {
            match self.jobs.try_recv() {
                Ok(job) => self.queue.push_back(job),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return !idle || !self.queue.is_empty(),
            }
        }
    }

    /// Frees the slots (and queue places) of requests whose clients went away.
    fn drop_abandoned(&mut self) {
        for slot in &mut self.slots {
            if slot.active.as_ref().is_some_and(|a| a.job.events.is_closed()) {
                slot.active = None;
            }
        }
        self.queue.retain(|job| !job.events.is_closed());
    }

    fn admit(&mut self) {
        for slot in self.slots.iter_mut().filter(|s| s.active.is_none()) {
            let Some(job) = self.queue.pop_front() else { break };
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            self.stats.prompt_tokens.fetch_add(job.prompt.len() as u64, Ordering::Relaxed);
            let sampler = Sampler::new(job.sampler.clone());
            let text = StopText::new(job.stop.clone());
            let phase = Phase::Prefill { fed: 0 };
            slot.active = Some(Active { job, phase, sampler, text, generated: Vec::new(), counts: HashMap::new() });
        }
    }

    /// One micro-batch of every prompt being fed, then one decode step of every slot decoding.
    fn round(&mut self) -> Result<()> {
        let model = Arc::clone(&self.model);
        let gpu = model.gpu_model();
        let batch = model.plan().batch;
        for slot in &mut self.slots {
            let Some(a) = &mut slot.active else { continue };
            let Phase::Prefill { fed } = a.phase else { continue };
            let end = (fed + batch).min(a.job.prompt.len());
            let logits =
                gpu.forward_in(&mut self.acts, &mut slot.caches, &a.job.prompt[fed..end], fed, Logits::Last)?;
            a.phase = Phase::Prefill { fed: end };
            if end == a.job.prompt.len() {
                let n_ctx = slot.caches.n_ctx;
                if !emit(&model, a, Scores::Logits(&logits), end, n_ctx) {
                    slot.active = None;
                }
            }
        }

        let started = Instant::now();
        let decoding: Vec<usize> = (0..self.slots.len())
            .filter(|&i| matches!(self.slots[i].active, Some(Active { phase: Phase::Decode { .. }, .. })))
            .collect();
        if decoding.is_empty() {
            return Ok(());
        }
        let n_vocab = model.config().n_vocab;
        let device_k = match model.gpu().profile().device_sampling {
            true => self.device_k(&decoding, n_vocab),
            false => None,
        };
        let penalties = if device_k.is_some() { self.penalties(&decoding) } else { Vec::new() };
        let mut steps: Vec<DecodeStep<'_>> = Vec::new();
        for slot in &mut self.slots {
            let pos = slot.pos();
            if let Some(Active { phase: Phase::Decode { next }, .. }) = &slot.active {
                steps.push(DecodeStep { token: *next, pos, caches: &mut slot.caches });
            }
        }
        let scores = match device_k {
            Some(k) => Batch::Top(gpu.decode_batch_top_k(&mut self.acts, &mut steps, k, &penalties)?),
            None => Batch::Logits(gpu.decode_batch(&mut self.acts, &mut steps)?),
        };
        drop(steps);
        let tps = decoding.len() as f64 / started.elapsed().as_secs_f64();
        self.stats.decode_tps_bits.store(tps.to_bits(), Ordering::Relaxed);
        for (row, &i) in decoding.iter().enumerate() {
            let slot = &mut self.slots[i];
            let pos = slot.pos() + 1;
            let n_ctx = slot.caches.n_ctx;
            let a = slot.active.as_mut().expect("a decoding slot is active");
            let scores = match &scores {
                Batch::Logits(logits) => Scores::Logits(&logits[row * n_vocab..(row + 1) * n_vocab]),
                Batch::Top(top) => Scores::Top(&top[row]),
            };
            if !emit(&model, a, scores, pos, n_ctx) {
                slot.active = None;
            }
        }
        Ok(())
    }

    /// The most candidates any of the `decoding` slots needs, when every one of them can sample
    /// from the device's selection and their penalties fit on the device.
    fn device_k(&self, decoding: &[usize], n_vocab: usize) -> Option<usize> {
        let active = || decoding.iter().filter_map(|&i| self.slots[i].active.as_ref());
        let penalties: usize = active().map(|a| a.counts.len() + a.job.sampler.repeat_last_n).sum();
        if penalties > decoding.len() * wgquant::ops::top_k::MAX_PENALTIES {
            return None;
        }
        active().map(|a| a.device_k(n_vocab)).try_fold(0, |k, slot_k| Some(k.max(slot_k?)))
    }

    /// The penalties of the `decoding` slots, row by row.
    fn penalties(&mut self, decoding: &[usize]) -> Vec<TokenPenalty> {
        let mut out = Vec::new();
        for (row, &i) in decoding.iter().enumerate() {
            if let Some(a) = self.slots[i].active.as_mut() {
                a.penalties(row as u32, &mut out);
            }
        }
        out
    }

    fn publish(&self) {
        let active = self.slots.iter().filter(|s| s.active.is_some()).count();
        self.stats.active.store(active as u64, Ordering::Relaxed);
        self.stats.queued.store(self.queue.len() as u64, Ordering::Relaxed);
    }
}

/// What a decode round hands back for its slots.
enum Batch {
    Logits(Vec<f32>),
    Top(Vec<Vec<(u32, f32)>>),
}

/// Samples the next token of `a` from `scores` (the cache holds `pos` tokens) and sends it; false
/// when the request is finished (its `Done` sent) or its client is gone.
fn emit(model: &Model, a: &mut Active, scores: Scores<'_>, pos: usize, n_ctx: usize) -> bool {
    let tokenizer = model.tokenizer();
    let (token, logprob) = match scores {
        Scores::Top(top) => (a.sampler.sample_top(top), None),
        Scores::Logits(logits) => {
            let mut logits = logits.to_vec();
            penalize(&mut logits, &a.counts, a.job.frequency_penalty, a.job.presence_penalty);
            let recent_from = a.generated.len().saturating_sub(a.job.sampler.repeat_last_n);
            let token = a.sampler.sample(&logits, &a.generated[recent_from..]);
            (token, a.job.logprobs.map(|top| logprobs_of(&logits, token, top)))
        }
    };
    let done = |a: &Active, finish| Event::Done {
        finish,
        prompt_tokens: a.job.prompt.len(),
        completion_tokens: a.generated.len(),
    };
    if tokenizer.is_eog(token) || a.job.stop_tokens.contains(&token) {
        // Text held back as the possible start of a stop string is the answer's end after all.
        let held = a.text.flush();
        if !held.is_empty() {
            let _ = a.job.events.send(Event::Token { text: held, logprob: None });
        }
        let _ = a.job.events.send(done(a, Finish::Stop));
        return false;
    }
    a.generated.push(token);
    *a.counts.entry(token).or_default() += 1;
    let (mut text, stopped) = a.text.push(tokenizer, token);
    // The token just sampled would be fed at position `pos`: past the context, generation ends.
    let length = a.generated.len() >= a.job.max_tokens || pos >= n_ctx;
    if length && !stopped {
        text.push_str(&a.text.flush());
    }
    if a.job.events.send(Event::Token { text, logprob }).is_err() {
        return false;
    }
    if stopped || length {
        let finish = if stopped { Finish::Stop } else { Finish::Length };
        let _ = a.job.events.send(done(a, finish));
        return false;
    }
    a.phase = Phase::Decode { next: token };
    true
}

/// OpenAI's frequency and presence penalties, from the counts of the tokens generated so far.
fn penalize(logits: &mut [f32], counts: &HashMap<u32, u32>, frequency: f32, presence: f32) {
    if frequency == 0.0 && presence == 0.0 {
        return;
    }
    for (&t, &n) in counts {
        if let Some(l) = logits.get_mut(t as usize) {
            *l -= frequency * n as f32 + presence;
        }
    }
}

/// log softmax(logits)[token] and the `top` most likely tokens' log-probabilities.
fn logprobs_of(logits: &[f32], token: u32, top: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = max + logits.iter().map(|&l| ((l - max) as f64).exp()).sum::<f64>().ln() as f32;
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    for (i, &l) in logits.iter().enumerate() {
        if best.len() < top || best.last().is_some_and(|&(_, b)| l > b) {
            let at = best.partition_point(|&(_, b)| b >= l);
            best.insert(at, (i as u32, l));
            best.truncate(top);
        }
    }
    TokenLogprob {
        token,
        logprob: logits[token as usize] - log_sum,
        top: best.into_iter().map(|(t, l)| (t, l - log_sum)).collect(),
    }
}
