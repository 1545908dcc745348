//! Chat templates (built-in and Hugging Face Jinja ones) against exact expected prompts, the
//! conversation's incremental feeding, and `wgquant chat` driven through a pipe.
//!
//! The binary tests run `wgquant chat`, the binary cargo builds for the tests.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wgquant::chat::{continuation, ChatTemplate, Conversation, Family, Message};
use wgquant::gguf::{GgufFile, GgufWriter};
use wgquant::tokenizer::Tokenizer;
use wgquant::{GenerateParams, Model, ModelOptions};

// ---------------------------------------------------------------------------------------------
// Templates as published in Hugging Face `tokenizer_config.json` files.

/// google/gemma-3-*-it.
const GEMMA3_JINJA: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"#;

/// meta-llama/Llama-2-7b-chat-hf.
const LLAMA2_JINJA: &str = r#"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"#;

/// meta-llama/Meta-Llama-3-8B-Instruct.
const LLAMA3_JINJA: &str = r#"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"#;

/// Qwen/Qwen2-0.5B-Instruct (ChatML with a default system prompt).
const QWEN2_JINJA: &str = r#"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"#;

/// meta-llama/Llama-3.2-3B-Instruct (tools, dates, `tojson`, `raise_exception`).
const LLAMA32_JINJA: &str = r#"{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"#;

/// A conversation with a system prompt, an answer with trailing whitespace, and an open question.
fn conversation() -> Vec<Message> {
    vec![
        Message::system("You are terse."),
        Message::user("Hi!"),
        Message::assistant("Hello. "),
        Message::user("Capital of France?"),
    ]
}

/// The same without the system prompt.
fn without_system() -> Vec<Message> {
    conversation()[1..].to_vec()
}

fn jinja(source: &str, bos: &str, eos: &str) -> ChatTemplate {
    ChatTemplate::jinja(source, bos, eos).unwrap()
}

