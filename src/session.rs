//! The public inference API: load a model, open a session, generate text as it is produced.
//!
//! ```no_run
//! use wgquant::{GenerateParams, Model, ModelOptions};
//!
//! # fn main() -> wgquant::Result<()> {
//! let model = Model::load("models/gemma-3-270m-q4_k_m.gguf", ModelOptions::default())?;
//! let mut session = model.session()?;
//! let mut generation = session.generate("Once upon a time", &GenerateParams::greedy(32))?;
//! for piece in &mut generation {
//!     print!("{}", piece?.text);
//! }
//! let stats = generation.stats();
//! eprintln!("\n{:.1} prompt tokens/s, {:.1} tokens/s", stats.prompt_tps(), stats.decode_tps());
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use web_time::Instant;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::gpu::{now, AdapterSelector, Context, ContextOptions};
use crate::model::cpu::Logits;
use crate::model::gpu::{Activations, GpuModel, GpuState, KvCaches, Offload};
use crate::model::stream::TensorStream;
use crate::model::{Config, KvType};
use crate::plan::{self, Budget, Plan, PlanRequest};
use crate::sampler::{Sampler, SamplerParams, TokenPenalty};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// How to load a model.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// Context length in tokens; default: the model's training context, at most 4096.
    pub n_ctx: Option<usize>,
    /// Prompt tokens per GPU micro-batch.
    pub batch: usize,
    pub kv_type: KvType,
    /// Which adapter (index or name substring); default: the best one (see [`crate::gpu`]).
    pub adapter: Option<String>,
    /// VRAM budget in bytes; default: what the device reports (see [`Budget`]).
    pub vram_budget: Option<u64>,
    /// Let the planner use a smaller KV type or context when the requested ones do not fit.
    pub allow_smaller_kv: bool,
    pub allow_smaller_ctx: bool,
    /// Force where layers run (tests and tools); default: decided by the VRAM plan.
    pub offload: Option<Offload>,
    /// Sequences held at once, each with its own KV cache, decoded together (a server's slots,
    /// see [`Model::slots`]); the plan counts every cache.
    pub sequences: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            n_ctx: None,
            batch: 128,
            kv_type: KvType::F16,
            adapter: None,
            vram_budget: None,
            allow_smaller_kv: false,
            allow_smaller_ctx: false,
            offload: None,
            sequences: 1,
        }
    }
}

/// What a load decides from the file's metadata, before anything is uploaded.
struct Planned {
    tokenizer: Tokenizer,
    plan: Plan,
    budget: Budget,
    offload: Offload,
}

impl Planned {
    fn new(ctx: &Context, file: &GgufFile, options: &ModelOptions) -> Result<Planned> {
        let config = Config::from_gguf(file)?;
        let tokenizer = Tokenizer::from_gguf(file)?;
        let n_ctx = options.n_ctx.unwrap_or(config.n_ctx_train.min(4096));
        let device_memory = crate::gpu::vram::device_memory(&ctx.device).map(|m| m.usable());
        let budget = Budget::resolve(options.vram_budget, device_memory);
        let limits = ctx.limits();
        let mut req = PlanRequest::new(n_ctx, budget.bytes);
        req.kv_type = options.kv_type;
        req.max_buffer_size = limits.max_buffer_size;
        req.max_binding_size = ctx.max_binding_size();
        req.weight_textures = ctx.weight_texture_geometry();
        req.uniform_activations = ctx.profile().uniform_activations;
        req.allow_smaller_kv = options.allow_smaller_kv;
        req.allow_smaller_ctx = options.allow_smaller_ctx;
        req.batch = options.batch;
        req.set_sequences(options.sequences);
        let plan = plan::plan(file, &req)?;
        let offload =
            options.offload.unwrap_or(Offload { gpu_layers: plan.gpu_layers(), head_on_gpu: plan.head_on_gpu() });
        Ok(Planned { tokenizer, plan, budget, offload })
    }

    fn into_model(self, gpu: GpuModel, start: Instant) -> Model {
        Model { gpu, tokenizer: self.tokenizer, plan: self.plan, budget: self.budget, load_time: start.elapsed() }
    }
}

