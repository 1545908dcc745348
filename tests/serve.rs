//! `wgquant serve` on the chat default (SmolLM2-135M-Instruct), driven by OpenAI's own Python
//! client (tests/serve_client.py, from the virtual environment `scripts/test.sh` sets up) and by
//! raw HTTP for what a client library would not send: malformed bodies, wrong types, unknown
//! routes, oversized bodies, missing keys, and a client that disconnects mid-stream.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const KEY: &str = "test-key";

/// The server, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `wgquant serve` with `--parallel 2` on a free port and waits (at most two minutes)
    /// until /health says ready.
    fn start() -> Server {
        Server::start_with_env(&[])
    }

    /// [`Server::start`] with extra environment variables.
    fn start_with_env(env: &[(&str, &str)]) -> Server {
        let model = common::smollm2_path();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_wgquant"))
            .args(["serve", "-m", model.to_str().unwrap(), "--port", &port.to_string(), "--parallel", "2"])
            .args(["--api-key", KEY, "-c", "1024", "--device", "gpu"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let server = Server { child, port };
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = server.try_request("GET", "/health", None, &[]) {
                return server;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "the server did not become ready");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One HTTP/1.1 request with `Connection: close`; (status, body).
    fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[&str],
    ) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(300)))?;
        let body = body.unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut response = Vec::new();
        s.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
        Ok((status, body))
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let auth = format!("Authorization: Bearer {KEY}");
        self.try_request(method, path, body.map(str::as_bytes), &[&auth, "Content-Type: application/json"]).unwrap()
    }
}

/// The body's OpenAI error, checked for shape.
fn error_of(status: u16, body: &str, expect_status: u16) -> Value {
    assert_eq!(status, expect_status, "{body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let e = &v["error"];
    assert!(e["message"].is_string() && e["type"].is_string() && e.get("code").is_some(), "{body}");
    e.clone()
}

/// The Python with OpenAI's client: `WGQUANT_TEST_PYTHON`, else the environment scripts/test.sh
/// makes. Missing is a failure.
fn python() -> PathBuf {
    let path = std::env::var_os("WGQUANT_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py-venv/bin/python"));
    assert!(path.exists(), "{} is missing: scripts/test.sh sets up the Python client", path.display());
    path
}

