//! `wgquant serve`: an OpenAI-compatible HTTP server (axum on tokio) over the engine's
//! continuous batching (see `engine.rs`).
//!
//! Routes: `POST /v1/chat/completions` (messages through the model's chat template) and
//! `POST /v1/completions`, streamed as server-sent events ending in `data: [DONE]` or whole;
//! `GET /v1/models`; `GET /health` (503 while the model loads, then 200); `POST /tokenize` and
//! `POST /detokenize` (llama.cpp's server shapes); `GET /metrics` (Prometheus text). Errors take
//! OpenAI's shape, `{"error": {"message", "type", "code"}}`: a malformed body or a wrong type is
//! 400, a prompt longer than the context 400 `context_length_exceeded`, `n > 1` 400, an unknown
//! route 404, a body over the limit 413, a missing or wrong key 401 with `--api-key`.

mod api;
mod engine;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_stream::wrappers::UnboundedReceiverStream;
use wgquant::chat::{ChatTemplate, Message};
use wgquant::{Error, Model, Result, SamplerParams};

use self::api::{ApiError, ChatRequest, Common, CompletionRequest, Endpoint, Ident};
use self::engine::{Engine, Event, Job, Stats, TokenLogprob};
use crate::common::{self, ModelArgs, CHAT_MODEL};

/// Request bodies larger than this are refused with 413.
const MAX_BODY_BYTES: usize = 1 << 20;
/// Most stop strings and alternatives per token a request may ask for (OpenAI's limits are 4 and 20).
const MAX_STOP: usize = 4;
const MAX_TOP_LOGPROBS: usize = 20;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests served at once, each with its own KV cache; more wait in a queue
    #[arg(long, visible_alias = "np", default_value_t = 4)]
    parallel: usize,
    /// Require `Authorization: Bearer KEY` on every route but /health
    #[arg(long)]
    api_key: Option<String>,
}

/// What the handlers share.
struct AppState {
    /// Set once the model is loaded (until then every route but /health answers 503).
    loaded: OnceLock<Loaded>,
    api_key: Option<String>,
    stats: Arc<Stats>,
    next_id: AtomicU64,
}

struct Loaded {
    model: Arc<Model>,
    name: String,
    template: Option<ChatTemplate>,
    jobs: mpsc::Sender<Job>,
}

pub fn run(args: &Args) -> Result<()> {
    if args.parallel == 0 {
        return Err(Error::Invalid("--parallel must be at least 1".into()));
    }
    let path = args.model.path(CHAT_MODEL)?;
    let gguf = common::open_checked(&path)?;
    let mut options = args.model.options(&gguf)?;
    options.sequences = args.parallel;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let addr: SocketAddr = format!("{}:{}", args.host, args.port)
            .parse()
            .map_err(|e| Error::Invalid(format!("--host {} --port {}: {e}", args.host, args.port)))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Invalid(format!("cannot listen on {addr}: {e}")))?;
        let state = Arc::new(AppState {
            loaded: OnceLock::new(),
            api_key: args.api_key.clone(),
            stats: Arc::new(Stats::default()),
            next_id: AtomicU64::new(1),
        });
        eprintln!("listening on http://{addr} (loading {})", path.display());
        let loader = Arc::clone(&state);
        std::thread::spawn(move || {
            if let Err(e) = load(&loader, &path, options) {
                // Nothing can be served: say why and leave.
                common::fail(&e.to_string());
                std::process::exit(1);
            }
        });
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| Error::Invalid(format!("server error: {e}")))
    })
}

/// Loads the model with a cache per slot, starts the engine, and opens the routes.
fn load(state: &AppState, path: &std::path::Path, options: wgquant::ModelOptions) -> Result<()> {
    let gguf = common::open_checked(path)?;
    let model = Arc::new(common::load(path, options)?);
    eprintln!("{}", common::describe(&model, &gguf));
    let template = ChatTemplate::for_model(&gguf, model.tokenizer()).ok();
    let name = path.file_name().map_or("model".into(), |n| n.to_string_lossy().into_owned());
    let (jobs, incoming) = mpsc::channel();
    let engine = Engine::new(Arc::clone(&model), incoming, Arc::clone(&state.stats))?;
    std::thread::spawn(move || engine.run());
    let _ = state.loaded.set(Loaded { model, name, template, jobs });
    eprintln!("ready: {} slot(s)", state.loaded.get().map_or(0, |l| l.model.plan().sequences));
    Ok(())
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

impl AppState {
    /// The loaded model, for a request that passed the key check.
    fn ready(&self, headers: &HeaderMap) -> std::result::Result<&Loaded, ApiError> {
        if let Some(key) = &self.api_key {
            let given =
                headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
            if given != Some(key.as_str()) {
                let e = ApiError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", "missing or wrong API key");
                return Err(e.with_code("invalid_api_key"));
            }
        }
        self.loaded
            .get()
            .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the model is loading"))
    }

    fn ident(&self, ep: Endpoint, loaded: &Loaded) -> Ident {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let prefix = if ep == Endpoint::Chat { "chatcmpl" } else { "cmpl" };
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Ident { id: format!("{prefix}-{n}"), created, model: loaded.name.clone() }
    }
}

/// The body, or 413 / 400 in OpenAI's shape.
fn body_bytes(body: std::result::Result<Bytes, BytesRejection>) -> std::result::Result<Bytes, ApiError> {
    body.map_err(|r| ApiError::new(r.status(), "invalid_request_error", r.body_text()))
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.loaded.get() {
        Some(_) => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "loading"}))).into_response(),
    }
}

