//! Small random models of each architecture, written with the project's GGUF writer in several
//! formats: the GPU forward pass equals the CPU forward pass, and prefill-then-decode equals one
//! batch. These prove the llama (normal rope, GQA, untied head) and qwen2 (biases, NeoX rope,
//! tied head) paths that the default model (gemma3) does not exercise.

mod common;

use std::sync::Arc;

use wgquant::format::quant::quantize;
use wgquant::gguf::{GgufFile, GgufWriter, TensorData, Value};
use wgquant::gpu::Context;
use wgquant::model::cpu::{CpuKvCache, Logits};
use wgquant::model::gpu::{Activations, DecodeStep, GpuModel, GpuState, KvCaches, Offload};
use wgquant::model::{Config, KvType};
use wgquant::GgmlType;

const N_EMBD: u64 = 256;
const N_FF: u64 = 512;
const N_HEAD: u64 = 4;
const N_HEAD_KV: u64 = 2;
const N_LAYER: usize = 2;
const N_VOCAB: u64 = 320;

/// Deterministic pseudo-random values in [-scale, scale).
fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

struct Tensor {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    values: Vec<f32>,
}

/// Write a random model of `arch`; matrices cycle through `formats`.
fn write_model(path: &std::path::Path, arch: &str, formats: &[GgmlType]) {
    let kv = N_EMBD / N_HEAD * N_HEAD_KV;
    let mut tensors = Vec::new();
    let mut seed = 1;
    let mut add = |name: String, dims: Vec<u64>, ty: GgmlType, scale: f32, offset: f32| {
        seed += 1;
        let n = dims.iter().product::<u64>() as usize;
        let values = random(n, seed, scale).into_iter().map(|v| v + offset).collect();
        tensors.push(Tensor { name, ty, dims, values });
    };
    let mut fmt = formats.iter().cycle().copied();
    add("token_embd.weight".into(), vec![N_EMBD, N_VOCAB], fmt.next().unwrap(), 1.0, 0.0);
    add("output_norm.weight".into(), vec![N_EMBD], GgmlType::F32, 0.2, 1.0);
    if arch == "llama" {
        add("output.weight".into(), vec![N_EMBD, N_VOCAB], fmt.next().unwrap(), 0.1, 0.0);
    }
    for il in 0..N_LAYER {
        let b = |s: &str| format!("blk.{il}.{s}");
        add(b("attn_norm.weight"), vec![N_EMBD], GgmlType::F32, 0.2, 1.0);
        add(b("attn_q.weight"), vec![N_EMBD, N_EMBD], fmt.next().unwrap(), 0.15, 0.0);
        add(b("attn_k.weight"), vec![N_EMBD, kv], fmt.next().unwrap(), 0.15, 0.0);
        add(b("attn_v.weight"), vec![N_EMBD, kv], fmt.next().unwrap(), 0.15, 0.0);
        if arch == "qwen2" {
            add(b("attn_q.bias"), vec![N_EMBD], GgmlType::F32, 0.5, 0.0);
            add(b("attn_k.bias"), vec![kv], GgmlType::F32, 0.5, 0.0);
            add(b("attn_v.bias"), vec![kv], GgmlType::F32, 0.5, 0.0);
        }
        add(b("attn_output.weight"), vec![N_EMBD, N_EMBD], fmt.next().unwrap(), 0.1, 0.0);
        add(b("ffn_norm.weight"), vec![N_EMBD], GgmlType::F32, 0.2, 1.0);
        add(b("ffn_gate.weight"), vec![N_EMBD, N_FF], fmt.next().unwrap(), 0.1, 0.0);
        add(b("ffn_up.weight"), vec![N_EMBD, N_FF], fmt.next().unwrap(), 0.1, 0.0);
        add(b("ffn_down.weight"), vec![N_FF, N_EMBD], fmt.next().unwrap(), 0.1, 0.0);
    }

    let mut w = GgufWriter::new();
    let k = |s: &str| format!("{arch}.{s}");
    w.set("general.architecture", arch)
        .set(&k("context_length"), 256u32)
        .set(&k("embedding_length"), N_EMBD as u32)
        .set(&k("block_count"), N_LAYER as u32)
        .set(&k("feed_forward_length"), N_FF as u32)
        .set(&k("attention.head_count"), N_HEAD as u32)
        .set(&k("attention.head_count_kv"), N_HEAD_KV as u32)
        .set(&k("attention.layer_norm_rms_epsilon"), 1e-5f32)
        .set(&k("rope.freq_base"), Value::F32(10_000.0));
    for t in &tensors {
        w.add_tensor(&t.name, t.ty, &t.dims).unwrap();
    }
    w.write(path, |i| Ok(TensorData::Bytes(quantize(tensors[i].ty, &tensors[i].values, tensors[i].dims[0] as usize)?)))
        .unwrap();
}

