//! `wgquant inspect FILE.gguf [--all]`: a GGUF file's metadata and tensor table, like gguf-dump.
//! On a bad file: one line naming what is wrong and where, exit status 1.

use std::collections::BTreeMap;
use std::path::PathBuf;

use wgquant::gguf::GgufFile;
use wgquant::{GgmlType, Result};

use crate::common::in_file;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file
    file: PathBuf,
    /// Print long values and arrays in full width
    #[arg(long)]
    all: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let file = GgufFile::open(&args.file).map_err(|e| in_file(&args.file, e))?;
    print_file(&file, args.all);
    Ok(())
}

fn print_file(file: &GgufFile, all: bool) {
    let width = if all { usize::MAX } else { 100 };
    println!(
        "GGUF v{}: {} metadata keys, {} tensors, alignment {}, data at byte {}, {} bytes",
        file.version,
        file.metadata().len(),
        file.tensors().len(),
        file.alignment,
        file.data_offset,
        file.file_size()
    );
    println!("\nMetadata:");
    for (key, value) in file.metadata() {
        println!("  {key:<44} {}", value.summary(width));
    }

    println!("\nTensors:");
    println!("  {:>4}  {:<36} {:<7} {:<22} {:>12}", "#", "name", "type", "shape", "bytes");
    let mut per_type: BTreeMap<GgmlType, (usize, u64, u64)> = BTreeMap::new();
    for (i, t) in file.tensors().iter().enumerate() {
        let shape = t.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" × ");
        println!("  {i:>4}  {:<36} {:<7} {:<22} {:>12}", t.name, t.ty.name(), shape, t.n_bytes);
        let e = per_type.entry(t.ty).or_default();
        *e = (e.0 + 1, e.1 + t.n_elements(), e.2 + t.n_bytes);
    }

    println!("\nBy type:");
    let (mut all_elems, mut all_bytes) = (0u64, 0u64);
    for (ty, (count, elems, bytes)) in &per_type {
        println!(
            "  {:<7} {count:>4} tensors {elems:>13} weights {bytes:>12} bytes  {:.3} bits/weight",
            ty.name(),
            *bytes as f64 * 8.0 / *elems as f64
        );
        all_elems += elems;
        all_bytes += bytes;
    }
    println!(
        "  total   {:>4} tensors {all_elems:>13} weights {all_bytes:>12} bytes  {:.3} bits/weight",
        file.tensors().len(),
        all_bytes as f64 * 8.0 / all_elems as f64
    );
}