async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> std::result::Result<Json<Value>, ApiError> {
    let loaded = state.ready(&headers)?;
    let plan = loaded.model.plan();
    Ok(Json(json!({"object": "list", "data": [{
        "id": loaded.name, "object": "model", "created": 0, "owned_by": "wgquant",
        "meta": {"arch": plan.arch, "n_ctx": plan.n_ctx, "slots": plan.sequences},
    }]})))
}

async fn tokenize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Json<Value>, ApiError> {
    let loaded = state.ready(&headers)?;
    let req: api::TokenizeRequest = api::parse(&body_bytes(body)?)?;
    let tokenizer = loaded.model.tokenizer();
    let tokens = tokenizer
        .encode(&req.content, req.add_special && tokenizer.add_bos(), true)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(json!({"tokens": tokens})))
}

async fn detokenize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Json<Value>, ApiError> {
    let loaded = state.ready(&headers)?;
    let req: api::DetokenizeRequest = api::parse(&body_bytes(body)?)?;
    let tokenizer = loaded.model.tokenizer();
    if let Some(bad) = req.tokens.iter().find(|&&t| t as usize >= tokenizer.vocab_size()) {
        return Err(ApiError::bad_request(format!(
            "token {bad} is outside the vocabulary of {}",
            tokenizer.vocab_size()
        )));
    }
    Ok(Json(json!({"content": tokenizer.decode(&req.tokens)})))
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> std::result::Result<Response, ApiError> {
    let loaded = state.ready(&headers)?;
    let s = &state.stats;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let rows = [
        ("requests_total", "counter", "Requests admitted to a slot", load(&s.requests) as f64),
        ("prompt_tokens_total", "counter", "Prompt tokens of admitted requests", load(&s.prompt_tokens) as f64),
        ("generated_tokens_total", "counter", "Tokens generated", load(&s.generated_tokens) as f64),
        ("queue_depth", "gauge", "Requests waiting for a slot", load(&s.queued) as f64),
        ("active_slots", "gauge", "Slots serving a request", load(&s.active) as f64),
        (
            "decode_tokens_per_second",
            "gauge",
            "Tokens per second of the last decode round",
            f64::from_bits(load(&s.decode_tps_bits)),
        ),
        (
            "vram_bytes",
            "gauge",
            "GPU memory held (weights, caches, activations)",
            loaded.model.gpu().memory().total() as f64,
        ),
    ];
    let mut text = String::new();
    for (name, kind, help, value) in rows {
        text.push_str(&format!(
            "# HELP wgquant_{name} {help}.\n# TYPE wgquant_{name} {kind}\nwgquant_{name} {value}\n"
        ));
    }
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
}

async fn chat(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Response, ApiError> {
    let loaded = state.ready(&headers)?;
    let req: ChatRequest = api::parse(&body_bytes(body)?)?;
    let template = loaded
        .template
        .as_ref()
        .ok_or_else(|| ApiError::bad_request("the model has no chat template: use /v1/completions"))?;
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("`messages` is empty"));
    }
    let messages = req
        .messages
        .iter()
        .map(|m| Ok(Message::new(&m.role, m.content.as_ref().map(api::Content::text).transpose()?.unwrap_or_default())))
        .collect::<std::result::Result<Vec<_>, ApiError>>()?;
    let rendered = template.render(&messages, true).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let prompt = template.prompt_text(&rendered).to_string();
    let mut stop = template.stop_strings();
    let stop_tokens = template.stop_tokens(loaded.model.tokenizer());
    let logprobs = match (&req.common.logprobs, req.common.top_logprobs) {
        (Some(Value::Bool(true)), top) => Some(top.unwrap_or(0) as usize),
        (None | Some(Value::Bool(false)) | Some(Value::Null), None) => None,
        (_, Some(_)) if req.common.logprobs != Some(Value::Bool(true)) => {
            return Err(ApiError::bad_request("`top_logprobs` needs `logprobs: true`"))
        }
        (other, _) => return Err(ApiError::bad_request(format!("`logprobs` must be a boolean, not {other:?}"))),
    };
    stop.extend(stop_list(&req.common)?);
    serve_request(&state, loaded, Endpoint::Chat, &prompt, &req.common, stop, stop_tokens, logprobs).await
}

