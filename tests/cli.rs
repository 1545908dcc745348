//! The `wgquant` command's subcommands, run as a user would: real outputs and one-line errors.

mod common;

fn model() -> String {
    common::default_model_path().display().to_string()
}

#[test]
fn inspect_prints_the_tensor_table() {
    let (code, out, _) = common::run_wgquant("inspect", &[&model()]);
    assert_eq!(code, Some(0));
    assert!(out.contains("236 tensors"), "{out}");
    assert!(out.contains("token_embd.weight") && out.contains("Q8_0") && out.contains("640 × 262144"));
    assert!(out.contains("gemma3.attention.sliding_window"));
}

#[test]
fn inspect_on_a_bad_file_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(common::default_model_path()).map(|b| b[..100_000].to_vec()).unwrap();
    for (name, data) in [("truncated.gguf", bytes), ("text.gguf", b"hello world".to_vec())] {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        let (code, out, err) = common::run_wgquant("inspect", &[path.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{name}");
        assert!(out.is_empty());
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn tokenize_prints_llama_cpp_ids() {
    for case in common::greedy_cases() {
        let (code, out, _) = common::run_wgquant("tokenize", &["-m", &model(), &case.prompt]);
        assert_eq!(code, Some(0));
        let ids: Vec<u32> = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(ids, case.prompt_ids);
    }
}

/// On the adapter (`--device gpu`), on the CPU's own kernels (`--device cpu`), and on whichever
/// of the two runs by default: the CPU's kernels where the best adapter is a CPU emulator.
#[test]
fn generate_greedy_starts_like_llama_cpp() {
    let model = model();
    let gguf = wgquant::gguf::GgufFile::open(&model).unwrap();
    let emulated = wgquant::cpu::cpu_by_default(&gguf).is_some();
    let mut outputs = Vec::new();
    for device in [Some("gpu"), Some("cpu"), None] {
        let mut args = vec!["-m", &model, "-p", "Once upon a time", "-n", "8", "--temp", "0"];
        if let Some(d) = device {
            args.extend(["--device", d]);
        }
        let (code, out, err) = common::run_wgquant("generate", &args);
        assert_eq!(code, Some(0), "{err}");
        let on_cpu = device == Some("cpu") || (device.is_none() && emulated);
        // llama.cpp's greedy continuation; only the generated text is on stdout. The CPU's
        // kernels round activations to 8 bits, and the fifth token is a near-tie there (" man"
        // against " little", 0.08 apart): past it they may part from the f32 path.
        let llama_cpp = ", there was a little girl named Lily";
        let want = if on_cpu { &llama_cpp[..", there was a".len()] } else { llama_cpp };
        assert!(out.starts_with(want) && (on_cpu || out.trim_end() == want), "{device:?}: {out:?}");
        assert!(err.contains("t/s"), "timings on stderr: {err}");
        assert_eq!(err.contains("CPU (") && err.contains("kernels"), on_cpu, "{device:?}: {err}");
        let said = err.contains("running on the CPU's own kernels");
        assert_eq!(said, device.is_none() && emulated, "the default choice is said: {err}");
        outputs.push(out);
    }
    let default_twin = if emulated { &outputs[1] } else { &outputs[0] };
    assert_eq!(&outputs[2], default_twin, "the default runs what it says it runs");
}

/// A machine without any adapter (the Vulkan and EGL drivers hidden from the loader): the command
/// runs on the CPU's own kernels, says why, and answers as `--device cpu` does where there are
/// adapters.
#[test]
fn without_any_adapter_the_cpus_kernels_run_the_model() {
    let hidden = [
        ("VK_DRIVER_FILES", "/nonexistent.json"),
        ("VK_ICD_FILENAMES", "/nonexistent.json"),
        ("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent.json"),
    ];
    let (code, list, err) = common::run_wgquant_with("chat", &["--device", "list"], &hidden);
    assert_eq!(code, Some(0), "{err}");
    assert!(list.contains("no GPU adapters found"), "the drivers are hidden: {list}");
    let model = model();
    let args = ["-m", &model, "-p", "Once upon a time", "-n", "8", "--temp", "0"];
    let (code, out, err) = common::run_wgquant_with("generate", &args, &hidden);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("no GPU adapter found: running on the CPU's own kernels"), "{err}");
    let (_, on_cpu, _) = common::run_wgquant("generate", &[&args[..], &["--device", "cpu"]].concat());
    assert_eq!(out, on_cpu);
}

#[test]
fn plan_refuses_an_impossible_budget_with_numbers() {
    let (code, out, _) = common::run_wgquant("plan", &["-m", &model(), "--vram-budget", "6GiB", "--ctx", "4096"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("everything on the GPU"), "{out}");
    let (code, _, err) = common::run_wgquant("plan", &["-m", &model(), "--vram-budget", "1MiB", "--ctx", "4096"]);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("error: ") && err.contains("MiB"), "{err}");
    let (code, _, err) = common::run_wgquant("plan", &["-m", &model(), "--vram-budget", "6GiB", "--ctx", "65536"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("32768"), "{err}");
}

/// Every subcommand has `--help`; the top-level help lists them all; a wrong flag or a missing
/// subcommand is one `error:` line and exit status 1 (clap's usage block left out).
#[test]
fn every_subcommand_has_help_and_bad_flags_are_one_line_errors() {
    let subcommands = ["chat", "generate", "quantize", "inspect", "plan", "bench", "tokenize", "perplexity"];
    let (code, out, _) = common::run_wgquant("--help", &[]);
    assert_eq!(code, Some(0));
    for sub in subcommands {
        assert!(out.contains(sub), "`wgquant --help` does not list {sub}:\n{out}");
        let (code, out, err) = common::run_wgquant(sub, &["--help"]);
        assert_eq!(code, Some(0), "{sub} --help: {err}");
        assert!(out.contains("Usage: wgquant"), "{sub} --help:\n{out}");
    }
    // The shared flags are spelled alike everywhere they appear.
    for sub in ["chat", "generate"] {
        let (_, out, _) = common::run_wgquant(sub, &["--help"]);
        for flag in
            ["--model", "--ctx-size", "--vram-budget", "--device", "--temp", "--top-k", "--top-p", "--min-p", "--seed"]
        {
            assert!(out.contains(flag), "{sub} lacks {flag}:\n{out}");
        }
    }
    for args in [&["generate", "--no-such-flag"][..], &["frobnicate"], &["generate", "--temp", "warm", "-p", "x"]] {
        let (code, out, err) = common::run_wgquant(args[0], &args[1..]);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.starts_with("error: ") && err.trim_end().lines().count() == 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}
