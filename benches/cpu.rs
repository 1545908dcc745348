//! CPU kernel benchmark: `cargo bench --bench cpu [-- --quick|--hot] [--shape MxK] [--cols N] [FORMAT...]`.
//!
//! Per quantized format, the bandwidth (weight bytes per second) of a 4096 × 4096 matrix-vector
//! product on the CPU, read cold (copies rotated over, together larger than any last-level
//! cache): the scalar reference (`format::dot::matvec`, f32 activations), and the integer kernels
//! (`wgquant::cpu`, 8-bit activations) at every instruction level this CPU has;
//! each against the machine's read bandwidth, measured in the same run by summing a large buffer
//! on all of rayon's threads. Both in huge pages, as the model's CPU matrices are.
//!
//! `--hot` times one matrix read again and again from the caches instead (pick a `--shape` that
//! fits them): the kernels' compute ceiling, what they would stream if memory were free.
//! `--cols N` multiplies by N columns at once, as a prompt of N tokens does (GB/s are still the
//! weights' bytes a second, each read once a product).

use std::time::Instant;

use memmap2::MmapMut;
use wgquant::bench::speed::{host_read_bandwidth, HOST_READ_BYTES};
use wgquant::cpu::huge_pages::huge_page_buffer;
use wgquant::cpu::simd::Level;
use wgquant::cpu::{has_kernel, matmul_at, on_pool, Q8Activations};
use wgquant::format::dot;
use wgquant::format::random::random_blocks;
use wgquant::GgmlType;

/// Bytes a cold timing rotates over: as many as the read bandwidth is measured over.
const COLD_BYTES: usize = HOST_READ_BYTES;

/// Bytes a hot timing reads per round (the one matrix, again and again), and its rounds.
const HOT_BYTES: usize = 1 << 30;
const HOT_ROUNDS: usize = 5;

/// GB/s of `product` over `copies`, each read `passes` times in rotation; the best of `rounds`
/// such timings (a hot timing's noise is other work on the machine, which only slows it). Run on
/// one of rayon's threads, as the model runs its products ([`on_pool`]): from any other thread
/// each product would pay a wake-up of the pool and a sleep of its caller, about 60 µs here.
fn timed(copies: &[&[u8]], passes: usize, rounds: usize, product: impl FnMut(&[u8]) + Send) -> f64 {
    on_pool(|| rotate(copies, passes, rounds, product))
}

fn rotate(copies: &[&[u8]], passes: usize, rounds: usize, mut product: impl FnMut(&[u8])) -> f64 {
    product(copies[0]);
    let bytes = (passes * copies.iter().map(|c| c.len()).sum::<usize>()) as f64;
    let mut round = || {
        let t0 = Instant::now();
        for _ in 0..passes {
            for w in copies {
                product(w);
            }
        }
        bytes / t0.elapsed().as_secs_f64() / 1e9
    };
    (0..rounds).map(|_| round()).fold(0.0, f64::max)
}

/// `n` random `m × k` matrices of `ty` side by side in one buffer of huge pages, as the model's CPU
/// matrices lie (a small matrix in a mapping of its own, under 2 MiB, would get none).
fn in_huge_pages(ty: GgmlType, m: usize, k: usize, n: usize) -> MmapMut {
    let one = ty.row_bytes(k).unwrap() * m;
    let mut map = huge_page_buffer(one * n).unwrap();
    for (seed, copy) in map.chunks_exact_mut(one).enumerate() {
        copy.copy_from_slice(&random_blocks(ty, (m * k) as u64, seed as u64).unwrap());
    }
    map
}

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| all.iter().position(|a| a == flag).and_then(|i| all.get(i + 1)).cloned();
    let (shape, cols) = (value("--shape"), value("--cols"));
    let is_value = |a: &String| Some(a) == shape.as_ref() || Some(a) == cols.as_ref();
    let args: Vec<String> = all.iter().filter(|a| !a.starts_with("--") && !is_value(a)).cloned().collect();
    let n_cols: usize = cols.map_or(1, |c| c.parse().expect("--cols N"));
    let quick = all.iter().any(|a| a == "--quick");
    let hot = all.iter().any(|a| a == "--hot");
    let wanted = |ty: GgmlType| args.is_empty() || args.iter().any(|a| a.eq_ignore_ascii_case(&ty.to_string()));
    let (m, k) = match &shape {
        Some(s) => {
            let (m, k) = s.split_once('x').expect("--shape MxK");
            (m.parse().expect("rows"), k.parse().expect("row length"))
        }
        None => (4096, 4096),
    };
    let levels = Level::available();
    let read = host_read_bandwidth();
    let names: Vec<&str> = levels.iter().map(|l| l.name()).collect();
    println!("CPU: {} threads, integer kernels at {}", rayon::current_num_threads(), names.join(", "));
    let reads = if hot { "hot, from the caches" } else { "cold" };
    println!(
        "read bandwidth: {read:.1} GB/s (sum of {} MiB); {m} × {k} matrices times {n_cols} columns, {reads}",
        HOST_READ_BYTES >> 20
    );
    print!("{:<7} {:>22}", "format", "reference GB/s (%)");
    for name in &names {
        print!(" {:>22}", format!("{name} GB/s (%)"));
    }
    println!();
    let x: Vec<f32> = (0..k * n_cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let xq = Q8Activations::quantize(&x, k).unwrap();
    let mut y = vec![0.0f32; m * n_cols];
    for ty in GgmlType::all().filter(|&ty| has_kernel(ty) && wanted(ty) && k % ty.block_elems() == 0) {
        let one = ty.row_bytes(k).unwrap() * m;
        let n = if quick || hot { 1 } else { COLD_BYTES.div_ceil(one).max(2) };
        let buffer = in_huge_pages(ty, m, k, n);
        let copies: Vec<&[u8]> = buffer.chunks_exact(one).collect();
        let (passes, rounds) = match (hot, quick) {
            (true, _) => ((HOT_BYTES / one).max(1), HOT_ROUNDS),
            (false, true) => (1, 1),
            (false, false) => (2, 1),
        };
        let cell = |gbs: f64| format!("{gbs:.1} ({:.0} %)", 100.0 * gbs / read);
        let reference = timed(&copies, passes, rounds, |w| dot::matmul(ty, w, k, &x, n_cols, &mut y).unwrap());
        print!("{:<7} {:>22}", ty.to_string(), cell(reference));
        for &level in &levels {
            print!(" {:>22}", cell(timed(&copies, passes, rounds, |w| matmul_at(level, ty, w, &xq, &mut y).unwrap())));
        }
        println!();
    }
}
