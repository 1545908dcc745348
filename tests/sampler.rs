//! Sampler tests: filters never emit excluded tokens (checked against a plain full-sort reference of
//! llama.cpp's chain), seeds repeat, greedy is argmax, the repetition penalty moves the choice, and
//! temperature-1 frequencies follow the softmax.

use std::collections::{HashMap, HashSet};

use wgquant::sampler::{Sampler, SamplerParams};

/// Deterministic pseudo-random logits (a PCG-style LCG, so the test needs no RNG crate).
fn random_logits(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}

fn params(temperature: f32, top_k: usize, top_p: f32, min_p: f32) -> SamplerParams {
    SamplerParams { temperature, top_k, top_p, min_p, repeat_penalty: 1.0, repeat_last_n: 64, seed: 1 }
}

/// The tokens llama.cpp's chain can emit, computed the slow obvious way: sort everything, cut.
fn allowed_set(logits: &[f32], p: &SamplerParams) -> HashSet<u32> {
    let mut c: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
    c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if p.top_k > 0 {
        c.truncate(p.top_k);
    }
    let max = c[0].1;
    if p.top_p < 1.0 {
        let total: f64 = c.iter().map(|x| ((x.1 - max) as f64).exp()).sum();
        let mut cum = 0.0;
        let mut keep = c.len();
        for (i, x) in c.iter().enumerate() {
            cum += ((x.1 - max) as f64).exp() / total;
            if cum >= p.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        c.truncate(keep);
    }
    if p.min_p > 0.0 {
        let threshold = max + p.min_p.ln();
        c.retain(|x| x.1 >= threshold);
    }
    c.into_iter().map(|x| x.0).collect()
}

fn softmax(logits: &[f32], temperature: f32) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f64> = logits.iter().map(|&l| (((l - max) / temperature) as f64).exp()).collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|x| x / total).collect()
}

#[test]
fn defaults_are_llama_cpp_defaults() {
    let p = SamplerParams::default();
    assert_eq!((p.temperature, p.top_k, p.top_p, p.min_p), (0.8, 40, 0.95, 0.05));
    assert_eq!((p.repeat_penalty, p.repeat_last_n), (1.0, 64));
    assert_eq!(SamplerParams::greedy().temperature, 0.0);
}

#[test]
fn greedy_picks_argmax() {
    for seed in 0..20 {
        let logits = random_logits(5000, seed, 10.0);
        let want = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        let mut s = Sampler::new(SamplerParams::greedy());
        assert_eq!(s.sample(&logits, &[]), want);
    }
    let mut s = Sampler::new(SamplerParams::greedy());
    assert_eq!(s.sample(&[1.0, 3.0, 3.0, -2.0], &[]), 1, "ties go to the lowest id");
    assert_eq!(s.sample(&[f32::NAN, 0.5, f32::NAN], &[]), 1, "NaN never wins");
    assert_eq!(s.sample(&[], &[]), 0);
    assert_eq!(s.sample(&[f32::NEG_INFINITY; 4], &[]), 0);
    // Extreme settings still give a token: min_p above 1 and top_p 0 keep only the likeliest.
    for p in [params(1.0, 0, 1.0, 2.0), params(1.0, 0, 0.0, 0.0), params(1.0, 3, 0.0, 5.0)] {
        assert_eq!(Sampler::new(p).sample(&[0.0, 0.1, 5.0, 4.9], &[]), 2);
    }
    // Filters do not matter at temperature 0.
    let mut s = Sampler::new(SamplerParams { temperature: 0.0, top_k: 1, top_p: 0.01, ..Default::default() });
    assert_eq!(s.sample(&[0.0, 0.1, 5.0], &[]), 2);
}

