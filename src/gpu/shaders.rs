//! WGSL composition. WGSL has no `#include`, so a kernel's module is assembled here from:
//! generated constants (shape numbers and the format's block geometry), the common library
//! (`shaders/common/`), one format decoder (`shaders/formats/`), and the kernel family file.
//! Composition needs no device, so the naga test below validates every combination.

use crate::format::GgmlType;

/// The kernel families in `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// `shaders/matvec.wgsl`: decode-time matrix × 1..8 vectors.
    MatVec,
    /// `shaders/matmul.wgsl`: tiled matrix × matrix for prompts.
    MatMul,
    /// `shaders/get_rows.wgsl`: embedding lookup.
    GetRows,
    /// `shaders/stream_read.wgsl`: the benchmark's bandwidth probe.
    StreamRead,
    /// `shaders/rms_norm.wgsl`: RMSNorm over rows.
    RmsNorm,
    /// `shaders/add_rms_norm.wgsl`: residual add, then RMSNorm (one block's end, the next's start).
    AddRmsNorm,
    /// `shaders/qkv_prep.wgsl`: per-head q/k norms, rotary embedding, KV cache append.
    QkvPrep,
    /// `shaders/attention_split.wgsl`: causal (sliding-window) attention over the cache, the head
    /// dimensions split across a subgroup (CPU devices).
    AttentionSplit,
    /// `shaders/attention_flash.wgsl`: the same with a position per invocation, scores kept on
    /// chip, long contexts split across workgroups (GPUs, and wherever the split kernel does not
    /// apply).
    AttentionFlash,
    /// `shaders/attention_combine.wgsl`: merges the splits of `AttentionFlash`.
    AttentionCombine,
    /// `shaders/elementwise.wgsl`: add, gated activations, bias, scale.
    Elementwise,
    /// `shaders/argmax.wgsl`: greedy sampling, the index of the largest logit.
    Argmax,
    /// `shaders/penalize.wgsl`: sampling penalties applied to the logits in place.
    Penalize,
    /// `shaders/top_k.wgsl`: the k likeliest tokens of each row of logits, sorted.
    TopK,
    /// `shaders/quantize_q8.wgsl`: activations to 8 bits for the integer matvec.
    QuantizeQ8,
    /// `shaders/matvec_q8.wgsl`: decode-time matrix × one 8-bit column, integer dot products
    /// (formats with an integer decoder, see [`has_int_decoder`]).
    MatVecQ8,
}

impl Kernel {
    pub const ALL: [Kernel; 16] = [
        Kernel::MatVec,
        Kernel::MatMul,
        Kernel::GetRows,
        Kernel::StreamRead,
        Kernel::RmsNorm,
        Kernel::AddRmsNorm,
        Kernel::QkvPrep,
        Kernel::AttentionSplit,
        Kernel::AttentionFlash,
        Kernel::AttentionCombine,
        Kernel::Elementwise,
        Kernel::Argmax,
        Kernel::Penalize,
        Kernel::TopK,
        Kernel::QuantizeQ8,
        Kernel::MatVecQ8,
    ];

    fn source(self) -> &'static str {
        match self {
            Kernel::MatVec => include_str!("../../shaders/matvec.wgsl"),
            Kernel::MatMul => include_str!("../../shaders/matmul.wgsl"),
            Kernel::GetRows => include_str!("../../shaders/get_rows.wgsl"),
            Kernel::StreamRead => include_str!("../../shaders/stream_read.wgsl"),
            Kernel::RmsNorm => include_str!("../../shaders/rms_norm.wgsl"),
            Kernel::AddRmsNorm => include_str!("../../shaders/add_rms_norm.wgsl"),
            Kernel::QkvPrep => include_str!("../../shaders/qkv_prep.wgsl"),
            Kernel::AttentionSplit => include_str!("../../shaders/attention_split.wgsl"),
            Kernel::AttentionFlash => include_str!("../../shaders/attention_flash.wgsl"),
            Kernel::AttentionCombine => include_str!("../../shaders/attention_combine.wgsl"),
            Kernel::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Kernel::Argmax => include_str!("../../shaders/argmax.wgsl"),
            Kernel::Penalize => include_str!("../../shaders/penalize.wgsl"),
            Kernel::TopK => include_str!("../../shaders/top_k.wgsl"),
            Kernel::QuantizeQ8 => include_str!("../../shaders/quantize_q8.wgsl"),
            Kernel::MatVecQ8 => include_str!("../../shaders/matvec_q8.wgsl"),
        }
    }

    /// Whether the kernel reads weights through a format decoder.
    pub fn reads_weights(self) -> bool {
        matches!(self, Kernel::MatVec | Kernel::MatMul | Kernel::GetRows | Kernel::MatVecQ8)
    }

    /// Whether the kernel binds a weight tensor's raw bytes (read through `wq_at`, from a storage
    /// buffer or a texture): the decoding kernels, and the streaming-read probe, which must read
    /// weights the way they do.
    pub fn binds_weights(self) -> bool {
        self.reads_weights() || self == Kernel::StreamRead
    }
}

