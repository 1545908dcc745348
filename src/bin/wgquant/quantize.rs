//! `wgquant quantize IN.gguf OUT.gguf Q4_K_M`: quantize with one of llama.cpp's file-type recipes.
//! The input may be F32, F16 or already quantized (its tensors are dequantized first).

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use wgquant::gguf::GgufFile;
use wgquant::quantize::{quantize_file, FileType, QuantizeSummary};
use wgquant::Result;

#[derive(clap::Args)]
pub struct Args {
    input: PathBuf,
    output: PathBuf,
    /// File type: F32 F16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_M Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K
    ftype: String,
}

pub fn run(args: &Args) -> Result<()> {
    let ftype = FileType::from_name(&args.ftype)?;
    let src = GgufFile::open(&args.input)?;
    let bar = ProgressBar::new(src.tensors().len() as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("valid template"));
    let summary = quantize_file(&src, &args.output, ftype, |i, _, name| {
        bar.set_position(i as u64);
        bar.set_message(name.to_string());
    })?;
    bar.finish_and_clear();
    print_summary(&src, &summary);
    Ok(())
}

fn print_summary(src: &GgufFile, s: &QuantizeSummary) {
    let mut by_type: std::collections::BTreeMap<_, (usize, u64, u64)> = Default::default();
    for (_, ty, n, bytes) in &s.tensors {
        let e = by_type.entry(*ty).or_default();
        *e = (e.0 + 1, e.1 + n, e.2 + bytes);
    }
    println!("{} → {}", src.path().map(|p| p.display().to_string()).unwrap_or_default(), s.ftype);
    for (ty, (count, n, bytes)) in by_type {
        println!(
            "  {:<7} {count:>4} tensors {n:>13} weights {bytes:>13} bytes  {:.4} bpw",
            ty.name(),
            bytes as f64 * 8.0 / n as f64
        );
    }
    println!(
        "input  {:>13} bytes ({:.2} MiB)\noutput {:>13} bytes ({:.2} MiB), tensors {} bytes, {:.4} bits per weight",
        src.file_size(),
        src.file_size() as f64 / (1 << 20) as f64,
        s.file_bytes,
        s.file_bytes as f64 / (1 << 20) as f64,
        s.tensor_bytes(),
        s.bits_per_weight()
    );
}
