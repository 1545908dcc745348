//! The format benchmark harness (`wgquant::bench`, ``wgquant bench``): the fast mode on a
//! tiny random model on the GPU (lavapipe in CI), and sizes from shapes and recipes alone.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use wgquant::bench::{self, plot, report, sizes, toy, BenchConfig, BenchReport, SizeBreakdown, SpeedOptions};
use wgquant::gguf::GgufFile;
use wgquant::gpu::Context;
use wgquant::model::zoo;
use wgquant::quantize::{n_gqa, quantize_file, tensor_shapes, FileType, Recipe};

/// Public-domain English (the opening of the US Declaration of Independence, 1776): the tiny
/// model's toy vocabulary spells it byte by byte, so this is about 1,300 tokens.
const TEXT: &str = "When in the Course of human events, it becomes necessary for one people to dissolve the \
political bands which have connected them with another, and to assume among the powers of the earth, the \
separate and equal station to which the Laws of Nature and of Nature's God entitle them, a decent respect to \
the opinions of mankind requires that they should declare the causes which impel them to the separation. \
We hold these truths to be self-evident, that all men are created equal, that they are endowed by their \
Creator with certain unalienable Rights, that among these are Life, Liberty and the pursuit of Happiness. \
That to secure these rights, Governments are instituted among Men, deriving their just powers from the \
consent of the governed, That whenever any Form of Government becomes destructive of these ends, it is the \
Right of the People to alter or to abolish it, and to institute new Government, laying its foundation on \
such principles and organizing its powers in such form, as to them shall seem most likely to effect their \
Safety and Happiness.";

const N_CTX: usize = 64;
const CHUNKS: usize = 2;

/// A temporary directory with the tiny random model and the text.
struct Fixture {
    dir: tempfile::TempDir,
    model: PathBuf,
    text: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    toy::write_random_llama(&toy::TINY_LLAMA, &model, 42).unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(&text, TEXT).unwrap();
    Fixture { dir, model, text }
}

fn config(f: &Fixture, formats: &[FileType], speed: Option<SpeedOptions>, work: &str) -> BenchConfig {
    let work_dir = f.dir.path().join(work);
    std::fs::create_dir_all(&work_dir).unwrap();
    BenchConfig {
        model: f.model.clone(),
        text: f.text.clone(),
        formats: formats.to_vec(),
        n_ctx: N_CTX,
        chunks: CHUNKS,
        speed,
        work_dir,
        keep_files: true,
    }
}

fn gpu() -> Arc<Context> {
    Arc::new(Context::new().expect("a GPU adapter (lavapipe in CI)"))
}

/// Every row's sizes agree with the file on disk, with the block table tensor by tensor, and
/// with what the recipe gives from shapes alone.
fn check_sizes(report: &BenchReport, work_dir: &Path) {
    for row in &report.rows {
        let path = work_dir.join(format!("tiny.{}.gguf", row.format));
        let file = GgufFile::open(&path).unwrap();
        assert_eq!(row.file_bytes, std::fs::metadata(&path).unwrap().len(), "{}", row.format);
        let (mut bytes, mut weights) = (0u64, 0u64);
        for t in file.tensors() {
            // Block table: whole blocks of the type's size.
            let n = t.n_elements();
            assert_eq!(n % t.ty.block_elems() as u64, 0, "{}", t.name);
            assert_eq!(
                t.n_bytes,
                n / t.ty.block_elems() as u64 * t.ty.block_bytes() as u64,
                "{} {}",
                row.format,
                t.name
            );
            bytes += t.n_bytes;
            weights += n;
        }
        assert_eq!((row.tensor_bytes, row.n_weights), (bytes, weights), "{}", row.format);
        assert_eq!(row.bits_per_weight, bytes as f64 * 8.0 / weights as f64, "{}", row.format);
        let recipe = SizeBreakdown::of_recipe(&tensor_shapes(&file), n_gqa(&file), row.format).unwrap();
        assert_eq!(row.types, recipe.types, "{}", row.format);
        for t in &row.types {
            assert_eq!(t.bits_per_weight, t.ty.bits_per_weight(), "{} {}", row.format, t.ty);
        }
        assert_eq!(row.llama2_7b_bytes, sizes::llama2_7b_bytes(row.format).unwrap());
    }
}