/// One format's WGSL decoder, the widest aligned window (in elements) one of its groups spans,
/// its load unit: the groups one `blk_load` can serve (see `shaders/common/bytes.wgsl`), `None`
/// for a whole block, and whether it has an integer decoder (`blk_idot`, for matvec_q8.wgsl).
struct Decoder {
    ty: GgmlType,
    source: &'static str,
    span: u32,
    unit: Option<u32>,
    int: bool,
}

macro_rules! decoders {
    (@unit -) => { None };
    (@unit $unit:literal) => { Some($unit) };
    ($($ty:ident $file:literal $span:literal $unit:tt $int:literal;)*) => {
        const DECODERS: &[Decoder] = &[
            $(Decoder {
                ty: GgmlType::$ty,
                source: include_str!(concat!("../../shaders/formats/", $file)),
                span: $span,
                unit: decoders!(@unit $unit),
                int: $int,
            },)*
        ];
    };
}

decoders! {
    // format  file         span unit integer decoder
    F32    "f32.wgsl"    8    -    false;
    F16    "f16.wgsl"    8    -    false;
    BF16   "bf16.wgsl"   8    -    false;
    Q4_0   "q4_0.wgsl"   32   -    true;
    Q4_1   "q4_1.wgsl"   32   -    true;
    Q5_0   "q5_0.wgsl"   32   -    true;
    Q5_1   "q5_1.wgsl"   32   -    true;
    Q8_0   "q8_0.wgsl"   32   -    true;
    Q2_K   "q2_k.wgsl"   64   -    true;
    Q3_K   "q3_k.wgsl"   64   -    true;
    Q4_K   "q4_k.wgsl"   64   8    true;
    Q5_K   "q5_k.wgsl"   64   8    true;
    Q6_K   "q6_k.wgsl"   128  8    true;
    IQ4_NL "iq4_nl.wgsl" 32   -    true;
    IQ4_XS "iq4_xs.wgsl" 32   -    true;
}

/// Whether `ty` has an integer decoder, so that decode can take the integer matvec
/// (`shaders/matvec_q8.wgsl`): every quantized format.
pub fn has_int_decoder(ty: GgmlType) -> bool {
    decoder(ty).int
}

fn decoder(ty: GgmlType) -> &'static Decoder {
    // Every GgmlType has a row (checked by `every_format_has_a_decoder`).
    DECODERS.iter().find(|d| d.ty == ty).unwrap_or(&DECODERS[0])
}

/// Block geometry as the kernels see it: `(elements, bytes)` per block. Plain float formats are
/// read 8 elements at a time, so they get a virtual block of 8 elements; quantized formats use
/// their real block from the format table.
pub fn block_geometry(ty: GgmlType) -> (u32, u32) {
    let info = ty.info();
    if info.block_elems == 1 {
        (8, 8 * info.block_bytes as u32)
    } else {
        (info.block_elems as u32, info.block_bytes as u32)
    }
}

/// Row lengths must be a multiple of this for the kernels (a whole number of (virtual) blocks).
pub fn row_granularity(ty: GgmlType) -> u32 {
    block_geometry(ty).0
}

/// Elements of the aligned window that each decoded group of `ty` stays inside; a matmul tile's
/// depth must be a multiple of it.
pub fn span(ty: GgmlType) -> u32 {
    decoder(ty).span
}

/// Groups per load unit of `ty`: what one `blk_load` serves, a kernel's largest unit of work.
pub fn load_unit(ty: GgmlType) -> u32 {
    let gpb = block_geometry(ty).0 / 8;
    decoder(ty).unit.unwrap_or(gpb)
}

