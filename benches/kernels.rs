//! Kernel benchmark: `cargo bench --bench kernels [-- --quick]`; shape tuning:
//! `-- --tune [FORMAT...] [--shape MxK]`, `-- --tune-mm [FORMAT...]`; `-- --info` prints the
//! adapter, its limits and features, and the kernel profile chosen for it, and stops.
//!
//! Measures on the current device, in one run: buffer copy bandwidth, a streaming-read kernel's
//! bandwidth (the yardstick), then per format the matvec bandwidth (weight bytes per second) at
//! 7B shapes and at the default model's shapes, its ratio to the streaming read, and the tiled
//! matmul's GFLOP/s at N = 512. Times come from timestamp queries when the device has them,
//! else from the wall clock around a submit.
//!
//! Matvecs are timed cold, as decode meets them: each shape is uploaded in enough copies (of
//! random blocks) to exceed [`COLD_BYTES`], and a pass rotates over them, so no cache holds the
//! matrix a dispatch reads (a GPU's L2 holds a whole 4096×4096 Q4_K matrix).

use std::time::Instant;

use wgquant::bench::speed::{read_bandwidth, PassTimer};
use wgquant::format::random::random_blocks;
use wgquant::format::GgmlType;
use wgquant::gpu::{Context, GpuTensor, MatVecRule, MemTag};
use wgquant::ops;
use wgquant::Result;

/// (M, K) of the 7B model's matrices: attention, FFN up/gate, FFN down, output head.
const SHAPES_7B: [(usize, usize); 4] = [(4096, 4096), (11008, 4096), (4096, 11008), (32000, 4096)];
/// (M, K) of Gemma 3 270M: q, k/v, o, gate/up, down, output head.
const SHAPES_GEMMA: [(usize, usize); 6] =
    [(1024, 640), (256, 640), (640, 1024), (2048, 640), (640, 2048), (262144, 640)];

