//! GPU kernels against the CPU reference, on whatever adapter the machine has (lavapipe in CI).
//!
//! No adapter is a failure, not a skip: set `WGQUANT_SKIP_GPU_TESTS=1` to skip deliberately.
//!
//! Error bound: GPU and CPU sum in different orders, so each output is compared with
//!     |gpu - cpu| <= REL_TOL * sum_k |W[m][k] * X[n][k]|
//! (REL_TOL = 1e-5: f32 rounding of a K-term sum is at most about K·2^-24 of that sum in the worst
//! case and far less in practice). Decoded weights (get_rows) must equal the CPU dequantization
//! to within 1 ulp (a GPU may contract `d * q - m` into one fma).

use std::sync::OnceLock;

use wgquant::format::{dequant, dot, quant, GgmlType};
use wgquant::gguf::GgufFile;
use wgquant::gpu::{Context, ContextOptions, DeviceProfile, GpuTensor, MemTag};
use wgquant::model::KvType;
use wgquant::ops;

const REL_TOL: f32 = 1e-5;
const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

fn ctx() -> Option<&'static Context> {
    static CTX: OnceLock<Option<Context>> = OnceLock::new();
    CTX.get_or_init(|| match Context::new() {
        Ok(c) => {
            eprintln!("GPU tests on {}", c.describe());
            Some(c)
        }
        Err(e) if std::env::var("WGQUANT_SKIP_GPU_TESTS").is_ok_and(|v| v == "1") => {
            eprintln!("skipping GPU tests (WGQUANT_SKIP_GPU_TESTS=1): {e}");
            None
        }
        Err(e) => panic!("no usable GPU adapter ({e}); set WGQUANT_SKIP_GPU_TESTS=1 to skip GPU tests"),
    })
    .as_ref()
}

/// Contexts with the GPU-shaped kernels (many invocations per row, row reductions, big matmul
/// tiles) and wgpu's bounds checks, so the paths real GPUs take are tested here too: one reducing
/// rows with subgroup operations (when the device has a fixed subgroup size), one through
/// workgroup memory.
fn gpu_shaped_ctxs() -> &'static [Context] {
    static CTXS: OnceLock<Vec<Context>> = OnceLock::new();
    if ctx().is_none() {
        return &[];
    }
    CTXS.get_or_init(|| {
        [wgpu::Features::empty(), wgpu::Features::SUBGROUP]
            .into_iter()
            .map(|disable_features| {
                let opts = ContextOptions {
                    profile: Some(DeviceProfile::gpu()),
                    shader_checks: Some(true),
                    disable_features,
                    ..Default::default()
                };
                Context::with_options(opts).expect("GPU-shaped context")
            })
            .collect()
    })
}

/// Small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
}

/// Byte offsets of the f16 scale fields in one block (test-only knowledge, used to keep random
/// blocks finite; every other byte of a block is valid whatever its value).
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        F32 | F16 | BF16 => &[],
    }
}