/// A loaded model: its weights on the GPU (and, per the plan, the CPU), tokenizer and config.
pub struct Model {
    gpu: GpuModel,
    tokenizer: Tokenizer,
    plan: Plan,
    budget: Budget,
    load_time: Duration,
}

impl Model {
    /// Load a GGUF model onto the best GPU.
    pub fn load(path: impl AsRef<Path>, options: ModelOptions) -> Result<Model> {
        Self::load_with_progress(path, options, |_, _| {})
    }

    /// Load, calling `progress(bytes_uploaded, bytes_total)` as weights reach the GPU.
    pub fn load_with_progress(
        path: impl AsRef<Path>,
        options: ModelOptions,
        progress: impl FnMut(u64, u64),
    ) -> Result<Model> {
        let adapter = options.adapter.as_deref().map(AdapterSelector::parse);
        let all_cpu = options.offload == Some(Offload::ALL_CPU);
        let ctx = match all_cpu && adapter.is_none() {
            // Nothing will run on a device: wgpu's noop adapter holds the few buffers, and no
            // driver is started for nothing (lavapipe's device cost 60 MB and 0.1–0.3 s of load).
            #[cfg(not(target_arch = "wasm32"))]
            true => Context::host_only()?,
            _ => Context::with_options(ContextOptions { adapter, ..Default::default() })?,
        };
        Self::load_on(Arc::new(ctx), path, options, progress)
    }

    /// Load onto an existing GPU context (several models can share one device and its tracker).
    pub fn load_on(
        ctx: Arc<Context>,
        path: impl AsRef<Path>,
        options: ModelOptions,
        progress: impl FnMut(u64, u64),
    ) -> Result<Model> {
        Self::from_gguf(ctx, Arc::new(GgufFile::open(path)?), options, progress)
    }

    /// Load from a parsed file (one held in memory, say) onto `ctx`.
    pub fn from_gguf(
        ctx: Arc<Context>,
        file: Arc<GgufFile>,
        options: ModelOptions,
        progress: impl FnMut(u64, u64),
    ) -> Result<Model> {
        let start = Instant::now();
        let planned = Planned::new(&ctx, &file, &options)?;
        let gpu = GpuModel::load(ctx, file, planned.offload, progress)?;
        Ok(planned.into_model(gpu, start))
    }

