//! wgquant in a web page: the same runtime and kernels, compiled to WebAssembly, on the browser's
//! WebGPU.
//!
//! The page (`web/app.js`) pushes a GGUF file's bytes into a [`ModelStream`] as they download,
//! while [`Chat::load`] uploads each layer once it has arrived; then it streams answers with
//! [`Chat::send`]. Everything that reads the GPU back
//! is awaited (see `wgquant::gpu::ready`): a browser maps buffers only between the tasks of its
//! event loop, which is also what lets the page repaint between tokens.

// wgpu's handles are neither Send nor Sync in a browser; the runtime's `Arc`s are plain shared
// ownership there.
#![allow(clippy::arc_with_non_send_sync)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use serde_json::json;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use wgquant::chat::Conversation;
use wgquant::gpu::{Context, ContextOptions, DeviceProfile};
use wgquant::model::stream::TensorStream;
use wgquant::plan::fmt_bytes;
use wgquant::{GenerateParams, Model, ModelOptions, SamplerParams, Session};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js(e: wgquant::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A GGUF file as it downloads: pushed chunk by chunk while [`Chat::load`] uploads each layer
/// once it has arrived. The page never holds the whole file (see `wgquant::model::stream`).
#[wasm_bindgen]
pub struct ModelStream {
    stream: Rc<TensorStream>,
}

#[wasm_bindgen]
impl ModelStream {
    /// A stream of a file of `file_len` bytes (the response's Content-Length).
    #[wasm_bindgen(constructor)]
    pub fn new(file_len: f64) -> ModelStream {
        ModelStream { stream: Rc::new(TensorStream::new(file_len as u64)) }
    }

    /// The next bytes. An error (not a GGUF file, a bad header) also ends the load.
    pub fn push(&self, chunk: &[u8]) -> Result<(), JsError> {
        self.stream.push(chunk).map_err(js)
    }

    /// The download has ended: an error when bytes are missing (which also ends the load).
    pub fn finish(&self) -> Result<(), JsError> {
        self.stream.finish().map_err(js)
    }

    /// The download failed because of `why`: the load ends with it.
    pub fn fail(&self, why: &str) {
        self.stream.fail(why);
    }

    /// The most bytes of tensors held at once, waiting for their upload.
    pub fn peak_held(&self) -> f64 {
        self.stream.peak_held() as f64
    }
}

/// A loaded model and one conversation with it.
#[wasm_bindgen]
pub struct Chat {
    /// Loaded once for the page's lifetime (the session borrows it); loading another model
    /// reloads the page.
    model: &'static Model,
    state: Rc<RefCell<Conversing>>,
    /// Set by [`Chat::stop`], read between tokens.
    stop: Rc<Cell<bool>>,
    /// The file's own chat template, described; `None` when it has none (the page then
    /// continues text rather than chatting, though the family's template is there).
    own_template: Option<String>,
}

/// The session (KV cache) and the conversation it holds.
struct Conversing {
    session: Session<'static>,
    conversation: Option<Conversation>,
    /// Tokens that end an answer besides the end-of-generation ones.
    stop_tokens: Vec<u32>,
}

/// How to answer one message.
struct Reply {
    template: bool,
    max_tokens: usize,
    temperature: f32,
}

#[wasm_bindgen]
impl Chat {
    /// Opens the browser's WebGPU device and loads the model from `stream` as it arrives,
    /// calling `on_upload(bytes_done, bytes_total)` as weights reach the GPU; resolves to the
    /// chat. `n_ctx` 0 takes the model's training context (at most 4096); `profile` forces a
    /// device profile (`gpu` or `cpu`; empty: the adapter's, `cpu` for a fallback adapter such as
    /// SwiftShader).
    pub fn load(stream: &ModelStream, n_ctx: u32, profile: String, on_upload: js_sys::Function) -> js_sys::Promise {
        let stream = stream.stream.clone();
        future_to_promise(async move {
            match Chat::load_from(&stream, n_ctx, &profile, on_upload).await {
                Ok(chat) => Ok(JsValue::from(chat)),
                Err(e) => {
                    // The download stops at its next chunk instead of filling memory for nothing.
                    let e = JsValue::from(e);
                    let why = e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message()));
                    stream.fail(why.as_deref().unwrap_or("the load failed"));
                    Err(e)
                }
            }
        })
    }

    async fn load_from(
        stream: &TensorStream,
        n_ctx: u32,
        profile: &str,
        on_upload: js_sys::Function,
    ) -> Result<Chat, JsError> {
        let profile = match profile {
            "" => None,
            "gpu" => Some(DeviceProfile::gpu()),
            "cpu" => Some(DeviceProfile::cpu()),
            other => return Err(JsError::new(&format!("unknown device profile `{other}` (gpu or cpu)"))),
        };
        let ctx = Context::request(ContextOptions { profile, ..Default::default() }).await.map_err(js)?;
        let options = ModelOptions { n_ctx: (n_ctx > 0).then_some(n_ctx as usize), ..Default::default() };
        let progress = |done: u64, total: u64| {
            let _ = on_upload.call2(&JsValue::NULL, &JsValue::from(done as f64), &JsValue::from(total as f64));
        };
        let model = Model::from_stream(Arc::new(ctx), stream, options, progress).await.map_err(js)?;
        let model: &'static Model = Box::leak(Box::new(model));
        let template = model.chat_template().map_err(js)?;
        let own_template = template.is_jinja().then(|| template.describe());
        let conversing = Conversing {
            session: model.session().map_err(js)?,
            stop_tokens: template.stop_tokens(model.tokenizer()),
            conversation: Some(Conversation::new(template, None)),
        };
        Ok(Chat { model, state: Rc::new(RefCell::new(conversing)), stop: Rc::default(), own_template })
    }

    /// What was loaded, and where, as JSON.
    pub fn info(&self) -> String {
        let ctx = self.model.gpu();
        let adapter = ctx.adapter_info();
        let config = self.model.config();
        json!({
            "adapter": adapter.name,
            "fallback_adapter": adapter.device_type == wgpu::DeviceType::Cpu,
            "profile": ctx.profile().name,
            "shader_f16": ctx.has(wgpu::Features::SHADER_F16),
            "subgroups": ctx.has(wgpu::Features::SUBGROUP),
            "subgroup_sizes": [adapter.subgroup_min_size, adapter.subgroup_max_size],
            "arch": config.arch.name(),
            "layers": config.n_layer,
            "vocabulary": config.n_vocab,
            "n_ctx": self.model.n_ctx(),
            "gpu_memory": fmt_bytes(ctx.memory().total()),
            "load_seconds": self.model.load_time().as_secs_f64(),
            "template": self.own_template,
        })
        .to_string()
    }

    /// Answers `text`, calling `on_piece(text)` as each piece is generated: with `template` a new
    /// user message in the conversation (the cache keeps what came before), without it a prompt
    /// to continue from scratch. `temperature` 0 is greedy. Resolves to the reply as JSON: its
    /// token ids, counts, speeds and why it ended.
    // The conversation stays borrowed for the whole answer, across its awaits, on purpose: a
    // second `send` or a `reset` meanwhile is refused (`try_borrow_mut`), and `stop` needs no
    // borrow.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn send(
        &self,
        text: String,
        template: bool,
        max_tokens: u32,
        temperature: f32,
        on_piece: js_sys::Function,
    ) -> js_sys::Promise {
        let (state, stop) = (self.state.clone(), self.stop.clone());
        let reply = Reply { template, max_tokens: max_tokens as usize, temperature };
        future_to_promise(async move {
            let mut state = state.try_borrow_mut().map_err(|_| JsError::new("an answer is already being generated"))?;
            stop.set(false);
            let summary = state.answer(&text, &reply, &on_piece, &stop).await.map_err(js)?;
            Ok(JsValue::from_str(&summary))
        })
    }

    /// Ends the answer being generated after its current token.
    pub fn stop(&self) {
        self.stop.set(true);
    }

    /// Starts a new conversation.
    pub fn reset(&self) -> Result<(), JsError> {
        let mut state = self.state.try_borrow_mut().map_err(|_| JsError::new("an answer is being generated"))?;
        state.restart();
        Ok(())
    }
}

