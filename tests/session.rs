//! The public API on the default model: streaming generation, stop strings, the full context,
//! and multi-turn sessions that keep their cache.

mod common;

use wgquant::{Error, GenerateParams, Model, ModelOptions, StopReason};

fn load(n_ctx: usize) -> Model {
    let options = ModelOptions { n_ctx: Some(n_ctx), batch: 16, ..Default::default() };
    Model::load(common::default_model_path(), options).expect("the default model on the GPU (lavapipe in CI)")
}

fn generate(model: &Model, prompt: &str, params: &GenerateParams) -> (String, StopReason, usize) {
    let mut session = model.session().unwrap();
    let mut generation = session.generate(prompt, params).unwrap();
    let text: String = generation.by_ref().map(|p| p.unwrap().text).collect();
    let stats = generation.stats().clone();
    (text, stats.stop_reason.unwrap(), stats.generated_tokens)
}

#[test]
fn greedy_generation_streams_llama_cpps_tokens() {
    let model = load(64);
    let (text, reason, n) = generate(&model, "Once upon a time", &GenerateParams::greedy(8));
    assert_eq!(text, ", there was a little girl named Lily");
    assert_eq!((reason, n), (StopReason::MaxTokens, 8));
}

#[test]
fn stop_strings_end_generation_before_them() {
    let model = load(64);
    let params = GenerateParams { stop: vec![" girl".into()], ..GenerateParams::greedy(16) };
    let (text, reason, _) = generate(&model, "Once upon a time", &params);
    assert_eq!(text, ", there was a little");
    assert_eq!(reason, StopReason::StopString);
}

#[test]
fn a_full_context_stops_generation_and_a_long_prompt_is_an_error() {
    let model = load(16);
    // 5 prompt tokens (BOS included) leave 11 positions.
    let (_, reason, n) = generate(&model, "Once upon a time", &GenerateParams::greedy(100));
    assert_eq!((reason, n), (StopReason::ContextFull, 11));

    let mut session = model.session().unwrap();
    let long = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen";
    match session.generate(long, &GenerateParams::greedy(4)) {
        Err(Error::Invalid(msg)) => assert!(msg.contains("do not fit"), "{msg}"),
        Err(e) => panic!("expected a clear error, got {e}"),
        Ok(_) => panic!("a prompt longer than the context must be refused"),
    }
    // The session is still usable afterwards.
    assert!(session.history().is_empty());
}

#[test]
fn a_session_keeps_its_cache_across_calls() {
    let model = load(64);
    // Two calls on one session equal one call with the whole text.
    let mut session = model.session().unwrap();
    let first: String =
        session.generate("Once upon", &GenerateParams::greedy(0)).unwrap().map(|p| p.unwrap().text).collect();
    assert!(first.is_empty());
    let held = session.history().len();
    let second: String =
        session.generate(" a time", &GenerateParams::greedy(4)).unwrap().map(|p| p.unwrap().text).collect();
    assert!(session.history().len() > held, "the second call appended to the cache");
    let (whole, _, _) = generate(&model, "Once upon a time", &GenerateParams::greedy(4));
    assert_eq!(second, whole);
    session.reset();
    assert!(session.history().is_empty());
}

#[test]
fn a_warm_decode_step_creates_no_bind_groups() {
    // Bind groups are cached (src/gpu/bind_groups.rs): once the first decode step has made its
    // groups, later steps bind the same windows and create none.
    let model = load(64);
    let mut session = model.session().unwrap();
    let prompt = session.tokenize("Once upon a time", true).unwrap();
    let mut token = session.feed_greedy(&prompt).unwrap();
    token = session.feed_greedy(&[token]).unwrap();
    let made = model.gpu().bind_groups_created();
    let mut decoded = Vec::new();
    for _ in 0..4 {
        token = session.feed_greedy(&[token]).unwrap();
        decoded.push(token);
    }
    assert_eq!(model.gpu().bind_groups_created(), made, "groups created by warm decode steps");
    // The reused groups compute llama.cpp's tokens (", there" came before).
    assert_eq!(model.tokenizer().decode(&decoded), " was a little girl");
}

/// Sampled generation selects the likeliest tokens on the GPU (after the repetition penalty) and
/// reads back those alone (the GPU profile's choice, forced here); it picks the tokens the sampler
/// picks from every logit read back, with the same seed.
#[test]
fn sampling_on_the_gpu_picks_what_sampling_every_logit_picks() {
    use std::sync::Arc;
    use wgquant::gpu::{Context, ContextOptions, DeviceProfile};
    use wgquant::sampler::{Sampler, SamplerParams};
    let ctx = Context::with_options(ContextOptions { profile: Some(DeviceProfile::gpu()), ..Default::default() });
    let options = ModelOptions { n_ctx: Some(64), batch: 16, ..Default::default() };
    let model = Model::load_on(Arc::new(ctx.unwrap()), common::default_model_path(), options, |_, _| {}).unwrap();
    assert!(model.gpu().profile().device_sampling);
    let sampler = SamplerParams { repeat_penalty: 1.2, seed: 7, ..SamplerParams::default() };
    let params = GenerateParams { max_tokens: 24, sampler: sampler.clone(), ..GenerateParams::default() };
    let mut session = model.session().unwrap();
    let on_gpu: Vec<u32> = session.generate("Once upon a time", &params).unwrap().map(|p| p.unwrap().token).collect();

    let mut session = model.session().unwrap();
    let prompt = session.tokenize("Once upon a time", true).unwrap();
    let mut host = Sampler::new(sampler);
    let mut logits = session.feed(&prompt).unwrap().to_vec();
    let mut by_hand = Vec::new();
    while by_hand.len() < on_gpu.len() {
        let token = host.sample(&logits, session.history());
        by_hand.push(token);
        logits = session.feed(&[token]).unwrap().to_vec();
    }
    assert_eq!(on_gpu, by_hand);
    assert_eq!(on_gpu.len(), 24, "no end of text within 24 sampled tokens of a story");
}