/// Device capabilities that change the composed source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ShaderCaps {
    /// `unpack2x16float` is available (else f16 is decoded with integer arithmetic).
    pub f16_in_f32: bool,
}

/// The value of the generated constant `name`, 0 when the kernel has none.
fn constant(consts: &[(&str, u32)], name: &str) -> u32 {
    consts.iter().find(|&&(n, _)| n == name).map_or(0, |&(_, v)| v)
}

/// The full WGSL module of `kernel` for `format` with the generated constants `consts`.
pub fn compose(kernel: Kernel, format: Option<GgmlType>, consts: &[(&str, u32)], caps: ShaderCaps) -> String {
    let mut s = String::with_capacity(16 * 1024);
    // f16 matmul tiles: the directive must open the module.
    let half_tiles = kernel == Kernel::MatMul && constant(consts, "TH") == 1;
    if half_tiles {
        s.push_str("enable f16;\n");
    }
    s.push_str("// generated constants\n");
    for (name, v) in consts {
        s.push_str(&format!("const {name}: u32 = {v}u;\n"));
    }
    if kernel.binds_weights() {
        let texture = constant(consts, "WT") == 1;
        s.push_str(if texture {
            include_str!("../../shaders/common/w_texture.wgsl")
        } else {
            include_str!("../../shaders/common/w_storage.wgsl")
        });
    }
    if kernel.reads_weights() {
        let ty = format.unwrap_or(GgmlType::F32);
        let (qk, qb) = block_geometry(ty);
        s.push_str(&format!(
            "// format {ty}\nconst QK: u32 = {qk}u;\nconst QB: u32 = {qb}u;\nconst SPAN: u32 = {}u;\nconst GPB: u32 = {}u;\nconst LU: u32 = {}u;\n",
            span(ty),
            qk / 8,
            load_unit(ty)
        ));
        s.push_str(if caps.f16_in_f32 {
            include_str!("../../shaders/common/f16_native.wgsl")
        } else {
            include_str!("../../shaders/common/f16_soft.wgsl")
        });
        s.push_str(include_str!("../../shaders/common/bytes.wgsl"));
        s.push_str(include_str!("../../shaders/common/kquants.wgsl"));
        s.push_str(decoder(ty).source);
    }
    if matches!(kernel, Kernel::MatVec | Kernel::Elementwise) {
        s.push_str(include_str!("../../shaders/common/activations.wgsl"));
    }
    if matches!(kernel, Kernel::AttentionSplit | Kernel::AttentionFlash | Kernel::AttentionCombine) {
        s.push_str(include_str!("../../shaders/common/attention_params.wgsl"));
    }
    if matches!(kernel, Kernel::AttentionSplit | Kernel::AttentionFlash) {
        s.push_str(include_str!("../../shaders/common/kv_chunk.wgsl"));
    }
    if matches!(kernel, Kernel::RmsNorm | Kernel::AddRmsNorm | Kernel::QkvPrep) {
        s.push_str(include_str!("../../shaders/common/row_sum.wgsl"));
    }
    if kernel == Kernel::MatMul {
        s.push_str(if half_tiles { "alias T4 = vec4<f16>;\n" } else { "alias T4 = vec4<f32>;\n" });
    }
    if kernel == Kernel::MatVecQ8 {
        s.push_str(if constant(consts, "SG") == 1 {
            include_str!("../../shaders/common/reduce_subgroup.wgsl")
        } else {
            include_str!("../../shaders/common/reduce_workgroup.wgsl")
        });
    }
    if kernel == Kernel::MatVec {
        let uniform_x = constant(consts, "XU") > 0;
        s.push_str(if uniform_x {
            include_str!("../../shaders/common/x_uniform.wgsl")
        } else {
            include_str!("../../shaders/common/x_storage.wgsl")
        });
        let shared_x = constant(consts, "XS") == 1;
        s.push_str(if shared_x {
            include_str!("../../shaders/common/x_shared.wgsl")
        } else {
            include_str!("../../shaders/common/x_shared_off.wgsl")
        });
        let subgroup = constant(consts, "SG") == 1;
        s.push_str(if subgroup {
            include_str!("../../shaders/common/reduce_subgroup.wgsl")
        } else {
            include_str!("../../shaders/common/reduce_workgroup.wgsl")
        });
    }
    s.push_str(kernel.source());
    s
}