async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Response, ApiError> {
    let loaded = state.ready(&headers)?;
    let req: CompletionRequest = api::parse(&body_bytes(body)?)?;
    let prompts = req.prompt.clone().into_vec();
    let [prompt] = prompts.as_slice() else {
        return Err(ApiError::bad_request("give one prompt (batches of prompts are not supported)"));
    };
    let logprobs = match &req.common.logprobs {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            Some(n.as_u64().ok_or_else(|| ApiError::bad_request("`logprobs` must be a count"))? as usize)
        }
        Some(other) => return Err(ApiError::bad_request(format!("`logprobs` must be a count, not {other}"))),
    };
    let stop = stop_list(&req.common)?;
    serve_request(&state, loaded, Endpoint::Completions, prompt, &req.common, stop, Vec::new(), logprobs).await
}

fn stop_list(c: &Common) -> std::result::Result<Vec<String>, ApiError> {
    let stop: Vec<String> = c.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > MAX_STOP || stop.iter().any(String::is_empty) {
        return Err(ApiError::bad_request(format!("`stop`: at most {MAX_STOP} non-empty strings")));
    }
    Ok(stop)
}

/// Checks the request, queues it with the engine, and answers as a stream or as a whole.
#[allow(clippy::too_many_arguments)]
async fn serve_request(
    state: &AppState,
    loaded: &Loaded,
    ep: Endpoint,
    prompt: &str,
    c: &Common,
    stop: Vec<String>,
    stop_tokens: Vec<u32>,
    logprobs: Option<usize>,
) -> std::result::Result<Response, ApiError> {
    if c.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("only n = 1 is supported").with_code("unsupported_value"));
    }
    if logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
        return Err(ApiError::bad_request(format!("at most {MAX_TOP_LOGPROBS} alternatives per token")));
    }
    let sampler = sampler_params(c)?;
    let model = &loaded.model;
    let tokenizer = model.tokenizer();
    let tokens =
        tokenizer.encode(prompt, tokenizer.add_bos(), true).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let n_ctx = model.n_ctx();
    if tokens.is_empty() {
        return Err(ApiError::bad_request("the prompt is empty"));
    }
    if tokens.len() >= n_ctx {
        return Err(ApiError::bad_request(format!(
            "This model's maximum context length is {n_ctx} tokens. However, your prompt has {} tokens.",
            tokens.len()
        ))
        .with_code("context_length_exceeded"));
    }
    let room = n_ctx - tokens.len();
    let max_tokens = match c.max_completion_tokens.or(c.max_tokens) {
        Some(0) => return Err(ApiError::bad_request("`max_tokens` must be at least 1")),
        Some(n) => (n as usize).min(room),
        None => room,
    };
    let (events, from_engine) = unbounded_channel();
    let job = Job {
        prompt: tokens,
        max_tokens,
        sampler,
        stop_tokens,
        stop,
        frequency_penalty: c.frequency_penalty.unwrap_or(0.0),
        presence_penalty: c.presence_penalty.unwrap_or(0.0),
        logprobs,
        events,
    };
    loaded
        .jobs
        .send(job)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the engine has stopped"))?;
    let ident = state.ident(ep, loaded);
    let include_usage = c.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let generated = Arc::clone(&state.stats);
    if c.stream {
        let (tx, rx) = unbounded_channel();
        tokio::spawn(relay(
            from_engine,
            tx,
            ep,
            ident,
            include_usage,
            logprobs.is_some(),
            Arc::clone(model),
            generated,
        ));
        let stream = UnboundedReceiverStream::new(rx);
        return Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response());
    }
    whole(from_engine, ep, &ident, model, logprobs.is_some(), &generated).await
}

