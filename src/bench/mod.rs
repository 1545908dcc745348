//! The format benchmark: size, quality and speed of every quantization of one model, measured in
//! one run (`wgquant bench`).
//!
//! 1. The model is dequantized into an F32 reference file, and the reference is quantized with
//!    [`crate::quantize::quantize_file`] into each format ([`DEFAULT_FORMATS`]).
//! 2. Sizes ([`sizes`]): file bytes, bits per weight over the whole file and per tensor type, and
//!    what the same recipe gives for Llama-2-7B's shapes, next to llama.cpp's published files and
//!    the seed table's claims.
//! 3. Quality ([`quality`]): perplexity on a text, mean KL divergence from the reference's
//!    next-token distribution over the full vocabulary, top-1 agreement.
//! 4. Speed ([`speed`]): matvec GB/s over the format's own matrices and its ratio to the device's
//!    streaming-read bandwidth, prompt and decode tokens per second.
//! 5. Output ([`report`], [`plot`]): a Markdown table, CSV, JSON, and two PNG plots.
//!
//! [`sizes_only`] does steps 1–2 from shapes and recipes without quantizing anything.

#[cfg(feature = "plot")]
pub mod plot;
pub mod quality;
pub mod report;
pub mod sizes;
pub mod speed;
pub mod toy;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::gpu::Context;
use crate::model::gpu::{GpuModel, Offload};
use crate::model::Config;
use crate::quantize::{n_gqa, quantize_file, tensor_shapes, FileType};
use crate::tokenizer::Tokenizer;

pub use quality::{Quality, Reference};
pub use sizes::{SizeBreakdown, TypeShare};
pub use speed::{Speed, SpeedOptions};

/// The formats benchmarked by default, largest first (the F32 reference always comes too).
pub const DEFAULT_FORMATS: [FileType; 11] = [
    FileType::F16,
    FileType::Q8_0,
    FileType::Q6_K,
    FileType::Q5_K_M,
    FileType::Q5_K_S,
    FileType::Q5_0,
    FileType::Q4_K_M,
    FileType::Q4_K_S,
    FileType::Q4_0,
    FileType::Q3_K_M,
    FileType::Q2_K,
];

/// Where a long step is; the example draws progress bars from it. Every method has a no-op
/// default, so an implementation picks what it shows.
pub trait Progress {
    /// A step of `total` units starts.
    fn start(&mut self, _label: &str, _total: u64) {}
    /// `done` of the step's units are done.
    fn set(&mut self, _done: u64) {}
    /// The step is over.
    fn finish(&mut self) {}
    /// A line for the user between steps.
    fn log(&mut self, _line: &str) {}
}

/// Shows nothing.
pub struct Quiet;
impl Progress for Quiet {}

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub model: PathBuf,
    /// Plain text scored for quality, and the source of the speed prompt.
    pub text: PathBuf,
    /// Formats besides the F32 reference (an F32 entry here is ignored).
    pub formats: Vec<FileType>,
    /// Tokens per scored chunk (the second half of each is scored).
    pub n_ctx: usize,
    pub chunks: usize,
    /// `None` skips the speed measurements.
    pub speed: Option<SpeedOptions>,
    /// Where the reference, the quantized files and the reference's stored distributions go.
    pub work_dir: PathBuf,
    /// Keep the reference and the quantized files in `work_dir` (default: each is removed once measured).
    pub keep_files: bool,
}

/// One format's line of the table (and object of the JSON array). Fields that a run did not
/// measure (`--sizes-only`, or speed skipped) are `None` (`null` in JSON).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FormatRow {
    pub format: FileType,
    /// Whether this is the F32 reference the others are compared with.
    pub reference: bool,
    pub file_bytes: u64,
    /// Bytes of tensor data (the file less metadata and padding).
    pub tensor_bytes: u64,
    pub n_weights: u64,
    /// Over every tensor: tensor bytes × 8 / weights.
    pub bits_per_weight: f64,
    /// Per tensor type, most weights first.
    pub types: Vec<TypeShare>,
    /// Tensor bytes of Llama-2-7B under the same recipe (from shapes alone).
    pub llama2_7b_bytes: u64,
    /// llama.cpp's published Llama-2-7B file of this type, GB (where known).
    pub llama2_7b_published_gb: Option<f64>,
    /// What the seed table claims for Llama-2-7B, GB (where it says).
    pub seed_7b_gb: Option<f64>,
    pub ppl: Option<f64>,
    pub kl_mean: Option<f64>,
    pub kl_p99: Option<f64>,
    pub kl_max: Option<f64>,
    pub top1_agreement: Option<f64>,
    pub matvec_gbps: Option<f64>,
    pub read_bw_ratio: Option<f64>,
    pub prefill_tps: Option<f64>,
    pub decode_tps: Option<f64>,
    /// Seconds the project's quantizer took to write the file.
    pub quantize_seconds: Option<f64>,
}