#[test]
fn a_fixed_seed_repeats_its_sequence() {
    let logits = random_logits(1000, 7, 4.0);
    let run = |seed: u64| -> Vec<u32> {
        let mut s = Sampler::new(SamplerParams {
            seed,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            temperature: 1.0,
            ..Default::default()
        });
        (0..200).map(|_| s.sample(&logits, &[])).collect()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
    // The same holds with every filter on and a history.
    let run_default = |seed: u64| -> Vec<u32> {
        let mut s = Sampler::new(SamplerParams { seed, repeat_penalty: 1.3, ..Default::default() });
        let mut history = vec![];
        for _ in 0..100 {
            let t = s.sample(&logits, &history);
            history.push(t);
        }
        history
    };
    assert_eq!(run_default(9), run_default(9));
}

#[test]
fn top_k_never_emits_excluded_tokens() {
    let logits = random_logits(3000, 3, 3.0);
    let p = SamplerParams { temperature: 5.0, ..params(5.0, 5, 1.0, 0.0) };
    let allowed = allowed_set(&logits, &p);
    assert_eq!(allowed.len(), 5);
    let mut seen = HashSet::new();
    for seed in 0..40 {
        let mut s = Sampler::new(SamplerParams { seed, ..p.clone() });
        for _ in 0..100 {
            let t = s.sample(&logits, &[]);
            assert!(allowed.contains(&t), "seed {seed}: token {t} is outside the top 5");
            seen.insert(t);
        }
    }
    assert_eq!(seen, allowed, "at temperature 5 every one of the top 5 shows up");
}

#[test]
fn top_p_and_min_p_never_emit_excluded_tokens() {
    // Probabilities 0.5, 0.3, 0.15, 0.05.
    let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
    let cases = [
        (params(1.0, 0, 0.75, 0.0), vec![0u32, 1]), // 0.5 + 0.3 reaches 0.75
        (params(1.0, 0, 0.45, 0.0), vec![0]),       // 0.5 alone reaches 0.45
        (params(1.0, 0, 1.0, 0.2), vec![0, 1, 2]),  // 0.05 < 0.2 · 0.5
        (params(1.0, 0, 0.9, 0.5), vec![0, 1]),     // top-p keeps 3, min-p drops 0.15 < 0.25
        (params(1.0, 2, 0.99, 0.0), vec![0, 1]),    // top-k first
    ];
    for (p, want) in cases {
        let mut seen = HashSet::new();
        for seed in 0..50 {
            let mut s = Sampler::new(SamplerParams { seed, ..p.clone() });
            for _ in 0..40 {
                seen.insert(s.sample(&logits, &[]));
            }
        }
        let mut seen: Vec<u32> = seen.into_iter().collect();
        seen.sort();
        assert_eq!(seen, want, "{p:?}");
    }
}

#[test]
fn filters_match_a_full_sort_reference_on_a_large_vocabulary() {
    let n = 262144;
    let combos = [
        params(0.8, 40, 0.95, 0.05), // llama.cpp's defaults
        params(1.0, 0, 0.9, 0.0),    // top-p alone over the whole vocabulary
        params(1.0, 0, 0.95, 0.05),  // top-p and min-p without top-k
        params(1.5, 0, 1.0, 0.1),    // min-p alone
        params(1.0, 1000, 0.5, 0.0), // a large k
    ];
    for (i, p) in combos.iter().enumerate() {
        // Spread logits so the allowed set has from a few to thousands of tokens.
        let logits = random_logits(n, 100 + i as u64, 12.0 + 4.0 * i as f32);
        let allowed = allowed_set(&logits, p);
        let mut s = Sampler::new(SamplerParams { seed: i as u64, ..p.clone() });
        let t0 = std::time::Instant::now();
        for _ in 0..30 {
            let t = s.sample(&logits, &[]);
            assert!(allowed.contains(&t), "{p:?}: token {t} (logit {}) is excluded", logits[t as usize]);
        }
        let per = t0.elapsed() / 30;
        eprintln!("{p:?}: {} allowed, {per:?} per sample", allowed.len());
        assert!(per.as_millis() < 200, "sampling 262144 logits took {per:?}");
    }
}

#[test]
fn repetition_penalty_changes_the_choice() {
    let greedy = |penalty: f32, last_n: usize| SamplerParams {
        repeat_penalty: penalty,
        repeat_last_n: last_n,
        ..SamplerParams::greedy()
    };
    let logits = [2.0, 1.9, 0.5];
    assert_eq!(Sampler::new(greedy(1.1, 64)).sample(&logits, &[]), 0);
    // 2.0 / 1.1 = 1.82 < 1.9.
    assert_eq!(Sampler::new(greedy(1.1, 64)).sample(&logits, &[0]), 1);
    // Counted once however often it occurs: 2.0 / 1.02 = 1.96 still wins.
    assert_eq!(Sampler::new(greedy(1.02, 64)).sample(&logits, &[0, 0, 0, 0]), 0);
    // Outside the window: no penalty.
    assert_eq!(Sampler::new(greedy(1.1, 2)).sample(&logits, &[0, 2, 2]), 0);
    // Penalty off.
    assert_eq!(Sampler::new(greedy(1.0, 64)).sample(&logits, &[0]), 0);
    // Negative logits are multiplied: -1.0 · 1.1 = -1.1 < -1.05.
    assert_eq!(Sampler::new(greedy(1.1, 64)).sample(&[-1.0, -1.05], &[0]), 1);
    // Ids beyond the logits are ignored.
    assert_eq!(Sampler::new(greedy(1.1, 64)).sample(&logits, &[u32::MAX, 99]), 0);

    // With sampling, a strongly penalised favourite becomes rare.
    let logits = [3.0f32, 0.0, 0.0];
    let count = |recent: &[u32]| {
        let mut s = Sampler::new(SamplerParams { repeat_penalty: 6.0, ..params(1.0, 0, 1.0, 0.0) });
        (0..2000).filter(|_| s.sample(&logits, recent) == 0).count()
    };
    let (free, penalised) = (count(&[]), count(&[0]));
    assert!(free > 1700 && penalised < 1000, "free {free}, penalised {penalised}");
}

/// Chi-square statistic of observed counts against expected probabilities.
fn chi_square(counts: &HashMap<u32, usize>, probs: &[f64], n: usize) -> f64 {
    probs
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let expected = p * n as f64;
            let observed = *counts.get(&(i as u32)).unwrap_or(&0) as f64;
            (observed - expected).powi(2) / expected
        })
        .sum()
}