fn copy_bandwidth(ctx: &Context, bytes: u64, reps: usize) -> Result<f64> {
    let usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let a = ctx.create_buffer("copy src", bytes, usage, MemTag::Activations)?;
    let b = ctx.create_buffer("copy dst", bytes, usage, MemTag::Activations)?;
    let mut best = f64::MAX;
    for _ in 0..reps + 1 {
        let mut enc = ctx.encoder("copy");
        enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
        let t0 = Instant::now();
        ctx.submit_and_wait(enc)?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(bytes as f64 / best / 1e9)
}

/// Matrix bytes a cold matvec timing rotates over: several times the last-level cache of any
/// device (an H200's L2 is 60 MB, an EPYC's L3 32 MB).
const COLD_BYTES: u64 = 256 << 20;

/// A weight of `m` rows of `k` elements of random blocks.
fn weight(ctx: &Context, ty: GgmlType, m: usize, k: usize) -> Result<GpuTensor> {
    weight_seeded(ctx, ty, m, k, 0)
}

fn weight_seeded(ctx: &Context, ty: GgmlType, m: usize, k: usize, seed: u64) -> Result<GpuTensor> {
    let bytes = random_blocks(ty, (m * k) as u64, seed)?;
    GpuTensor::upload(ctx, "bench", ty, k, m, &bytes)
}

/// Copies of an `m` × `k` weight of `ty` (different random blocks) that together exceed
/// `cold_bytes`, the bytes of one, and how many matvecs a timed pass runs: at least 4, so that a
/// pass's fixed cost is shared.
fn cold_copies(
    ctx: &Context,
    ty: GgmlType,
    (m, k): (usize, usize),
    cold_bytes: u64,
) -> Result<(Vec<GpuTensor>, u64, usize)> {
    let one = ty.bytes_for((m * k) as u64)?;
    let copies = cold_bytes.div_ceil(one).clamp(1, 4096) as usize;
    let ws = (0..copies).map(|i| weight_seeded(ctx, ty, m, k, i as u64)).collect::<Result<_>>()?;
    Ok((ws, one, copies.max(4)))
}

/// Matvec (one column) on an `m` × `k` weight of `ty`, cold: its bytes and the weight GB/s, best
/// of `reps` passes, each rotating over copies that together exceed `cold_bytes`.
fn matvec_gbs(
    ctx: &Context,
    timer: &PassTimer,
    ty: GgmlType,
    (m, k): (usize, usize),
    reps: usize,
    cold_bytes: u64,
) -> Result<(f64, f64)> {
    let (ws, one, per_pass) = cold_copies(ctx, ty, (m, k), cold_bytes)?;
    let x = ctx.f32_buffer("x", k)?;
    let y = ctx.f32_buffer("y", m)?;
    let t = timer.best_of(ctx, reps, |pass| {
        for w in ws.iter().cycle().take(per_pass) {
            ops::matvec(ctx, pass, w, &x, &y, 1)?;
        }
        Ok(())
    })?;
    Ok((one as f64, one as f64 * per_pass as f64 / t / 1e9))
}

/// [`matvec_gbs`] on the integer path (`ops::matvec_q8`): the column quantized once per pass,
/// then every copy dotted with it.
fn matvec_q8_gbs(
    ctx: &Context,
    timer: &PassTimer,
    ty: GgmlType,
    (m, k): (usize, usize),
    reps: usize,
    cold_bytes: u64,
) -> Result<(f64, f64)> {
    use wgquant::ops::matvec_q8::{matvec_q8, quantize_q8, Q8Column};
    let (ws, one, per_pass) = cold_copies(ctx, ty, (m, k), cold_bytes)?;
    let x = ctx.f32_buffer("x", k)?;
    let q8 = Q8Column::new(ctx, k)?;
    let y = ctx.f32_buffer("y", m)?;
    let t = timer.best_of(ctx, reps, |pass| {
        quantize_q8(ctx, pass, &x, k, &q8)?;
        for w in ws.iter().cycle().take(per_pass) {
            matvec_q8(ctx, pass, w, &q8, &y)?;
        }
        Ok(())
    })?;
    Ok((one as f64, one as f64 * per_pass as f64 / t / 1e9))
}

/// `--info`: what the device is and what wgquant makes of it.
fn print_info(ctx: &Context) {
    let info = ctx.adapter_info();
    let l = ctx.limits();
    println!("adapter: {}", info.name);
    println!(
        "vendor 0x{:04x}, device 0x{:04x}, type {:?}, backend {:?}",
        info.vendor, info.device, info.device_type, info.backend
    );
    println!("driver: {} {}", info.driver, info.driver_info);
    println!("subgroup sizes: {}..{}", info.subgroup_min_size, info.subgroup_max_size);
    println!("features enabled: {:?}", ctx.features());
    println!(
        "limits: max buffer {} MiB, storage binding {} MiB, uniform binding {} KiB, workgroup storage {} KiB, invocations {}, workgroups per dim {}",
        l.max_buffer_size >> 20,
        l.max_storage_buffer_binding_size >> 20,
        l.max_uniform_buffer_binding_size >> 10,
        l.max_compute_workgroup_storage_size >> 10,
        l.max_compute_invocations_per_workgroup,
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "subgroup size used {:?}; weights in {}",
        ctx.subgroup_size(),
        if ctx.weight_textures() { "textures" } else { "storage buffers" }
    );
    println!("profile: {:#?}", ctx.profile());
}

/// `--tune`: matvec GB/s of several kernel shapes (4096 x 4096 unless `--shape`), to pick a
/// device's shape.
fn tune(ctx: &Context, timer: &PassTimer, formats: &[GgmlType], (m, k): (usize, usize)) -> Result<()> {
    let shapes = match ctx.profile().matvec {
        MatVecRule::WholeRows { .. } => cpu_tune_shapes(ctx),
        MatVecRule::Cooperative { .. } => gpu_tune_shapes(ctx),
    };
    let x = ctx.f32_buffer("x", k)?;
    let y = ctx.f32_buffer("y", m)?;
    let weights: Vec<GpuTensor> = formats.iter().map(|&ty| weight(ctx, ty, m, k)).collect::<Result<_>>()?;
    // The machine may be shared: rank shapes by CPU time of this process (lavapipe's workers are
    // our threads) as well as by wall time. Interleaved rounds, best of each.
    let mut best = vec![vec![(f64::MAX, f64::MAX); shapes.len()]; formats.len()];
    for _ in 0..4 {
        for (w, best) in weights.iter().zip(&mut best) {
            for (shape, best) in shapes.iter().zip(best.iter_mut()) {
                let reps = 8;
                let cpu0 = process_cpu_seconds();
                let shape = ops::MatVecShape {
                    warm: shape.warm && ops::matvec::warm_pays(w.ty, k, ctx.weight_textures()),
                    ..*shape
                };
                let t = timer.best_of(ctx, 1, |pass| {
                    for _ in 0..reps {
                        ops::matvec_with(ctx, pass, Some(shape), w, x.at(0), y.at(0), 1)?;
                    }
                    Ok(())
                })?;
                let cpu = (process_cpu_seconds() - cpu0) / 2.0;
                *best = (best.0.min(t / reps as f64), best.1.min(cpu / reps as f64));
            }
        }
    }
    println!("GB/s by wall time | by CPU time of this process (wg/tpr/rpi)");
    for (w, best) in weights.iter().zip(&best) {
        print!("{:<7}", w.ty.name());
        for (shape, (t, c)) in shapes.iter().zip(best) {
            let gb = w.n_bytes() as f64 / 1e9;
            let marks = [(shape.shares_x(w.ty, 1), "x"), (shape.subgroup, "s"), (shape.wide_units, "w")];
            let marks: String = marks.iter().filter(|(on, _)| *on).map(|(_, m)| *m).collect();
            print!(" {}/{}/{}{marks}: {:>5.2}|{:>5.2}", shape.wg, shape.tpr, shape.rpi, gb / t, gb / c);
        }
        if wgquant::gpu::shaders::has_int_decoder(w.ty) {
            print!(" int8: {:>5.2}", matvec_q8_gbs(ctx, timer, w.ty, (m, k), 4, 0)?.1);
        }
        println!();
    }
    Ok(())
}

/// CPU shapes: (invocations per workgroup, per row, rows per invocation, shared activations);
/// one-invocation rows warm their rows into cache first where `MatVecShape::pick` would, and
/// share activations through subgroupShuffle where marked and the device allows (`x` in the
/// table).
fn cpu_tune_shapes(ctx: &Context) -> Vec<ops::MatVecShape> {
    [
        (8, 1, 1, true),
        (8, 1, 2, true),
        (8, 1, 4, true),
        (8, 1, 4, false),
        (8, 1, 8, true),
        (8, 1, 8, false),
        (8, 1, 16, true),
        (16, 1, 8, true),
        (16, 1, 4, true),
        (32, 1, 2, true),
        (32, 1, 8, true),
        (64, 1, 8, true),
        (8, 8, 4, false),
        (8, 8, 8, false),
        (16, 8, 8, false),
    ]
    .map(|(wg, tpr, rpi, share)| {
        let shuffle_x = share && tpr == 1 && ctx.subgroup_size() == Some(wg);
        ops::MatVecShape { wg, tpr, rpi, subgroup: false, warm: tpr == 1, shuffle_x, wide_units: false }
    })
    .to_vec()
}

/// GPU shapes: (invocations per workgroup, per row, rows per invocation, wide units); rows are
/// reduced with subgroupAdd when the row width is the device's subgroup size (`s` in the table).
fn gpu_tune_shapes(ctx: &Context) -> Vec<ops::MatVecShape> {
    [
        (128, 32, 1, false),
        (128, 32, 1, true),
        (128, 32, 2, true),
        (128, 32, 4, true),
        (64, 32, 2, true),
        (256, 32, 2, true),
        (256, 32, 4, true),
        (128, 16, 2, true),
        (128, 16, 4, true),
        (256, 64, 2, true),
        (128, 8, 4, true),
    ]
    .map(|(wg, tpr, rpi, wide_units)| ops::MatVecShape {
        wg,
        tpr,
        rpi,
        subgroup: ctx.subgroup_size() == Some(tpr),
        warm: false,
        shuffle_x: false,
        wide_units,
    })
    .to_vec()
}

/// CPU seconds used so far by all threads of this process (Linux; 0 elsewhere), with nanosecond
/// resolution from each thread's schedstat.
fn process_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>()
        * 1e-9
}

