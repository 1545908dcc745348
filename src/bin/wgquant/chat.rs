//! `wgquant chat`: line editing, streamed answers, the model's own chat template. With no
//! `--model` it chats with SmolLM2-135M-Instruct (fetched by `scripts/fetch-model.sh`).
//!
//! Answers go to stdout, everything else (the loading bar, the model line, stats, errors) to
//! stderr. With stdin not a terminal, lines are read from it plainly (same commands), so scripts
//! and tests can drive the chat; `-p` answers one prompt and exits.
//!
//! Commands: `/reset` starts a new conversation, `/stats` shows the last answer's speed and the
//! context used, `/quit` (or EOF, Ctrl-D) leaves. Ctrl-C stops an answer; at the prompt, twice leaves.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use wgquant::chat::{ChatTemplate, Conversation, Turn};
use wgquant::{Error, GenerateParams, GenerationStats, Model, Result, Session, StopReason};

use crate::common::{self, ModelArgs, SamplingArgs, CHAT_MODEL};

/// Set by Ctrl-C while an answer is being generated: the answer stops at the next token.
static STOP: AtomicBool = AtomicBool::new(false);
/// Whether an answer is being generated (Ctrl-C then stops it instead of leaving).
static GENERATING: AtomicBool = AtomicBool::new(false);

#[derive(clap::Args)]
#[command(after_help = "Commands while chatting: /reset (new conversation), /stats (speed and context), /quit. \
Ctrl-C stops an answer; at the prompt, Ctrl-C twice or Ctrl-D leaves.")]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Most tokens in one answer
    #[arg(short = 'n', long = "n-predict", visible_alias = "max-tokens", default_value_t = 1024)]
    max_tokens: usize,
    /// System prompt opening the conversation
    #[arg(long, visible_alias = "system-prompt")]
    system: Option<String>,
    /// Answer this prompt, print the answer and exit
    #[arg(short, long)]
    prompt: Option<String>,
    /// Plain completion: feed the text as it is, without the chat template
    #[arg(long)]
    no_template: bool,
    /// Print speed stats after each answer
    #[arg(long)]
    stats: bool,
}

pub fn run(args: &Args) -> Result<()> {
    if args.model.device.as_deref() == Some("list") {
        list_devices();
        return Ok(());
    }
    let path = args.model.path(CHAT_MODEL)?;
    let gguf = common::open_checked(&path)?;
    let model = common::load(&path, args.model.options(&gguf)?)?;
    eprintln!("{}", common::describe(&model, &gguf));
    let template = if args.no_template { None } else { Some(ChatTemplate::for_model(&gguf, model.tokenizer())?) };
    if let Some(t) = &template {
        eprintln!("chat template: {}", t.describe());
    }
    let mut chat = Chat::new(args, &model, template)?;
    match &args.prompt {
        Some(prompt) => chat.answer(prompt),
        None => {
            install_ctrlc();
            chat.interact()
        }
    }
}

/// Print every adapter wgpu sees, with the index `--device` takes.
fn list_devices() {
    let adapters = wgquant::gpu::list_adapters();
    if adapters.is_empty() {
        println!("no GPU adapters found (is a Vulkan driver installed?)");
    }
    println!(
        "{}: this machine's CPU, with wgquant's own kernels ({})",
        common::CPU_DEVICE,
        wgquant::cpu::level().name()
    );
    if !adapters.is_empty() {
        println!("{}: the best adapter below, even a CPU emulator", common::GPU_DEVICE);
    }
    for a in adapters {
        let i = &a.info;
        println!("{}: {} ({:?}, {:?}, {} {})", a.index, i.name, i.backend, i.device_type, i.driver, i.driver_info);
    }
}

/// Ctrl-C during an answer stops it; elsewhere (piped input, loading) it leaves as usual. At a
/// rustyline prompt the terminal is in raw mode and rustyline reports Ctrl-C itself.
fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        if GENERATING.load(Ordering::SeqCst) {
            STOP.store(true, Ordering::SeqCst);
        } else {
            std::process::exit(130);
        }
    });
}

/// One line of input.
enum Line {
    Text(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    Eof,
}

/// Where lines come from: rustyline on a terminal, plain reads otherwise.
enum Input {
    Editor(Box<rustyline::DefaultEditor>),
    Plain(std::io::StdinLock<'static>),
}

impl Input {
    fn new() -> Input {
        if std::io::stdin().is_terminal() {
            if let Ok(editor) = rustyline::DefaultEditor::new() {
                return Input::Editor(Box::new(editor));
            }
        }
        Input::Plain(std::io::stdin().lock())
    }

