//! Chat templates: turning a conversation into the prompt text a chat model was trained on.
//!
//! A GGUF file converted from Hugging Face usually carries the model's template as Jinja source in
//! `tokenizer.chat_template`; it is rendered with minijinja under the conventions of Hugging Face's
//! `apply_chat_template` (`messages`, `add_generation_prompt`, `bos_token`, `eos_token`,
//! `raise_exception`, `strftime_now`, Python string methods, `trim_blocks` and `lstrip_blocks`).
//! Files without one get a built-in template for their model family ([`Family`]): Gemma's
//! `<start_of_turn>` turns, Llama 2's `[INST]`, Llama 3's header blocks, or ChatML.
//!
//! A [`Conversation`] keeps the messages and the text the session's KV cache already holds, so each
//! new user message costs only the tokens of the new turn: the whole conversation is rendered and
//! only the part after the cached text is fed.
//!
//! ```
//! use wgquant::chat::{ChatTemplate, Family, Message};
//! let template = ChatTemplate::builtin(Family::Gemma, "<bos>", "<eos>");
//! let text = template.render(&[Message::user("Hi!")], true).unwrap();
//! assert_eq!(text, "<bos><start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n");
//! ```

use std::collections::BTreeMap;
use std::fmt;

use minijinja::{Environment, ErrorKind, Value};

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;

/// The GGUF metadata key holding a Hugging Face chat template.
pub const TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// Name of the compiled template inside its minijinja environment.
const TEMPLATE_NAME: &str = "chat_template";