    /// Load a file as it streams past (a download, see [`crate::model::stream`]): the plan is
    /// made once the header has arrived, each layer is uploaded once it has, and the host never
    /// holds the whole file. Every layer and the head must fit on the GPU.
    pub async fn from_stream(
        ctx: Arc<Context>,
        stream: &TensorStream,
        options: ModelOptions,
        progress: impl FnMut(u64, u64),
    ) -> Result<Model> {
        let start = Instant::now();
        let mut file = stream.header().await?;
        let planned = Planned::new(&ctx, &file, &options)?;
        let n_layer = planned.plan.layers.len();
        if planned.offload.gpu_layers < n_layer || !planned.offload.head_on_gpu {
            return Err(Error::DoesNotFit(format!(
                "a streamed model must fit the GPU whole, and {} puts {} of its {n_layer} layers{} there",
                planned.budget.describe(),
                planned.offload.gpu_layers,
                if planned.offload.head_on_gpu { "" } else { " but not its output head" },
            )));
        }
        // The CPU looks tokens up in the embedding table when the head is another tensor.
        if file.tensor("output.weight").is_some() {
            let table = file.require_tensor("token_embd.weight")?.clone();
            let bytes = stream.take(&[&table]).await?.into_bytes(&table)?;
            file.hold(&table.name, bytes)?;
        }
        let gpu = GpuModel::load_streamed(ctx, Arc::new(file), stream, planned.offload, progress).await?;
        Ok(planned.into_model(gpu, start))
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    pub fn config(&self) -> &Config {
        &self.gpu.config
    }
    /// The GPU context (adapter, limits, memory tracker).
    pub fn gpu(&self) -> &Context {
        &self.gpu.ctx
    }
    /// Where layers run.
    pub fn offload(&self) -> Offload {
        self.gpu.placement
    }
    /// The VRAM plan the model was loaded with.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    /// The budget the plan was made against, and where it came from.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }
    pub fn n_ctx(&self) -> usize {
        self.plan.n_ctx
    }
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
    /// The underlying GPU model, for tools that drive the forward pass directly.
    pub fn gpu_model(&self) -> &GpuModel {
        &self.gpu
    }

    /// The model's chat template: its own (`tokenizer.chat_template`), or else its family's.
    pub fn chat_template(&self) -> Result<crate::chat::ChatTemplate> {
        crate::chat::ChatTemplate::for_model(&self.gpu.cpu.file, &self.tokenizer)
    }

    /// Activations shared by the plan's sequences and one KV cache for each
    /// ([`ModelOptions::sequences`]): a server's slots, decoded together with
    /// [`GpuModel::decode_batch`].
    pub fn slots(&self) -> Result<(Activations, Vec<KvCaches>)> {
        let p = &self.plan;
        let acts = Activations::new(&self.gpu, p.n_ctx, p.batch, p.sequences.max(1))?;
        let caches =
            (0..p.sequences).map(|_| KvCaches::new(&self.gpu, p.n_ctx, p.batch, p.kv_type)).collect::<Result<_>>()?;
        Ok((acts, caches))
    }

    /// A new conversation with its own KV cache.
    pub fn session(&self) -> Result<Session<'_>> {
        let state = GpuState::new(&self.gpu, self.plan.n_ctx, self.plan.batch, 1, self.plan.kv_type)?;
        Ok(Session { model: self, state, history: Vec::new(), next: Next::Nothing })
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampler: SamplerParams,
    /// Generation stops before any of these strings; the stop string itself is not returned.
    pub stop: Vec<String>,
    /// Whether special tokens written in the prompt (`<start_of_turn>`) are parsed as such.
    pub parse_special: bool,
}

impl GenerateParams {
    /// Greedy decoding of up to `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        GenerateParams { max_tokens, sampler: SamplerParams::greedy(), stop: Vec::new(), parse_special: true }
    }
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams { max_tokens: 256, sampler: SamplerParams::default(), stop: Vec::new(), parse_special: true }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token (EOS, `<end_of_turn>`, ...).
    EndOfGeneration,
    /// A stop string appeared.
    StopString,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The KV cache is full: the session holds `n_ctx` tokens. Start a new session or `reset`.
    ContextFull,
}

/// One generated token and the text it completes (possibly empty, e.g. half a UTF-8 character).
#[derive(Clone, Debug)]
pub struct Piece {
    pub token: u32,
    pub text: String,
}

/// Counts and times of one generation.
#[derive(Clone, Debug, Default)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub prompt_time: Duration,
    pub generated_tokens: usize,
    pub decode_time: Duration,
    pub stop_reason: Option<StopReason>,
}

impl GenerationStats {
    pub fn prompt_tps(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }
    /// Tokens per second of decoding (each decoded token is one forward pass).
    pub fn decode_tps(&self) -> f64 {
        self.generated_tokens as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

/// A conversation: the tokens in its KV cache, and what the last forward pass left to pick the
/// next token from.
pub struct Session<'m> {
    model: &'m Model,
    state: GpuState,
    history: Vec<u32>,
    next: Next,
}

/// What the last forward pass handed back for the next token.
enum Next {
    /// Nothing has run since the session began or was reset.
    Nothing,
    /// The logits.
    Logits(Vec<f32>),
    /// The greedy token, picked on the GPU ([`Session::feed_greedy`]).
    Token(u32),
    /// The likeliest tokens after the penalties, best first, selected on the GPU
    /// ([`Session::feed_top_k`]).
    Top(Vec<(u32, f32)>),
}

/// How a generation picks its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    /// The greedy token, picked on the GPU: one word comes back per step.
    Greedy,
    /// The sampler finishes on the `k` likeliest tokens the GPU selected after the penalties.
    Top(usize),
    /// The sampler reads every logit (top-k off or above what the GPU selects).
    Logits,
}

