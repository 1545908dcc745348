//! The device profile: every choice wgquant makes per kind of device, in one place.
//!
//! A GPU wants many invocations cooperating on each row (coalesced 16-byte loads, one reduction),
//! weights in storage buffers, and wgpu's bounds checks, which cost little there. A CPU driver
//! such as lavapipe runs each invocation as one SIMD lane: it wants an invocation to walk whole
//! rows, weights in textures (it gathers texels for all lanes at once), activations in uniform
//! windows, and no bounds checks. These are tuned facts about devices, not about the ops, so they
//! live here as plain fields: [`DeviceProfile::for_device_type`] picks the family from the
//! adapter, [`super::ContextOptions::profile`] replaces it (tests run the GPU profile on lavapipe),
//! and the ops read the fields. Nothing else in wgquant asks what kind of device it runs on, so
//! tuning for a new device is a change to this file.

use super::probe::StreamShape;
use crate::ops::MatMulShape;

/// How matvec maps rows to invocations (see `ops::matvec::MatVecShape::pick`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatVecRule {
    /// A subgroup (or 32 invocations reducing through workgroup memory) per row slot, `slots` row
    /// slots per workgroup; each invocation takes `rows_one_column` rows for one activation column
    /// (one row with more), in units of up to 64 weights when `wide_units`.
    Cooperative { slots: u32, rows_one_column: u32, wide_units: bool },
    /// One invocation walks whole rows, several at a time (a per-format count), `workgroup`
    /// invocations a workgroup; rows are read into cache first where that pays (`warm`), and the
    /// invocations share a block's activations through subgroupShuffle where they can
    /// (`shuffle_x`).
    WholeRows { workgroup: u32, warm: bool, shuffle_x: bool },
}

/// Every device-dependent choice of the kernels and buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceProfile {
    /// For reports: `gpu` or `cpu`.
    pub name: &'static str,
    pub matvec: MatVecRule,
    /// Matmul tiles before the per-format depth is set and they are shrunk to fit the device's
    /// workgroup memory (`MatMulShape::for_format`).
    pub matmul: MatMulShape,
    /// Columns from which a product uses the tiled matmul instead of matvec.
    pub matmul_threshold: usize,
    /// Invocations per row of the norm and q/k/v-preparation kernels.
    pub norm_workgroup: u32,
    /// Attention splits a head's dimensions across one subgroup where the head fits
    /// (`shaders/attention_split.wgsl`); else the flash kernel takes every call.
    pub attention_split_dims: bool,
    /// Hold weights in rgba32uint storage textures (where the device can read them) instead of
    /// storage buffers.
    pub weight_textures: bool,
    /// Matvec reads activations through uniform-buffer windows (see
    /// `shaders/common/x_uniform.wgsl`) instead of storage buffers.
    pub uniform_activations: bool,
    /// Compile kernels with wgpu's runtime bounds checks.
    pub shader_checks: bool,
    /// Decode steps take the integer matvec (`ops::matvec_q8`: activations rounded to 8 bits,
    /// `dot4I8Packed`) for the formats that have it. Off on both profiles until a GPU run has
    /// measured it against the float kernel; `WGQUANT_INT_MATVEC=1` turns it on.
    pub int_matvec: bool,
    /// Sampled decode steps select the likeliest tokens on the device (`ops::top_k`) and read
    /// back those alone, instead of reading back every logit for the host's sampler. The
    /// selection's levels of bitonic sorts cost tens of µs on a GPU, against a megabyte's
    /// readback and a host scan of the vocabulary; on lavapipe, where every workgroup barrier
    /// switches between a workgroup's SIMD batches, they cost 62 ms a step on Gemma's 262144
    /// logits, against about 1 ms to read them.
    pub device_sampling: bool,
    /// Launch shapes of the streaming-read probe, the benchmarks' yardstick: the fastest is kept.
    pub stream_shapes: Vec<StreamShape>,
}

impl DeviceProfile {
    /// Discrete, integrated and virtual GPUs.
    ///
    /// Matvec: 8 rows per 128-invocation workgroup, each invocation two rows in units of 64
    /// weights; the shape of the H200's first run (one row, one 8-weight group per step) read
    /// cold 7B matrices at 6-9 % of the streaming-read bandwidth (docs/gpu.md). Norms: 64
    /// invocations a row. Matmul: 64 × 64 tiles, 4 × 4 per invocation (the fastest of the
    /// shapes the H200's tuner ran), rows padded against bank conflicts, tiles in f16 where the
    /// device has shader-f16 (not yet measured on a GPU).
    pub fn gpu() -> DeviceProfile {
        let s = |wg, threads| StreamShape { wg, threads, contiguous: false };
        DeviceProfile {
            name: "gpu",
            matvec: MatVecRule::Cooperative { slots: 4, rows_one_column: 2, wide_units: true },
            matmul: MatMulShape {
                bm: 64,
                bn: 64,
                bk: 32,
                tm: 4,
                tn: 4,
                whole_blocks: false,
                pad_rows: true,
                f16_tiles: true,
            },
            matmul_threshold: 9,
            norm_workgroup: 64,
            attention_split_dims: false,
            weight_textures: false,
            uniform_activations: false,
            shader_checks: true,
            int_matvec: false,
            device_sampling: true,
            stream_shapes: vec![s(256, 256 * 1024), s(256, 256 * 256), s(64, 64 * 4096)],
        }
    }

    /// CPU devices (lavapipe), each choice measured there (docs/lavapipe.md).
    ///
    /// Matvec: whole rows per invocation, 8 invocations (one SIMD vector), rows warmed into cache,
    /// activations shared through subgroupShuffle. Norms: one SIMD batch a row, since every
    /// workgroup barrier switches between a workgroup's batches. Matmul: 64 × 64 tiles with 8 × 8
    /// per invocation, every workgroup-memory read being a gather (pp64 62 -> 69 t/s over 32 ×
    /// 32). Weights in textures (decode step 73 -> 46 ms), activations in uniform windows (5-10 %
    /// on matvec), no bounds checks (they cost 15-40 % of matvec speed).
    pub fn cpu() -> DeviceProfile {
        let s = |wg, threads, contiguous| StreamShape { wg, threads, contiguous };
        DeviceProfile {
            name: "cpu",
            matvec: MatVecRule::WholeRows { workgroup: 8, warm: true, shuffle_x: true },
            matmul: MatMulShape {
                bm: 64,
                bn: 64,
                bk: 32,
                tm: 8,
                tn: 8,
                whole_blocks: true,
                pad_rows: false,
                f16_tiles: false,
            },
            matmul_threshold: 9,
            norm_workgroup: 8,
            attention_split_dims: true,
            weight_textures: true,
            uniform_activations: true,
            shader_checks: false,
            int_matvec: false,
            device_sampling: false,
            stream_shapes: vec![s(8, 8 * 64, true), s(8, 8 * 16, true), s(8, 8 * 64, false), s(64, 64 * 16, false)],
        }
    }

    /// The profile for an adapter of `device_type`: [`DeviceProfile::cpu`] for CPU devices,
    /// [`DeviceProfile::gpu`] for everything else.
    pub fn for_device_type(device_type: wgpu::DeviceType) -> DeviceProfile {
        match device_type {
            wgpu::DeviceType::Cpu => DeviceProfile::cpu(),
            _ => DeviceProfile::gpu(),
        }
    }
}