/// `--tune-mm`: matmul GFLOP/s of several tile shapes against matvec over 8-column batches.
fn tune_mm(ctx: &Context, timer: &PassTimer, formats: &[GgmlType]) -> Result<()> {
    let (m, k, n) = (1024, 1024, 512);
    let x = ctx.f32_buffer("x", n * k)?;
    let y = ctx.f32_buffer("y", n * m)?;
    for &ty in formats {
        let w = weight(ctx, ty, m, k)?;
        let base = ops::MatMulShape::for_format(ctx, ty);
        let shapes = [
            base,
            ops::MatMulShape { whole_blocks: !base.whole_blocks, ..base },
            ops::MatMulShape { pad_rows: !base.pad_rows, ..base },
            // f32 tiles, where the base shape has f16 ones (the same shape elsewhere).
            ops::MatMulShape { f16_tiles: false, ..base },
            ops::MatMulShape { bm: 32, bn: 32, tm: 8, tn: 4, ..base },
            ops::MatMulShape { bm: 64, bn: 32, tm: 8, tn: 4, ..base },
            ops::MatMulShape { bm: 64, bn: 64, tm: 8, tn: 8, ..base },
            ops::MatMulShape { bm: 128, bn: 64, tm: 8, tn: 4, ..base },
            ops::MatMulShape { bm: 128, bn: 128, tm: 8, tn: 8, ..base },
        ];
        print!("{:<7}", ty.name());
        let flop = 2.0 * (m * k * n) as f64 / 1e9;
        let t = timer.best_of(ctx, 2, |pass| ops::matvec(ctx, pass, &w, &x, &y, n))?;
        print!(" matvec x8: {:>5.1}", flop / t);
        for s in shapes {
            if s.workgroup_bytes() > ctx.limits().max_compute_workgroup_storage_size {
                continue;
            }
            let t = timer.best_of(ctx, 2, |pass| ops::matmul_with(ctx, pass, s, &w, x.at(0), y.at(0), n))?;
            let marks = [(s.whole_blocks, "b"), (s.pad_rows, "p")];
            let marks: String = marks.iter().filter(|(on, _)| *on).map(|(_, m)| *m).collect();
            print!(" {}x{}/{}x{}{marks}: {:>5.1}", s.bm, s.bn, s.tm, s.tn, flop / t);
        }
        println!();
    }
    Ok(())
}

