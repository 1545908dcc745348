//! Architectures beyond the default models, each on a tiny random-weight file with its exact tensor
//! names and metadata (tests/data/tiny/, written by `examples/make-tiny-models.rs`), against
//! llama.cpp's outputs on the same file (`tests/data/tiny/make-reference.sh`):
//!
//! - `llama3`: Llama 3.1's `rope_freqs` divisors, a tied head, GQA;
//! - `qwen3`: per-head q/k RMSNorm, NeoX rope, no biases;
//! - `phi3`: fused `attn_qkv` and gate+up `ffn_up`, LongRoPE's long factors and attention factor;
//! - `gemma2`: soft-capped attention scores and logits, a window of 8 on every other layer,
//!   post-norms, scaled embeddings.
//!
//! The prompt's ids must be llama.cpp's exactly; the logits after the prompt, on the GPU and on the
//! CPU, must match llama.cpp's within what its 8-bit activations explain; greedy steps, teacher
//! forced, must pick llama.cpp's token wherever its margin is clear.

mod common;

use std::sync::Arc;

use wgquant::gguf::GgufFile;
use wgquant::gpu::{Context, ContextOptions, DeviceProfile};
use wgquant::model::cpu::{CpuKvCache, Logits};
use wgquant::model::gpu::{GpuModel, GpuState, Offload};
use wgquant::model::{Arch, Config, KvType};
use wgquant::tokenizer::Tokenizer;

/// The model on the device's own profile, or on the GPU profile (whatever the device).
fn load(name: &str, gpu_profile: bool) -> (GpuModel, Tokenizer) {
    let file = Arc::new(GgufFile::open(common::data_path(&format!("tiny/{name}.gguf"))).unwrap());
    let config = Config::from_gguf(&file).unwrap();
    let tokenizer = Tokenizer::from_gguf(&file).unwrap();
    let options = ContextOptions { profile: gpu_profile.then(DeviceProfile::gpu), ..Default::default() };
    let ctx = Arc::new(Context::with_options(options).expect("a GPU adapter (lavapipe in CI)"));
    (GpuModel::load(ctx, file, Offload::all_gpu(&config), |_, _| {}).unwrap(), tokenizer)
}

fn check(name: &str, arch: Arch) {
    for gpu_profile in [false, true] {
        check_on(name, arch, gpu_profile);
    }
}

fn check_on(name: &str, arch: Arch, gpu_profile: bool) {
    let (model, tokenizer) = load(name, gpu_profile);
    let label = format!("{name} ({} profile)", model.ctx.profile().name);
    assert_eq!(model.config.arch, arch);
    let case = common::greedy_cases_in(&format!("tiny/{name}.greedy.json")).remove(0);
    assert_eq!(tokenizer.encode(&case.prompt, tokenizer.add_bos(), true).unwrap(), case.prompt_ids, "{label}: ids");

    // The logits after the prompt, GPU and CPU, against llama.cpp's.
    assert_eq!(model.cpu.kernels, wgquant::model::cpu::CpuKernels::Integer);
    let theirs = common::read_f32s(&format!("tiny/{name}.step0.logits.f32"));
    // llama.cpp pads its context to 256 positions, past Phi-3's original 64: its long rope
    // factors apply there, and here.
    let n_ctx = 256;
    let mut state = GpuState::new(&model, n_ctx, 16, 1, KvType::F16).unwrap();
    let gpu = model.forward(&mut state, &case.prompt_ids, 0, Logits::Last).unwrap();
    // The CPU's reference kernels, and its integer ones (what offloaded layers run).
    let cpu_run = |cpu: &wgquant::model::cpu::CpuModel| {
        let mut cache = CpuKvCache::new(&model.config, n_ctx);
        cpu.forward(&case.prompt_ids, 0, &mut cache, Logits::Last).unwrap()
    };
    let cpu = cpu_run(&model.cpu.reference().unwrap());
    let cpu_int = cpu_run(&model.cpu);
    let spread = theirs.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    for (path, ours) in [("gpu", &gpu), ("cpu", &cpu), ("cpu integer", &cpu_int)] {
        let (mad, kl, top, their_top) = common::logit_stats(ours, &theirs);
        let max = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        eprintln!("{label} {path}: mad {mad} max {max} (logits up to {spread}) kl {kl}\n  ours   {top:?}\n  theirs {their_top:?}");
        assert_eq!(top[..3], their_top[..3], "{label} {path}: top-3");
        assert!(kl < 2e-3, "{label} {path}: KL {kl}");
        assert!(max < 0.05 * spread, "{label} {path}: max |ours - llama.cpp| {max} for logits up to {spread}");
    }

    // Teacher forcing over the prompt and llama.cpp's greedy tokens, in one batch on the GPU.
    let tokens: Vec<u32> = case.prompt_ids.iter().chain(&case.generated_ids).copied().collect();
    let mut state = GpuState::new(&model, n_ctx, 64, 64, KvType::F16).unwrap();
    let logits = model.forward(&mut state, &tokens, 0, Logits::All).unwrap();
    let agreed = common::check_teacher_forced(&case, &logits, model.config.n_vocab, 0.1);
    let clear = case.margins.iter().filter(|&&m| m > 0.1).count();
    assert!(agreed + 1 >= clear, "{label}: {agreed} of {clear} clear steps agreed");
}

#[test]
fn llama3_matches_llama_cpp() {
    check("llama3", Arch::Llama);
}

#[test]
fn qwen3_matches_llama_cpp() {
    check("qwen3", Arch::Qwen3);
}

#[test]
fn phi3_matches_llama_cpp() {
    check("phi3", Arch::Phi3);
}

#[test]
fn gemma2_matches_llama_cpp() {
    check("gemma2", Arch::Gemma2);
}
