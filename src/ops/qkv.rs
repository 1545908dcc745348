//! The attention inputs of a layer in one dispatch (`shaders/qkv_prep.wgsl`): per-head q/k
//! RMSNorm (Gemma 3), rotary position embedding of q and k, and the append of k and v to the KV
//! cache. CPU reference: [`crate::model::cpu::Rope`], [`crate::model::cpu::rms_norm`].

use super::attention::KvBuffer;
use super::dispatch::{bind_range, dispatch_linear, u32_of, View};
use crate::error::{Error, Result};
use crate::gpu::shaders::Kernel;
use crate::gpu::{Context, F32Buffer, PipelineKey};
use crate::model::{KvType, RopeLayout};

/// Rope parameters of one layer.
#[derive(Clone, Copy)]
pub struct RopeParams<'a> {
    pub layout: RopeLayout,
    pub base: f32,
    pub freq_scale: f32,
    /// Per-pair frequency divisors (Llama 3.1's `rope_freqs`, Phi-3's LongRoPE factors),
    /// `head_dim / 2` of them.
    pub factors: Option<&'a F32Buffer>,
    /// Multiplies the rotated pairs (LongRoPE's `attn_factor`; 1 elsewhere).
    pub attn_factor: f32,
}

/// One layer's projections and where they go. `q` is `[n_tokens][n_head * head_dim]` and is
/// rewritten in place; `k` is `[n_tokens][n_head_kv * head_dim]` and `v`
/// `[n_tokens][n_head_kv * head_dim_v]`, both appended to the caches at positions `pos0..`.
/// The three are views (packed rows) of one buffer, which the kernel binds once.
pub struct QkvPrep<'a> {
    pub q: View<'a>,
    pub k: View<'a>,
    pub v: View<'a>,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    /// Per-head RMSNorm weights of q and k (`head_dim` each), with their epsilon.
    pub q_norm: Option<&'a F32Buffer>,
    pub k_norm: Option<&'a F32Buffer>,
    pub eps: f32,
    pub rope: RopeParams<'a>,
    pub k_cache: &'a KvBuffer,
    pub v_cache: &'a KvBuffer,
}

/// The kernel for `wg` invocations a token (the profile's `norm_workgroup`).
pub(crate) fn key(wg: u32, layout: RopeLayout, flags: [bool; 3], kv_type: KvType) -> PipelineKey {
    let [has_factors, q_norm, k_norm] = flags.map(u32::from);
    PipelineKey {
        kernel: Kernel::QkvPrep,
        format: None,
        consts: vec![
            ("WG", wg),
            ("NEOX", u32::from(layout == RopeLayout::Neox)),
            ("HAS_FACTORS", has_factors),
            ("Q_NORM", q_norm),
            ("K_NORM", k_norm),
            ("KV_F16", u32::from(kv_type == KvType::F16)),
        ],
    }
}