/// A PNG's signature and its dimensions from the decoder.
fn check_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (1200, 600), "{}", path.display());
    // Something was drawn: not every pixel is the white background.
    assert!(pixels.iter().any(|&p| p < 200), "{} is blank", path.display());
}

fn check_json(report: &BenchReport) {
    let json: serde_json::Value = serde_json::from_str(&report::json(report).unwrap()).unwrap();
    let rows = json.as_array().expect("a JSON array");
    assert_eq!(rows.len(), report.rows.len());
    let fields = [
        "format",
        "file_bytes",
        "bits_per_weight",
        "llama2_7b_bytes",
        "ppl",
        "kl_mean",
        "top1_agreement",
        "matvec_gbps",
        "read_bw_ratio",
        "prefill_tps",
        "decode_tps",
        "types",
    ];
    for (obj, row) in rows.iter().zip(&report.rows) {
        for field in fields {
            assert!(obj.get(field).is_some(), "{} lacks {field}", row.format);
        }
        assert_eq!(obj["format"], row.format.name());
        assert!(obj["kl_mean"].is_number() && obj["decode_tps"].is_number(), "{obj}");
        let types = obj["types"].as_array().unwrap();
        assert!(types
            .iter()
            .all(|t| t["type"].is_string() && t["bits_per_weight"].is_number() && t["weight_fraction"].is_number()));
    }
    let csv = report::csv(report);
    assert_eq!(csv.lines().count(), report.rows.len() + 1);
    assert!(csv.lines().all(|l| l.split(',').count() == report::CSV_COLUMNS.len()), "{csv}");
}