/// Whether a composed kernel uses subgroup operations (and so needs the SUBGROUP feature):
/// subgroup reductions (SG) or activations shared across the subgroup (XS).
pub fn uses_subgroups(consts: &[(&str, u32)]) -> bool {
    constant(consts, "SG") == 1 || constant(consts, "XS") == 1
}

/// Parses and validates `source` with naga, returning a readable error. Used by the unit test
/// and by pipeline creation (so a shader bug reports which kernel and format it came from).
pub fn validate(source: &str, subgroups: bool) -> Result<(), String> {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let mut caps = Capabilities::SHADER_FLOAT16_IN_FLOAT32 | Capabilities::SHADER_FLOAT16;
    if subgroups {
        caps |= Capabilities::SUBGROUP;
    }
    Validator::new(ValidationFlags::all(), caps).validate(&module).map(|_| ()).map_err(|e| e.emit_to_string(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_has_a_decoder() {
        for ty in GgmlType::all() {
            assert!(DECODERS.iter().any(|d| d.ty == ty), "no WGSL decoder for {ty}");
            let (qk, _) = block_geometry(ty);
            assert_eq!(qk % span(ty), 0, "{ty}: span must divide the block");
        }
    }
}

/// Every (kernel, format, shape) combination the ops can build, for validation without a device.
#[cfg(test)]
pub(crate) fn all_keys() -> Vec<super::PipelineKey> {
    use crate::ops::MatVecShape;
    let mut keys = Vec::new();
    for profile in [super::DeviceProfile::gpu(), super::DeviceProfile::cpu()] {
        for ty in GgmlType::all() {
            for ncols in 1..=crate::ops::MAX_COLS as u32 {
                for subgroup in [None, Some(8), Some(32)] {
                    // With and without the CPU warm-up.
                    keys.push(
                        MatVecShape::pick(profile.matvec, subgroup, ty, ncols, false).key(ty, ncols, 0, None, false),
                    );
                    let shape = MatVecShape::pick(profile.matvec, subgroup, ty, ncols, true);
                    let gelu = Some(crate::model::Activation::GeluTanh);
                    keys.push(shape.key(ty, ncols, 0, None, false));
                    keys.push(shape.key(ty, ncols, 64, None, false));
                    keys.push(shape.key(ty, ncols, 64, gelu, false));
                    keys.push(shape.paired().key(ty, 1, 64, gelu, true));
                }
            }
            keys.push(profile.matmul.for_limit(ty, 16384).key(ty));
            keys.push(profile.matmul.for_limit(ty, 65536).key(ty));
            let f32_tiles = crate::ops::MatMulShape { f16_tiles: false, ..profile.matmul };
            keys.push(f32_tiles.for_limit(ty, 16384).key(ty));
            keys.push(crate::ops::get_rows::key(ty));
        }
    }
    for ty in GgmlType::all().filter(|&ty| has_int_decoder(ty)) {
        for subgroup in [None, Some(32)] {
            keys.push(crate::ops::matvec_q8::key(ty, subgroup));
        }
    }
    keys.push(crate::ops::matvec_q8::quantize_key());
    keys.extend(crate::ops::activation_keys());
    keys.push(super::probe::stream_read_key(256, false));
    keys.push(super::probe::stream_read_key(8, true));
    // Weights in storage buffers and in textures.
    keys.iter()
        .flat_map(|k| match k.kernel.binds_weights() {
            true => vec![k.clone().weights_in_texture(false), k.clone().weights_in_texture(true)],
            false => vec![k.clone()],
        })
        .collect()
}

#[cfg(test)]
mod naga_tests {
    use super::*;

    #[test]
    fn every_composed_shader_validates_with_naga() {
        let keys = all_keys();
        let mut failures = Vec::new();
        for key in &keys {
            for f16_in_f32 in [true, false] {
                let src = compose(key.kernel, key.format, &key.consts, ShaderCaps { f16_in_f32 });
                if let Err(e) = validate(&src, uses_subgroups(&key.consts)) {
                    failures.push(format!(
                        "{:?} {:?} {:?} f16_in_f32={f16_in_f32}:\n{e}",
                        key.kernel, key.format, key.consts
                    ));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} shaders failed:\n{}",
            failures.len(),
            keys.len() * 2,
            failures.join("\n")
        );
    }
}