fn check_model(arch: &str, formats: &[GgmlType]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_model(&path, arch, formats);
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let config = Config::from_gguf(&file).unwrap();
    let ctx = Arc::new(Context::new().expect("a GPU adapter (lavapipe in CI)"));
    let model = GpuModel::load(ctx, file, Offload::all_gpu(&config), |_, _| {}).unwrap();
    let tokens: Vec<u32> = (0..13).map(|i| (i * 37 + 5) % N_VOCAB as u32).collect();
    let nv = N_VOCAB as usize;

    let mut cache = CpuKvCache::new(&config, 32);
    let cpu = model.cpu.reference().unwrap().forward(&tokens, 0, &mut cache, Logits::All).unwrap();
    let scale = cpu.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    assert!(scale > 0.1, "{arch}: logits should not vanish ({scale})");

    // One batch of all tokens through the matmul kernels.
    let mut state = GpuState::new(&model, 32, 16, 16, KvType::F16).unwrap();
    let gpu = model.forward(&mut state, &tokens, 0, Logits::All).unwrap();
    let diff = gpu.iter().zip(&cpu).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 2e-3 * scale.max(1.0), "{arch} {formats:?}: batch max |gpu - cpu| {diff} (logit scale {scale})");

    // The same batch with an f32 KV cache.
    let mut state = GpuState::new(&model, 32, 16, 16, KvType::F32).unwrap();
    let gpu32 = model.forward(&mut state, &tokens, 0, Logits::All).unwrap();
    let diff = gpu32.iter().zip(&cpu).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 2e-3 * scale.max(1.0), "{arch} {formats:?}: f32 KV max |gpu - cpu| {diff} (logit scale {scale})");

    // Prefill of 5, then token by token through the matvec kernels.
    let mut state = GpuState::new(&model, 32, 16, 1, KvType::F16).unwrap();
    let mut rows = vec![model.forward(&mut state, &tokens[..5], 0, Logits::Last).unwrap()];
    for (i, &t) in tokens[5..].iter().enumerate() {
        rows.push(model.forward(&mut state, &[t], 5 + i, Logits::Last).unwrap());
    }
    for (row, pos) in rows.iter().zip(4..) {
        let expected = &gpu[pos * nv..(pos + 1) * nv];
        let diff = row.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff < 2e-3 * scale.max(1.0), "{arch}: decode at {pos} differs from the batch by {diff}");
    }
}

#[test]
fn llama_gpu_equals_cpu() {
    use GgmlType::*;
    check_model("llama", &[Q4_K, Q6_K, Q8_0, Q4_0, F16, Q5_K, Q3_K, Q2_K]);
}

#[test]
fn qwen2_gpu_equals_cpu() {
    use GgmlType::*;
    check_model("qwen2", &[Q8_0, Q5_0, Q4_1, Q5_1, IQ4_NL, F32, BF16, IQ4_XS]);
}

/// A llama model with Q8_0 and Q4_K weights in a temporary directory (kept alive by the first
/// element), its config and a context: the batched decode tests' model.
fn batch_model() -> (tempfile::TempDir, Arc<GgufFile>, Config, Arc<Context>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_model(&path, "llama", &[GgmlType::Q8_0, GgmlType::Q4_K]);
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let config = Config::from_gguf(&file).unwrap();
    (dir, file, config, Arc::new(Context::new().expect("a GPU adapter (lavapipe in CI)")))
}