impl QkvPrep<'_> {
    /// Shape errors, before anything is recorded.
    fn check(&self, n_tokens: usize) -> Result<()> {
        let (hd, hdv, nkv) = (self.head_dim, self.head_dim_v, self.n_head_kv);
        let bad = |what: String| Err(Error::Shape(format!("qkv_prep: {what}")));
        if hd % 4 != 0 || hdv % 2 != 0 {
            return bad(format!("head dims {hd} and {hdv} must be multiples of 4 and 2"));
        }
        for (view, need, what) in [
            (&self.q, n_tokens * self.n_head * hd, "q"),
            (&self.k, n_tokens * nkv * hd, "k"),
            (&self.v, n_tokens * nkv * hdv, "v"),
        ] {
            if view.stride.is_some() || view.offset + need > view.buf.len() {
                return bad(format!(
                    "{what} at {} of {} floats (packed), {n_tokens} tokens need {need}",
                    view.offset,
                    view.buf.len()
                ));
            }
        }
        let buffer: &wgpu::Buffer = self.q.buf.buffer();
        if **self.k.buf.buffer() != *buffer || **self.v.buf.buffer() != *buffer {
            return bad("q, k and v must be views of one buffer".into());
        }
        for (norm, what) in [(self.q_norm, "q norm"), (self.k_norm, "k norm")] {
            if norm.is_some_and(|w| w.len() != hd) {
                return bad(format!("{what} of {} weights for heads of {hd}", norm.map_or(0, |w| w.len())));
            }
        }
        if self.rope.factors.is_some_and(|f| f.len() < hd / 2) {
            return bad(format!("fewer than {} rope frequency factors", hd / 2));
        }
        let (kc, vc) = (self.k_cache, self.v_cache);
        if kc.row_len != nkv * hd || vc.row_len != nkv * hdv || kc.rows != vc.rows || kc.kv_type != vc.kv_type {
            return bad(format!(
                "caches of rows {} and {} ({} and {} of them, {:?} and {:?}) for {nkv} heads of {hd} and {hdv}",
                kc.row_len, vc.row_len, kc.rows, vc.rows, kc.kv_type, vc.kv_type
            ));
        }
        if n_tokens > kc.rows {
            return Err(Error::Invalid(format!("KV cache: {n_tokens} new rows exceed its ring of {}", kc.rows)));
        }
        Ok(())
    }
}

/// Records the attention inputs of `n_tokens` tokens at positions `pos0..` (see [`QkvPrep`]).
/// `unused` is bound in place of absent norms and factors (any f32 buffer: it is not read).
pub fn prepare_qkv(
    ctx: &Context,
    pass: &mut wgpu::ComputePass<'_>,
    prep: &QkvPrep<'_>,
    n_tokens: usize,
    pos0: usize,
    unused: &F32Buffer,
) -> Result<()> {
    prep.check(n_tokens)?;
    let s = prep;
    let flags = [s.rope.factors.is_some(), s.q_norm.is_some(), s.k_norm.is_some()];
    let pipeline = ctx.pipeline(&key(ctx.profile().norm_workgroup, s.rope.layout, flags, s.k_cache.kv_type))?;
    let ends = [
        s.q.offset + n_tokens * s.n_head * s.head_dim,
        s.k.offset + n_tokens * s.n_head_kv * s.head_dim,
        s.v.offset + n_tokens * s.n_head_kv * s.head_dim_v,
    ];
    let start = s.q.offset.min(s.k.offset).min(s.v.offset);
    let end = ends.into_iter().max().unwrap_or(start);
    let r = bind_range(ctx, s.q.buf.buffer(), start, end - start, "qkv_prep q/k/v")?;
    let at = |view: &View<'_>| u32_of(view.offset - start, "qkv offset").map(|o| r.base + o);
    let p = [
        u32_of(n_tokens, "tokens")?,
        u32_of(s.n_head, "heads")?,
        u32_of(s.n_head_kv, "kv heads")?,
        u32_of(s.head_dim, "head dim")?,
        u32_of(s.head_dim_v, "head dim v")?,
        u32_of(pos0, "pos0")?,
        u32_of(s.k_cache.rows, "ring")?,
        at(&s.q)?,
        at(&s.k)?,
        at(&s.v)?,
        s.eps.to_bits(),
        s.rope.base.to_bits(),
        s.rope.freq_scale.to_bits(),
        s.rope.attn_factor.to_bits(),
        0,
        0,
    ];
    let entries = [
        wgpu::BindingResource::Buffer(r.binding),
        s.q_norm.unwrap_or(unused).buffer().as_entire_binding(),
        s.k_norm.unwrap_or(unused).buffer().as_entire_binding(),
        s.rope.factors.unwrap_or(unused).buffer().as_entire_binding(),
        s.k_cache.words.buffer().as_entire_binding(),
        s.v_cache.words.buffer().as_entire_binding(),
    ];
    let groups = u32_of(n_tokens * (s.n_head + 2 * s.n_head_kv), "workgroups")?;
    dispatch_linear(ctx, pass, &pipeline, &entries, &p, groups)
}