/// `rows` rows of `k` elements of random but valid raw blocks: random quant bits everywhere,
/// finite scales of moderate size.
fn random_blocks(ty: GgmlType, rows: usize, k: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let n = rows * k;
    match ty {
        GgmlType::F32 => return bytemuck::cast_slice(&rng.vec(n)).to_vec(),
        GgmlType::F16 => return (0..n).flat_map(|_| half::f16::from_f32(rng.f()).to_le_bytes()).collect(),
        GgmlType::BF16 => return (0..n).flat_map(|_| half::bf16::from_f32(rng.f()).to_le_bytes()).collect(),
        _ => {}
    }
    let bytes = ty.bytes_for(n as u64).unwrap() as usize;
    let mut out: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
    for block in out.chunks_exact_mut(ty.block_bytes()) {
        for (i, &off) in f16_fields(ty).iter().enumerate() {
            // d of either sign, dmin/m positive; magnitudes like real tensors'.
            let v = 0.002 + 0.02 * rng.f().abs();
            let v = if i == 0 && rng.f() < 0.0 { -v } else { v };
            block[off..off + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    MatVec,
    MatMul,
}

/// Runs `record` in one pass and submits it.
fn run_pass(ctx: &Context, record: impl FnOnce(&mut wgpu::ComputePass<'_>)) {
    let mut enc = ctx.encoder("test");
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        record(&mut pass);
    }
    ctx.submit_and_wait(enc).unwrap();
}

/// Runs `op` on the GPU: `Y[n][m] = dot(W[m], X[n])`.
fn gpu_mul(ctx: &Context, w: &GpuTensor, x: &[f32], n: usize, op: Op) -> Vec<f32> {
    let xb = ctx.vec_from("x", x, MemTag::Activations).unwrap();
    let yb = ctx.f32_buffer("y", n * w.n_rows).unwrap();
    run_pass(ctx, |pass| match op {
        Op::MatVec => ops::matvec(ctx, pass, w, &xb, &yb, n).unwrap(),
        Op::MatMul => ops::matmul(ctx, pass, w, &xb, &yb, n).unwrap(),
    });
    ctx.read(&yb).unwrap()
}

/// Per-output scale of the error bound: sum_k |W[m][k] X[n][k]|, from the dequantized weights.
fn abs_dot(wf: &[f32], k: usize, x: &[f32], n: usize) -> Vec<f32> {
    let m = wf.len() / k;
    let mut out = vec![0.0; n * m];
    for c in 0..n {
        let xc = &x[c * k..(c + 1) * k];
        for r in 0..m {
            out[c * m + r] = wf[r * k..(r + 1) * k].iter().zip(xc).map(|(a, b)| (a * b).abs()).sum();
        }
    }
    out
}

/// The error bound of the matmul with f16 tiles, relative to Σ|W·X|: both operands rounded to
/// f16 (11 significant bits, a relative error of at most 2^-11 each), products summed in f32.
const F16_TILE_TOL: f32 = 2e-3;

/// The bound `op` meets on `ctx` for `ty`: f16 tiles' where the matmul uses them.
fn tolerance(ctx: &Context, ty: GgmlType, op: Op) -> f32 {
    match op {
        Op::MatMul if ops::MatMulShape::for_format(ctx, ty).f16_tiles => F16_TILE_TOL,
        _ => REL_TOL,
    }
}

/// Compares GPU output against the CPU reference within `rel_tol` of Σ|W·X|; returns the worst
/// ratio of error to bound.
#[allow(clippy::too_many_arguments)]
fn check_against_cpu(
    what: &str,
    ty: GgmlType,
    raw: &[u8],
    k: usize,
    x: &[f32],
    n: usize,
    gpu: &[f32],
    rel_tol: f32,
) -> f32 {
    let m = raw.len() / ty.row_bytes(k).unwrap();
    let mut cpu = vec![0.0; n * m];
    dot::matmul(ty, raw, k, x, n, &mut cpu).unwrap();
    let wf = dequant::dequantize_to_vec(ty, raw).unwrap();
    let scale = abs_dot(&wf, k, x, n);
    let mut worst = 0.0f32;
    for i in 0..n * m {
        let err = (gpu[i] - cpu[i]).abs();
        let bound = rel_tol * scale[i] + f32::MIN_POSITIVE;
        assert!(
            err <= bound,
            "{what}: {ty} M={m} K={k} N={n}: Y[{}][{}] gpu {} cpu {} (err {err:e} > bound {bound:e})",
            i / m,
            i % m,
            gpu[i],
            cpu[i]
        );
        worst = worst.max(err / bound);
    }
    worst
}

fn run_case(ctx: &Context, ty: GgmlType, m: usize, k: usize, n: usize, op: Op, seed: u64) -> f32 {
    let raw = random_blocks(ty, m, k, seed);
    let w = GpuTensor::upload(ctx, "w", ty, k, m, &raw).unwrap();
    let x = Rng::new(seed + 1).vec(n * k);
    let gpu = gpu_mul(ctx, &w, &x, n, op);
    check_against_cpu(&format!("{op:?}"), ty, &raw, k, &x, n, &gpu, tolerance(ctx, ty, op))
}

/// A row length of a few (virtual) blocks that is not a multiple of any workgroup or tile size:
/// 3 blocks of 256, 13 blocks of 32, or 13 groups of 8 for plain float formats.
fn odd_k(ty: GgmlType) -> usize {
    match ty.block_elems() {
        1 => 13 * 8,
        be if be >= 256 => 3 * be,
        be => 13 * be,
    }
}

/// An even number of blocks, one more than `odd_k`'s: rows that start at other alignments.
fn even_k(ty: GgmlType) -> usize {
    odd_k(ty) + wgquant::gpu::shaders::row_granularity(ty) as usize
}

/// The default context's kernel profile without subgroup operations (on CPU devices, the matvec
/// whose invocations each read their own activations, no `shuffle_x`) and with weights in storage
/// buffers (the default context holds them in textures on CPU devices).
fn ctx_without_subgroups() -> Option<&'static Context> {
    static CTX: OnceLock<Option<Context>> = OnceLock::new();
    let profile = ctx()?.profile().clone();
    CTX.get_or_init(|| {
        let opts = ContextOptions {
            profile: Some(profile),
            disable_features: wgpu::Features::SUBGROUP,
            weight_textures: Some(false),
            ..Default::default()
        };
        Some(Context::with_options(opts).expect("context without subgroups"))
    })
    .as_ref()
}

#[test]
fn matvec_every_format_matches_cpu() {
    let (Some(ctx), Some(plain)) = (ctx(), ctx_without_subgroups()) else { return };
    for ctx in [ctx, plain] {
        for ty in GgmlType::all() {
            for k in [odd_k(ty), even_k(ty)] {
                let mut worst = 0.0f32;
                for (i, &(m, n)) in [(1, 1), (7, 2), (37, 7), (64, 8), (33, 3), (5, 13), (70, 1)].iter().enumerate() {
                    worst = worst.max(run_case(ctx, ty, m, k, n, Op::MatVec, 100 + i as u64));
                }
                eprintln!(
                    "matvec {ty:>6} K={k:4} subgroups {:?}: worst error / bound = {worst:.3}",
                    ctx.subgroup_size()
                );
            }
        }
    }
}

#[test]
fn matmul_every_format_matches_cpu() {
    let Some(ctx) = ctx() else { return };
    for ty in GgmlType::all() {
        let k = odd_k(ty);
        let mut worst = 0.0f32;
        for (i, &(m, n)) in [(1, 1), (67, 9), (33, 64), (130, 70)].iter().enumerate() {
            worst = worst.max(run_case(ctx, ty, m, k, n, Op::MatMul, 200 + i as u64));
        }
        eprintln!("matmul {ty:>6} K={k:4}: worst error / bound = {worst:.3}");
    }
}

#[test]
fn gpu_shaped_kernels_match_cpu() {
    for ctx in gpu_shaped_ctxs() {
        eprintln!("GPU-shaped kernels, subgroup size {:?}", ctx.subgroup_size());
        gpu_shaped_case(ctx);
    }
}

fn gpu_shaped_case(ctx: &Context) {
    // The GPU profile's matmul tiles are f16 wherever the device has shader-f16 (lavapipe has).
    let half = ctx.features().contains(wgpu::Features::SHADER_F16);
    assert_eq!(ops::MatMulShape::for_format(ctx, GgmlType::Q4_K).f16_tiles, half);
    for ty in GgmlType::all() {
        let k = odd_k(ty);
        for (i, &(m, n, op)) in
            [(37, 1, Op::MatVec), (5, 3, Op::MatVec), (70, 8, Op::MatVec), (67, 33, Op::MatMul), (130, 9, Op::MatMul)]
                .iter()
                .enumerate()
        {
            run_case(ctx, ty, m, k, n, op, 1000 + i as u64);
        }
        let raw = random_blocks(ty, 9, k, 1100);
        let table = GpuTensor::upload(ctx, "emb", ty, k, 9, &raw).unwrap();
        let gpu = gpu_get_rows(ctx, &table, &[8, 0, 4]);
        let rb = ty.row_bytes(k).unwrap();
        let cpu: Vec<f32> = [8usize, 0, 4]
            .iter()
            .flat_map(|&i| dequant::dequantize_to_vec(ty, &raw[i * rb..(i + 1) * rb]).unwrap())
            .collect();
        assert_ulp_equal(&format!("get_rows {ty} (GPU shape)"), &gpu, &cpu);
    }
}

#[test]
fn bounds_checks_do_not_change_results() {
    // The CPU-device kernels run without wgpu's runtime checks (see gpu/pipeline.rs): with the
    // checks on, every result must be identical (an out-of-bounds access would differ).
    let Some(ctx) = ctx() else { return };
    let checked = Context::with_options(ContextOptions { shader_checks: Some(true), ..Default::default() }).unwrap();
    for ty in GgmlType::all() {
        let (m, k) = (21, odd_k(ty));
        let raw = random_blocks(ty, m, k, 1200);
        let a = GpuTensor::upload(ctx, "w", ty, k, m, &raw).unwrap();
        let b = GpuTensor::upload(&checked, "w", ty, k, m, &raw).unwrap();
        for (n, op) in [(1, Op::MatVec), (6, Op::MatVec), (17, Op::MatMul)] {
            let x = Rng::new(1201).vec(n * k);
            assert!(
                gpu_mul(ctx, &a, &x, n, op) == gpu_mul(&checked, &b, &x, n, op),
                "{ty} {op:?}: checks change results"
            );
        }
    }
}

#[test]
fn quantized_data_through_every_kernel() {
    // Realistic weights (the CPU quantizer's output) rather than random bits.
    let Some(ctx) = ctx() else { return };
    let (m, k) = (48, 512);
    for ty in GgmlType::all() {
        let src = Rng::new(7).vec(m * k);
        let raw = quant::quantize(ty, &src, k).unwrap();
        let w = GpuTensor::upload(ctx, "q", ty, k, m, &raw).unwrap();
        let x = Rng::new(8).vec(8 * k);
        for (n, op) in [(1, Op::MatVec), (8, Op::MatVec), (8, Op::MatMul)] {
            let gpu = gpu_mul(ctx, &w, &x[..n * k], n, op);
            check_against_cpu(&format!("{op:?} quantized"), ty, &raw, k, &x[..n * k], n, &gpu, tolerance(ctx, ty, op));
        }
    }
}

#[test]
fn large_shapes() {
    // The default model's output head shape (M = 262144) and long prompts (N = 512), for a
    // couple of formats only: they dominate the suite's time on a CPU device.
    let Some(ctx) = ctx() else { return };
    run_case(ctx, GgmlType::Q8_0, 262144, 640, 1, Op::MatVec, 300);
    run_case(ctx, GgmlType::Q4_K, 262144, 256, 2, Op::MatVec, 301);
    run_case(ctx, GgmlType::Q4_K, 256, 1024, 512, Op::MatMul, 302);
    run_case(ctx, GgmlType::Q5_0, 160, 640, 512, Op::MatMul, 303);
}

fn gpu_get_rows(ctx: &Context, table: &GpuTensor, ids: &[u32]) -> Vec<f32> {
    let idb = ctx.vec_from("ids", ids, MemTag::Activations).unwrap();
    let out = ctx.f32_buffer("rows", ids.len() * table.row_len).unwrap();
    run_pass(ctx, |pass| ops::get_rows(ctx, pass, table, &idb, 0, ids.len(), &out).unwrap());
    ctx.read(&out).unwrap()
}

fn assert_ulp_equal(what: &str, gpu: &[f32], cpu: &[f32]) {
    assert_eq!(gpu.len(), cpu.len());
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let ok = g == c || (g.to_bits() as i64 - c.to_bits() as i64).abs() <= 1;
        assert!(ok, "{what}: element {i}: gpu {g} cpu {c}");
    }
}

#[test]
fn get_rows_every_format_equals_dequantize() {
    let Some(ctx) = ctx() else { return };
    for ty in GgmlType::all() {
        let (m, k) = (19, odd_k(ty));
        let raw = random_blocks(ty, m, k, 400);
        let table = GpuTensor::upload(ctx, "emb", ty, k, m, &raw).unwrap();
        let ids = [3u32, 0, 18, 3, 7];
        let gpu = gpu_get_rows(ctx, &table, &ids);
        let rb = ty.row_bytes(k).unwrap();
        let cpu: Vec<f32> = ids
            .iter()
            .flat_map(|&i| dequant::dequantize_to_vec(ty, &raw[i as usize * rb..(i as usize + 1) * rb]).unwrap())
            .collect();
        assert_ulp_equal(&format!("get_rows {ty}"), &gpu, &cpu);
    }
}

/// Weights held in textures and in storage buffers give bit-identical products and lookups, for
/// every format, with the same kernel shapes.
#[test]
fn weights_in_textures_and_buffers_give_identical_results() {
    let Some(ctx) = ctx() else { return };
    let with = |textures| {
        let opts = ContextOptions {
            profile: Some(ctx.profile().clone()),
            weight_textures: Some(textures),
            ..Default::default()
        };
        Context::with_options(opts).unwrap()
    };
    let (textures, buffers) = (with(true), with(false));
    if !textures.weight_textures() {
        eprintln!("{}: no read-only storage textures, weights stay in buffers", textures.describe());
        return;
    }
    for (i, ty) in GgmlType::all().enumerate() {
        let (m, k) = (300, even_k(ty));
        let raw = random_blocks(ty, m, k, 2000 + i as u64);
        let in_texture = GpuTensor::upload(&textures, "w", ty, k, m, &raw).unwrap();
        let in_buffer = GpuTensor::upload(&buffers, "w", ty, k, m, &raw).unwrap();
        assert!(in_texture.in_texture() && !in_buffer.in_texture());
        for (n, op) in [(1, Op::MatVec), (3, Op::MatVec), (40, Op::MatMul)] {
            let x = Rng::new(2100 + i as u64).vec(n * k);
            let a = gpu_mul(&textures, &in_texture, &x, n, op);
            let b = gpu_mul(&buffers, &in_buffer, &x, n, op);
            assert!(a == b, "{ty} {op:?} N={n}: texture and buffer results differ");
        }
        let ids: Vec<u32> = (0..20).map(|j| (j * 37 % m) as u32).collect();
        let a = gpu_get_rows(&textures, &in_texture, &ids);
        assert!(a == gpu_get_rows(&buffers, &in_buffer, &ids), "{ty} get_rows: texture and buffer results differ");
    }
}

#[test]
fn forced_small_binding_gives_identical_results() {
    let Some(ctx) = ctx() else { return };
    let opts = ContextOptions { max_binding_size: Some(1 << 20), ..Default::default() };
    let small = Context::with_options(opts).unwrap();
    for (ty, m, k) in [(GgmlType::Q4_K, 4099, 1024), (GgmlType::Q8_0, 3001, 640), (GgmlType::F16, 700, 1024)] {
        let raw = random_blocks(ty, m, k, 500);
        let whole = GpuTensor::upload(ctx, "w", ty, k, m, &raw).unwrap();
        let split = GpuTensor::upload(&small, "w", ty, k, m, &raw).unwrap();
        assert_eq!(whole.chunks.len(), 1);
        assert!(split.chunks.len() > 1, "{ty}: expected a split");
        for (n, op) in [(1, Op::MatVec), (5, Op::MatVec), (64, Op::MatMul)] {
            let x = Rng::new(501).vec(n * k);
            let a = gpu_mul(ctx, &whole, &x, n, op);
            let b = gpu_mul(&small, &split, &x, n, op);
            assert!(a == b, "{ty} {op:?} N={n}: split result differs");
        }
        let ids: Vec<u32> = (0..40).map(|i| (i * 997 % m) as u32).collect();
        assert!(gpu_get_rows(ctx, &whole, &ids) == gpu_get_rows(&small, &split, &ids), "{ty} get_rows split differs");
    }
}

#[test]
fn memory_tracker_counts_uploads_and_frees_on_drop() {
    // A context of its own: the shared one is busy with other tests.
    if ctx().is_none() {
        return;
    }
    let ctx = Context::new().unwrap();
    let (ty, m, k) = (GgmlType::Q8_0, 2048, 8192); // 17.8 MB, more than one staging chunk
    let raw = random_blocks(ty, m, k, 1300);
    let w = GpuTensor::upload(&ctx, "w", ty, k, m, &raw).unwrap();
    let mem = ctx.memory();
    assert!(mem.current(MemTag::Weights) >= raw.len() as u64);
    assert_eq!(mem.current(MemTag::Staging), 0, "staging buffers are released after the upload");
    assert!(mem.peak(MemTag::Staging) <= wgquant::gpu::UPLOAD_CHUNK, "staging stays bounded");
    let x = ctx.f32_buffer("x", k).unwrap();
    assert_eq!(mem.current(MemTag::Activations), (k * 4) as u64);
    drop(w);
    drop(x);
    assert_eq!(mem.current(MemTag::Weights), 0);
    assert_eq!(mem.current(MemTag::Activations), 0);
    assert!(mem.report().total_peak >= raw.len() as u64);
}

#[test]
fn views_with_offsets_and_strides() {
    // The forward pass slices activation buffers: X and Y at offsets, with padded strides.
    let Some(ctx) = ctx() else { return };
    let (ty, m, k, n) = (GgmlType::Q4_0, 45, 256, 3);
    let raw = random_blocks(ty, m, k, 600);
    let w = GpuTensor::upload(ctx, "w", ty, k, m, &raw).unwrap();
    let (xoff, xs, yoff, ys) = (8, k + 12, 5, m + 3);
    let x = Rng::new(601).vec(xoff + n * xs);
    let xb = ctx.vec_from("x", &x, MemTag::Activations).unwrap();
    for op in [Op::MatVec, Op::MatMul] {
        let yb = ctx.vec_from("y", &vec![-7.0f32; yoff + n * ys], MemTag::Activations).unwrap();
        run_pass(ctx, |pass| {
            let (xv, yv) = (xb.at(xoff).stride(xs), yb.at(yoff).stride(ys));
            match op {
                Op::MatVec => ops::matvec(ctx, pass, &w, xv, yv, n).unwrap(),
                Op::MatMul => ops::matmul(ctx, pass, &w, xv, yv, n).unwrap(),
            }
        });
        let y = ctx.read(&yb).unwrap();
        let xp: Vec<f32> = (0..n).flat_map(|c| x[xoff + c * xs..xoff + c * xs + k].to_vec()).collect();
        let yp: Vec<f32> = (0..n).flat_map(|c| y[yoff + c * ys..yoff + c * ys + m].to_vec()).collect();
        check_against_cpu(&format!("{op:?} strided"), ty, &raw, k, &xp, n, &yp, tolerance(ctx, ty, op));
        // Elements outside the output rows are untouched.
        assert!(
            y[..yoff].iter().all(|&v| v == -7.0)
                && (0..n).all(|c| y[yoff + c * ys + m..yoff + (c + 1) * ys].iter().all(|&v| v == -7.0))
        );
    }
}

#[test]
fn shape_errors_are_reported_not_panics() {
    let Some(ctx) = ctx() else { return };
    let raw = random_blocks(GgmlType::Q8_0, 4, 64, 700);
    let w = GpuTensor::upload(ctx, "w", GgmlType::Q8_0, 64, 4, &raw).unwrap();
    let x = ctx.f32_buffer("x", 64).unwrap();
    let y = ctx.f32_buffer("y", 4).unwrap();
    let mut enc = ctx.encoder("test");
    let mut pass = enc.begin_compute_pass(&Default::default());
    assert!(ops::matvec(ctx, &mut pass, &w, &x, &y, 2).is_err(), "X too short");
    assert!(ops::matvec(ctx, &mut pass, &w, x.at(2), &y, 1).is_err(), "X too short at offset");
    assert!(ops::matvec(ctx, &mut pass, &w, &x, &x, 1).is_err(), "same buffer");
    assert!(ops::matmul(ctx, &mut pass, &w, &x, &y, 0).is_err(), "zero columns");
    assert!(GpuTensor::upload(ctx, "bad", GgmlType::Q4_K, 640, 1, &[0; 360]).is_err(), "K not whole blocks");
}

/// The default model's tensors of each quantized format it uses, through matvec, matmul and
/// get_rows, against the CPU reference.
#[test]
fn default_model_tensors_match_cpu() {
    let Some(ctx) = ctx() else { return };
    let file = GgufFile::open(MODEL).unwrap_or_else(|e| panic!("{MODEL}: {e} (run scripts/fetch-model.sh)"));
    for ty in [GgmlType::Q4_K, GgmlType::Q5_0, GgmlType::Q6_K, GgmlType::Q8_0] {
        let info = file
            .tensors()
            .iter()
            .filter(|t| t.ty == ty && t.dims.len() == 2 && t.name != "token_embd.weight")
            .max_by_key(|t| t.n_bytes)
            .unwrap_or_else(|| panic!("no {ty} matrix in the model"));
        let w = GpuTensor::from_gguf(ctx, &file, info).unwrap();
        let raw = file.tensor_data(info);
        let k = info.row_len();
        for (n, op) in [(1, Op::MatVec), (4, Op::MatVec), (24, Op::MatMul)] {
            let x = Rng::new(800).vec(n * k);
            let gpu = gpu_mul(ctx, &w, &x, n, op);
            let worst =
                check_against_cpu(&format!("{} {op:?}", info.name), ty, raw, k, &x, n, &gpu, tolerance(ctx, ty, op));
            eprintln!(
                "{:<28} {ty:>5} [{k} x {}] {op:?} N={n}: worst error / bound {worst:.3}",
                info.name,
                info.n_rows()
            );
        }
    }
}

/// The 178 MB Q8_0 embedding exceeds lavapipe's 128 MiB storage binding, so this is the split
/// path on the real tensor, in textures (the default on CPU devices) and in buffers: lookup of
/// rows on both sides of the split, and the tied output head.
#[test]
fn default_model_embedding_split_and_head() {
    let (Some(ctx), Some(buffers)) = (ctx(), ctx_without_subgroups()) else { return };
    let file = GgufFile::open(MODEL).unwrap_or_else(|e| panic!("{MODEL}: {e} (run scripts/fetch-model.sh)"));
    let info = file.tensor("token_embd.weight").expect("token_embd.weight");
    let raw = file.tensor_data(info);
    for ctx in [ctx, buffers] {
        let emb = GpuTensor::from_gguf(ctx, &file, info).unwrap();
        eprintln!("token_embd: {} rows in {} chunks", emb.n_rows, emb.chunks.len());
        if info.n_bytes > ctx.weight_chunk_limit() {
            assert!(emb.chunks.len() > 1);
        }
        let last = emb.n_rows as u32 - 1;
        let mut ids = vec![0u32, 2, 106, 107, last, last - 1];
        if let Some(c) = emb.chunks.get(1) {
            ids.extend([c.row0 as u32 - 1, c.row0 as u32]);
        }
        let gpu = gpu_get_rows(ctx, &emb, &ids);
        let rb = info.row_bytes();
        let cpu: Vec<f32> = ids
            .iter()
            .flat_map(|&i| dequant::dequantize_to_vec(info.ty, &raw[i as usize * rb..(i as usize + 1) * rb]).unwrap())
            .collect();
        assert_ulp_equal("token_embd get_rows", &gpu, &cpu);

        let k = info.row_len();
        let x = Rng::new(900).vec(k);
        let gpu = gpu_mul(ctx, &emb, &x, 1, Op::MatVec);
        check_against_cpu("output head", info.ty, raw, k, &x, 1, &gpu, REL_TOL);
    }
}

#[test]
fn kernel_profile_counts_each_dispatch() {
    let Some(ctx) = ctx() else { return };
    let opts = ContextOptions { profile_kernels: Some(true), ..Default::default() };
    let prof = Context::with_options(opts).unwrap();
    let (m, k) = (64, 256);
    let raw = random_blocks(GgmlType::Q8_0, m, k, 7);
    let w = GpuTensor::upload(&prof, "w", GgmlType::Q8_0, k, m, &raw).unwrap();
    let x = Rng::new(8).vec(k);
    for _ in 0..3 {
        gpu_mul(&prof, &w, &x, 1, Op::MatVec);
    }
    let times = prof.take_profile();
    let supported = prof.features().contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);
    if !supported {
        assert!(times.is_empty(), "profiling without timestamps inside passes must stay off");
        return;
    }
    assert_eq!(times.len(), 1, "{times:?}");
    assert_eq!(times[0].kernel, "MatVec/Q8_0");
    assert_eq!(times[0].dispatches, 3);
    assert!(times[0].seconds > 0.0 && times[0].seconds < 10.0, "{times:?}");
    assert!(prof.take_profile().is_empty(), "take_profile resets the totals");
    // The ordinary context does not profile.
    assert!(ctx.take_profile().is_empty());
}

