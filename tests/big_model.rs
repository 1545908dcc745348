//! The 7B proof: a file with Llama-2-7B's exact tensor names, shapes and Q4_K_M types (zero-filled,
//! sparse on disk) planned, loaded and run on lavapipe under VRAM budgets.

use std::sync::Arc;

use wgquant::gpu::{Context, MemTag};
use wgquant::model::zoo;
use wgquant::plan::{self, parse_bytes, PlanRequest};
use wgquant::quantize::FileType;
use wgquant::{Error, GenerateParams, Model, ModelOptions};

const GIB: u64 = 1 << 30;

fn stand_in() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama-2-7b-q4_k_m.gguf");
    zoo::write_stand_in(&zoo::LLAMA2_7B, FileType::Q4_K_M, zoo::StandInWeights::Zeros, &path).unwrap();
    (dir, path)
}

fn options(budget: &str) -> ModelOptions {
    ModelOptions { n_ctx: Some(2048), batch: 64, vram_budget: Some(parse_bytes(budget).unwrap()), ..Default::default() }
}

/// Load under `budget` on a fresh device context, generate two tokens, check the tracker against
/// the budget and that dropping the model frees everything. Returns the number of GPU layers.
fn run_under(path: &std::path::Path, budget: &str) -> usize {
    let ctx = Arc::new(Context::new().expect("a GPU adapter (lavapipe in CI)"));
    let t = std::time::Instant::now();
    let model = Model::load_on(ctx.clone(), path, options(budget), |_, _| {}).unwrap();
    eprintln!("{}\nloaded in {:.1} s", model.plan(), t.elapsed().as_secs_f64());
    let gpu_layers = model.offload().gpu_layers;
    {
        let mut session = model.session().unwrap();
        let pieces: Vec<_> = session.generate("Hello", &GenerateParams::greedy(2)).unwrap().collect();
        assert_eq!(pieces.len(), 2, "two tokens generated");
        assert!(pieces.iter().all(|p| p.is_ok()));
    }
    eprintln!("generated in {:.1} s", t.elapsed().as_secs_f64());
    drop(model);
    let report = ctx.memory().report();
    eprintln!("{report}");
    assert!(report.total_peak <= parse_bytes(budget).unwrap(), "peak {} over the budget {budget}", report.total_peak);
    let arena = wgquant::gpu::UNIFORM_ARENA_BYTES;
    assert_eq!(report.total_current, arena, "dropping the model frees every tracked byte but the context's parameters");
    gpu_layers
}

#[test]
fn llama2_7b_q4_k_m_fits_6_gib_and_runs_with_cpu_layers_under_4() {
    let (_dir, path) = stand_in();
    let weights: u64 = wgquant::gguf::GgufFile::open(&path).unwrap().tensors().iter().map(|t| t.n_bytes).sum();
    assert!((3.7 * GIB as f64..3.9 * GIB as f64).contains(&(weights as f64)), "{weights}");

    assert_eq!(run_under(&path, "6GiB"), 32, "all 32 layers on the GPU under 6 GiB");
    let gpu_layers = run_under(&path, "4GiB");
    assert!((1..32).contains(&gpu_layers), "some layers on the CPU under 4 GiB: {gpu_layers}");

    let ctx = Arc::new(Context::new().expect("a GPU adapter (lavapipe in CI)"));
    // Too small for even one layer: a clear error with numbers, nothing left allocated.
    match Model::load_on(ctx.clone(), &path, options("64MiB"), |_, _| {}) {
        Err(Error::DoesNotFit(msg)) => {
            eprintln!("{msg}");
            assert!(msg.contains("MiB") || msg.contains("GiB"), "{msg}");
        }
        Err(e) => panic!("expected DoesNotFit, got {e}"),
        Ok(_) => panic!("a 64 MiB budget cannot hold a 7B layer"),
    }
    assert_eq!(ctx.memory().total(), wgquant::gpu::UNIFORM_ARENA_BYTES, "nothing but the context's parameters");
    assert_eq!(ctx.memory().current(MemTag::Weights), 0);
}

#[test]
fn plan_tables_for_the_readme() {
    let (_dir, path) = stand_in();
    let file = wgquant::gguf::GgufFile::open(&path).unwrap();
    for n_ctx in [2048, 4096] {
        for budget in [4, 6, 8, 12] {
            let mut req = PlanRequest::new(n_ctx, budget * GIB);
            req.max_binding_size = 128 << 20;
            let p = plan::plan(&file, &req).unwrap();
            println!("{p}");
            assert!(p.gpu_total() <= budget * GIB);
        }
    }
}