/// Cost of one small dispatch inside a pass: host recording time and device time per dispatch.
fn dispatch_overhead(ctx: &Context, timer: &PassTimer) -> Result<(f64, f64)> {
    let w = weight(ctx, GgmlType::Q8_0, 64, 256)?;
    let x = ctx.f32_buffer("x", 256)?;
    let y = ctx.f32_buffer("y", 64)?;
    let n = 200;
    let mut record = 0.0;
    let t = timer.best_of(ctx, 3, |pass| {
        let t0 = Instant::now();
        for _ in 0..n {
            ops::matvec(ctx, pass, &w, &x, &y, 1)?;
        }
        record = t0.elapsed().as_secs_f64();
        Ok(())
    })?;
    Ok((record / n as f64 * 1e6, t / n as f64 * 1e6))
}

fn matmul_gflops(
    ctx: &Context,
    timer: &PassTimer,
    ty: GgmlType,
    m: usize,
    k: usize,
    n: usize,
    reps: usize,
) -> Result<f64> {
    let w = weight(ctx, ty, m, k)?;
    let x = ctx.f32_buffer("x", n * k)?;
    let y = ctx.f32_buffer("y", n * m)?;
    let t = timer.best_of(ctx, reps, |pass| ops::matmul(ctx, pass, &w, &x, &y, n))?;
    Ok(2.0 * (m * k * n) as f64 / t / 1e9)
}

/// `--shape MxK` for `--tune` (default 4096x4096).
fn tune_shape() -> Result<(usize, usize)> {
    let Some(arg) = args().skip_while(|a| a != "--shape").nth(1) else { return Ok((4096, 4096)) };
    let bad = || wgquant::Error::Invalid(format!("--shape wants MxK, got {arg:?}"));
    let (m, k) = arg.split_once('x').ok_or_else(bad)?;
    Ok((m.parse().map_err(|_| bad())?, k.parse().map_err(|_| bad())?))
}

/// The command line, without the `--bench` flag cargo adds.
fn args() -> impl Iterator<Item = String> {
    std::env::args().filter(|a| a != "--bench")
}