impl FormatRow {
    /// A row with sizes only, from a breakdown.
    pub fn from_sizes(format: FileType, file_bytes: u64, sizes: &SizeBreakdown) -> Result<FormatRow> {
        Ok(FormatRow {
            format,
            reference: format == FileType::F32,
            file_bytes,
            tensor_bytes: sizes.tensor_bytes,
            n_weights: sizes.n_weights,
            bits_per_weight: sizes.bits_per_weight(),
            types: sizes.types.clone(),
            llama2_7b_bytes: sizes::llama2_7b_bytes(format)?,
            llama2_7b_published_gb: sizes::lookup(&sizes::LLAMA_CPP_7B_GB, format),
            seed_7b_gb: sizes::lookup(&sizes::SEED_7B_GB, format),
            ppl: None,
            kl_mean: None,
            kl_p99: None,
            kl_max: None,
            top1_agreement: None,
            matvec_gbps: None,
            read_bw_ratio: None,
            prefill_tps: None,
            decode_tps: None,
            quantize_seconds: None,
        })
    }

    fn set_quality(&mut self, q: &Quality) {
        self.ppl = Some(q.ppl);
        self.kl_mean = Some(q.kl_mean);
        self.kl_p99 = Some(q.kl_p99);
        self.kl_max = Some(q.kl_max);
        self.top1_agreement = Some(q.top1_agreement);
    }

    fn set_speed(&mut self, s: &Speed) {
        self.matvec_gbps = Some(s.matvec_gbps);
        self.read_bw_ratio = Some(s.read_bw_ratio);
        self.prefill_tps = Some(s.prefill_tps);
        self.decode_tps = Some(s.decode_tps);
    }
}

/// Everything one run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// The model file benchmarked, and its own breakdown (what was dequantized into the reference).
    pub model: String,
    pub source: SizeBreakdown,
    /// The adapter, when anything ran on it.
    pub device: Option<String>,
    /// How kernel times were taken ("timestamp queries" or "wall clock").
    pub timing: Option<String>,
    pub text: Option<String>,
    pub n_ctx: usize,
    pub chunks: usize,
    pub scored_positions: usize,
    /// The device's streaming-read bandwidth, GB/s.
    pub read_bw_gbps: Option<f64>,
    pub speed: Option<SpeedOptions>,
    /// The reference first, then each format in the order asked.
    pub rows: Vec<FormatRow>,
}

impl BenchReport {
    /// The row of a format.
    pub fn row(&self, format: FileType) -> Option<&FormatRow> {
        self.rows.iter().find(|r| r.format == format)
    }
}

fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// The formats to run, without F32 (always present as the reference) and without repeats.
fn formats_to_run(formats: &[FileType]) -> Vec<FileType> {
    let mut out: Vec<FileType> = Vec::new();
    for &f in formats {
        if f != FileType::F32 && !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// Steps 1–2 without weights: each format's sizes from the model's shapes and the recipe, its
/// file size from a sparse stand-in written to (and removed from) `work_dir`, and the
/// Llama-2-7B column.
pub fn sizes_only(model: &Path, formats: &[FileType], work_dir: &Path) -> Result<BenchReport> {
    let src = GgufFile::open(model)?;
    let shapes = tensor_shapes(&src);
    let gqa = n_gqa(&src);
    let mut rows = Vec::new();
    for format in std::iter::once(FileType::F32).chain(formats_to_run(formats)) {
        let sizes = SizeBreakdown::of_recipe(&shapes, gqa, format)?;
        let scratch = work_dir.join(format!("sizes-{format}.gguf"));
        let file_bytes = sizes::planned_file_bytes(&src, format, &scratch)?;
        rows.push(FormatRow::from_sizes(format, file_bytes, &sizes)?);
    }
    Ok(BenchReport {
        model: display_name(model),
        source: SizeBreakdown::of_file(&src),
        device: None,
        timing: None,
        text: None,
        n_ctx: 0,
        chunks: 0,
        scored_positions: 0,
        read_bw_gbps: None,
        speed: None,
        rows,
    })
}

/// State shared by the measurement of every format.
struct Bench<'a> {
    ctx: Arc<Context>,
    config: &'a BenchConfig,
    timer: speed::PassTimer,
    tokens: Vec<u32>,
    bos: Option<u32>,
    read_bw: Option<f64>,
}

/// Steps 1–4 on `ctx`'s device (see the module docs). Files go to `config.work_dir`.
pub fn run(config: &BenchConfig, ctx: Arc<Context>, progress: &mut dyn Progress) -> Result<BenchReport> {
    let src = GgufFile::open(&config.model)?;
    let text = std::fs::read_to_string(&config.text).map_err(|e| Error::io(&config.text, e))?;
    let tokenizer = Tokenizer::from_gguf(&src)?;
    let tokens = quality::text_tokens(&tokenizer, &text, config.n_ctx, config.chunks)?;
    let bos = if tokenizer.add_bos() { tokenizer.bos_id() } else { None };
    let timer = speed::PassTimer::new(&ctx);
    let read_bw = match &config.speed {
        Some(s) => {
            progress.log("measuring the streaming-read bandwidth");
            Some(speed::read_bandwidth(&ctx, &timer, s.probe_bytes, s.reps)?)
        }
        None => None,
    };
    let bench = Bench { ctx: ctx.clone(), config, timer, tokens, bos, read_bw };
    let stem = config.model.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());

    // The reference: every tensor dequantized to F32.
    let ref_path = config.work_dir.join(format!("{stem}.F32.gguf"));
    let (ref_file, seconds) = quantize(&src, &ref_path, FileType::F32, progress)?;
    let (reference, mut ref_row) = bench.reference(ref_file.clone(), progress)?;
    ref_row.quantize_seconds = Some(seconds);
    let mut rows = vec![ref_row];

    for format in formats_to_run(&config.formats) {
        let path = config.work_dir.join(format!("{stem}.{format}.gguf"));
        let (file, seconds) = quantize(&ref_file, &path, format, progress)?;
        let mut row = bench.measure(format, file, &reference, progress)?;
        row.quantize_seconds = Some(seconds);
        progress.log(&report::one_line(&row));
        rows.push(row);
        if !config.keep_files {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    drop(reference);
    if !config.keep_files {
        drop(ref_file);
        std::fs::remove_file(&ref_path).map_err(|e| Error::io(&ref_path, e))?;
    }
    Ok(BenchReport {
        model: display_name(&config.model),
        source: SizeBreakdown::of_file(&src),
        device: Some(ctx.describe()),
        timing: Some(if bench.timer.uses_timestamps() { "timestamp queries" } else { "wall clock" }.into()),
        text: Some(display_name(&config.text)),
        n_ctx: config.n_ctx,
        chunks: config.chunks,
        scored_positions: quality::scored_positions(bench.tokens.len(), config.n_ctx),
        read_bw_gbps: read_bw,
        speed: config.speed,
        rows,
    })
}

/// Quantize `src` to `path` with progress, and open the result.
fn quantize(
    src: &GgufFile,
    path: &Path,
    format: FileType,
    progress: &mut dyn Progress,
) -> Result<(Arc<GgufFile>, f64)> {
    let start = Instant::now();
    progress.start(&format!("quantize {format}"), src.tensors().len() as u64);
    quantize_file(src, path, format, |i, _, _| progress.set(i as u64))?;
    progress.finish();
    Ok((Arc::new(GgufFile::open(path)?), start.elapsed().as_secs_f64()))
}

impl Bench<'_> {
    /// Upload every weight (all layers and the head on the device).
    fn load(&self, file: Arc<GgufFile>, progress: &mut dyn Progress) -> Result<GpuModel> {
        let config = Config::from_gguf(&file)?;
        progress.start("load", 0);
        let model = GpuModel::load(self.ctx.clone(), file, Offload::all_gpu(&config), |done, total| {
            progress.start("load", total);
            progress.set(done);
        })?;
        progress.finish();
        Ok(model)
    }

    /// Sizes of a written file, with the Llama-2-7B columns.
    fn size_row(&self, format: FileType, file: &GgufFile) -> Result<FormatRow> {
        FormatRow::from_sizes(format, file.file_size(), &SizeBreakdown::of_file(file))
    }

    fn reference(&self, file: Arc<GgufFile>, progress: &mut dyn Progress) -> Result<(Reference, FormatRow)> {
        let mut row = self.size_row(FileType::F32, &file)?;
        let model = self.load(file.clone(), progress)?;
        let path = self.config.work_dir.join("reference.logprobs");
        let reference = quality::record_reference(&model, &self.tokens, self.config.n_ctx, self.bos, &path, progress)?;
        row.set_quality(&reference.quality);
        if let Some(speed) = self.speed(&model, &file, progress)? {
            row.set_speed(&speed);
        }
        Ok((reference, row))
    }

    fn measure(
        &self,
        format: FileType,
        file: Arc<GgufFile>,
        reference: &Reference,
        progress: &mut dyn Progress,
    ) -> Result<FormatRow> {
        let mut row = self.size_row(format, &file)?;
        let model = self.load(file.clone(), progress)?;
        let q = quality::compare(&model, &self.tokens, self.config.n_ctx, self.bos, reference, progress)?;
        row.set_quality(&q);
        if let Some(speed) = self.speed(&model, &file, progress)? {
            row.set_speed(&speed);
        }
        Ok(row)
    }

    fn speed(&self, model: &GpuModel, file: &GgufFile, progress: &mut dyn Progress) -> Result<Option<Speed>> {
        let (Some(opts), Some(read_bw)) = (&self.config.speed, self.read_bw) else { return Ok(None) };
        progress.start("speed", 2);
        let matvec_gbps = speed::matvec_bandwidth(&self.ctx, &self.timer, file, opts.reps)?;
        progress.set(1);
        let prompt = &self.tokens[..opts.prompt_tokens.min(self.tokens.len())];
        let (prefill_tps, decode_tps) = speed::generation_speed(model, prompt, opts.decode_tokens, opts.reps)?;
        progress.finish();
        Ok(Some(Speed { matvec_gbps, read_bw_ratio: matvec_gbps / read_bw, prefill_tps, decode_tps }))
    }
}
