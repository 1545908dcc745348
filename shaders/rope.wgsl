// Rotary position embedding, in place, one invocation per rotated pair.
// Row t of x holds n_heads heads of head_dim values at position pos0 + t.
// NEOX = 1 pairs (i, i + head_dim/2) (GPT-NeoX, Gemma, Qwen2); NEOX = 0 pairs (2i, 2i + 1) (llama).
// θ_i = pos · freq_scale · base^(-2i/head_dim) / factor_i (factors only where HAS_FACTORS = 1).
//
// Generated constants: WG, NEOX, HAS_FACTORS.

struct Params {
    n_rows: u32,
    n_heads: u32,
    head_dim: u32,
    off: u32,     // element offset of row 0
    pos0: u32,
    base: f32,
    freq_scale: f32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> factors: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = p.head_dim / 2u;
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.n_rows * p.n_heads * half) {
        return;
    }
    let i = idx % half;
    let head = idx / half;          // head index over all rows
    let t = head / p.n_heads;
    var inv_freq = pow(p.base, -2.0 * f32(i) / f32(p.head_dim));
    if (HAS_FACTORS == 1u) {
        inv_freq /= factors[i];
    }
    let theta = f32(p.pos0 + t) * p.freq_scale * inv_freq;
    let c = cos(theta);
    let s = sin(theta);
    let hb = p.off + head * p.head_dim;
    var a = hb + 2u * i;
    var b = a + 1u;
    if (NEOX == 1u) {
        a = hb + i;
        b = a + half;
    }
    let x0 = x[a];
    let x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
}