#[test]
fn frequencies_follow_the_softmax() {
    let logits = [1.0f32, 0.5, 0.0, -0.5, -1.0, 2.0];
    let n = 60_000;
    for temperature in [1.0f32, 0.5, 2.0] {
        let mut s = Sampler::new(SamplerParams { seed: 1234, ..params(temperature, 0, 1.0, 0.0) });
        let mut counts = HashMap::new();
        for _ in 0..n {
            *counts.entry(s.sample(&logits, &[])).or_insert(0usize) += 1;
        }
        let chi2 = chi_square(&counts, &softmax(&logits, temperature), n);
        // 5 degrees of freedom: P(chi2 > 25.7) = 1e-4, so a correct sampler fails this by chance
        // with that probability for some seed; the seed is fixed, so the test is deterministic.
        assert!(chi2 < 25.7, "temperature {temperature}: chi-square {chi2:.1}, counts {counts:?}");
    }
}

/// What device sampling hands the host (the penalised logits' likeliest `device_k`, via
/// `likeliest`) makes `sample_top` pick exactly what `sample` picks from every logit, step after
/// step with the same random state, for greedy and sampled settings with and without a
/// repetition penalty; settings that need every logit have no `device_k`.
#[test]
fn sampling_from_the_likeliest_equals_sampling_from_every_logit() {
    use wgquant::sampler::{apply_penalties, likeliest};
    let n = 5000;
    let settings = [
        SamplerParams { repeat_penalty: 1.3, ..SamplerParams::greedy() },
        SamplerParams::default(),
        SamplerParams { repeat_penalty: 1.15, ..SamplerParams::default() },
        SamplerParams { top_k: 256, top_p: 1.0, min_p: 0.0, temperature: 1.5, ..SamplerParams::default() },
        SamplerParams { top_k: 3, top_p: 0.5, repeat_penalty: 0.8, repeat_last_n: 5, ..SamplerParams::default() },
    ];
    for (i, p) in settings.iter().enumerate() {
        let mut full = Sampler::new(p.clone());
        let mut top = Sampler::new(p.clone());
        let k = top.device_k(n).expect("these settings sample on the device");
        let mut history: Vec<u32> = vec![1, 2, 3, 2];
        for step in 0..200 {
            // Peaked logits, so that the penalty and the filters matter.
            let logits = random_logits(n, 1000 * i as u64 + step, 12.0);
            let want = full.sample(&logits, &history);
            let mut penalties = Vec::new();
            top.penalties(&history, 0, &mut penalties);
            let mut penalised = logits.clone();
            apply_penalties(&mut penalised, n, &penalties);
            let got = top.sample_top(&likeliest(&penalised, k));
            assert_eq!(got, want, "settings {i}, step {step}");
            // Feed back the model's favourite often, so the penalty has repeats to act on.
            history.push(if step % 3 == 0 { want } else { history[history.len() - 2] });
        }
    }
    let every_logit = [
        SamplerParams { top_k: 0, ..SamplerParams::default() },
        SamplerParams { top_k: 257, ..SamplerParams::default() },
        SamplerParams { top_k: n, ..SamplerParams::default() },
        SamplerParams { repeat_penalty: 1.1, repeat_last_n: 5000, ..SamplerParams::default() },
    ];
    for p in every_logit {
        assert_eq!(Sampler::new(p.clone()).device_k(n), None, "{p:?}");
    }
}
