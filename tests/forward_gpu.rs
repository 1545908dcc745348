//! The GPU forward pass on the default model, against llama.cpp's outputs and the CPU path.

mod common;

use std::sync::Arc;

use wgquant::gguf::GgufFile;
use wgquant::gpu::Context;
use wgquant::model::cpu::Logits;
use wgquant::model::gpu::{GpuModel, GpuState, Offload};
use wgquant::model::KvType;

fn load(placement: Option<Offload>) -> GpuModel {
    let file = Arc::new(GgufFile::open(common::default_model_path()).unwrap());
    let ctx = Arc::new(Context::new().expect("a GPU adapter (lavapipe in CI)"));
    let config = wgquant::model::Config::from_gguf(&file).unwrap();
    let placement = placement.unwrap_or(Offload::all_gpu(&config));
    GpuModel::load(ctx, file, placement, |_, _| {}).unwrap()
}

/// The logits after "Once upon a time" against llama.cpp's: all on the GPU, and all on the CPU
/// with the integer kernels that offloaded layers run.
#[test]
fn gpu_logits_match_llama_cpp() {
    let all_cpu = Offload { gpu_layers: 0, head_on_gpu: false };
    for placement in [None, Some(all_cpu)] {
        let model = load(placement);
        let mut state = GpuState::new(&model, 64, 16, 1, KvType::F16).unwrap();
        let logits = model.forward(&mut state, &[2, 14946, 3324, 496, 990], 0, Logits::Last).unwrap();
        let reference = common::read_f32s("reference/once_upon_a_time.step0.logits.f32");
        let (mad, kl, ours, theirs) = common::logit_stats(&logits, &reference);
        eprintln!("{placement:?}: mad {mad} kl {kl}\nours   {ours:?}\ntheirs {theirs:?}");
        assert_eq!(ours[..4], theirs[..4], "{placement:?}: top-4 in order");
        let mut a = ours.clone();
        let mut b = theirs.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{placement:?}: same top-10 set");
        assert!(kl < 0.01, "{placement:?}: KL {kl}");
        assert!(mad < 0.3, "{placement:?}: mean abs diff {mad}");
    }
}

#[test]
fn gpu_teacher_forced_top1_matches_llama_cpp() {
    let model = load(None);
    for case in common::greedy_cases() {
        let tokens: Vec<u32> = case.prompt_ids.iter().chain(&case.generated_ids).copied().collect();
        let mut state = GpuState::new(&model, 64, 64, 64, KvType::F16).unwrap();
        let logits = model.forward(&mut state, &tokens, 0, Logits::All).unwrap();
        let agreed = common::check_teacher_forced(&case, &logits, model.config.n_vocab, 0.1);
        assert!(agreed >= 20, "only {agreed} steps agreed");
    }
}

/// Prefill in micro-batches, then decode token by token: the same logits as one batch on the CPU.
#[test]
fn gpu_batches_and_decode_match_the_cpu_path() {
    let model = load(None);
    let tokens = [2u32, 818, 5279, 529, 7001, 563, 506, 5279, 529, 506, 2891];
    let mut cache = wgquant::model::cpu::CpuKvCache::new(&model.config, 32);
    let cpu = model.cpu.reference().unwrap().forward(&tokens, 0, &mut cache, Logits::All).unwrap();
    let nv = model.config.n_vocab;

    // micro-batches of 4 (prefill through the matmul kernels where the batch allows), then decode
    let mut state = GpuState::new(&model, 32, 4, 1, KvType::F16).unwrap();
    let prefill = model.forward(&mut state, &tokens[..7], 0, Logits::Last).unwrap();
    let mut rows = vec![prefill];
    for (i, &t) in tokens[7..].iter().enumerate() {
        rows.push(model.forward(&mut state, &[t], 7 + i, Logits::Last).unwrap());
    }
    for (row, pos) in rows.iter().zip(6..) {
        let expected = &cpu[pos * nv..(pos + 1) * nv];
        let max_diff = row.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert_eq!(common::argmax(row), common::argmax(expected), "position {pos}");
        assert!(max_diff < 0.05, "position {pos}: max |gpu - cpu| = {max_diff}");
    }
}