/// The batched decode tests' three sequences: prompts of different lengths, and each one's next
/// token.
fn batch_prompts() -> [Vec<u32>; 3] {
    [vec![5, 17, 99], vec![1, 2, 3, 4, 5, 6, 7], vec![300, 12, 250, 31, 8]]
}
const BATCH_NEXT: [u32; 3] = [42, 7, 311];

/// One KV cache per prompt, each holding its prompt, fed through the shared activations.
fn prefilled(model: &GpuModel, acts: &mut Activations, prompts: &[Vec<u32>]) -> Vec<KvCaches> {
    let mut caches: Vec<KvCaches> =
        prompts.iter().map(|_| KvCaches::new(model, 32, 16, KvType::F16).unwrap()).collect();
    for (prompt, cache) in prompts.iter().zip(&mut caches) {
        model.forward_in(acts, cache, prompt, 0, Logits::Last).unwrap();
    }
    caches
}

/// The batched step of each sequence's next token ([`BATCH_NEXT`]) after its prompt.
fn next_steps<'c>(caches: &'c mut [KvCaches], prompts: &[Vec<u32>]) -> Vec<DecodeStep<'c>> {
    caches
        .iter_mut()
        .zip(prompts)
        .zip(BATCH_NEXT)
        .map(|((caches, prompt), token)| DecodeStep { caches, token, pos: prompt.len() })
        .collect()
}

/// Several sequences at different positions decoded in one forward pass ([`GpuModel::decode_batch`]:
/// the products take one column per sequence, attention goes sequence by sequence into its own
/// caches) give each sequence the logits it gets alone; with every layer on the GPU, and with a
/// layer and the head on the CPU.
#[test]
fn batched_decode_of_several_sequences_equals_each_alone() {
    let (_dir, file, config, ctx) = batch_model();
    let nv = N_VOCAB as usize;
    let (prompts, next) = (batch_prompts(), BATCH_NEXT);
    for placement in [Offload::all_gpu(&config), Offload { gpu_layers: 1, head_on_gpu: false }] {
        let model = GpuModel::load(ctx.clone(), file.clone(), placement, |_, _| {}).unwrap();
        // Each sequence alone: its prompt, then its next token.
        let alone: Vec<Vec<f32>> = prompts
            .iter()
            .zip(next)
            .map(|(prompt, token)| {
                let mut state = GpuState::new(&model, 32, 16, 1, KvType::F16).unwrap();
                model.forward(&mut state, prompt, 0, Logits::Last).unwrap();
                model.forward(&mut state, &[token], prompt.len(), Logits::Last).unwrap()
            })
            .collect();
        // Together: the prompts one by one into their own caches, then one batched step.
        let mut acts = Activations::new(&model, 32, 16, 4).unwrap();
        let mut caches = prefilled(&model, &mut acts, &prompts);
        let mut steps = next_steps(&mut caches, &prompts);
        let together = model.decode_batch(&mut acts, &mut steps).unwrap();
        for (i, expected) in alone.iter().enumerate() {
            let row = &together[i * nv..(i + 1) * nv];
            let diff = row.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            let scale = expected.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
            assert!(diff < 2e-3 * scale.max(1.0), "{placement:?} sequence {i}: max diff {diff} (scale {scale})");
        }
        // More sequences than the activations return logits for is an error, not a wrong answer.
        let mut extra: Vec<KvCaches> = (0..5).map(|_| KvCaches::new(&model, 32, 16, KvType::F16).unwrap()).collect();
        let mut steps: Vec<DecodeStep<'_>> =
            extra.iter_mut().map(|caches| DecodeStep { caches, token: 1, pos: 0 }).collect();
        assert!(model.decode_batch(&mut acts, &mut steps).is_err());
    }
}

