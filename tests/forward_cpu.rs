//! The CPU forward pass against llama.cpp's outputs on the default model.

mod common;

use wgquant::gguf::GgufFile;
use wgquant::model::cpu::{CpuKvCache, CpuModel, Logits};

#[test]
fn cpu_logits_match_llama_cpp() {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    let model = CpuModel::new(std::sync::Arc::new(file)).unwrap();
    let mut cache = CpuKvCache::new(&model.config, 64);
    let logits = model.forward(&[2, 14946, 3324, 496, 990], 0, &mut cache, Logits::Last).unwrap();
    let reference = common::read_f32s("reference/once_upon_a_time.step0.logits.f32");
    let (mad, kl, ours, theirs) = common::logit_stats(&logits, &reference);
    eprintln!("mad {mad} kl {kl}\nours   {ours:?}\ntheirs {theirs:?}");
    assert_eq!(ours[0], 236764, "top-1 is ','");
    assert!(kl < 0.01, "KL {kl}");
    assert!(mad < 0.3, "mean abs diff {mad}");
}

#[test]
fn cpu_teacher_forced_top1_matches_llama_cpp() {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    let model = CpuModel::new(std::sync::Arc::new(file)).unwrap();
    for case in common::greedy_cases() {
        let tokens: Vec<u32> = case.prompt_ids.iter().chain(&case.generated_ids).copied().collect();
        let mut cache = CpuKvCache::new(&model.config, tokens.len());
        let logits = model.forward(&tokens, 0, &mut cache, Logits::All).unwrap();
        let checked = common::check_teacher_forced(&case, &logits, model.config.n_vocab, 0.1);
        assert!(checked >= 20, "only {checked} steps had a clear margin");
    }
}

#[test]
fn cpu_prefill_then_decode_equals_one_batch() {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    let model = CpuModel::new(std::sync::Arc::new(file)).unwrap();
    let tokens = [2u32, 818, 5279, 529, 7001, 563, 506, 5279];
    let mut cache = CpuKvCache::new(&model.config, 16);
    let batch = model.forward(&tokens, 0, &mut cache, Logits::Last).unwrap();
    let mut cache = CpuKvCache::new(&model.config, 16);
    model.forward(&tokens[..5], 0, &mut cache, Logits::Last).unwrap();
    let mut last = Vec::new();
    for (i, &t) in tokens[5..].iter().enumerate() {
        last = model.forward(&[t], 5 + i, &mut cache, Logits::Last).unwrap();
    }
    let max_diff = batch.iter().zip(&last).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff < 1e-3, "max diff {max_diff}");
}