/// Matvec with X in a buffer large enough for the uniform window CPU devices read activations
/// through (`shaders/common/x_uniform.wgsl`; the small buffers of the other tests take the
/// storage path), at an offset and with 1, 3 and 8 columns: every format against the CPU.
#[test]
fn matvec_with_activations_in_a_large_buffer() {
    let Some(ctx) = ctx() else { return };
    for ty in GgmlType::all() {
        let (m, k) = (21, odd_k(ty));
        let raw = random_blocks(ty, m, k, 800);
        let w = GpuTensor::upload(ctx, "w", ty, k, m, &raw).unwrap();
        let xoff = 12;
        let x = Rng::new(801).vec(64 * 1024);
        let xb = ctx.vec_from("x", &x, MemTag::Activations).unwrap();
        for n in [1, 3, 8] {
            let yb = ctx.f32_buffer("y", n * m).unwrap();
            run_pass(ctx, |pass| ops::matvec(ctx, pass, &w, xb.at(xoff), &yb, n).unwrap());
            let y = ctx.read(&yb).unwrap();
            check_against_cpu("matvec (large X buffer)", ty, &raw, k, &x[xoff..xoff + n * k], n, &y, REL_TOL);
        }
    }
}

/// |a - b| <= tol * max(1, |b|) elementwise.
fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], tol: f32) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        assert!((g - c).abs() <= tol * c.abs().max(1.0), "{what}[{i}]: gpu {g} cpu {c}");
    }
}

