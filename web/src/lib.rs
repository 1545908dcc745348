//! wgquant in a web page: the same runtime and kernels, compiled to WebAssembly, on the browser's
//! WebGPU.
//!
//! The page (`web/app.js`) streams a GGUF file from a URL into a [`Download`], hands it to
//! [`Chat::load`], and streams answers with [`Chat::send`]. Everything that reads the GPU back
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
use wgquant::chat::{ChatTemplate, Conversation};
use wgquant::gguf::{GgufFile, GGUF_MAGIC};
use wgquant::gpu::{Context, ContextOptions, DeviceProfile};
use wgquant::plan::fmt_bytes;
use wgquant::{GenerateParams, Model, ModelOptions, SamplerParams, Session};

/// The largest file a page takes: a wasm32 memory is at most 4 GiB, and the runtime needs some.
const MAX_FILE_BYTES: u64 = 3 << 30;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js(e: wgquant::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A GGUF file as it arrives, held once, in the module's memory.
#[wasm_bindgen]
pub struct Download {
    bytes: Vec<u8>,
}

#[wasm_bindgen]
impl Download {
    /// Room for `expected` bytes (the response's Content-Length; 0 when it is unknown).
    #[wasm_bindgen(constructor)]
    pub fn new(expected: f64) -> Result<Download, JsError> {
        let mut download = Download { bytes: Vec::new() };
        download.reserve(expected as u64)?;
        Ok(download)
    }

    fn reserve(&mut self, more: u64) -> Result<(), JsError> {
        let total = self.bytes.len() as u64 + more;
        if total > MAX_FILE_BYTES {
            return Err(JsError::new(&format!(
                "the file is larger than {}: more than a web page's WebAssembly memory can hold",
                fmt_bytes(MAX_FILE_BYTES)
            )));
        }
        self.bytes
            .try_reserve_exact(more as usize)
            .map_err(|_| JsError::new(&format!("the browser refused {} of memory for the file", fmt_bytes(total))))
    }

    /// Appends a chunk. The first four bytes must be GGUF's magic, so that a wrong URL (an HTML
    /// page, say) fails at once rather than after the whole download.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsError> {
        self.reserve(chunk.len() as u64)?;
        let before = self.bytes.len();
        self.bytes.extend_from_slice(chunk);
        let magic = GGUF_MAGIC.len();
        if before < magic && self.bytes.len() >= magic && &self.bytes[..magic] != GGUF_MAGIC {
            return Err(JsError::new("this is not a GGUF file: it does not begin with \"GGUF\""));
        }
        Ok(())
    }

    /// Bytes received so far.
    pub fn received(&self) -> f64 {
        self.bytes.len() as f64
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
    /// Parses the downloaded file, opens the browser's WebGPU device and uploads the weights.
    /// `n_ctx` 0 takes the model's training context (at most 4096); `profile` forces a device
    /// profile (`gpu` or `cpu`; empty: the adapter's, `cpu` for a fallback adapter such as
    /// SwiftShader).
    pub async fn load(download: Download, n_ctx: u32, profile: String) -> Result<Chat, JsError> {
        let profile = match profile.as_str() {
            "" => None,
            "gpu" => Some(DeviceProfile::gpu()),
            "cpu" => Some(DeviceProfile::cpu()),
            other => return Err(JsError::new(&format!("unknown device profile `{other}` (gpu or cpu)"))),
        };
        let file = Arc::new(GgufFile::from_bytes(download.bytes).map_err(js)?);
        let ctx = Context::request(ContextOptions { profile, ..Default::default() }).await.map_err(js)?;
        let options = ModelOptions { n_ctx: (n_ctx > 0).then_some(n_ctx as usize), ..Default::default() };
        let model = Model::from_gguf(Arc::new(ctx), file.clone(), options, |_, _| {}).map_err(js)?;
        let model: &'static Model = Box::leak(Box::new(model));
        let template = ChatTemplate::for_model(&file, model.tokenizer()).map_err(js)?;
        let own_template = has_own_template(&file).then(|| template.describe());
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

/// Whether the file carries its own chat template (otherwise the family's built-in one is used).
fn has_own_template(file: &GgufFile) -> bool {
    file.get("tokenizer.chat_template").and_then(|v| v.as_str()).is_some_and(|s| !s.trim().is_empty())
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