#[test]
fn openais_python_client_chats_streams_and_batches() {
    let server = Server::start();
    let out = Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/serve_client.py"))
        .args([server.url(), KEY.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("{v:#}");
    // The answer `wgquant chat` gives, whole and streamed alike.
    assert_eq!(v["chat"], "The capital of France is Paris.");
    assert_eq!(v["chat_stream"], v["chat"]);
    assert!(v["stream_chunks"].as_u64().unwrap() > 1);
    assert_eq!((v["chat_finish"].as_str(), v["stream_finish"].as_str()), (Some("stop"), Some("stop")));
    // llama.cpp's greedy continuation of the raw prompt (tests/data/reference/smollm2/greedy.json)
    // begins ", the city of New Haven"; " New" wins there by a near-tie (0.06) that wgquant
    // resolves as " Nova" (see tests/smollm2.rs).
    assert!(v["completion"].as_str().unwrap().starts_with(", the city of"), "{}", v["completion"]);
    assert_eq!(v["completion_finish"], "length");
    assert_eq!((v["stopped"].as_str(), v["stopped_finish"].as_str()), (Some(", the"), Some("stop")));
    // Five requests on two slots, decoded in shared batches, answer as each did alone.
    assert_eq!(v["together"], v["alone"]);
    assert_eq!(v["errors"]["n"], 400);
    assert_eq!(v["errors"]["context"], "context_length_exceeded");
    assert_eq!(v["errors"]["key"], 401);
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_keeps_serving() {
    let server = Server::start();
    let chat = "/v1/chat/completions";
    let (s, b) = server.request("POST", chat, Some("{not json"));
    error_of(s, &b, 400);
    let (s, b) = server.request("POST", chat, Some(r#"{"messages": "hi"}"#));
    assert!(error_of(s, &b, 400)["message"].as_str().unwrap().contains("invalid"), "{b}");
    let (s, b) = server.request(
        "POST",
        chat,
        Some(r#"{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}"#),
    );
    error_of(s, &b, 400);
    let (s, b) = server.request("POST", chat, Some(r#"{"messages": [{"role": "user", "content": "hi"}], "n": 3}"#));
    error_of(s, &b, 400);
    let (s, b) = server.request("POST", "/v1/completions", Some(r#"{"prompt": "hi", "max_tokens": 0}"#));
    error_of(s, &b, 400);
    let (s, b) = server.request("GET", "/v1/nothing-here", None);
    error_of(s, &b, 404);
    let big = format!(r#"{{"prompt": "{}"}}"#, "x".repeat(2 << 20));
    let (s, b) = server.request("POST", "/v1/completions", Some(&big));
    error_of(s, &b, 413);
    let (s, b) = server.try_request("GET", "/v1/models", None, &[]).unwrap();
    assert_eq!(error_of(s, &b, 401)["code"], "invalid_api_key");
    // /health needs no key.
    assert_eq!(server.try_request("GET", "/health", None, &[]).unwrap().0, 200);

    // A client that leaves mid-stream frees its slot: open a long stream, read its first bytes,
    // hang up; both slots then serve new requests, and the metrics show nothing left active.
    let body = r#"{"prompt": "Once upon a time", "max_tokens": 900, "temperature": 0, "stream": true}"#;
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut first = [0u8; 256];
    let n = s.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(s);
    for _ in 0..2 {
        let (status, b) = server.request(
            "POST",
            "/v1/completions",
            Some(r#"{"prompt": "Hello", "max_tokens": 3, "temperature": 0}"#),
        );
        assert_eq!(status, 200, "{b}");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["usage"]["completion_tokens"], 3);
    }
    let start = Instant::now();
    loop {
        let (status, metrics) = server.request("GET", "/metrics", None);
        assert_eq!(status, 200);
        if metrics.contains("wgquant_active_slots 0") {
            assert!(metrics.contains("wgquant_requests_total") && metrics.contains("wgquant_vram_bytes"), "{metrics}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the abandoned stream still holds its slot:\n{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Tokenize and detokenize round-trip; tokens outside the vocabulary are a 400.
    let (s, b) = server.request("POST", "/tokenize", Some(r#"{"content": "Hello world"}"#));
    assert_eq!(s, 200, "{b}");
    let tokens = serde_json::from_str::<Value>(&b).unwrap()["tokens"].clone();
    assert_eq!(tokens, serde_json::json!([19556, 905]), "llama.cpp's ids (tests/data/reference/smollm2/tokenize.json)");
    let (s, b) = server.request("POST", "/detokenize", Some(&format!(r#"{{"tokens": {tokens}}}"#)));
    assert_eq!((s, serde_json::from_str::<Value>(&b).unwrap()["content"].as_str()), (200, Some("Hello world")));
    let (s, b) = server.request("POST", "/detokenize", Some(r#"{"tokens": [99999999]}"#));
    error_of(s, &b, 400);
}

/// Slots that do not fit are refused at load, with the numbers, and the process exits.
#[test]
fn parallel_slots_that_do_not_fit_are_refused_with_numbers() {
    let model = common::smollm2_path();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_wgquant"))
        .args(["serve", "-m", model.to_str().unwrap(), "--port", &port.to_string()])
        .args(["--parallel", "64", "-c", "4096", "--vram-budget", "200MiB", "--device", "gpu"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // (The Vulkan loader may print its own `error:` lines about the display environment.)
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: ") && l.contains("does not fit"))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(error.contains("KV cache 5.62 GiB for 64 sequences") && error.contains("200.0 MiB"), "{error}");
}

/// Sampled requests decoded together answer the same with the device selecting each slot's
/// likeliest tokens after its penalties (the GPU profile's choice, forced on lavapipe) as with
/// every logit read back: same seeds, same texts, with the repetition, frequency and presence
/// penalties all set.
#[test]
fn device_sampling_in_batched_rounds_answers_as_host_sampling() {
    let body = |seed: u32| {
        format!(
            r#"{{"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0.9, "top_k": 40, "top_p": 0.95, "seed": {seed},
                "repeat_penalty": 1.2, "frequency_penalty": 0.4, "presence_penalty": 0.3}}"#
        )
    };
    let answers = |server: &Server| -> Vec<String> {
        std::thread::scope(|scope| {
            let threads: Vec<_> = (1..=3)
                .map(|seed| {
                    let body = body(seed);
                    scope.spawn(move || {
                        let (status, text) = server.request("POST", "/v1/completions", Some(&body));
                        assert_eq!(status, 200, "{text}");
                        let v: Value = serde_json::from_str(&text).unwrap();
                        v["choices"][0]["text"].as_str().unwrap().to_string()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        })
    };
    let host = answers(&Server::start_with_env(&[("WGQUANT_DEVICE_SAMPLING", "0")]));
    let device = answers(&Server::start_with_env(&[("WGQUANT_DEVICE_SAMPLING", "1")]));
    assert_eq!(device, host);
    assert!(host.iter().all(|t| !t.is_empty()), "{host:?}");
}