impl<'m> Session<'m> {
    pub fn model(&self) -> &'m Model {
        self.model
    }
    /// Tokens in the cache.
    pub fn history(&self) -> &[u32] {
        &self.history
    }
    pub fn n_ctx(&self) -> usize {
        self.state.n_ctx
    }

    /// Forget the conversation (the cache is overwritten from position 0).
    pub fn reset(&mut self) {
        self.history.clear();
        self.next = Next::Nothing;
    }

    /// Run `tokens` after the history; returns the logits that predict the next token.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        now(self.feed_async(tokens))
    }

    /// [`Session::feed`] as a future: the form a browser needs (see [`crate::gpu::ready`]).
    pub async fn feed_async(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        self.check_room(tokens.len())?;
        let logits = self.model.gpu.forward_async(&mut self.state, tokens, self.history.len(), Logits::Last).await?;
        self.history.extend_from_slice(tokens);
        self.next = Next::Logits(logits);
        match &self.next {
            Next::Logits(logits) => Ok(logits),
            _ => unreachable!("just set"),
        }
    }

    /// Run `tokens` after the history; returns the most likely next token, picked on the GPU
    /// (the session then keeps no logits).
    pub fn feed_greedy(&mut self, tokens: &[u32]) -> Result<u32> {
        now(self.feed_greedy_async(tokens))
    }

    /// [`Session::feed_greedy`] as a future.
    pub async fn feed_greedy_async(&mut self, tokens: &[u32]) -> Result<u32> {
        self.check_room(tokens.len())?;
        let token = self.model.gpu.forward_greedy_async(&mut self.state, tokens, self.history.len()).await?;
        self.history.extend_from_slice(tokens);
        self.next = Next::Token(token);
        Ok(token)
    }

    /// Run `tokens` after the history; returns the `k` likeliest next tokens after `penalties`
    /// (see [`crate::sampler::Sampler::penalties`]), as `(id, logit)`, best first, selected on the
    /// GPU (the session then keeps no logits).
    pub fn feed_top_k(&mut self, tokens: &[u32], k: usize, penalties: &[TokenPenalty]) -> Result<&[(u32, f32)]> {
        now(self.feed_top_k_async(tokens, k, penalties))
    }

    /// [`Session::feed_top_k`] as a future.
    pub async fn feed_top_k_async(
        &mut self,
        tokens: &[u32],
        k: usize,
        penalties: &[TokenPenalty],
    ) -> Result<&[(u32, f32)]> {
        self.check_room(tokens.len())?;
        let history = self.history.len();
        let top = self.model.gpu.forward_top_k_async(&mut self.state, tokens, history, k, penalties).await?;
        self.history.extend_from_slice(tokens);
        self.next = Next::Top(top);
        match &self.next {
            Next::Top(top) => Ok(top),
            _ => unreachable!("just set"),
        }
    }

    fn check_room(&self, n: usize) -> Result<()> {
        if n > self.state.n_ctx - self.history.len() {
            return Err(Error::Invalid(format!(
                "{n} tokens do not fit: the session holds {} of {} positions",
                self.history.len(),
                self.state.n_ctx
            )));
        }
        Ok(())
    }

    /// Tokenize `prompt` for this session: BOS first when the model wants one and the session is empty.
    pub fn tokenize(&self, prompt: &str, parse_special: bool) -> Result<Vec<u32>> {
        let tok = &self.model.tokenizer;
        tok.encode(prompt, self.history.is_empty() && tok.add_bos(), parse_special)
    }

    /// Process `prompt` (after the history) and return an iterator over generated pieces.
    pub fn generate<'s>(&'s mut self, prompt: &str, params: &GenerateParams) -> Result<Generation<'s, 'm>> {
        let tokens = self.tokenize(prompt, params.parse_special)?;
        self.generate_from_tokens(&tokens, params)
    }

    /// [`Session::generate`] as a future: the form a browser needs (see [`crate::gpu::ready`]);
    /// take the pieces with [`Generation::next_async`].
    pub async fn generate_async<'s>(&'s mut self, prompt: &str, params: &GenerateParams) -> Result<Generation<'s, 'm>> {
        let tokens = self.tokenize(prompt, params.parse_special)?;
        self.generate_from_tokens_async(&tokens, params).await
    }

    /// Like [`Session::generate`] with a tokenized prompt (may be empty to continue).
    pub fn generate_from_tokens<'s>(
        &'s mut self,
        prompt: &[u32],
        params: &GenerateParams,
    ) -> Result<Generation<'s, 'm>> {
        now(self.generate_from_tokens_async(prompt, params))
    }

    /// [`Session::generate_from_tokens`] as a future.
    pub async fn generate_from_tokens_async<'s>(
        &'s mut self,
        prompt: &[u32],
        params: &GenerateParams,
    ) -> Result<Generation<'s, 'm>> {
        let start = Instant::now();
        let mut sampler = Sampler::new(params.sampler.clone());
        let device_sampling = self.model.gpu().profile().device_sampling;
        let pick = match sampler.device_k(self.model.config().n_vocab) {
            _ if params.sampler.is_plain_greedy() => Pick::Greedy,
            Some(k) if device_sampling => Pick::Top(k),
            _ => Pick::Logits,
        };
        let mut penalties = Vec::new();
        if !prompt.is_empty() {
            match pick {
                Pick::Greedy => self.feed_greedy_async(prompt).await.map(drop)?,
                Pick::Top(k) => {
                    let recent = [&self.history[..], prompt].concat();
                    sampler.penalties(&recent, 0, &mut penalties);
                    self.feed_top_k_async(prompt, k, &penalties).await.map(drop)?
                }
                Pick::Logits => self.feed_async(prompt).await.map(drop)?,
            }
        } else if let Some(why) = self.cannot_continue(pick) {
            return Err(Error::Invalid(why.into()));
        }
        let stats = GenerationStats { prompt_tokens: prompt.len(), prompt_time: start.elapsed(), ..Default::default() };
        Ok(Generation {
            pick,
            sampler,
            penalties,
            recent: Vec::new(),
            params: params.clone(),
            text: StopText::new(params.stop.clone()),
            session: self,
            stats,
            done: false,
        })
    }

    /// Why a generation that picks with `pick` cannot continue from what the last step left.
    fn cannot_continue(&self, pick: Pick) -> Option<&'static str> {
        match (&self.next, pick) {
            (Next::Nothing, _) => Some("nothing to continue from: give a prompt"),
            (Next::Logits(_), _) | (Next::Token(_), Pick::Greedy) => None,
            (Next::Top(top), Pick::Top(k)) if top.len() >= k => None,
            (Next::Token(_), _) => Some(
                "the last step was greedy, picked on the GPU without keeping logits: continue greedily, or give a prompt",
            ),
            (Next::Top(_), _) => Some(
                "the last step kept only the likeliest tokens for its sampler: continue with the same settings, or give a prompt",
            ),
        }
    }
}