/// Built-in and Jinja template give the same text for the usual conversations.
fn assert_same_rendering(builtin: &ChatTemplate, jinja: &ChatTemplate) {
    for messages in [conversation(), without_system(), vec![Message::user("One question")]] {
        for add_generation_prompt in [true, false] {
            assert_eq!(
                builtin.render(&messages, add_generation_prompt).unwrap(),
                jinja.render(&messages, add_generation_prompt).unwrap(),
                "{messages:?}, add_generation_prompt {add_generation_prompt}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering

#[test]
fn gemma_template_renders_turns_with_system_in_first_user_turn() {
    let builtin = ChatTemplate::builtin(Family::Gemma, "<bos>", "<eos>");
    let expected = "<bos><start_of_turn>user\nYou are terse.\n\nHi!<end_of_turn>\n\
                    <start_of_turn>model\nHello.<end_of_turn>\n\
                    <start_of_turn>user\nCapital of France?<end_of_turn>\n\
                    <start_of_turn>model\n";
    assert_eq!(builtin.render(&conversation(), true).unwrap(), expected);
    let official = jinja(GEMMA3_JINJA, "<bos>", "<eos>");
    assert_eq!(official.render(&conversation(), true).unwrap(), expected);
    assert_same_rendering(&builtin, &official);
    assert_eq!(official.family(), Some(Family::Gemma));
}

#[test]
fn llama2_template_renders_inst_blocks_with_sys() {
    let builtin = ChatTemplate::builtin(Family::Llama2, "<s>", "</s>");
    let expected =
        "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] Capital of France? [/INST]";
    assert_eq!(builtin.render(&conversation(), true).unwrap(), expected);
    let official = jinja(LLAMA2_JINJA, "<s>", "</s>");
    assert_eq!(official.render(&conversation(), true).unwrap(), expected);
    assert_same_rendering(&builtin, &official);
    assert_eq!(
        builtin.render(&without_system(), true).unwrap(),
        "<s>[INST] Hi! [/INST] Hello. </s><s>[INST] Capital of France? [/INST]"
    );
}

#[test]
fn llama3_template_renders_header_blocks() {
    let builtin = ChatTemplate::builtin(Family::Llama3, "<|begin_of_text|>", "<|eot_id|>");
    let expected = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>\
                    <|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>\
                    <|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>\
                    <|start_header_id|>user<|end_header_id|>\n\nCapital of France?<|eot_id|>\
                    <|start_header_id|>assistant<|end_header_id|>\n\n";
    assert_eq!(builtin.render(&conversation(), true).unwrap(), expected);
    let official = jinja(LLAMA3_JINJA, "<|begin_of_text|>", "<|eot_id|>");
    assert_eq!(official.render(&conversation(), true).unwrap(), expected);
    assert_same_rendering(&builtin, &official);
}

#[test]
fn chatml_template_renders_im_blocks() {
    let builtin = ChatTemplate::builtin(Family::ChatMl, "", "<|im_end|>");
    let expected = "<|im_start|>system\nYou are terse.<|im_end|>\n\
                    <|im_start|>user\nHi!<|im_end|>\n\
                    <|im_start|>assistant\nHello. <|im_end|>\n\
                    <|im_start|>user\nCapital of France?<|im_end|>\n\
                    <|im_start|>assistant\n";
    assert_eq!(builtin.render(&conversation(), true).unwrap(), expected);
    let qwen2 = jinja(QWEN2_JINJA, "", "<|im_end|>");
    assert_eq!(qwen2.render(&conversation(), true).unwrap(), expected);
    assert_eq!(qwen2.family(), Some(Family::ChatMl));
    // Qwen2's own template opens with a default system prompt when there is none.
    assert_eq!(
        qwen2.render(&[Message::user("Hi!")], true).unwrap(),
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn llama32_template_renders_system_header_with_date() {
    let template = jinja(LLAMA32_JINJA, "<|begin_of_text|>", "<|eot_id|>").with_variable("date_string", "26 Jul 2024");
    let expected = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
                    Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are terse.<|eot_id|>\
                    <|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>\
                    <|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>\
                    <|start_header_id|>user<|end_header_id|>\n\nCapital of France?<|eot_id|>\
                    <|start_header_id|>assistant<|end_header_id|>\n\n";
    assert_eq!(template.render(&conversation(), true).unwrap(), expected);
    assert_eq!(template.family(), Some(Family::Llama3));
    assert_eq!(template.stop_strings()[0], "<|eot_id|>");

    // Without a date the template asks `strftime_now` for today's.
    let today = jinja(LLAMA32_JINJA, "<|begin_of_text|>", "<|eot_id|>").render(&without_system(), true).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let dates = [wgquant::chat::strftime("%d %b %Y", now - 60), wgquant::chat::strftime("%d %b %Y", now)];
    assert!(dates.iter().any(|d| today.contains(&format!("Today Date: {d}\n\n<|eot_id|>"))), "{today}");
}

#[test]
fn python_string_methods_json_and_loop_controls_work() {
    let source = "{% for m in messages %}{% if m.content.startswith('/') %}{% continue %}{% endif %}\
                  {{ m.role.upper() }}:{{ m.content.strip() }}:{{ m.content.split() | length }}:{{ {'r': m.role} | tojson }}\n\
                  {% if loop.index >= 3 %}{% break %}{% endif %}{% endfor %}";
    let messages = [Message::user(" a b "), Message::user("/cmd"), Message::assistant("c"), Message::user("d")];
    let text = jinja(source, "", "").render(&messages, false).unwrap();
    // `tojson` spaces like Python's json.dumps, as transformers' does.
    assert_eq!(text, "USER:a b:2:{\"r\": \"user\"}\nASSISTANT:c:1:{\"r\": \"assistant\"}\n");
}

#[test]
fn templates_that_fail_are_clear_errors() {
    let broken = ChatTemplate::jinja("{% for m in messages %}{{ m.content }", "", "").unwrap_err().to_string();
    assert!(broken.starts_with("chat template:"), "{broken}");

    let two_users = [Message::user("a"), Message::user("b")];
    let official = jinja(GEMMA3_JINJA, "<bos>", "<eos>").render(&two_users, true).unwrap_err().to_string();
    assert!(official.contains("Conversation roles must alternate user/assistant"), "{official}");
    for family in [Family::Gemma, Family::Llama2] {
        let builtin = ChatTemplate::builtin(family, "<s>", "</s>").render(&two_users, true).unwrap_err().to_string();
        assert!(builtin.contains("Conversation roles must alternate user/assistant"), "{builtin}");
    }
}

#[test]
fn family_names_round_trip() {
    for family in Family::ALL {
        assert_eq!(Family::from_name(family.name()), Some(family));
    }
    assert_eq!(Family::from_name("nope"), None);
}

// ---------------------------------------------------------------------------------------------
// Incremental feeding

#[test]
fn conversation_feeds_only_the_new_turn() {
    let template = ChatTemplate::builtin(Family::Gemma, "<bos>", "<eos>").strip_leading_bos(true);
    let mut chat = Conversation::new(template, Some("Be brief.".into()));
    let first = chat.prepare("Hi!", 0).unwrap();
    assert!(first.from_scratch);
    // The tokenizer adds BOS itself, so the prompt starts after it.
    assert_eq!(first.prompt, "<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\n");
    // The model wrote a trailing newline that the template trims from the history.
    chat.commit(first, "Hello!\n", "Hello!\n");

    let second = chat.prepare("Bye.", 20).unwrap();
    assert!(!second.from_scratch);
    assert_eq!(second.prompt, "<end_of_turn>\n<start_of_turn>user\nBye.<end_of_turn>\n<start_of_turn>model\n");

    // An emptied session gets the whole conversation again.
    let again = chat.prepare("Bye.", 0).unwrap();
    assert!(again.from_scratch);
    assert!(again
        .prompt
        .starts_with("<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>"));

    // A stop string the model spelled out is in the cache: it is not fed again.
    chat.commit(second, "Goodbye", "Goodbye<end_of_turn>");
    assert_eq!(chat.prepare("?", 40).unwrap().prompt, "\n<start_of_turn>user\n?<end_of_turn>\n<start_of_turn>model\n");

    chat.reset();
    assert_eq!(chat.messages(), &[Message::system("Be brief.")]);
    assert!(chat.prepare("Hi!", 40).unwrap().from_scratch);
}

#[test]
fn conversation_continues_llama2_after_the_answer() {
    let template = ChatTemplate::builtin(Family::Llama2, "<s>", "</s>").strip_leading_bos(true);
    let mut chat = Conversation::new(template, None);
    let first = chat.prepare("Hi!", 0).unwrap();
    assert_eq!(first.prompt, "[INST] Hi! [/INST]");
    chat.commit(first, "Hello!", "Hello!");
    assert_eq!(chat.prepare("Bye.", 10).unwrap().prompt, " </s><s>[INST] Bye. [/INST]");
}

#[test]
fn continuation_refuses_a_changed_history() {
    assert_eq!(continuation("<a>x", "<a>x<b>"), Some("<b>"));
    // Whitespace only in the cache is skipped; whitespace only in the template is still fed.
    assert_eq!(continuation("<a>x ", "<a>x\n<b>"), Some("\n<b>"));
    assert_eq!(continuation("<a>x\n\n", "<a>x<b>"), Some("<b>"));
    assert_eq!(continuation("<a>y", "<a>x<b>"), None);
    let template = ChatTemplate::builtin(Family::ChatMl, "", "");
    let mut chat = Conversation::new(template, None);
    let first = chat.prepare("Hi!", 0).unwrap();
    // The cache holds text the template would not render: start again.
    chat.commit(first, "Hello", "Hello<|im_start|>");
    assert!(chat.prepare("Bye.", 10).unwrap().from_scratch);
}

// ---------------------------------------------------------------------------------------------
// The default model

fn default_template() -> (ChatTemplate, Tokenizer) {
    let gguf = GgufFile::open(common::default_model_path()).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    (ChatTemplate::for_model(&gguf, &tokenizer).unwrap(), tokenizer)
}

#[test]
fn default_model_gets_the_builtin_gemma_template() {
    let (template, tokenizer) = default_template();
    assert!(!template.is_jinja(), "the default model has no tokenizer.chat_template");
    assert_eq!(template.family(), Some(Family::Gemma));
    assert_eq!(Family::detect("gemma3", &tokenizer), Family::Gemma);
    assert_eq!((template.bos_token(), template.eos_token()), ("<bos>", "<eos>"));
    let end_of_turn = tokenizer.id_of("<end_of_turn>").unwrap();
    assert!(template.stop_tokens(&tokenizer).contains(&end_of_turn));

    let rendered = template.render(&[Message::user("What is the capital of France?")], true).unwrap();
    let prompt = template.prompt_text(&rendered);
    assert!(prompt.starts_with("<start_of_turn>"), "BOS is left to the tokenizer: {prompt:?}");
    let ids = tokenizer.encode(prompt, tokenizer.add_bos(), true).unwrap();
    assert_eq!(ids, [2, 105, 2364, 107, 3689, 563, 506, 5279, 529, 7001, 236881, 106, 107, 105, 4368, 107]);
}

// ---------------------------------------------------------------------------------------------
// The binary

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Run `wgquant chat` with `args`, write `stdin` to it and close it; fail after `limit`.
fn run_chat(args: &[&str], stdin: &str, limit: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgquant"))
        .arg("chat")
        // The adapter even where it is a CPU emulator: these tests are about the GPU path.
        .args(["--device", "gpu"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "1")
        .spawn()
        .expect("spawn the chat binary");
    let readers = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ]
    .map(|r| {
        std::thread::spawn(move || {
            let mut text = String::new();
            r.expect("piped").read_to_string(&mut text).expect("utf-8 output");
            text
        })
    });
    let mut input = child.stdin.take().unwrap();
    // The binary may exit before reading everything (an error): a broken pipe is fine.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the chat binary ran longer than {limit:?} ({args:?})");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let [stdout, stderr] = readers.map(|r| r.join().unwrap());
    Run { code: status.code(), stdout, stderr }
}

fn model_arg() -> String {
    common::default_model_path().to_str().unwrap().to_string()
}

/// The number before `word` in `line` ("prompt 16 tokens" → 16 for "tokens" after "prompt").
fn number_after(line: &str, label: &str) -> usize {
    let rest = &line[line.find(label).unwrap_or_else(|| panic!("no `{label}` in {line:?}")) + label.len()..];
    rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn piped_chat_answers_and_reports_stats() {
    let model = model_arg();
    let args = ["--model", &model, "--temp", "0", "--max-tokens", "8", "--ctx", "256"];
    let run = run_chat(&args, "What is the capital of France?\nAnd of Italy?\n/stats\n", Duration::from_secs(600));
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert!(!run.stdout.trim().is_empty(), "no answer streamed; stderr:\n{}", run.stderr);
    assert!(run.stderr.contains("Gemma 3 270m") && run.stderr.contains("Q4_K"), "no model line:\n{}", run.stderr);
    assert!(run.stderr.contains("VRAM"), "no VRAM plan:\n{}", run.stderr);
    let stats = run
        .stderr
        .lines()
        .find(|l| l.contains("| context "))
        .unwrap_or_else(|| panic!("no /stats line:\n{}", run.stderr));
    assert!(stats.contains("tokens/s"), "{stats}");
    // The second question was fed after the first turn, not with it: the context holds more than
    // the second prompt and answer.
    let (prompt, answer, context) =
        (number_after(stats, "prompt"), number_after(stats, "answer"), number_after(stats, "context"));
    assert!(prompt < 20 && context > prompt + answer + 16, "{stats}");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn one_shot_greedy_answer_matches_the_api() {
    let path = common::default_model_path();
    let question = "What is the capital of France?";
    let model_arg = model_arg();
    let run = run_chat(
        &["--model", &model_arg, "-p", question, "--temp", "0", "--max-tokens", "16"],
        "",
        Duration::from_secs(600),
    );
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);

    let gguf = GgufFile::open(&path).unwrap();
    let model = Model::load(&path, ModelOptions::default()).unwrap();
    let template = ChatTemplate::for_model(&gguf, model.tokenizer()).unwrap();
    let rendered = template.render(&[Message::user(question)], true).unwrap();
    let params = GenerateParams { stop: template.stop_strings(), ..GenerateParams::greedy(16) };
    let stop_tokens = template.stop_tokens(model.tokenizer());
    let mut session = model.session().unwrap();
    let mut expected = String::new();
    for piece in session.generate(template.prompt_text(&rendered), &params).unwrap() {
        let piece = piece.unwrap();
        if stop_tokens.contains(&piece.token) {
            break;
        }
        expected.push_str(&piece.text);
    }
    assert!(!expected.trim().is_empty());
    assert_eq!(run.stdout.trim_end_matches('\n'), expected.trim_end_matches('\n'));
}

/// With no `--model`, the chat runs the instruction-tuned default (SmolLM2-135M-Instruct), which
/// answers and ends its turn: the answer stops at `<|im_end|>` and never shows it.
#[test]
fn the_default_chat_model_answers_and_ends_its_turn() {
    common::smollm2_path();
    let run = run_chat(
        &["--temp", "0", "--max-tokens", "64"],
        "What is the capital of France?\n/stats\n",
        Duration::from_secs(600),
    );
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert!(run.stderr.contains("Smollm2 135M") && run.stderr.contains("Q4_1"), "no model line:\n{}", run.stderr);
    // Greedy, the model knows this one (the default Gemma base model answered nonsense).
    assert_eq!(run.stdout.trim_end(), "The capital of France is Paris.");
    assert!(run.stderr.contains("stop: end of turn"), "{}", run.stderr);
}

/// The binary's stderr is one `error: ...` line, the exit code 1, and nothing panicked.
fn assert_one_line_error(run: &Run, expect: &str) {
    assert_eq!(run.code, Some(1), "stderr:\n{}", run.stderr);
    let stderr = run.stderr.trim_end();
    assert_eq!(stderr.lines().count(), 1, "more than one line:\n{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains(expect), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn missing_model_file_is_a_one_line_error() {
    let run = run_chat(&["--model", "/nonexistent/model.gguf", "-p", "hi"], "", Duration::from_secs(60));
    assert_one_line_error(&run, "/nonexistent/model.gguf does not exist");
}

#[test]
fn non_gguf_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.gguf");
    std::fs::write(&path, "these are not the weights you are looking for\n").unwrap();
    let run = run_chat(&["--model", path.to_str().unwrap(), "-p", "hi"], "", Duration::from_secs(60));
    assert_one_line_error(&run, "not a GGUF file");
}

#[test]
fn unsupported_architecture_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamba.gguf");
    let mut writer = GgufWriter::new();
    writer.set("general.architecture", "mamba").set("general.name", "tiny mamba");
    writer.add_tensor("token_embd.weight", wgquant::GgmlType::F32, &[8, 4]).unwrap();
    writer.write(&path, |_| Ok(wgquant::gguf::TensorData::Zeros)).unwrap();
    let run = run_chat(&["--model", path.to_str().unwrap(), "-p", "hi"], "", Duration::from_secs(60));
    assert_one_line_error(&run, "unsupported architecture `mamba`");
}