/// What the official templates raise when turns do not alternate.
const ALTERNATION_ERROR: &str = "Conversation roles must alternate user/assistant/user/assistant/...";

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant` (templates may know more, e.g. `tool`).
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message { role: role.into(), content: content.into() }
    }
    pub fn system(content: impl Into<String>) -> Message {
        Message::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Message {
        Message::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new("assistant", content)
    }
}

/// The chat formats with a built-in template, for files that carry none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `<start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n`; the system prompt goes at the
    /// start of the first user turn (Gemma has no system role).
    Gemma,
    /// `<s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] answer </s>`.
    Llama2,
    /// `<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>`.
    Llama3,
    /// `<|im_start|>role\n...<|im_end|>\n` (Qwen2 and many fine-tunes).
    ChatMl,
}

impl Family {
    /// All families, in the order [`Family::detect`] tries their marker tokens.
    pub const ALL: [Family; 4] = [Family::Gemma, Family::Llama3, Family::ChatMl, Family::Llama2];

    /// A short name: `gemma`, `llama-2`, `llama-3`, `chatml`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Gemma => "gemma",
            Family::Llama2 => "llama-2",
            Family::Llama3 => "llama-3",
            Family::ChatMl => "chatml",
        }
    }

    /// The family named `name` (as [`Family::name`] spells it).
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The token that opens a turn; its presence in a vocabulary or template identifies the family.
    fn marker(self) -> &'static str {
        match self {
            Family::Gemma => "<start_of_turn>",
            Family::Llama2 => "[INST]",
            Family::Llama3 => "<|start_header_id|>",
            Family::ChatMl => "<|im_start|>",
        }
    }

    /// The family whose turn marker is a token of `tokenizer` (what the model was tuned on), else
    /// the usual format of architecture `arch`; ChatML when neither says anything.
    pub fn detect(arch: &str, tokenizer: &Tokenizer) -> Family {
        let by_vocab =
            [Family::Gemma, Family::Llama3, Family::ChatMl].into_iter().find(|f| tokenizer.id_of(f.marker()).is_some());
        by_vocab.unwrap_or_else(|| Family::for_arch(arch))
    }

    /// The usual chat format of an architecture.
    fn for_arch(arch: &str) -> Family {
        match arch {
            a if a.starts_with("gemma") => Family::Gemma,
            "llama" => Family::Llama2,
            _ => Family::ChatMl,
        }
    }

    /// The family a Jinja template writes, judged by the turn markers in its source.
    fn of_source(source: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| source.contains(f.marker()))
    }

    /// Text that ends an assistant turn (first) and text that would start another turn. The model
    /// normally ends a turn with an end-of-generation token; these catch the markers when the model
    /// spells them out instead.
    pub fn stop_strings(self) -> &'static [&'static str] {
        match self {
            Family::Gemma => &["<end_of_turn>", "<start_of_turn>"],
            Family::Llama2 => &["</s>", "[INST]"],
            Family::Llama3 => &["<|eot_id|>", "<|start_header_id|>"],
            Family::ChatMl => &["<|im_end|>", "<|im_start|>"],
        }
    }

    /// Render `messages` the way the family's official template does.
    fn render(self, messages: &[Message], add_generation_prompt: bool, bos: &str, eos: &str) -> Result<String> {
        match self {
            Family::Gemma => render_gemma(messages, add_generation_prompt, bos),
            Family::Llama2 => render_llama2(messages, bos, eos),
            Family::Llama3 => Ok(render_llama3(messages, add_generation_prompt, bos)),
            Family::ChatMl => Ok(render_chatml(messages, add_generation_prompt)),
        }
    }
}

/// The leading system message's content and the messages after it.
fn split_system(messages: &[Message]) -> (Option<&str>, &[Message]) {
    match messages.split_first() {
        Some((first, rest)) if first.role == "system" => (Some(first.content.as_str()), rest),
        _ => (None, messages),
    }
}

/// Gemma and Llama 2 insist on user, assistant, user, ... after the system message.
fn check_alternation(turns: &[Message]) -> Result<()> {
    let alternates = turns.iter().enumerate().all(|(i, m)| (m.role == "user") == (i % 2 == 0));
    if alternates {
        Ok(())
    } else {
        Err(Error::Invalid(format!("chat template: {ALTERNATION_ERROR}")))
    }
}

/// Gemma 3's template: the system prompt and a blank line open the first user turn.
fn render_gemma(messages: &[Message], add_generation_prompt: bool, bos: &str) -> Result<String> {
    let (system, turns) = split_system(messages);
    check_alternation(turns)?;
    let mut out = bos.to_string();
    for (i, m) in turns.iter().enumerate() {
        let role = if m.role == "assistant" { "model" } else { m.role.as_str() };
        out.push_str(&format!("<start_of_turn>{role}\n"));
        if let (0, Some(system)) = (i, system) {
            out.push_str(&format!("{system}\n\n"));
        }
        out.push_str(&format!("{}<end_of_turn>\n", m.content.trim()));
    }
    if add_generation_prompt {
        out.push_str("<start_of_turn>model\n");
    }
    Ok(out)
}

/// Llama 2 chat's template: every user turn starts with BOS, every answer ends with EOS, and the
/// system prompt sits in `<<SYS>>` inside the first instruction. An open `[INST] ... [/INST]` is the
/// generation prompt already, so `add_generation_prompt` changes nothing.
fn render_llama2(messages: &[Message], bos: &str, eos: &str) -> Result<String> {
    let (system, turns) = split_system(messages);
    check_alternation(turns)?;
    let mut out = String::new();
    for (i, m) in turns.iter().enumerate() {
        let content = match (i, system) {
            (0, Some(system)) => format!("<<SYS>>\n{system}\n<</SYS>>\n\n{}", m.content),
            _ => m.content.clone(),
        };
        match m.role.as_str() {
            "user" => out.push_str(&format!("{bos}[INST] {} [/INST]", content.trim())),
            _ => out.push_str(&format!(" {} {eos}", content.trim())),
        }
    }
    Ok(out)
}

/// Llama 3 Instruct's template: BOS, then one header block per message.
fn render_llama3(messages: &[Message], add_generation_prompt: bool, bos: &str) -> String {
    let mut out = bos.to_string();
    for m in messages {
        out.push_str(&format!("<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>", m.role, m.content.trim()));
    }
    if add_generation_prompt {
        out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
    }
    out
}

/// ChatML: no BOS, content verbatim.
fn render_chatml(messages: &[Message], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content));
    }
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}

/// Where a template comes from.
enum Source {
    Builtin(Family),
    /// A compiled Jinja template (in an environment of its own, under [`TEMPLATE_NAME`]).
    Jinja(Box<Environment<'static>>),
}

/// A chat template: renders a conversation to prompt text.
pub struct ChatTemplate {
    source: Source,
    /// The family the template writes (for stop strings); `None` for an unrecognised Jinja template.
    family: Option<Family>,
    bos_token: String,
    eos_token: String,
    /// Whether the tokenizer adds BOS itself, so a BOS the template writes must be dropped.
    strip_bos: bool,
    /// Extra variables for Jinja templates (e.g. `date_string`).
    variables: BTreeMap<String, String>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.describe())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("strip_bos", &self.strip_bos)
            .finish()
    }
}

impl ChatTemplate {
    /// A built-in template; `bos_token`/`eos_token` are the texts of the model's BOS and EOS tokens
    /// (`<bos>`, `</s>`), written where the family's template writes them.
    pub fn builtin(family: Family, bos_token: &str, eos_token: &str) -> ChatTemplate {
        ChatTemplate {
            source: Source::Builtin(family),
            family: Some(family),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            strip_bos: false,
            variables: BTreeMap::new(),
        }
    }

    /// A Hugging Face Jinja template. A syntax error is an [`Error::Invalid`] naming the line.
    pub fn jinja(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let env = jinja_environment(source)?;
        Ok(ChatTemplate {
            source: Source::Jinja(Box::new(env)),
            family: Family::of_source(source),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            strip_bos: false,
            variables: BTreeMap::new(),
        })
    }

    /// The template of a model: its own (`tokenizer.chat_template`) when the file has one, else the
    /// built-in one for its family ([`Family::detect`]). A BOS the template writes at the start is
    /// dropped from prompts when the tokenizer adds BOS itself (see [`ChatTemplate::prompt_text`]).
    pub fn for_model(gguf: &GgufFile, tokenizer: &Tokenizer) -> Result<ChatTemplate> {
        let token = |id: Option<u32>| id.and_then(|id| tokenizer.token_text(id)).unwrap_or("").to_string();
        let (bos, eos) = (token(tokenizer.bos_id()), token(tokenizer.eos_id()));
        let own = gguf.get(TEMPLATE_KEY).and_then(|v| v.as_str()).filter(|s| !s.trim().is_empty());
        let template = match own {
            Some(source) => ChatTemplate::jinja(source, &bos, &eos)?,
            None => ChatTemplate::builtin(Family::detect(gguf.architecture()?, tokenizer), &bos, &eos),
        };
        Ok(template.strip_leading_bos(tokenizer.add_bos()))
    }

    /// Whether [`prompt_text`](Self::prompt_text) drops a leading BOS (set it when the tokenizer adds
    /// one, or the prompt would start with two).
    pub fn strip_leading_bos(mut self, yes: bool) -> ChatTemplate {
        self.strip_bos = yes;
        self
    }

    /// Set a variable for a Jinja template, e.g. `date_string` for Llama 3.1's system header.
    pub fn with_variable(mut self, name: &str, value: &str) -> ChatTemplate {
        self.variables.insert(name.to_string(), value.to_string());
        self
    }

    /// The built-in family used, or the one a Jinja template was recognised as.
    pub fn family(&self) -> Option<Family> {
        self.family
    }

    /// Whether the template came from the model file rather than being built in.
    pub fn is_jinja(&self) -> bool {
        matches!(self.source, Source::Jinja(_))
    }

    /// For people: `built-in gemma` or `the model's (chatml-style)`.
    pub fn describe(&self) -> String {
        match (&self.source, self.family) {
            (Source::Builtin(f), _) => format!("built-in {}", f.name()),
            (Source::Jinja(_), Some(f)) => format!("the model's ({}-style)", f.name()),
            (Source::Jinja(_), None) => "the model's".to_string(),
        }
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Strings that end the assistant's answer (pass them as [`GenerateParams::stop`](crate::GenerateParams::stop)).
    /// The EOS text ends it for templates of no known family.
    pub fn stop_strings(&self) -> Vec<String> {
        match self.family {
            Some(f) => f.stop_strings().iter().map(|s| s.to_string()).collect(),
            None if !self.eos_token.is_empty() => vec![self.eos_token.clone()],
            None => Vec::new(),
        }
    }

    /// Tokens of `tokenizer` that end the answer besides its end-of-generation tokens: the stop
    /// strings that are single (control) tokens. Control tokens decode to no text, so a stop string
    /// cannot catch them; the caller stops when it sees one.
    pub fn stop_tokens(&self, tokenizer: &Tokenizer) -> Vec<u32> {
        self.stop_strings().iter().filter_map(|s| tokenizer.id_of(s)).collect()
    }

    /// Render `messages`; with `add_generation_prompt` the text ends where the assistant's answer
    /// starts. A template that fails (unknown role order, an exception it raises) is an
    /// [`Error::Invalid`] saying why.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        match &self.source {
            Source::Builtin(family) => family.render(messages, add_generation_prompt, &self.bos_token, &self.eos_token),
            Source::Jinja(env) => self.render_jinja(env, messages, add_generation_prompt),
        }
    }

    /// `rendered` as a session should be given it at the start of its cache: without the leading
    /// BOS text when the tokenizer adds BOS itself.
    pub fn prompt_text<'a>(&self, rendered: &'a str) -> &'a str {
        match rendered.strip_prefix(self.bos_token.as_str()) {
            Some(rest) if self.strip_bos && !self.bos_token.is_empty() => rest,
            _ => rendered,
        }
    }

    fn render_jinja(
        &self,
        env: &Environment<'static>,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = env.get_template(TEMPLATE_NAME).map_err(template_error)?;
        let mut ctx: BTreeMap<String, Value> =
            self.variables.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
        ctx.insert("messages".into(), messages.iter().map(message_value).collect());
        ctx.insert("add_generation_prompt".into(), Value::from(add_generation_prompt));
        ctx.insert("bos_token".into(), Value::from(self.bos_token.as_str()));
        ctx.insert("eos_token".into(), Value::from(self.eos_token.as_str()));
        // apply_chat_template passes these as None when unused; templates test `tools is not none`.
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        template.render(Value::from_object(ctx)).map_err(template_error)
    }
}

