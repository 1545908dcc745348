//! The GPU forward pass on the default model, against llama.cpp's outputs and the CPU path.

mod common;

use std::sync::Arc;

use wgquant::gguf::GgufFile;
use wgquant::gpu::Context;
use wgquant::model::cpu::Logits;
use wgquant::model::gpu::{GpuModel, GpuState, Placement};
use wgquant::model::KvType;

fn load(placement: Option<Placement>) -> GpuModel {
    let file = Arc::new(GgufFile::open(common::default_model_path()).unwrap());
    let ctx = Arc::new(Context::new().expect("a GPU adapter (lavapipe in CI)"));
    let config = wgquant::model::Config::from_gguf(&file).unwrap();
    let placement = placement.unwrap_or(Placement::all_gpu(&config));
    GpuModel::load(ctx, file, placement, |_, _| {}).unwrap()
}

#[test]
fn gpu_logits_match_llama_cpp() {
    let model = load(None);
    let mut state = GpuState::new(&model, 64, 16, 1, KvType::F16).unwrap();
    let logits = model.forward(&mut state, &[2, 14946, 3324, 496, 990], 0, Logits::Last).unwrap();
    let reference = common::read_f32s("reference/once_upon_a_time.step0.logits.f32");
    let (mad, kl, ours, theirs) = common::logit_stats(&logits, &reference);
    eprintln!("mad {mad} kl {kl}\nours   {ours:?}\ntheirs {theirs:?}");
    assert_eq!(ours[..4], theirs[..4], "top-4 in order");
    let mut a = ours.clone();
    let mut b = theirs.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "same top-10 set");
    assert!(kl < 0.01, "KL {kl}");
    assert!(mad < 0.3, "mean abs diff {mad}");
}