/// The up projection with the activation fused in equals a plain matvec followed by the
/// element-wise activation pass, for every format, both activations and several columns, in every
/// kernel shape. (The reference is the GPU's own activation: near tanh's saturation a few ulps of
/// difference between GPU and CPU tanh become large relative errors of GELU.)
#[test]
fn gated_matvec_equals_matvec_then_activation() {
    use wgquant::model::Activation;
    use wgquant::ops::elementwise::{elementwise, Op as Elementwise};
    let Some(first) = ctx() else { return };
    for ctx in std::iter::once(first).chain(gpu_shaped_ctxs()) {
        for (i, ty) in GgmlType::all().enumerate() {
            let (m, k) = (70, odd_k(ty));
            let w = GpuTensor::upload(ctx, "up", ty, k, m, &random_blocks(ty, m, k, 1200 + i as u64)).unwrap();
            for (n, act) in [(1, Activation::GeluTanh), (3, Activation::Silu)] {
                let x = Rng::new(1300 + i as u64).vec(n * k);
                let gate: Vec<f32> = Rng::new(1400 + i as u64).vec(n * m).iter().map(|v| 4.0 * v).collect();
                let xb = ctx.vec_from("x", &x, MemTag::Activations).unwrap();
                let up = ctx.f32_buffer("up", n * m).unwrap();
                let want = ctx.vec_from("gate", &gate, MemTag::Activations).unwrap();
                run_pass(ctx, |pass| {
                    ops::matvec(ctx, pass, &w, &xb, &up, n).unwrap();
                    elementwise(ctx, pass, Elementwise::Gated(act), &want, &up, n * m, n * m).unwrap();
                });
                let got = ctx.vec_from("gate", &gate, MemTag::Activations).unwrap();
                run_pass(ctx, |pass| ops::matvec_gated(ctx, pass, &w, &xb, &got, n, act).unwrap());
                let what = format!("gated {ty} {act:?} n={n}");
                assert_close(&what, &ctx.read(&got).unwrap(), &ctx.read(&want).unwrap(), 1e-5);
            }
        }
    }
}

