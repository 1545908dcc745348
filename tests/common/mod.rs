//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// SmolLM2-135M-Instruct Q4_1, the chat default; like the default model, fetched by
/// `scripts/fetch-model.sh`, and missing is a failure.
pub fn smollm2_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: run scripts/fetch-model.sh first", path.display());
    path
}

/// The default model (Gemma 3 270M Q4_K_M). Tests that need it fail, not skip, when it is missing:
/// `.ci/run` fetches it, and a silently skipped test proves nothing.
pub fn default_model_path() -> PathBuf {
    let path = std::env::var_os("WGQUANT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf"));
    assert!(path.exists(), "{} is missing: run scripts/fetch-model.sh first", path.display());
    path
}

/// A file under tests/data.
pub fn data_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

/// Little-endian f32s from a file under tests/data.
pub fn read_f32s(rel: &str) -> Vec<f32> {
    let bytes = std::fs::read(data_path(rel)).unwrap();
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// One case of llama.cpp's greedy reference (tests/data/reference/greedy.json).
pub struct GreedyCase {
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    pub generated_text: String,
    /// Top-1 minus top-2 logit at each generated step.
    pub margins: Vec<f32>,
}

/// The default model's cases.
pub fn greedy_cases() -> Vec<GreedyCase> {
    greedy_cases_in("reference/greedy.json")
}

/// The cases of a greedy reference file under tests/data: a `cases` array, or one case as
/// refdump writes it; margins under `margins` or, in the default model's file,
/// `top1_minus_top2_margin_per_step`. Pieces may hold parts of UTF-8 characters (read lossily).
pub fn greedy_cases_in(rel: &str) -> Vec<GreedyCase> {
    let text = String::from_utf8_lossy(&std::fs::read(data_path(rel)).unwrap()).into_owned();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    let cases = json.get("cases").and_then(|c| c.as_array()).cloned().unwrap_or_else(|| vec![json.clone()]);
    cases
        .iter()
        .map(|c| GreedyCase {
            prompt: c["prompt"].as_str().unwrap().to_string(),
            prompt_ids: ids(&c["prompt_ids"]),
            generated_ids: ids(&c["generated_ids"]),
            generated_text: c["generated_text"].as_str().unwrap().to_string(),
            margins: c
                .get("margins")
                .unwrap_or(&c["top1_minus_top2_margin_per_step"])
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

/// Index of the largest value.
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0
}

/// Teacher forcing: `logits` are `[n][n_vocab]` for prompt + generated tokens. Every step whose
/// recorded margin exceeds 0.1 must pick llama.cpp's token, with one allowance per case: a step
/// where our own margin for the other token is also under `tie`, i.e. both implementations see a
/// near-tie. (llama.cpp's CPU backend rounds activations to 8 bits and the KV cache to f16; its own
/// Vulkan backend differs from it by up to 1.1 in single logits.) Returns how many steps agreed.
pub fn check_teacher_forced(case: &GreedyCase, logits: &[f32], n_vocab: usize, tie: f32) -> usize {
    let mut agreed = 0;
    let mut near_ties = Vec::new();
    for (step, (&expected, &margin)) in case.generated_ids.iter().zip(&case.margins).enumerate() {
        // The logits that predict generated token `step` are those of input position p + step - 1.
        let row = &logits[(case.prompt_ids.len() + step - 1) * n_vocab..][..n_vocab];
        let ours = argmax(row);
        if margin <= 0.1 {
            continue;
        }
        if ours as u32 == expected {
            agreed += 1;
            continue;
        }
        let our_margin = row[ours] - row[expected as usize];
        assert!(
            our_margin < tie,
            "{:?}: step {step}: llama.cpp picks {expected} by {margin}, we pick {ours} by {our_margin}",
            case.prompt
        );
        near_ties.push((step, margin, our_margin));
    }
    assert!(near_ties.len() <= 1, "{:?}: several near-tie flips {near_ties:?}", case.prompt);
    eprintln!("{:?}: {agreed} steps agree, near-tie flips {near_ties:?}", case.prompt);
    agreed
}

/// Compare logits with llama.cpp's: mean absolute difference, KL(ref‖ours), and top-k agreement.
pub fn logit_stats(ours: &[f32], reference: &[f32]) -> (f32, f64, Vec<usize>, Vec<usize>) {
    let mad = ours.iter().zip(reference).map(|(a, b)| (a - b).abs()).sum::<f32>() / ours.len() as f32;
    let softmax = |l: &[f32]| {
        let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = l.iter().map(|&v| (v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect::<Vec<f64>>()
    };
    let (p, q) = (softmax(reference), softmax(ours));
    let kl = p.iter().zip(&q).filter(|(p, _)| **p > 0.0).map(|(p, q)| p * (p / q.max(1e-300)).ln()).sum();
    let top = |l: &[f32]| {
        let mut idx: Vec<usize> = (0..l.len()).collect();
        idx.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        idx.truncate(10);
        idx
    };
    (mad, kl, top(ours), top(reference))
}

/// Run `wgquant SUBCOMMAND args...` (the binary cargo built for this test); returns (exit code,
/// stdout, stderr).
pub fn run_wgquant(subcommand: &str, args: &[&str]) -> (Option<i32>, String, String) {
    run_wgquant_with(subcommand, args, &[])
}

/// [`run_wgquant`] with extra environment variables.
#[allow(dead_code)]
pub fn run_wgquant_with(subcommand: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgquant"))
        .arg(subcommand)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