/// The layers a plan leaves on the CPU give the same logits as an all-GPU run: to f32 rounding
/// with the CPU's reference kernels (the plumbing between the two is exact), and within what
/// rounding activations to 8 bits moves (llama.cpp's CPU backend rounds them too) with the
/// integer kernels that offloaded layers run. The split runs take the prompt in micro-batches of
/// three, so the GPU runs one micro-batch while the CPU runs the one before.
#[test]
fn mixed_gpu_cpu_layers_match_all_gpu() {
    use wgquant::model::cpu::CpuKernels;
    let tokens = [2u32, 14946, 3324, 496, 990, 236764, 993];
    let run = |placement: Offload, kernels| {
        let mut model = load(Some(placement));
        model.cpu.kernels = kernels;
        let batch = if placement.gpu_layers == 18 { 8 } else { 3 };
        let mut state = GpuState::new(&model, 16, batch, 1, KvType::F16).unwrap();
        model.forward(&mut state, &tokens, 0, Logits::Last).unwrap()
    };
    let all = run(Offload { gpu_layers: 18, head_on_gpu: true }, CpuKernels::Reference);
    for placement in [Offload { gpu_layers: 10, head_on_gpu: true }, Offload { gpu_layers: 0, head_on_gpu: false }] {
        let exact = run(placement, CpuKernels::Reference);
        let max_diff = all.iter().zip(&exact).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert_eq!(common::argmax(&all), common::argmax(&exact));
        assert!(max_diff < 0.05, "{placement:?}, reference kernels: max diff {max_diff}");

        let int = run(placement, CpuKernels::Integer);
        let (mad, kl, top, all_top) = common::logit_stats(&int, &all);
        eprintln!("{placement:?}, integer kernels: mean |diff| {mad}, KL {kl}");
        assert_eq!(top[..3], all_top[..3], "{placement:?}, integer kernels: top-3");
        // The bound the comparisons with llama.cpp use (`gpu_logits_match_llama_cpp`).
        assert!(kl < 0.01, "{placement:?}, integer kernels: KL {kl}");
    }
}

/// Past the sliding window (512), the ring caches of the local layers give the CPU path's logits.
#[test]
fn sliding_window_ring_cache_matches_the_cpu_path() {
    let model = load(None);
    // A long deterministic token sequence (BOS, then ids spread over the vocabulary).
    let tokens: Vec<u32> = std::iter::once(2).chain((1..600u32).map(|i| 1000 + (i * 7919) % 200_000)).collect();
    let mut cache = wgquant::model::cpu::CpuKvCache::new(&model.config, 600);
    let cpu = model.cpu.reference().unwrap().forward(&tokens, 0, &mut cache, Logits::Last).unwrap();
    let mut state = GpuState::new(&model, 600, 64, 1, KvType::F16).unwrap();
    let gpu = model.forward(&mut state, &tokens, 0, Logits::Last).unwrap();
    let max_diff = gpu.iter().zip(&cpu).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert_eq!(common::argmax(&gpu), common::argmax(&cpu));
    assert!(max_diff < 0.1, "max |gpu - cpu| = {max_diff}");
}

/// The tracker agrees with the backend's own count of buffer and texture memory (wgpu's internal
/// counters): every byte the runtime allocates is tracked, and dropping the model frees it.
#[test]
fn memory_tracker_matches_the_backend_counters() {
    let ctx = Arc::new(Context::new().expect("a GPU adapter (lavapipe in CI)"));
    let before = wgquant::gpu::vram::backend_memory_bytes(&ctx.device);
    let tracked_before = ctx.memory().total(); // the context's own parameter arena
    let model =
        wgquant::Model::load_on(ctx.clone(), common::default_model_path(), Default::default(), |_, _| {}).unwrap();
    let session = model.session().unwrap();
    let tracked = ctx.memory().total() - tracked_before;
    let backend = wgquant::gpu::vram::backend_memory_bytes(&ctx.device);
    eprintln!("tracked {tracked}, backend {backend:?} (before {before:?})");
    if let (Some(before), Some(backend)) = (before, backend) {
        let allocated = backend - before;
        // Within a MiB (the context's own small buffers come and go): nothing big is untracked.
        let diff = allocated.abs_diff(tracked);
        assert!(diff < 1 << 20, "backend {allocated} vs tracked {tracked}: {diff} bytes apart");
    }
    assert!(tracked > 250_000_000, "weights, KV and scratch are tracked: {tracked}");
    drop(session);
    drop(model);
    assert_eq!(ctx.memory().total(), tracked_before, "dropping the model frees everything it allocated");
}