/// Matrices stacked into one buffer (a layer's q/k/v, an FFN's gate and up) give in one
/// dispatch exactly what separate matvecs give: each part's rows land at its own view of the
/// output buffer and nothing else is written, and the paired gate/up equals the gate matvec
/// followed by the gated up matvec (to within rounding). Every format, every kernel shape.
#[test]
fn stacked_matvecs_equal_separate_ones() {
    use wgquant::model::Activation;
    use wgquant::ops::matvec::{matvec_gate_up, matvec_stack};
    let Some(first) = ctx() else { return };
    for ctx in std::iter::once(first).chain(gpu_shaped_ctxs()) {
        let align = ctx.limits().min_storage_buffer_offset_alignment as usize;
        for (i, ty) in GgmlType::all().enumerate() {
            let k = odd_k(ty);
            let row_bytes = ty.row_bytes(k).unwrap();
            // The fewest rows whose bytes keep the next part at a bindable offset.
            let unit = align / gcd(row_bytes, align);
            let rows = [3 * unit, unit, 2 * unit];
            let raws: Vec<Vec<u8>> = rows
                .iter()
                .enumerate()
                .map(|(j, &m)| random_blocks(ty, m, k, 1600 + 10 * i as u64 + j as u64))
                .collect();
            let parts: Vec<(&str, usize, &[u8])> =
                rows.iter().zip(&raws).map(|(&m, raw)| ("part", m, &raw[..])).collect();
            let x = Rng::new(1700 + i as u64).vec(k);
            let xb = ctx.vec_from("x", &x, MemTag::Activations).unwrap();
            let what = format!("{ty} on {}", ctx.describe());

            // Split: q, k, v at offsets of one buffer with gaps, the gaps keeping their sentinel.
            let (stack, views) = GpuTensor::upload_stack(ctx, "qkv", ty, k, &parts).unwrap().expect("stackable");
            let offsets = [4, 4 + rows[0] + 8, 4 + rows[0] + 8 + rows[1] + 4];
            let total = offsets[2] + rows[2] + 4;
            let y = ctx.vec_from("y", &vec![7.5f32; total], MemTag::Activations).unwrap();
            let outs: Vec<_> = offsets.iter().map(|&o| y.at(o)).collect();
            run_pass(ctx, |pass| matvec_stack(ctx, pass, &stack, &xb, &outs).unwrap());
            let got = ctx.read(&y).unwrap();
            let mut want = vec![7.5f32; total];
            for (view, &o) in views.iter().zip(&offsets) {
                let yb = ctx.f32_buffer("y part", view.n_rows).unwrap();
                run_pass(ctx, |pass| ops::matvec(ctx, pass, view, &xb, &yb, 1).unwrap());
                want[o..o + view.n_rows].copy_from_slice(&ctx.read(&yb).unwrap());
            }
            assert_eq!(got, want, "split stack, {what}");

            // Paired: gate and up of the same rows.
            let gate_up =
                [("gate", rows[0], &raws[0][..]), ("up", rows[0], &random_blocks(ty, rows[0], k, 1800 + i as u64)[..])];
            let (stack, views) = GpuTensor::upload_stack(ctx, "gate+up", ty, k, &gate_up).unwrap().expect("stackable");
            for act in [Activation::Silu, Activation::GeluTanh] {
                let got = ctx.f32_buffer("y", rows[0]).unwrap();
                run_pass(ctx, |pass| matvec_gate_up(ctx, pass, &stack, &xb, &got, act).unwrap());
                let want = ctx.f32_buffer("y", rows[0]).unwrap();
                run_pass(ctx, |pass| {
                    ops::matvec(ctx, pass, &views[0], &xb, &want, 1).unwrap();
                    ops::matvec_gated(ctx, pass, &views[1], &xb, &want, 1, act).unwrap();
                });
                let (got, want) = (ctx.read(&got).unwrap(), ctx.read(&want).unwrap());
                // The same arithmetic in one dispatch or two, but a GPU compiler may contract it
                // differently (an H200's results differed in the last bits): equal to within f32
                // rounding of the largest output.
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let close = got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-5 * scale);
                assert!(close, "gate/up {act:?}, {what}:\n{got:?}\n{want:?}");
            }
        }
    }
}

