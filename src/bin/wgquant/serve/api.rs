//! OpenAI's request and response shapes, and its error format.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::engine::{Finish, TokenLogprob};
use wgquant::tokenizer::Tokenizer;

/// An error as OpenAI sends it: `{"error": {"message", "type", "code"}}` with an HTTP status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into(), kind: "invalid_request_error", code: None }
    }
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), kind, code: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind, "code": self.code}});
        (self.status, Json(body)).into_response()
    }
}

/// Parses a JSON body, type errors included, into a 400 that says what is wrong.
pub fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// One string or a list of them (`stop`, `prompt`).
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The sampling and output fields both endpoints take (`model` and other fields are accepted and
/// ignored: one model is served).
#[derive(Deserialize, Debug, Default)]
pub struct Common {
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<OneOrMany>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub n: Option<u32>,
    /// Chat: a bool with `top_logprobs`; completions: the number of alternatives.
    pub logprobs: Option<Value>,
    pub top_logprobs: Option<u32>,
}

#[derive(Deserialize, Debug, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Deserialize, Debug)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Deserialize, Debug)]
pub struct ChatMessage {
    pub role: String,
    /// Absent or null (an assistant turn that only called tools) reads as empty.
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content: a string, or a list of parts of which the text ones are read.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, Debug)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

impl Content {
    pub fn text(&self) -> Result<String, ApiError> {
        match self {
            Content::Text(s) => Ok(s.clone()),
            Content::Parts(parts) => parts
                .iter()
                .map(|p| match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => Ok(t.as_str()),
                    (kind, _) => {
                        Err(ApiError::bad_request(format!("content parts of type `{kind}` are not supported")))
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|t| t.concat()),
        }
    }
}

#[derive(Deserialize, Debug)]
pub struct CompletionRequest {
    pub prompt: OneOrMany,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Deserialize, Debug)]
pub struct TokenizeRequest {
    pub content: String,
    #[serde(default)]
    pub add_special: bool,
}

#[derive(Deserialize, Debug)]
pub struct DetokenizeRequest {
    pub tokens: Vec<u32>,
}

/// Which endpoint's shapes a response takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

/// Identity of one response: its id, creation time and model name.
#[derive(Clone, Debug)]
pub struct Ident {
    pub id: String,
    pub created: u64,
    pub model: String,
}

/// OpenAI's `usage`.
pub fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn piece(tokenizer: &Tokenizer, token: u32) -> (String, Vec<u8>) {
    let bytes = tokenizer.token_to_piece(token).to_vec();
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

/// A token's log-probabilities in the chat shape (`logprobs.content[i]`).
pub fn chat_logprob(tokenizer: &Tokenizer, lp: &TokenLogprob) -> Value {
    let entry = |token: u32, logprob: f32| {
        let (text, bytes) = piece(tokenizer, token);
        json!({"token": text, "logprob": logprob, "bytes": bytes})
    };
    let mut v = entry(lp.token, lp.logprob);
    v["top_logprobs"] = lp.top.iter().map(|&(t, l)| entry(t, l)).collect();
    v
}

/// Tokens' log-probabilities in the completions shape (`logprobs: {tokens, token_logprobs,
/// top_logprobs, text_offset}`).
pub fn completion_logprobs(tokenizer: &Tokenizer, lps: &[&TokenLogprob], offset0: usize) -> Value {
    let mut offset = offset0;
    let (mut tokens, mut token_logprobs, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    for lp in lps {
        let (text, _) = piece(tokenizer, lp.token);
        offsets.push(offset);
        offset += text.len();
        tokens.push(text);
        token_logprobs.push(lp.logprob);
        let top: serde_json::Map<String, Value> =
            lp.top.iter().map(|&(t, l)| (piece(tokenizer, t).0, json!(l))).collect();
        tops.push(Value::Object(top));
    }
    json!({"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": tops, "text_offset": offsets})
}

/// A streamed chunk: `delta` text (or the role, first), the finish reason on the last.
pub fn chunk(ep: Endpoint, id: &Ident, text: Option<&str>, finish: Option<Finish>, logprobs: Value) -> Value {
    let finish = finish.map(Finish::as_str);
    match ep {
        Endpoint::Chat => {
            let delta = match text {
                Some(t) => json!({"content": t}),
                None if finish.is_none() => json!({"role": "assistant", "content": ""}),
                None => json!({}),
            };
            json!({
                "id": id.id, "object": "chat.completion.chunk", "created": id.created, "model": id.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
            })
        }
        Endpoint::Completions => json!({
            "id": id.id, "object": "text_completion", "created": id.created, "model": id.model,
            "choices": [{"index": 0, "text": text.unwrap_or(""), "logprobs": logprobs, "finish_reason": finish}],
        }),
    }
}

/// The usage chunk of a stream that asked for it (`stream_options.include_usage`).
pub fn usage_chunk(ep: Endpoint, id: &Ident, prompt: usize, completion: usize) -> Value {
    let object = if ep == Endpoint::Chat { "chat.completion.chunk" } else { "text_completion" };
    json!({"id": id.id, "object": object, "created": id.created, "model": id.model, "choices": [], "usage": usage(prompt, completion)})
}

/// A whole (non-streamed) response.
pub fn response(ep: Endpoint, id: &Ident, text: &str, finish: Finish, logprobs: Value, usage: Value) -> Value {
    let finish = finish.as_str();
    match ep {
        Endpoint::Chat => json!({
            "id": id.id, "object": "chat.completion", "created": id.created, "model": id.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs, "finish_reason": finish}],
            "usage": usage,
        }),
        Endpoint::Completions => json!({
            "id": id.id, "object": "text_completion", "created": id.created, "model": id.model,
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}],
            "usage": usage,
        }),
    }
}