/// Generated pieces, one per token, as they are produced. Dropping it stops generation; the
/// tokens produced so far stay in the session's history.
pub struct Generation<'s, 'm> {
    session: &'s mut Session<'m>,
    pick: Pick,
    sampler: Sampler,
    /// The penalties of the next step's device sampling, and the window they come from (kept to
    /// reuse their memory).
    penalties: Vec<TokenPenalty>,
    recent: Vec<u32>,
    params: GenerateParams,
    text: StopText,
    stats: GenerationStats,
    done: bool,
}

impl Generation<'_, '_> {
    pub fn stats(&self) -> &GenerationStats {
        &self.stats
    }

    fn finish(&mut self, reason: StopReason) {
        self.done = true;
        self.stats.stop_reason = Some(reason);
    }

    /// The next piece, or `None` once generation has ended: [`Iterator::next`] as a future, the
    /// form a browser needs (see [`crate::gpu::ready`]).
    pub async fn next_async(&mut self) -> Option<Result<Piece>> {
        if self.done {
            return None;
        }
        if self.params.max_tokens == 0 {
            self.finish(StopReason::MaxTokens);
            return None;
        }
        match self.step().await {
            Ok(piece) => piece.map(Ok),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    /// One decode step: sample, then run the sampled token.
    async fn step(&mut self) -> Result<Option<Piece>> {
        let s = &mut *self.session;
        let tok = &s.model.tokenizer;
        let token = match &s.next {
            Next::Token(token) if self.pick == Pick::Greedy => *token,
            Next::Top(top) => self.sampler.sample_top(top),
            Next::Logits(logits) => {
                let recent_from = s.history.len().saturating_sub(self.params.sampler.repeat_last_n);
                self.sampler.sample(logits, &s.history[recent_from..])
            }
            _ => return Err(Error::Invalid("nothing to sample from".into())),
        };
        if tok.is_eog(token) {
            self.finish(StopReason::EndOfGeneration);
            return Ok(None);
        }
        if s.history.len() >= s.state.n_ctx {
            self.finish(StopReason::ContextFull);
            return Ok(None);
        }
        let start = Instant::now();
        match self.pick {
            Pick::Greedy => s.feed_greedy_async(&[token]).await.map(drop)?,
            Pick::Top(k) => {
                // The penalties see the history with this token, the window the step after samples in.
                let window = self.params.sampler.repeat_last_n;
                self.recent.clear();
                self.recent.extend_from_slice(&s.history[s.history.len().saturating_sub(window)..]);
                self.recent.push(token);
                self.penalties.clear();
                self.sampler.penalties(&self.recent, 0, &mut self.penalties);
                s.feed_top_k_async(&[token], k, &self.penalties).await.map(drop)?
            }
            Pick::Logits => s.feed_async(&[token]).await.map(drop)?,
        }
        self.stats.decode_time += start.elapsed();
        self.stats.generated_tokens += 1;
        let (mut text, stopped) = self.text.push(tok, token);
        if stopped {
            self.finish(StopReason::StopString);
            return Ok(Some(Piece { token, text }));
        }
        if self.stats.generated_tokens >= self.params.max_tokens {
            text.push_str(&self.text.flush());
            self.finish(StopReason::MaxTokens);
        }
        Ok(Some(Piece { token, text }))
    }
}

/// Generated tokens as text: whole UTF-8 characters, cut before the first stop string, with a tail
/// that may still grow into a stop string held back until it does or cannot.
#[derive(Debug)]
pub struct StopText {
    decoder: StreamDecoder,
    stop: Vec<String>,
    held: String,
}

impl StopText {
    pub fn new(stop: Vec<String>) -> StopText {
        StopText { decoder: StreamDecoder::new(), stop, held: String::new() }
    }

    /// The text `token` releases, and whether a stop string ended it there (the stop string and
    /// anything after it are dropped).
    pub fn push(&mut self, tokenizer: &Tokenizer, token: u32) -> (String, bool) {
        let piece = self.decoder.push(tokenizer, token);
        self.push_text(&piece)
    }

    /// [`StopText::push`] of decoded text.
    fn push_text(&mut self, piece: &str) -> (String, bool) {
        let mut text = std::mem::take(&mut self.held);
        text.push_str(piece);
        if let Some(cut) = self.stop.iter().filter_map(|stop| text.find(stop.as_str())).min() {
            text.truncate(cut);
            return (text, true);
        }
        let keep = self.stop.iter().map(|stop| partial_suffix(&text, stop)).max().unwrap_or(0);
        self.held = text.split_off(text.len() - keep);
        (text, false)
    }

    /// What is held back, once generation ends without a stop string.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (at a char boundary).
fn partial_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && stop.as_bytes().starts_with(&text.as_bytes()[text.len() - n..])
        })
        .unwrap_or(0)
}