/// Parts that would start at an offset the device cannot bind are not stacked.
#[test]
fn unbindable_stacks_are_declined() {
    let Some(ctx) = ctx() else { return };
    // One 34-byte Q8_0 row: the second part would start at byte 34, never a binding alignment.
    let raw = random_blocks(GgmlType::Q8_0, 1, 32, 1900);
    let parts = [("a", 1, &raw[..]), ("b", 1, &raw[..])];
    assert!(GpuTensor::upload_stack(ctx, "ab", GgmlType::Q8_0, 32, &parts).unwrap().is_none());
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The residual add fused with the next RMSNorm equals the add and the norm done one by one on
/// the CPU, with and without a post-norm, for rows that are and are not multiples of the
/// workgroup.
#[test]
fn add_rms_norm_matches_cpu() {
    use wgquant::model::cpu::{add_in_place, rms_norm};
    let Some(first) = ctx() else { return };
    let eps = 1e-6;
    for ctx in std::iter::once(first).chain(gpu_shaped_ctxs()) {
        for (d, rows) in [(640, 1), (100, 3)] {
            let mut rng = Rng::new(1500 + d as u64);
            let (o, r, w_post, w) = (rng.vec(rows * d), rng.vec(rows * d), rng.vec(d), rng.vec(d));
            for post in [false, true] {
                let mut want_r = r.clone();
                add_in_place(&mut want_r, &if post { rms_norm(&o, &w_post, eps) } else { o.clone() });
                let want_h = rms_norm(&want_r, &w, eps);
                let buf = |name: &str, v: &[f32]| ctx.vec_from(name, v, MemTag::Activations).unwrap();
                let (ob, rb, pb, wb) = (buf("o", &o), buf("r", &r), buf("post", &w_post), buf("w", &w));
                let hb = ctx.f32_buffer("h", rows * d).unwrap();
                run_pass(ctx, |pass| {
                    let pn = post.then_some(&pb);
                    ops::norm::add_rms_norm(ctx, pass, &ob, pn, &rb, &wb, &hb, rows, eps).unwrap()
                });
                let what = format!("add_rms_norm d={d} post={post}");
                assert_close(&format!("{what} r"), &ctx.read(&rb).unwrap(), &want_r, 1e-5);
                assert_close(&format!("{what} h"), &ctx.read(&hb).unwrap(), &want_h, 1e-5);
            }
        }
    }
}

/// Attention over a cache filled with random keys and values (rounded to the cache's type, so
/// the reference reads what the GPU reads), against the CPU reference: the split-dimension kernel
/// that CPU devices use (`attention_split.wgsl`), and the one-position-per-invocation kernel in
/// the GPU-shaped contexts and for heads the split kernel does not take (head_dim 40). Grouped
/// queries, several query tokens, a sliding window over a ring cache that has wrapped around.
#[test]
fn attention_matches_cpu() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(7);
    for ctx in std::iter::once(ctx).chain(gpu_shaped_ctxs()) {
        for heads in [(4, 1, 256), (4, 2, 64), (2, 2, 128), (8, 2, 64), (2, 1, 40)] {
            for kv_type in [KvType::F16, KvType::F32] {
                // (query tokens, first position, window, cache rows)
                for case in
                    [(1, 0, None, 40), (1, 29, None, 40), (7, 20, None, 40), (1, 37, Some(9), 12), (5, 30, Some(6), 12)]
                {
                    // Gemma 2's soft-capped scores on one head shape.
                    let softcap = (heads == (4, 2, 64)).then_some(0.5);
                    check_attention(ctx, &mut rng, 48, heads, kv_type, case, softcap);
                }
            }
        }
    }
}