/// The futures a web page awaits (`Context::request`, `Model::from_gguf` on a file held in
/// memory, `generate_async`, `next_async`, `feed_async`) give what the blocking API gives; here
/// they run on an executor, as wasm-bindgen-futures runs them in a page.
#[test]
fn the_async_api_a_browser_awaits_gives_the_blocking_apis_results() {
    use std::sync::Arc;
    use wgquant::gguf::GgufFile;
    use wgquant::gpu::{Context, ContextOptions};

    let model = load(64);
    let bytes = std::fs::read(common::default_model_path()).unwrap();
    let ctx = pollster::block_on(Context::request(ContextOptions::default())).unwrap();
    let file = Arc::new(GgufFile::from_bytes(bytes).unwrap());
    let options = ModelOptions { n_ctx: Some(64), batch: 16, ..Default::default() };
    let in_memory = Model::from_gguf(Arc::new(ctx), file, options, |_, _| {}).unwrap();

    let sampled = GenerateParams {
        sampler: wgquant::SamplerParams { seed: 7, ..Default::default() },
        ..GenerateParams::greedy(8)
    };
    for params in [GenerateParams::greedy(8), sampled] {
        let (blocking, _, _) = generate(&model, "Once upon a time", &params);
        let awaited = pollster::block_on(async {
            let mut session = in_memory.session().unwrap();
            let mut generation = session.generate_async("Once upon a time", &params).await.unwrap();
            let mut text = String::new();
            while let Some(piece) = generation.next_async().await {
                text.push_str(&piece.unwrap().text);
            }
            text
        });
        assert_eq!(awaited, blocking, "{:?}", params.sampler);
    }

    let mut blocking = model.session().unwrap();
    let mut awaited = in_memory.session().unwrap();
    let ids = blocking.tokenize("Once upon a time", true).unwrap();
    let want = blocking.feed(&ids).unwrap().to_vec();
    let got = pollster::block_on(awaited.feed_async(&ids)).unwrap().to_vec();
    assert_eq!(got, want);
}

/// Loads `bytes` through a stream fed in chunks of `chunk` bytes while the load runs, as a web
/// page's download loop does: returns the load's result and the stream.
fn load_streamed(bytes: &[u8], chunk: usize) -> (wgquant::Result<Model>, wgquant::model::stream::TensorStream) {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Poll, Waker};
    use wgquant::model::stream::TensorStream;

    let stream = TensorStream::new(bytes.len() as u64);
    let ctx = Arc::new(wgquant::gpu::Context::new().unwrap());
    let options = ModelOptions { n_ctx: Some(64), batch: 16, ..Default::default() };
    let result = {
        let mut loading = std::pin::pin!(Model::from_stream(ctx, &stream, options, |_, _| {}));
        let mut chunks = bytes.chunks(chunk);
        let mut finished = false;
        loop {
            match loading.as_mut().poll(&mut std::task::Context::from_waker(Waker::noop())) {
                Poll::Ready(result) => break result,
                Poll::Pending => match chunks.next() {
                    // A refused chunk ends the stream: the load must then end too.
                    Some(c) => drop(stream.push(c)),
                    None if !finished => {
                        finished = true;
                        drop(stream.finish());
                    }
                    None => panic!("the load waits on a stream that has ended"),
                },
            }
        }
    };
    (result, stream)
}

/// A file streamed in 1 MiB chunks (a download) loads as the same model as the file opened
/// whole, and the stream never holds more than its largest tensor and a layer at once; a file
/// that is not GGUF, or that ends early, ends the load with an error that says so.
#[test]
fn a_streamed_file_loads_the_same_model_holding_little_of_it() {
    let path = common::default_model_path();
    let bytes = std::fs::read(&path).unwrap();
    let (streamed, stream) = load_streamed(&bytes, 1 << 20);
    let streamed = streamed.unwrap();

    let file = wgquant::gguf::GgufFile::open(&path).unwrap();
    let largest = file.tensors().iter().map(|t| t.n_bytes).max().unwrap();
    let layer = |il: usize| {
        let prefix = format!("blk.{il}.");
        file.tensors().iter().filter(|t| t.name.starts_with(&prefix)).map(|t| t.n_bytes).sum::<u64>()
    };
    let largest_layer = (0..streamed.config().n_layer).map(layer).max().unwrap();
    let bound = largest + largest_layer + (1 << 20);
    assert!(stream.peak_held() <= bound, "held {} bytes at once, more than {bound}", stream.peak_held());
    assert!(stream.peak_held() < bytes.len() as u64 * 3 / 4);

    let whole = load(64);
    let params = GenerateParams::greedy(8);
    assert_eq!(generate(&streamed, "Once upon a time", &params), generate(&whole, "Once upon a time", &params));

    let (not_gguf, _) = load_streamed(b"<!doctype html><html>not a model</html>", 16);
    let err = not_gguf.err().expect("an HTML page is not a model").to_string();
    assert!(err.contains("not a GGUF file"), "{err}");
    let (cut, _) = load_streamed(&bytes[..bytes.len() / 2], 1 << 20);
    let err = cut.err().expect("half a file is not a model").to_string();
    assert!(err.contains("extends past the end of the file") || err.contains("ended"), "{err}");
}