    fn read(&mut self) -> Result<Line> {
        match self {
            Input::Editor(editor) => match editor.readline("> ") {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    Ok(Line::Text(line))
                }
                Err(rustyline::error::ReadlineError::Interrupted) => Ok(Line::Interrupted),
                Err(rustyline::error::ReadlineError::Eof) => Ok(Line::Eof),
                Err(e) => Err(Error::Invalid(format!("reading input: {e}"))),
            },
            Input::Plain(stdin) => {
                let mut line = String::new();
                match stdin.read_line(&mut line) {
                    Ok(0) => Ok(Line::Eof),
                    Ok(_) => Ok(Line::Text(line.trim_end_matches(['\n', '\r']).to_string())),
                    Err(e) => Err(Error::io("<stdin>", e)),
                }
            }
        }
    }
}

/// A chat session: the model's session (KV cache), the conversation and the settings.
struct Chat<'m> {
    model: &'m Model,
    session: Session<'m>,
    /// `None` with `--no-template`: plain completion.
    conversation: Option<Conversation>,
    params: GenerateParams,
    /// Tokens that end an answer besides the end-of-generation ones.
    stop_tokens: Vec<u32>,
    show_stats: bool,
    last: Option<GenerationStats>,
}

impl<'m> Chat<'m> {
    fn new(args: &Args, model: &'m Model, template: Option<ChatTemplate>) -> Result<Chat<'m>> {
        let sampler = args.sampling.params();
        let stop = template.as_ref().map(|t| t.stop_strings()).unwrap_or_default();
        let stop_tokens = template.as_ref().map(|t| t.stop_tokens(model.tokenizer())).unwrap_or_default();
        if args.no_template && args.system.is_some() {
            eprintln!("note: --system is ignored with --no-template");
        }
        Ok(Chat {
            model,
            session: model.session()?,
            conversation: template.map(|t| Conversation::new(t, args.system.clone())),
            params: GenerateParams { max_tokens: args.max_tokens, sampler, stop, parse_special: true },
            stop_tokens,
            show_stats: args.stats,
            last: None,
        })
    }

    /// Read lines until `/quit` or EOF; errors of one answer are reported and the chat goes on.
    fn interact(&mut self) -> Result<()> {
        let mut input = Input::new();
        if matches!(input, Input::Editor(_)) {
            eprintln!("Type a message; /reset starts over, /stats shows speed, /quit leaves. Ctrl-C stops an answer.");
        }
        let mut interrupted = false;
        loop {
            let line = match input.read()? {
                Line::Eof => return Ok(()),
                Line::Interrupted if interrupted => return Ok(()),
                Line::Interrupted => {
                    eprintln!("(Ctrl-C again, Ctrl-D or /quit to leave)");
                    interrupted = true;
                    continue;
                }
                Line::Text(line) => line,
            };
            interrupted = false;
            match line.trim() {
                "" => {}
                "/quit" | "/exit" => return Ok(()),
                "/reset" => self.reset(),
                "/stats" => self.print_stats(),
                "/help" => eprintln!("/reset starts a new conversation, /stats shows speed and context, /quit leaves"),
                _ => {
                    if let Err(e) = self.answer(&line) {
                        eprintln!("error: {e}");
                    }
                }
            }
        }
    }

    fn reset(&mut self) {
        self.session.reset();
        if let Some(c) = &mut self.conversation {
            c.reset();
        }
        eprintln!("(new conversation)");
    }

    /// The stats of the last answer and how full the context is.
    fn print_stats(&self) {
        let used = format!("context {}/{} tokens", self.session.history().len(), self.session.n_ctx());
        match &self.last {
            Some(s) => eprintln!("{} | {used}", stats_line(s)),
            None => eprintln!("no answer yet | {used}"),
        }
    }

    /// Answer `text`: feed the new turn, stream the answer to stdout.
    fn answer(&mut self, text: &str) -> Result<()> {
        let turn = self.prepare(text)?;
        let prompt = turn.as_ref().map_or(text, |t| t.prompt.as_str());
        if turn.as_ref().is_some_and(|t| t.from_scratch) {
            self.session.reset();
        }
        let tokens = self.session.tokenize(prompt, self.params.parse_special)?;
        self.check_fits(tokens.len())?;
        let (answer, stats) = self.generate(&tokens)?;
        if let (Some(conversation), Some(turn)) = (&mut self.conversation, turn) {
            let fed_from = self.session.history().len() - stats.generated_tokens;
            let fed = self.model.tokenizer().decode(&self.session.history()[fed_from..]);
            conversation.commit(turn, &answer, &fed);
        }
        self.report(&stats);
        Ok(())
    }

    /// The chat turn for `text` (`None` in plain completion mode).
    fn prepare(&self, text: &str) -> Result<Option<Turn>> {
        self.conversation.as_ref().map(|c| c.prepare(text, self.session.history().len())).transpose()
    }

    /// A prompt longer than the free context is refused before anything is fed.
    fn check_fits(&self, n_tokens: usize) -> Result<()> {
        let (used, n_ctx) = (self.session.history().len(), self.session.n_ctx());
        if used + n_tokens <= n_ctx {
            return Ok(());
        }
        let hint = if used > 0 { "; type /reset to start a new conversation" } else { "; use a larger --ctx" };
        Err(Error::Invalid(format!(
            "the prompt ({n_tokens} tokens) does not fit: the context holds {used} of {n_ctx} tokens{hint}"
        )))
    }

    /// Stream the answer to stdout until it ends, Ctrl-C or a stop token; returns its text.
    fn generate(&mut self, tokens: &[u32]) -> Result<(String, GenerationStats)> {
        STOP.store(false, Ordering::SeqCst);
        GENERATING.store(true, Ordering::SeqCst);
        let result = stream(&mut self.session, tokens, &self.params, &self.stop_tokens);
        GENERATING.store(false, Ordering::SeqCst);
        let (answer, stats, error) = result?;
        let mut stdout = std::io::stdout().lock();
        if !answer.ends_with('\n') {
            let _ = writeln!(stdout);
        }
        let _ = stdout.flush();
        match error {
            // What was generated stays in the cache and the conversation; say what went wrong.
            Some(e) => eprintln!("error: {e}"),
            None if STOP.load(Ordering::SeqCst) => eprintln!("(stopped)"),
            None => {}
        }
        Ok((answer, stats))
    }

    fn report(&mut self, stats: &GenerationStats) {
        if stats.stop_reason == Some(StopReason::ContextFull) {
            eprintln!(
                "(the context is full: {} tokens; type /reset to start a new conversation)",
                self.session.n_ctx()
            );
        }
        if self.show_stats {
            eprintln!("{}", stats_line(stats));
        }
        self.last = Some(stats.clone());
    }
}

/// Generate from `tokens`, printing pieces as they come. An error after the prompt was fed is
/// returned alongside the partial answer, so the caller keeps the conversation consistent.
fn stream(
    session: &mut Session<'_>,
    tokens: &[u32],
    params: &GenerateParams,
    stop_tokens: &[u32],
) -> Result<(String, GenerationStats, Option<Error>)> {
    let mut generation = session.generate_from_tokens(tokens, params)?;
    let mut stdout = std::io::stdout().lock();
    let mut answer = String::new();
    let mut error = None;
    for piece in &mut generation {
        let piece = match piece {
            Ok(piece) => piece,
            Err(e) => {
                error = Some(e);
                break;
            }
        };
        if stop_tokens.contains(&piece.token) {
            break;
        }
        let _ = write!(stdout, "{}", piece.text);
        let _ = stdout.flush();
        answer.push_str(&piece.text);
        if STOP.load(Ordering::SeqCst) {
            break;
        }
    }
    Ok((answer, generation.stats().clone(), error))
}

/// `prompt 12 tokens, 150.3 tokens/s | answer 16 tokens, 4.1 tokens/s | stop: end of turn`.
fn stats_line(s: &GenerationStats) -> String {
    let stop = match s.stop_reason {
        Some(StopReason::EndOfGeneration) => "end of turn",
        Some(StopReason::StopString) => "stop string",
        Some(StopReason::MaxTokens) => "--max-tokens reached",
        Some(StopReason::ContextFull) => "context full",
        None => "stopped",
    };
    format!(
        "prompt {} tokens, {:.1} tokens/s | answer {} tokens, {:.1} tokens/s | stop: {stop}",
        s.prompt_tokens,
        s.prompt_tps(),
        s.generated_tokens,
        s.decode_tps()
    )
}