/// Long contexts, where the GPU kernel splits each token's positions across workgroups and merges
/// the splits: decode at the end of 4096 and 8192 positions, a few tokens at once, and a sliding
/// window over a ring that has wrapped around many times.
#[test]
fn attention_at_long_context_matches_cpu() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(8);
    for ctx in std::iter::once(ctx).chain(gpu_shaped_ctxs()) {
        for n_ctx in [4096, 8192] {
            for (heads, kv_type) in [((8, 2, 128), KvType::F16), ((4, 1, 256), KvType::F32)] {
                for case in [(1, n_ctx - 1, None, n_ctx), (3, n_ctx - 3, None, n_ctx), (1, n_ctx - 1, Some(1000), 1100)]
                {
                    check_attention(ctx, &mut rng, n_ctx, heads, kv_type, case, None);
                }
            }
        }
    }
}

/// Attention of `n` query tokens from `pos0` over caches of `ring` rows on `ctx`, scores capped at
/// `softcap` when given, against the CPU reference.
fn check_attention(
    ctx: &Context,
    rng: &mut Rng,
    n_ctx: usize,
    (n_head, n_head_kv, head_dim): (usize, usize, usize),
    kv_type: KvType,
    (n, pos0, window, ring): (usize, usize, Option<usize>, usize),
    softcap: Option<f32>,
) {
    use wgquant::model::{Activation, Arch, Config, RopeLayout};
    use wgquant::ops::attention::{attention, AttentionShape, KvBuffer};
    let config = Config {
        arch: Arch::Llama,
        n_vocab: 1,
        n_embd: n_head * head_dim,
        n_layer: 1,
        n_head,
        n_head_kv,
        head_dim,
        head_dim_v: head_dim,
        n_ff: 1,
        norm_eps: 1e-6,
        n_ctx_train: n_ctx,
        rope_layout: RopeLayout::Normal,
        rope_base: 1e4,
        rope_base_swa: 1e4,
        rope_freq_scale: 1.0,
        rope_attn_factor: 1.0,
        n_ctx_orig: n_ctx,
        sliding_window: window,
        layer_is_swa: vec![window.is_some()],
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        attn_softcap: softcap,
        final_softcap: None,
        embd_scale: 1.0,
        activation: Activation::Silu,
    };
    let kv_dim = n_head_kv * head_dim;
    let end = pos0 + n;
    let round = |v: f32| match kv_type {
        KvType::F16 => half::f16::from_f32(v).to_f32(),
        _ => v,
    };
    let keys: Vec<f32> = rng.vec(end * kv_dim).into_iter().map(round).collect();
    let values: Vec<f32> = rng.vec(end * kv_dim).into_iter().map(round).collect();
    let q = rng.vec(n * n_head * head_dim);
    let expected = wgquant::model::cpu::attention(&config, &q, &keys, &values, pos0, window);

    // The caches: position j in row j % ring, later positions overwriting earlier.
    let cache = |data: &[f32], label: &str| {
        let buf = KvBuffer::new(ctx, label, ring, kv_dim, kv_type).unwrap();
        let mut rows = vec![0.0f32; ring * kv_dim];
        for j in 0..end {
            rows[(j % ring) * kv_dim..][..kv_dim].copy_from_slice(&data[j * kv_dim..][..kv_dim]);
        }
        let words: Vec<u32> = match kv_type {
            KvType::F16 => rows
                .chunks(2)
                .map(|p| {
                    let bits = |v: f32| u32::from(half::f16::from_f32(v).to_bits());
                    bits(p[0]) | bits(p[1]) << 16
                })
                .collect(),
            _ => rows.iter().map(|v| v.to_bits()).collect(),
        };
        ctx.write(&buf.words, 0, &words).unwrap();
        buf
    };
    let (k, v) = (cache(&keys, "k"), cache(&values, "v"));
    let qb = ctx.f32_buffer("q", q.len()).unwrap();
    ctx.write(&qb, 0, &q).unwrap();
    let scores = ctx.f32_buffer("scores", n * n_head * n_ctx).unwrap();
    let out = ctx.f32_buffer("out", expected.len()).unwrap();
    let shape = AttentionShape {
        n_tokens: n,
        n_head,
        n_head_kv,
        head_dim,
        head_dim_v: head_dim,
        pos0,
        window,
        scale: config.attn_scale,
        softcap,
        n_ctx,
    };
    run_pass(ctx, |pass| attention(ctx, pass, &shape, &qb, &k, &v, &scores, &out).unwrap());
    let got = ctx.read_range(&out, 0, expected.len()).unwrap();
    let what = format!("{} profile, {shape:?} {kv_type:?} ring {ring}", ctx.profile().name);
    assert_close(&what, &got, &expected, 1e-5);
}

/// Greedy picking on the device is the CPU sampler's argmax: the first of equal maxima, NaN as
/// −∞ (also at element 0, and everywhere), at vocabulary sizes around the workgroup's width and Gemma's 262144,
/// read from an offset into the buffer; on the default context and the GPU-shaped ones.
#[test]
fn argmax_picks_the_first_largest_logit() {
    use wgquant::sampler::{Sampler, SamplerParams};
    let Some(first) = ctx() else { return };
    let mut rng = Rng::new(2100);
    for ctx in std::iter::once(first).chain(gpu_shaped_ctxs()) {
        for n in [1, 255, 256, 257, 1000, 262_144] {
            let mut cases: Vec<Vec<f32>> = vec![rng.vec(n), rng.vec(n).iter().map(|v| -v.abs() - 1.0).collect()];
            // Ties: the maximum three times (first of them wins); NaNs scattered, and first.
            let mut ties = rng.vec(n);
            for at in [n / 3, n / 2, n - 1] {
                ties[at] = 7.0;
            }
            ties[n / 5] = f32::NAN;
            cases.push(ties);
            let mut nan_first = rng.vec(n);
            nan_first[0] = f32::NAN;
            cases.push(nan_first);
            cases.push(vec![f32::NAN; n]);
            for logits in cases {
                let offset = 4;
                let buf = ctx.f32_buffer("logits", offset + n).unwrap();
                ctx.write(&buf, offset, &logits).unwrap();
                let best = ctx.vec_zeroed::<u32>("best", 1, MemTag::Activations).unwrap();
                run_pass(ctx, |pass| wgquant::ops::argmax::argmax(ctx, pass, buf.at(offset), n, &best).unwrap());
                let cpu = Sampler::new(SamplerParams::greedy()).sample(&logits, &[]);
                assert_eq!(ctx.read(&best).unwrap()[0], cpu, "n = {n} on {}", ctx.describe());
            }
        }
    }
}