#[test]
fn fast_mode_on_a_random_model() {
    let f = fixture();
    let cfg = config(&f, &bench::DEFAULT_FORMATS, Some(SpeedOptions::fast()), "all");
    let t = std::time::Instant::now();
    let report = bench::run(&cfg, gpu(), &mut bench::Quiet).unwrap();
    eprintln!("{}\n(ran in {:.1} s)", report::markdown(&report).unwrap(), t.elapsed().as_secs_f64());

    assert_eq!(report.rows.len(), 1 + bench::DEFAULT_FORMATS.len());
    assert_eq!(report.scored_positions, CHUNKS * (N_CTX / 2 - 1));
    check_sizes(&report, &cfg.work_dir);

    // Quality: the reference against itself, then the order quantization error must give.
    let row = |f: FileType| report.row(f).unwrap();
    let kl = |f: FileType| row(f).kl_mean.unwrap();
    let reference = row(FileType::F32);
    assert!(reference.reference);
    assert_eq!((reference.kl_mean, reference.top1_agreement), (Some(0.0), Some(1.0)));
    assert!(kl(FileType::F16) < 1e-3, "F16 KL {}", kl(FileType::F16));
    assert!((row(FileType::F16).ppl.unwrap() / reference.ppl.unwrap() - 1.0).abs() < 1e-3);
    assert!(kl(FileType::F16) < kl(FileType::Q8_0), "F16 {} Q8_0 {}", kl(FileType::F16), kl(FileType::Q8_0));
    assert!(kl(FileType::Q8_0) < kl(FileType::Q4_0), "Q8_0 {} Q4_0 {}", kl(FileType::Q8_0), kl(FileType::Q4_0));
    assert!(kl(FileType::Q6_K) < kl(FileType::Q4_K_M) && kl(FileType::Q4_K_M) < kl(FileType::Q2_K));
    for r in &report.rows {
        let q = (r.ppl.unwrap(), r.kl_mean.unwrap(), r.kl_p99.unwrap(), r.kl_max.unwrap(), r.top1_agreement.unwrap());
        assert!(
            q.0.is_finite() && q.0 > 1.0 && q.1 >= 0.0 && q.1 <= q.3 && q.2 <= q.3 && (0.0..=1.0).contains(&q.4),
            "{}: {q:?}",
            r.format
        );
        let speed = [r.matvec_gbps, r.read_bw_ratio, r.prefill_tps, r.decode_tps].map(Option::unwrap);
        assert!(speed.iter().all(|v| v.is_finite() && *v > 0.0), "{}: {speed:?}", r.format);
    }

    check_json(&report);
    let md = report::markdown(&report).unwrap();
    assert!(bench::DEFAULT_FORMATS.iter().all(|f| md.contains(&format!("| {f} |"))));
    assert!(md.contains("What Q4_K_M files hold"));

    let plots = f.dir.path().join("plots");
    std::fs::create_dir_all(&plots).unwrap();
    plot::plot_quality(&report, &plots.join("quality.png")).unwrap();
    plot::plot_decode_speed(&report, &plots.join("decode.png")).unwrap();
    check_png(&plots.join("quality.png"));
    check_png(&plots.join("decode.png"));
    // For looking at them: BENCH_FORMATS_PLOTS=DIR keeps a copy.
    if let Some(keep) = std::env::var_os("BENCH_FORMATS_PLOTS") {
        for name in ["quality.png", "decode.png"] {
            std::fs::copy(plots.join(name), Path::new(&keep).join(name)).unwrap();
        }
    }

    // Deterministic: a second run (without speed) gives bit-identical quality numbers.
    let again = bench::run(&config(&f, &[FileType::Q4_0], None, "again"), gpu(), &mut bench::Quiet).unwrap();
    for format in [FileType::F32, FileType::Q4_0] {
        let (a, b) = (row(format), again.row(format).unwrap());
        assert_eq!(
            (a.ppl, a.kl_mean, a.kl_p99, a.top1_agreement),
            (b.ppl, b.kl_mean, b.kl_p99, b.top1_agreement),
            "{format}"
        );
    }
    assert!(again.row(FileType::Q4_0).unwrap().decode_tps.is_none());
}