impl Conversing {
    fn restart(&mut self) {
        self.session.reset();
        if let Some(c) = &mut self.conversation {
            c.reset();
        }
    }

    async fn answer(
        &mut self,
        text: &str,
        reply: &Reply,
        on_piece: &js_sys::Function,
        stop: &Cell<bool>,
    ) -> wgquant::Result<String> {
        let conversation = self.conversation.as_ref().filter(|_| reply.template);
        let turn = conversation.map(|c| c.prepare(text, self.session.history().len())).transpose()?;
        if turn.as_ref().is_none_or(|t| t.from_scratch) {
            self.session.reset();
        }
        let prompt = turn.as_ref().map_or(text, |t| t.prompt.as_str());
        let sampler = match reply.temperature > 0.0 {
            true => SamplerParams { temperature: reply.temperature, ..Default::default() },
            false => SamplerParams::greedy(),
        };
        let stop_strings = conversation.map(|c| c.template().stop_strings()).unwrap_or_default();
        let params = GenerateParams { max_tokens: reply.max_tokens, sampler, stop: stop_strings, parse_special: true };
        let stop_tokens = if reply.template { &self.stop_tokens[..] } else { &[] };

        let result = generate(&mut self.session, prompt, &params, stop_tokens, on_piece, stop).await;
        let (answer, ids, stats) = match result {
            Ok(done) => done,
            Err(e) => {
                // What the cache holds no longer matches the conversation: start the next turn over.
                self.session.reset();
                return Err(e);
            }
        };
        if let (Some(c), Some(turn)) = (&mut self.conversation, turn) {
            let history = self.session.history();
            let fed = self.session.model().tokenizer().decode(&history[history.len() - stats.generated_tokens..]);
            c.commit(turn, &answer, &fed);
        }
        Ok(json!({
            "ids": ids,
            "text": answer,
            "prompt_tokens": stats.prompt_tokens,
            "generated_tokens": stats.generated_tokens,
            "prompt_tps": stats.prompt_tps(),
            "decode_tps": stats.decode_tps(),
            "stop_reason": stats.stop_reason.map(|r| format!("{r:?}")),
            "context_used": self.session.history().len(),
        })
        .to_string())
    }
}

/// Generates from `prompt`, handing each piece to `on_piece`; returns the answer, its token ids
/// and the generation's counts.
async fn generate(
    session: &mut Session<'static>,
    prompt: &str,
    params: &GenerateParams,
    stop_tokens: &[u32],
    on_piece: &js_sys::Function,
    stop: &Cell<bool>,
) -> wgquant::Result<(String, Vec<u32>, wgquant::GenerationStats)> {
    let mut generation = session.generate_async(prompt, params).await?;
    let (mut answer, mut ids) = (String::new(), Vec::new());
    while let Some(piece) = generation.next_async().await {
        let piece = piece?;
        if stop_tokens.contains(&piece.token) {
            break;
        }
        ids.push(piece.token);
        answer.push_str(&piece.text);
        // A page whose callback throws keeps its answer; the generation goes on.
        let _ = on_piece.call1(&JsValue::NULL, &JsValue::from_str(&piece.text));
        if stop.get() {
            break;
        }
    }
    Ok((answer, ids, generation.stats().clone()))
}