/// The request's sampling parameters, OpenAI's defaults where it gives none (temperature 1, no
/// truncation), checked.
fn sampler_params(c: &Common) -> std::result::Result<SamplerParams, ApiError> {
    let temperature = c.temperature.unwrap_or(1.0);
    let top_p = c.top_p.unwrap_or(1.0);
    let min_p = c.min_p.unwrap_or(0.0);
    if !(0.0..=100.0).contains(&temperature) {
        return Err(ApiError::bad_request(format!("`temperature` {temperature} is not in [0, 100]")));
    }
    if !(0.0..=1.0).contains(&top_p) || !(0.0..=1.0).contains(&min_p) {
        return Err(ApiError::bad_request("`top_p` and `min_p` must be in [0, 1]"));
    }
    for (name, v) in [("frequency_penalty", c.frequency_penalty), ("presence_penalty", c.presence_penalty)] {
        if v.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
            return Err(ApiError::bad_request(format!("`{name}` must be in [-2, 2]")));
        }
    }
    let seed =
        c.seed.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    Ok(SamplerParams {
        temperature,
        top_k: c.top_k.unwrap_or(0) as usize,
        top_p,
        min_p,
        repeat_penalty: c.repeat_penalty.unwrap_or(1.0),
        seed,
        ..SamplerParams::default()
    })
}

/// Forwards the engine's events as server-sent events: a role chunk first (chat), a chunk per
/// token, the finish chunk, the usage chunk when asked, then `[DONE]`. Ends when the client goes
/// away, which drops the engine's channel and frees the slot.
#[allow(clippy::too_many_arguments)]
async fn relay(
    mut from_engine: UnboundedReceiver<Event>,
    to_client: tokio::sync::mpsc::UnboundedSender<std::result::Result<SseEvent, std::convert::Infallible>>,
    ep: Endpoint,
    ident: Ident,
    include_usage: bool,
    want_logprobs: bool,
    model: Arc<Model>,
    stats: Arc<Stats>,
) {
    let send = |v: Value| to_client.send(Ok(SseEvent::default().data(v.to_string()))).is_ok();
    if ep == Endpoint::Chat && !send(api::chunk(ep, &ident, None, None, Value::Null)) {
        return;
    }
    let tokenizer = model.tokenizer();
    let mut offset = 0;
    loop {
        // A client that leaves while its request waits or its prompt is fed is noticed here
        // (dropping the engine's channel frees its place), not only at its first token.
        let event = tokio::select! {
            event = from_engine.recv() => event,
            _ = to_client.closed() => return,
        };
        let Some(event) = event else { break };
        let alive = match event {
            Event::Token { text, logprob } => {
                let lp = logprob_value(ep, tokenizer, want_logprobs, logprob.as_ref().into_iter().collect(), offset);
                offset += text.len();
                send(api::chunk(ep, &ident, Some(&text), None, lp))
            }
            Event::Done { finish, prompt_tokens, completion_tokens } => {
                stats.generated_tokens.fetch_add(completion_tokens as u64, Ordering::Relaxed);
                send(api::chunk(ep, &ident, None, Some(finish), Value::Null));
                if include_usage {
                    send(api::usage_chunk(ep, &ident, prompt_tokens, completion_tokens));
                }
                break;
            }
            Event::Failed(message) => {
                send(json!({"error": {"message": message, "type": "server_error", "code": null}}));
                break;
            }
        };
        if !alive {
            return;
        }
    }
    let _ = to_client.send(Ok(SseEvent::default().data("[DONE]")));
}

/// Collects a whole response.
async fn whole(
    mut from_engine: UnboundedReceiver<Event>,
    ep: Endpoint,
    ident: &Ident,
    model: &Model,
    want_logprobs: bool,
    stats: &Stats,
) -> std::result::Result<Response, ApiError> {
    let mut text = String::new();
    let mut lps: Vec<TokenLogprob> = Vec::new();
    while let Some(event) = from_engine.recv().await {
        match event {
            Event::Token { text: t, logprob } => {
                text.push_str(&t);
                lps.extend(logprob);
            }
            Event::Done { finish, prompt_tokens: p, completion_tokens } => {
                stats.generated_tokens.fetch_add(completion_tokens as u64, Ordering::Relaxed);
                let lp = logprob_value(ep, model.tokenizer(), want_logprobs, lps.iter().collect(), 0);
                let body = api::response(ep, ident, &text, finish, lp, api::usage(p, completion_tokens));
                return Ok(Json(body).into_response());
            }
            Event::Failed(message) => {
                return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message));
            }
        }
    }
    Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the engine dropped the request"))
}

/// The `logprobs` field of a choice: null unless asked for.
fn logprob_value(
    ep: Endpoint,
    tokenizer: &wgquant::tokenizer::Tokenizer,
    wanted: bool,
    lps: Vec<&TokenLogprob>,
    offset: usize,
) -> Value {
    if !wanted {
        return Value::Null;
    }
    match ep {
        Endpoint::Chat => json!({"content": lps.iter().map(|lp| api::chat_logprob(tokenizer, lp)).collect::<Vec<_>>()}),
        Endpoint::Completions => api::completion_logprobs(tokenizer, &lps, offset),
    }
}
