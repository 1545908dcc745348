//! `wgquant bench`: size, quality and speed of every quantization of a model, measured in one run.
//!
//! `wgquant bench [-m MODEL] [-f TEXT] [--json FILE] [--csv FILE] [--plot-dir DIR]
//! [--formats Q8_0,Q4_K_M,...] [-c N] [--chunks N] [--fast] [--sizes-only]`
//!
//! The Markdown report goes to stdout, progress to stderr. The work (an F32 reference of the model
//! and one quantized file at a time) happens in a temporary directory unless `--work-dir` is given;
//! on lavapipe the default model takes about two minutes per format with `--ctx 256 --chunks 2`.
//! See `wgquant::bench` for what is measured and how.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use wgquant::bench::{self, plot, report, BenchConfig, BenchReport, Progress, SpeedOptions};
use wgquant::gpu::{AdapterSelector, Context, ContextOptions};
use wgquant::quantize::FileType;
use wgquant::{Error, Result};

use crate::common::DEFAULT_MODEL;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file [default: models/gemma-3-270m-q4_k_m.gguf]
    #[arg(short, long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Plain-text file scored for quality (and the source of the speed prompt).
    #[arg(short = 'f', long = "file", default_value = "/usr/share/common-licenses/GPL-3")]
    text: PathBuf,
    /// Comma-separated file types (default: F16,Q8_0,Q6_K,Q5_K_M,Q5_K_S,Q5_0,Q4_K_M,Q4_K_S,Q4_0,Q3_K_M,Q2_K).
    #[arg(long, value_delimiter = ',')]
    formats: Vec<String>,
    /// Tokens per scored chunk (the second half of each chunk is scored).
    #[arg(short = 'c', long = "ctx-size", visible_alias = "ctx", default_value_t = 512)]
    ctx: usize,
    /// Chunks of the text to score (default 2, or 1 with --fast).
    #[arg(long)]
    chunks: Option<usize>,
    /// Short speed runs (16-token prompt, 4 decode tokens, one repetition) and one chunk.
    #[arg(long)]
    fast: bool,
    /// Skip the speed measurements.
    #[arg(long)]
    no_speed: bool,
    /// Sizes and bits per weight from shapes and recipes alone: nothing is quantized or run.
    #[arg(long)]
    sizes_only: bool,
    /// Write the results as JSON (an array with one object per format).
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write quality.png (KL and PPL against bits per weight) and decode.png here.
    #[arg(long)]
    plot_dir: Option<PathBuf>,
    /// Directory for the reference and quantized files (default: a temporary one).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the reference and quantized files in the work directory (with --work-dir).
    #[arg(long)]
    keep: bool,
    /// Adapter index or name substring (default: the best one).
    #[arg(long)]
    device: Option<String>,
}

pub fn run(args: &Args) -> Result<()> {
    if !args.model.exists() {
        return Err(Error::Invalid(format!(
            "{} does not exist (scripts/fetch-model.sh fetches the default model)",
            args.model.display()
        )));
    }
    let formats = parse_formats(&args.formats)?;
    let temp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let work_dir = args.work_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&work_dir).map_err(|e| Error::io(&work_dir, e))?;

    let report = if args.sizes_only {
        bench::sizes_only(&args.model, &formats, &work_dir)?
    } else {
        let config = BenchConfig {
            model: args.model.clone(),
            text: args.text.clone(),
            formats,
            n_ctx: args.ctx,
            chunks: args.chunks.unwrap_or(if args.fast { 1 } else { 2 }),
            speed: (!args.no_speed).then(|| if args.fast { SpeedOptions::fast() } else { SpeedOptions::default() }),
            work_dir,
            keep_files: args.keep,
        };
        let adapter = args.device.as_deref().map(AdapterSelector::parse);
        let ctx = Arc::new(Context::with_options(ContextOptions { adapter, ..Default::default() })?);
        eprintln!("device: {}", ctx.describe());
        bench::run(&config, ctx, &mut Bars::default())?
    };
    print!("{}", report::markdown(&report)?);
    write_outputs(args, &report)
}

fn parse_formats(names: &[String]) -> Result<Vec<FileType>> {
    if names.is_empty() {
        return Ok(bench::DEFAULT_FORMATS.to_vec());
    }
    names.iter().map(|n| FileType::from_name(n.trim())).collect()
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

fn write_outputs(args: &Args, report: &BenchReport) -> Result<()> {
    if let Some(path) = &args.json {
        write(path, &report::json(report)?)?;
    }
    if let Some(path) = &args.csv {
        write(path, &report::csv(report))?;
    }
    if let Some(dir) = &args.plot_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if args.sizes_only {
            eprintln!("no plots: --sizes-only measures neither quality nor speed");
            return Ok(());
        }
        plot::plot_quality(report, &dir.join("quality.png"))?;
        if report.rows.iter().any(|r| r.decode_tps.is_some()) {
            plot::plot_decode_speed(report, &dir.join("decode.png"))?;
        }
    }
    Ok(())
}

/// Progress bars on stderr (hidden when it is not a terminal).
#[derive(Default)]
struct Bars {
    bar: Option<(String, ProgressBar)>,
}

impl Progress for Bars {
    fn start(&mut self, label: &str, total: u64) {
        // Loading calls start again as it learns the total: keep the same bar.
        if let Some((current, bar)) = &self.bar {
            if current == label {
                bar.set_length(total);
                return;
            }
        }
        self.finish();
        let units = if label == "load" { "{binary_bytes}/{binary_total_bytes}" } else { "{pos}/{len}" };
        let template = format!("{{prefix:>16}} [{{bar:40}}] {units} {{elapsed}}");
        let bar = ProgressBar::new(total);
        bar.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
        bar.set_prefix(label.to_string());
        self.bar = Some((label.to_string(), bar));
    }

    fn set(&mut self, done: u64) {
        if let Some((_, bar)) = &self.bar {
            bar.set_position(done);
        }
    }

    fn finish(&mut self) {
        if let Some((_, bar)) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn log(&mut self, line: &str) {
        match &self.bar {
            Some((_, bar)) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}