/// The planner's scratch is what the GPU state allocates: its activation buffers, give or take
/// the small fixed buffers (token ids, the placeholder).
#[test]
fn planned_scratch_matches_the_allocated_activations() {
    use wgquant::gpu::MemTag;
    let model = load(None);
    // A prompt-sized state, and a decode-only one whose small buffers are rounded up for uniform
    // windows.
    for (n_ctx, batch, logits_rows) in [(256, 32, 1), (64, 1, 1)] {
        let before = model.ctx.memory().current(MemTag::Activations);
        let state = GpuState::new(&model, n_ctx, batch, logits_rows, KvType::F16).unwrap();
        let allocated = model.ctx.memory().current(MemTag::Activations) - before;
        // The planner's scratch also counts the context's parameter arena, made with the context.
        let uniform = model.ctx.profile().uniform_activations;
        let planned = wgquant::plan::scratch_bytes(&model.config, batch, n_ctx, logits_rows, uniform)
            - wgquant::gpu::UNIFORM_ARENA_BYTES;
        eprintln!("batch {batch}: allocated {allocated}, planned {planned}");
        assert!(allocated <= planned && planned - allocated <= 4096, "allocated {allocated}, planned {planned}");
        drop(state);
    }
}

/// Decode on the integer path (`DeviceProfile::int_matvec`: activations rounded to 8 bits for
/// every matrix of the default model: Q8_0, Q5_0, Q4_K and Q6_K), token by token under teacher
/// forcing, picks llama.cpp's tokens wherever its margin is clear, with the device's profile and
/// the GPU profile. llama.cpp rounds activations to 8 bits too, but in blocks of 256 for the
/// k-quants where these are blocks of 32, so near-ties are wider than the float path's: one step
/// of "Once upon a time" has margins of 0.11 (llama.cpp) and 0.15 the other way.
#[test]
fn integer_decode_teacher_forced_matches_llama_cpp() {
    use wgquant::gpu::{ContextOptions, DeviceProfile};
    for gpu_profile in [false, true] {
        let base = if gpu_profile { DeviceProfile::gpu() } else { DeviceProfile::cpu() };
        let profile = Some(DeviceProfile { int_matvec: true, ..base });
        let options = ContextOptions { profile, profile_kernels: Some(true), ..Default::default() };
        let ctx = Arc::new(Context::with_options(options).expect("a GPU adapter (lavapipe in CI)"));
        let file = Arc::new(GgufFile::open(common::default_model_path()).unwrap());
        let config = wgquant::model::Config::from_gguf(&file).unwrap();
        let model = GpuModel::load(ctx, file, Offload::all_gpu(&config), |_, _| {}).unwrap();
        for case in common::greedy_cases() {
            let mut state = GpuState::new(&model, 64, 16, 1, KvType::F16).unwrap();
            let n_prompt = case.prompt_ids.len();
            // The prompt in one batch (the float path), then each step decoded alone.
            let mut logits = vec![0.0; (n_prompt - 1) * model.config.n_vocab];
            logits.extend(model.forward(&mut state, &case.prompt_ids, 0, Logits::Last).unwrap());
            for (i, &t) in case.generated_ids[..case.generated_ids.len() - 1].iter().enumerate() {
                logits.extend(model.forward(&mut state, &[t], n_prompt + i, Logits::Last).unwrap());
            }
            let agreed = common::check_teacher_forced(&case, &logits, model.config.n_vocab, 0.3);
            assert!(agreed >= 20, "{} profile: only {agreed} steps agreed", model.ctx.profile().name);
        }
        // The decode steps did take the integer kernels (where the device can time kernels).
        let kernels: Vec<String> = model.ctx.take_profile().into_iter().map(|t| t.kernel).collect();
        if model.ctx.features().contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES) {
            for k in ["QuantizeQ8/-", "MatVecQ8/Q4_K", "MatVecQ8/Q6_K", "MatVecQ8/Q8_0", "MatVecQ8/Q5_0"] {
                assert!(kernels.iter().any(|n| n == k), "no {k} in {kernels:?}");
            }
        }
    }
}