impl Iterator for Generation<'_, '_> {
    type Item = Result<Piece>;

    fn next(&mut self) -> Option<Result<Piece>> {
        now(async { Ok(self.next_async().await) }).unwrap_or_else(|e| {
            self.done = true;
            Some(Err(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{partial_suffix, StopText};

    #[test]
    fn stop_text_holds_back_what_may_start_a_stop_string() {
        let mut t = StopText::new(vec!["<end>".into(), "\n\n".into()]);
        assert_eq!(t.push_text("Hello <e"), ("Hello ".to_string(), false));
        assert_eq!(t.push_text("x"), ("<ex".to_string(), false));
        assert_eq!(t.push_text("Done.\n"), ("Done.".to_string(), false));
        assert_eq!(t.flush(), "\n");
        assert_eq!(t.flush(), "");
        assert_eq!(t.push_text("a <en"), ("a ".to_string(), false));
        assert_eq!(t.push_text("d> more"), (String::new(), true));
    }

    #[test]
    fn partial_suffix_finds_stop_prefixes() {
        assert_eq!(partial_suffix("hello wo", "world"), 2);
        assert_eq!(partial_suffix("hello", "world"), 0);
        assert_eq!(partial_suffix("abc<", "<end>"), 1);
        assert_eq!(partial_suffix("é<e", "<en"), 2);
    }
}