/// A message as templates see it: a map with `role` and `content`.
fn message_value(m: &Message) -> Value {
    let map: BTreeMap<String, Value> =
        [("role".to_string(), Value::from(m.role.as_str())), ("content".to_string(), Value::from(m.content.as_str()))]
            .into_iter()
            .collect();
    Value::from_object(map)
}

/// A minijinja environment configured like transformers' chat template sandbox, holding `source`.
fn jinja_environment(source: &str) -> Result<Environment<'static>> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(template_error)?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_template_owned(TEMPLATE_NAME, source.to_string()).map_err(template_error)?;
    Ok(env)
}

fn template_error(e: minijinja::Error) -> Error {
    Error::Invalid(format!("chat template: {e}"))
}

/// `raise_exception(msg)`: templates call it to reject a conversation.
fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

/// `strftime_now(format)`: the current date and time (UTC) formatted like Python's `strftime`.
fn strftime_now(format: String) -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    strftime(&format, secs)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Python-style `strftime` of `unix_secs` (UTC) for the common directives (`%d %m %Y %y %b %B %a %A
/// %H %M %S %j %%`); other directives are copied as they are.
pub fn strftime(format: &str, unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday.
    let yday = days - days_from_civil(year, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('b') => out.push_str(&MONTHS[month as usize - 1][..3]),
            Some('B') => out.push_str(MONTHS[month as usize - 1]),
            Some('a') => out.push_str(&WEEKDAYS[weekday][..3]),
            Some('A') => out.push_str(WEEKDAYS[weekday]),
            Some('H') => out.push_str(&format!("{:02}", secs / 3600)),
            Some('M') => out.push_str(&format!("{:02}", secs / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", secs % 60)),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date (inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The text to feed after `cached` so that the session holds `full`: `full` past the point where
/// `cached` ends. Whitespace may differ between the two, since templates trim answers that the
/// cache holds untrimmed: whitespace only in `cached` is skipped, whitespace only in `full` is
/// skipped inside the cached part and fed after it. Any other difference gives `None`, and the
/// conversation must be fed again from the start.
pub fn continuation<'a>(cached: &str, full: &'a str) -> Option<&'a str> {
    let mut c = cached.chars().peekable();
    let mut f = full.char_indices().peekable();
    while let Some(&cc) = c.peek() {
        match f.peek() {
            Some(&(_, fc)) if fc == cc => {
                c.next();
                f.next();
            }
            _ if cc.is_whitespace() => {
                c.next();
            }
            Some(&(_, fc)) if fc.is_whitespace() => {
                f.next();
            }
            _ => return None,
        }
    }
    let at = f.peek().map_or(full.len(), |&(i, _)| i);
    Some(&full[at..])
}

/// A conversation whose history lives in a session's KV cache.
///
/// ```no_run
/// # fn main() -> wgquant::Result<()> {
/// use wgquant::chat::{ChatTemplate, Conversation};
/// use wgquant::{GenerateParams, Model, ModelOptions};
/// let path = "models/gemma-3-270m-q4_k_m.gguf";
/// let model = Model::load(path, ModelOptions::default())?;
/// let gguf = wgquant::gguf::GgufFile::open(path)?;
/// let mut chat = Conversation::new(ChatTemplate::for_model(&gguf, model.tokenizer())?, None);
/// let mut session = model.session()?;
/// let turn = chat.prepare("Hi!", session.history().len())?;
/// if turn.from_scratch {
///     session.reset();
/// }
/// let params = GenerateParams { stop: chat.template().stop_strings(), ..GenerateParams::greedy(32) };
/// let mut generation = session.generate(&turn.prompt, &params)?;
/// let answer: String = generation.by_ref().map(|p| p.map(|p| p.text)).collect::<wgquant::Result<_>>()?;
/// let generated = generation.stats().generated_tokens;
/// drop(generation);
/// // What the cache holds of the answer: its tokens, the stop string that cut it included.
/// let fed = model.tokenizer().decode(&session.history()[session.history().len() - generated..]);
/// chat.commit(turn, &answer, &fed);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Conversation {
    template: ChatTemplate,
    system: Option<String>,
    messages: Vec<Message>,
    /// The conversation as the template renders it, up to what the cache holds.
    cached: String,
}

/// A user message ready to be fed: see [`Conversation::prepare`].
#[derive(Clone, Debug)]
pub struct Turn {
    user: String,
    rendered: String,
    /// The text to generate from.
    pub prompt: String,
    /// The session must be reset first: `prompt` is the whole conversation.
    pub from_scratch: bool,
}

impl Conversation {
    /// An empty conversation, opened by `system` when given.
    pub fn new(template: ChatTemplate, system: Option<String>) -> Conversation {
        let mut conversation = Conversation { template, system, messages: Vec::new(), cached: String::new() };
        conversation.reset();
        conversation
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The messages so far (the system message first, when there is one).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Forget every message but the system prompt (reset the session with it).
    pub fn reset(&mut self) {
        self.messages = self.system.iter().map(Message::system).collect();
        self.cached.clear();
    }

    /// The prompt for a new user message, given how many tokens the session holds: the new turn
    /// only when the cache holds the conversation so far, else the whole conversation (then
    /// [`Turn::from_scratch`] is set and the session must be reset). Nothing changes until
    /// [`commit`](Self::commit), so a prompt that fails can simply be dropped.
    pub fn prepare(&self, user: &str, session_tokens: usize) -> Result<Turn> {
        let mut messages = self.messages.clone();
        messages.push(Message::user(user));
        let rendered = self.template.render(&messages, true)?;
        let suffix =
            (session_tokens > 0 && !self.cached.is_empty()).then(|| continuation(&self.cached, &rendered)).flatten();
        let (prompt, from_scratch) = match suffix {
            Some(suffix) => (suffix.to_string(), false),
            None => (self.template.prompt_text(&rendered).to_string(), true),
        };
        Ok(Turn { user: user.to_string(), rendered, prompt, from_scratch })
    }

    /// Record the turn once its answer was generated (also a partial one). `answer` is the text
    /// shown, which becomes the assistant message; `fed` is the text of the tokens generated into
    /// the cache (the answer plus a stop string that cut it, if any).
    pub fn commit(&mut self, turn: Turn, answer: &str, fed: &str) {
        self.messages.push(Message::user(turn.user));
        self.messages.push(Message::assistant(answer));
        self.cached = turn.rendered + fed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-07-26 12:34:56 UTC, a Friday.
        assert_eq!(strftime("%d %b %Y", 1_721_997_296), "26 Jul 2024");
        assert_eq!(strftime("%A %B %j %H:%M:%S %y %%", 1_721_997_296), "Friday July 208 12:34:56 24 %");
        assert_eq!(strftime("%Y-%m-%d %a", 0), "1970-01-01 Thu");
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn continuation_tolerates_whitespace_only() {
        assert_eq!(continuation("ab", "abc"), Some("c"));
        assert_eq!(continuation("a \n", "a<e>\nb"), Some("<e>\nb"));
        assert_eq!(continuation("x\na", "x\n a<e>"), Some("<e>"));
        assert_eq!(continuation("ax", "ab"), None);
        assert_eq!(continuation("abc", "ab"), None);
    }
}