/// A prompt's top-k after penalties, on the device, is the host's pick from its logits where the
/// head is on the GPU and some layers are on the CPU: in micro-batches of two (the GPU runs one
/// while the CPU runs the one before, and only the last goes through the head), and with every
/// layer on the CPU. The penalties must reach the head's submission on both paths.
#[test]
fn split_prompt_top_k_applies_the_penalties() {
    use wgquant::sampler::{apply_penalties, likeliest, TokenPenalty};
    let (_dir, file, config, ctx) = batch_model();
    let prompt = [300u32, 12, 250, 31, 8];
    for gpu_layers in [1, 0] {
        let placement = Offload { gpu_layers, head_on_gpu: true };
        let model = GpuModel::load(ctx.clone(), file.clone(), placement, |_, _| {}).unwrap();
        let mut state = GpuState::new(&model, 32, 2, 1, KvType::F16).unwrap();
        let mut logits = model.forward(&mut state, &prompt, 0, Logits::Last).unwrap();
        // Penalise the five likeliest tokens hard enough to reorder the top.
        let unpenalised = likeliest(&logits, 40);
        let penalties: Vec<TokenPenalty> =
            unpenalised[..5].iter().map(|&(id, _)| TokenPenalty { row: 0, id, subtract: 5.0, divide: 2.0 }).collect();
        apply_penalties(&mut logits, config.n_vocab, &penalties);
        let expected = likeliest(&logits, 40);
        assert_ne!(expected[0].0, unpenalised[0].0, "the penalties must change the pick");
        // A fresh state, whose penalty buffer holds nothing from an earlier call.
        let mut state = GpuState::new(&model, 32, 2, 1, KvType::F16).unwrap();
        let got = model.forward_top_k(&mut state, &prompt, 0, 40, &penalties).unwrap();
        assert_eq!(got, expected, "{placement:?}");
    }
}

/// A batched decode step that samples on the device ([`GpuModel::decode_batch_top_k`]) hands back,
/// per sequence, the likeliest tokens of the logits [`GpuModel::decode_batch`] returns for the same
/// step, after each row's penalties, in the same order with the same values; with the head on the
/// GPU (the device's top-k) and on the CPU (the host's).
#[test]
fn batched_decode_top_k_is_the_likeliest_of_the_logits() {
    use wgquant::sampler::{apply_penalties, likeliest, TokenPenalty};
    let (_dir, file, config, ctx) = batch_model();
    let nv = N_VOCAB as usize;
    let prompts = batch_prompts();
    // Row 1 penalises its prompt's tokens; row 2 subtracts from two tokens, one also divided.
    let mut penalties: Vec<TokenPenalty> =
        prompts[1].iter().map(|&id| TokenPenalty { row: 1, id, subtract: 0.0, divide: 1.5 }).collect();
    penalties.push(TokenPenalty { row: 2, id: 300, subtract: 0.5, divide: 1.0 });
    penalties.push(TokenPenalty { row: 2, id: 12, subtract: 0.25, divide: 2.0 });
    for placement in [Offload::all_gpu(&config), Offload { gpu_layers: 1, head_on_gpu: false }] {
        let model = GpuModel::load(ctx.clone(), file.clone(), placement, |_, _| {}).unwrap();
        let mut acts = Activations::new(&model, 32, 16, 4).unwrap();
        let mut step = |top_k: Option<usize>| {
            let mut caches = prefilled(&model, &mut acts, &prompts);
            let mut steps = next_steps(&mut caches, &prompts);
            match top_k {
                Some(k) => model.decode_batch_top_k(&mut acts, &mut steps, k, &penalties).unwrap(),
                None => {
                    let mut logits = model.decode_batch(&mut acts, &mut steps).unwrap();
                    apply_penalties(&mut logits, nv, &penalties);
                    logits.chunks(nv).map(|row| likeliest(row, 40)).collect()
                }
            }
        };
        let expected = step(None);
        let got = step(Some(40));
        assert_eq!(got.len(), 3);
        for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(got, expected, "{placement:?} sequence {i}");
        }
    }
}