#[test]
fn sizes_only_equals_the_quantized_files() {
    let f = fixture();
    let src = GgufFile::open(&f.model).unwrap();
    let report = bench::sizes_only(&f.model, &bench::DEFAULT_FORMATS, f.dir.path()).unwrap();
    assert_eq!(report.rows.len(), 1 + bench::DEFAULT_FORMATS.len());
    for row in &report.rows {
        let out = f.dir.path().join(format!("{}.gguf", row.format));
        let summary = quantize_file(&src, &out, row.format, |_, _, _| {}).unwrap();
        assert_eq!(row.file_bytes, summary.file_bytes, "{}", row.format);
        assert_eq!(row.tensor_bytes, summary.tensor_bytes(), "{}", row.format);
        assert_eq!(row.bits_per_weight, summary.bits_per_weight(), "{}", row.format);
        assert_eq!(row.types, SizeBreakdown::of_file(&GgufFile::open(&out).unwrap()).types, "{}", row.format);
        assert!(row.ppl.is_none() && row.decode_tps.is_none());
        std::fs::remove_file(out).unwrap();
    }
    // Nothing left behind by the sparse stand-ins.
    let left: Vec<_> = std::fs::read_dir(f.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn sizes_only_on_the_default_model_reproduces_its_q4_k_m_file() {
    let path = common::default_model_path();
    let dir = tempfile::tempdir().unwrap();
    let report = bench::sizes_only(&path, &[FileType::Q4_K_M, FileType::Q8_0], dir.path()).unwrap();
    let file = GgufFile::open(&path).unwrap();
    let row = report.row(FileType::Q4_K_M).unwrap();
    // The default model is llama.cpp's Q4_K_M: same recipe, same metadata, so the same file size.
    assert_eq!(row.file_bytes, file.file_size());
    assert_eq!(row.types, SizeBreakdown::of_file(&file).types);
    // Its bpw is nowhere near 4.5: the Q8_0 embedding (640-wide rows fall back from k-quants).
    assert!((row.bits_per_weight - 7.358).abs() < 1e-3, "{}", row.bits_per_weight);
    assert_eq!(row.types[0].ty, wgquant::GgmlType::Q8_0);
}

/// Llama-2-7B bytes of `ftype`'s recipe, computed here from the shape table and the block table.
fn llama2_7b_recipe_bytes(ftype: FileType) -> u64 {
    let shapes = zoo::LLAMA2_7B.tensors();
    Recipe::plan(ftype, &shapes, 1)
        .iter()
        .zip(&shapes)
        .map(|(ty, s)| ty.bytes_for(s.dims.iter().product()).unwrap())
        .sum()
}

#[test]
fn llama2_7b_column_equals_the_recipe_and_llama_cpps_files() {
    for format in bench::DEFAULT_FORMATS {
        assert_eq!(sizes::llama2_7b_bytes(format).unwrap(), llama2_7b_recipe_bytes(format), "{format}");
    }
    // llama.cpp's published files, given to two decimals: ours rounds to each of them.
    for (format, published) in sizes::LLAMA_CPP_7B_GB {
        let ours = llama2_7b_recipe_bytes(format) as f64 / 1e9;
        assert!(sizes::holds_when_rounded(published, ours, 2), "{format}: {ours} GB against {published}");
    }
    // The Q4_K_M mix for the folklore check: Q4_K and Q6_K only (and F32 norms), 4.84 bpw.
    let b = sizes::shape_breakdown(&zoo::LLAMA2_7B, FileType::Q4_K_M).unwrap();
    let types: Vec<_> = b.types.iter().map(|t| t.ty.name()).collect();
    assert_eq!(types, ["Q4_K", "Q6_K", "F32"]);
    assert!((b.bits_per_weight() - 4.844).abs() < 1e-3, "{}", b.bits_per_weight());
}

/// `wgquant bench`, the binary cargo builds for the tests.
fn bench_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wgquant"));
    command.arg("bench");
    command
}

#[test]
fn cli_sizes_only_writes_json_and_csv_in_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (json, csv) = (dir.path().join("sizes.json"), dir.path().join("sizes.csv"));
    let t = std::time::Instant::now();
    let out = bench_command()
        .args(["--sizes-only", "-m"])
        .arg(common::default_model_path())
        .arg("--json")
        .arg(&json)
        .arg("--csv")
        .arg(&csv)
        .args(["--formats", "Q4_K_M,Q8_0,q4_0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{}", stdout, String::from_utf8_lossy(&out.stderr));
    assert!(t.elapsed().as_secs() < 30, "sizes-only took {:?}", t.elapsed());
    assert!(stdout.contains("| Q4_K_M |") && stdout.contains("What Q4_K_M files hold"), "{stdout}");
    let rows: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    let names: Vec<_> = rows.iter().map(|r| r["format"].as_str().unwrap()).collect();
    assert_eq!(names, ["F32", "Q4_K_M", "Q8_0", "Q4_0"]);
    for r in rows {
        let format = FileType::from_name(r["format"].as_str().unwrap()).unwrap();
        assert_eq!(r["llama2_7b_bytes"].as_u64().unwrap(), llama2_7b_recipe_bytes(format), "{format}");
        assert!(r["ppl"].is_null() && r["decode_tps"].is_null());
    }
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 5);
}

#[test]
fn cli_rejects_unknown_formats_and_missing_models() {
    let out = bench_command().args(["--sizes-only", "--formats", "Q7_X"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown file type `Q7_X`"));
    let out = bench_command().args(["--sizes-only", "-m", "/nonexistent.gguf"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.gguf does not exist"));
}