/// Device sampling's penalties and top-k hand back exactly what the CPU sampler keeps
/// (`sampler::apply_penalties` then `sampler::likeliest`): the same ids in the same order with the
/// same logit bits, equal logits ordered by id, NaN as −∞, −0 below +0 as `total_cmp` orders them;
/// at vocabulary sizes around a workgroup's chunk and Gemma's 262144 (four levels), for one and
/// several rows, from an offset into the buffer; on the default context and the GPU-shaped ones.
#[test]
fn top_k_keeps_what_the_cpu_sampler_keeps() {
    use wgquant::ops::top_k::{top_k, TopKBuffers};
    use wgquant::sampler::{apply_penalties, likeliest, TokenPenalty};
    let Some(first) = ctx() else { return };
    let mut rng = Rng::new(2200);
    for ctx in std::iter::once(first).chain(gpu_shaped_ctxs()) {
        for (n, rows) in [(1, 1), (100, 2), (2048, 1), (2049, 3), (5000, 2), (262_144, 1)] {
            let mut cases: Vec<Vec<f32>> = vec![rng.vec(rows * n)];
            // Ascending logits: every tile beats the best so far, the sort is never skipped.
            cases.push((0..rows * n).map(|i| (i % n) as f32 * 1e-3).collect());
            // Few distinct values (ties everywhere), signed zeros, NaN and −∞.
            let mut odd: Vec<f32> = (0..rows * n).map(|_| (rng.f() * 4.0).round()).collect();
            for (i, l) in odd.iter_mut().enumerate() {
                *l = match i % 7 {
                    0 => -0.0,
                    1 => 0.0,
                    2 => f32::NAN,
                    3 => f32::NEG_INFINITY,
                    _ => *l,
                };
            }
            cases.push(odd);
            cases.push(vec![f32::NAN; rows * n]);
            for (c, logits) in cases.into_iter().enumerate() {
                // A repetition penalty on some tokens of each row, a subtraction on others.
                let penalties: Vec<TokenPenalty> = (0..rows as u32)
                    .flat_map(|row| {
                        let ids = (0..n.min(64) as u32).map(move |i| (i * 7919) % n as u32);
                        let mut ids: Vec<u32> = ids.collect();
                        ids.sort_unstable();
                        ids.dedup();
                        ids.into_iter().enumerate().map(move |(j, id)| {
                            let (subtract, divide) = if j % 2 == 0 { (0.0, 1.3) } else { (0.25, 1.0) };
                            TokenPenalty { row, id, subtract, divide }
                        })
                    })
                    .collect();
                let offset = 4;
                let buf = ctx.f32_buffer("logits", offset + rows * n).unwrap();
                ctx.write(&buf, offset, &logits).unwrap();
                let bufs = TopKBuffers::new(ctx, n, rows).unwrap();
                bufs.write_penalties(ctx, &penalties).unwrap();
                for k in [1, 40, 256] {
                    if k > 1 {
                        // The penalties were applied in place by the first run; reapply from scratch.
                        ctx.write(&buf, offset, &logits).unwrap();
                    }
                    let mut enc = ctx.encoder("top-k");
                    {
                        let mut pass = enc.begin_compute_pass(&Default::default());
                        top_k(ctx, &mut pass, buf.at(offset), rows, k, penalties.len(), &bufs).unwrap();
                    }
                    bufs.copy_out(&mut enc, rows, k);
                    ctx.submit_and_wait(enc).unwrap();
                    let got = wgquant::gpu::now(bufs.read(ctx, rows, k)).unwrap();
                    let mut penalized = logits.clone();
                    apply_penalties(&mut penalized, n, &penalties);
                    for (row, got) in got.iter().enumerate() {
                        let want = likeliest(&penalized[row * n..(row + 1) * n], k);
                        let bits = |v: &[(u32, f32)]| v.iter().map(|&(id, l)| (id, l.to_bits())).collect::<Vec<_>>();
                        let what = format!("n {n}, row {row}, case {c}, k {k} on {}", ctx.describe());
                        assert_eq!(bits(got), bits(&want), "{what}");
                    }
                }
            }
        }
    }
}

/// The integer matvec (activations rounded to 8 bits once, quants dotted four at a time) equals
/// the CPU reference fed the same rounded activations (`dot::quantize_activations`), within f32
/// rounding, for every format with an integer decoder: odd row counts and lengths, a chunked
/// tensor, the output at an offset, and the device's subgroup size as well as workgroup-memory
/// reductions.
#[test]
fn integer_matvec_matches_cpu_on_the_rounded_activations() {
    use wgquant::gpu::shaders::has_int_decoder;
    use wgquant::ops::matvec_q8::{matvec_q8, quantize_q8, Q8Column};
    let Some(first) = ctx() else { return };
    let formats: Vec<GgmlType> = GgmlType::all().filter(|&ty| has_int_decoder(ty)).collect();
    use GgmlType::*;
    assert_eq!(formats, [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS]);
    for ctx in std::iter::once(first).chain(gpu_shaped_ctxs()) {
        for &ty in &formats {
            for (m, k) in [(37, odd_k(ty)), (129, 2 * even_k(ty)), (5, ty.block_elems().max(32))] {
                let raw = random_blocks(ty, m, k, 77 + m as u64);
                let w = GpuTensor::upload(ctx, "w", ty, k, m, &raw).unwrap();
                let x = Rng::new(5 + k as u64).vec(k);
                let xb = ctx.vec_from("x", &x, MemTag::Activations).unwrap();
                let q8 = Q8Column::new(ctx, k).unwrap();
                let y = ctx.f32_buffer("y", m + 8).unwrap();
                run_pass(ctx, |pass| {
                    quantize_q8(ctx, pass, &xb, k, &q8).unwrap();
                    matvec_q8(ctx, pass, &w, &q8, y.at(8)).unwrap();
                });
                let gpu = ctx.read_range(&y, 8, m).unwrap();
                let rounded = dot::quantize_activations(&x);
                let what = format!("integer matvec, {} profile", ctx.profile().name);
                check_against_cpu(&what, ty, &raw, k, &rounded, 1, &gpu, REL_TOL);
                // The rounding itself stays within half a step of each block's scale.
                for (block, r) in x.chunks(32).zip(rounded.chunks(32)) {
                    let d = block.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 127.0;
                    assert!(block.iter().zip(r).all(|(a, b)| (a - b).abs() <= 0.5 * d * 1.0001 + 1e-12));
                }
            }
        }
    }
}