fn main() -> Result<()> {
    let quick = args().any(|a| a == "--quick");
    let ctx = Context::new()?;
    let timer = PassTimer::new(&ctx);
    let reps = if quick { 2 } else { 5 };
    let cold_bytes = if quick { 16 << 20 } else { COLD_BYTES };
    println!("device: {}", ctx.describe());
    if args().any(|a| a == "--info") {
        print_info(&ctx);
        return Ok(());
    }
    println!(
        "profile {}, timing by {}, max binding {} MiB",
        ctx.profile().name,
        if timer.uses_timestamps() { "timestamp queries" } else { "wall clock" },
        ctx.max_binding_size() >> 20
    );
    if args().any(|a| a == "--tune-mm") {
        let names: Vec<String> = args().skip_while(|a| a != "--tune-mm").skip(1).collect();
        let formats: Vec<GgmlType> = if names.is_empty() {
            GgmlType::all().collect()
        } else {
            names.iter().filter_map(|n| GgmlType::from_name(n)).collect()
        };
        return tune_mm(&ctx, &timer, &formats);
    }
    if args().any(|a| a == "--tune") {
        let names: Vec<String> = args().skip_while(|a| a != "--tune").skip(1).take_while(|a| a != "--shape").collect();
        let formats: Vec<GgmlType> = if names.is_empty() {
            GgmlType::all().collect()
        } else {
            names.iter().filter_map(|n| GgmlType::from_name(n)).collect()
        };
        return tune(&ctx, &timer, &formats, tune_shape()?);
    }
    let probe_bytes = if quick { 64 << 20 } else { 256 << 20 };
    let copy = copy_bandwidth(&ctx, probe_bytes, reps)?;
    let stream = read_bandwidth(&ctx, &timer, probe_bytes.min(ctx.max_binding_size() & !15), reps)?;
    println!("buffer copy: {copy:.1} GB/s copied; streaming read: {stream:.1} GB/s");
    let (rec, dev) = dispatch_overhead(&ctx, &timer)?;
    println!("small matvec dispatch: {rec:.1} µs to record, {dev:.1} µs on the device (in one pass)\n");

    let shapes_7b: &[(usize, usize)] = if quick { &SHAPES_7B[..1] } else { &SHAPES_7B };
    let (mm_m, mm_k, mm_n) = if quick { (1024, 1024, 512) } else { (4096, 4096, 512) };
    print!("{:<7}", "format");
    for (m, k) in shapes_7b {
        print!(" {:>11}", format!("{m}x{k}"));
    }
    println!(
        " {:>9} {:>7} {:>10} {:>7} {:>14} {:>10} {:>7}",
        "7B GB/s",
        "ratio",
        "gemma GB/s",
        "ratio",
        format!("mm N={mm_n} GF/s"),
        "int8 7B",
        "ratio"
    );
    for ty in GgmlType::all() {
        print!("{:<7}", ty.name());
        let mut bytes_7b = 0.0;
        let mut time_7b = 0.0;
        for &shape in shapes_7b {
            let (bytes, gbs) = matvec_gbs(&ctx, &timer, ty, shape, reps, cold_bytes)?;
            bytes_7b += bytes;
            time_7b += bytes / gbs;
            print!(" {gbs:>11.2}");
        }
        let (mut bytes_g, mut time_g) = (0.0, 0.0);
        for &(m, k) in &SHAPES_GEMMA {
            if k % ty.block_elems() != 0 || (quick && m > 100_000) {
                continue;
            }
            let (bytes, gbs) = matvec_gbs(&ctx, &timer, ty, (m, k), reps, cold_bytes)?;
            bytes_g += bytes;
            time_g += bytes / gbs;
        }
        let (g7, gg) = (bytes_7b / time_7b, bytes_g / time_g);
        let mm = matmul_gflops(&ctx, &timer, ty, mm_m, mm_k, mm_n, reps.min(2))?;
        print!(" {g7:>9.2} {:>7.2} {gg:>10.2} {:>7.2} {mm:>14.1}", g7 / stream, gg / stream);
        if wgquant::gpu::shaders::has_int_decoder(ty) {
            let (mut bytes, mut time) = (0.0, 0.0);
            for &shape in shapes_7b {
                let (one, gbs) = matvec_q8_gbs(&ctx, &timer, ty, shape, reps, cold_bytes)?;
                bytes += one;
                time += one / gbs;
            }
            print!(" {:>10.2} {:>7.2}", bytes / time, bytes / time / stream);
        }
        println!();
    }
    println!(
        "\nGB/s: weight bytes read per second by matvec (N = 1), cold (rotating over {} MiB of copies); ratio: to the streaming read.",
        cold_bytes >> 20
    );
    println!("gemma: Gemma 3 270M shapes {SHAPES_GEMMA:?} (those whose K fits the format's block).");
    println!("int8: the integer matvec (activations rounded to 8 bits, dot4I8Packed) at the 7B shapes, for the formats with an integer decoder.");
    Ok(())
}
