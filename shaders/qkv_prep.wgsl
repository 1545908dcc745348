// The attention inputs of n tokens in one dispatch, one workgroup per (token, head):
//   q heads: RMSNorm (Q_NORM = 1, weights qn), rotary embedding, in place in q;
//   k heads: RMSNorm (K_NORM = 1, weights kn), rotary embedding, appended to the K cache;
//   v heads: appended to the V cache.
// Token t is at position pos0 + t, which lives in cache row (pos0 + t) % ring (sliding-window
// layers keep a ring shorter than the context). Cache words are f16 pairs packed with
// pack2x16float (KV_F16 = 1) or f32 bits.
//
// Rotary embedding: NEOX = 1 rotates the pairs (i, i + hd/2) (GPT-NeoX, Gemma, Qwen2), NEOX = 0
// the pairs (2i, 2i + 1) (llama), by θ_i = pos · freq_scale · base^(-2i/hd) / factor_i (factors
// where HAS_FACTORS = 1). Each invocation owns quads of four elements that hold two whole rotated
// pairs and also two pairs of adjacent elements, which an f16 cache word packs (see `quad`).
//
// Generated constants: WG (a power of two), NEOX, HAS_FACTORS, Q_NORM, K_NORM, KV_F16.
// Composed after common/row_sum.wgsl.

struct Params {
    n_tokens: u32,
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,   // of q and k
    head_dim_v: u32,
    pos0: u32,
    ring: u32,       // rows of the caches
    q_off: u32,      // element offsets of token 0's q, k and v in the qkv binding
    k_off: u32,
    v_off: u32,
    eps: f32,
    base: f32,
    freq_scale: f32,
    attn_factor: f32, // multiplies the rotated pairs (LongRoPE)
    pad1: u32,
    pad2: u32,
}

// q, k and v of the tokens, one buffer (the projections of a stack land in one binding).
@group(0) @binding(0) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> qn: array<f32>;
@group(0) @binding(2) var<storage, read> kn: array<f32>;
@group(0) @binding(3) var<storage, read> factors: array<f32>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(6) var<uniform> p: Params;

// Element indices within a head of quad j: (x, y) is rotated pair 2j, (z, w) pair 2j + 1; the
// adjacent pairs are (x, z) and (y, w) in the NeoX layout, (x, y) and (z, w) otherwise.
fn quad(j: u32) -> vec4<u32> {
    if (NEOX == 1u) {
        let a = 2u * j;
        let half = p.head_dim / 2u;
        return vec4<u32>(a, a + half, a + 1u, a + 1u + half);
    }
    return vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
}

// (x0, x1) rotated by θ_i at position `pos`.
fn rotate(x0: f32, x1: f32, i: u32, pos: u32) -> vec2<f32> {
    var inv_freq = pow(p.base, -2.0 * f32(i) / f32(p.head_dim));
    if (HAS_FACTORS == 1u) {
        inv_freq /= factors[i];
    }
    let theta = f32(pos) * p.freq_scale * inv_freq;
    let c = cos(theta) * p.attn_factor;
    let s = sin(theta) * p.attn_factor;
    return vec2<f32>(x0 * c - x1 * s, x0 * s + x1 * c);
}

// Elements e and e + 1 of a cache, at element index e (even).
fn store_k(e: u32, a: f32, b: f32) {
    if (KV_F16 == 1u) {
        k_cache[e / 2u] = pack2x16float(vec2<f32>(a, b));
    } else {
        k_cache[e] = bitcast<u32>(a);
        k_cache[e + 1u] = bitcast<u32>(b);
    }
}

fn store_v(e: u32, a: f32, b: f32) {
    if (KV_F16 == 1u) {
        v_cache[e / 2u] = pack2x16float(vec2<f32>(a, b));
    } else {
        v_cache[e] = bitcast<u32>(a);
        v_cache[e + 1u] = bitcast<u32>(b);
    }
}

// The four elements of quad `e` of the q or k head at `base`.
fn load_quad(base: u32, e: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(qkv[base + e.x], qkv[base + e.y], qkv[base + e.z], qkv[base + e.w]);
}

fn norm_weights(is_q: bool, e: vec4<u32>) -> vec4<f32> {
    if (is_q) {
        return vec4<f32>(qn[e.x], qn[e.y], qn[e.z], qn[e.w]);
    }
    return vec4<f32>(kn[e.x], kn[e.y], kn[e.z], kn[e.w]);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let heads = p.n_head + 2u * p.n_head_kv;
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.n_tokens * heads) {
        return;
    }
    let t = g / heads;
    let h = g % heads;
    let pos = p.pos0 + t;
    let row = pos % p.ring;

    if (h >= p.n_head + p.n_head_kv) {
        let hv = h - p.n_head - p.n_head_kv;
        let src = p.v_off + (t * p.n_head_kv + hv) * p.head_dim_v;
        let dst = (row * p.n_head_kv + hv) * p.head_dim_v;
        for (var e = 2u * lid; e < p.head_dim_v; e += 2u * WG) {
            store_v(dst + e, qkv[src + e], qkv[src + e + 1u]);
        }
        return;
    }

    let is_q = h < p.n_head;
    let hk = h - p.n_head;
    let base = select(p.k_off + (t * p.n_head_kv + hk) * p.head_dim, p.q_off + (t * p.n_head + h) * p.head_dim, is_q);
    let nquads = p.head_dim / 4u;
    let norm = select(K_NORM == 1u, Q_NORM == 1u, is_q);
    var scale = 1.0;
    if (norm) {
        var s = 0.0;
        for (var j = lid; j < nquads; j += WG) {
            let x = load_quad(base, quad(j));
            s += dot(x, x);
        }
        scale = inverseSqrt(workgroup_sum(lid, s) / f32(p.head_dim) + p.eps);
    }
    let dst = (row * p.n_head_kv + hk) * p.head_dim;
    for (var j = lid; j < nquads; j += WG) {
        let e = quad(j);
        var x = load_quad(base, e);
        if (norm) {
            x *= scale * norm_weights(is_q, e);
        }
        let r0 = rotate(x.x, x.y, 2u * j, pos);
        let r1 = rotate(x.z, x.w, 2u * j + 1u, pos);
        if (is_q) {
            qkv[base + e.x] = r0.x;
            qkv[base + e.y] = r0.y;
            qkv[base + e.z] = r1.x;
            qkv[base + e.w] = r1.y;
        } else if (NEOX == 1u) {
            store_k(dst + e.x, r0.x, r1.x);
            store_k(dst + e.y, r0.y, r1.y);
        } else {
            store_k(dst + e.x, r0.x, r0.y);
            store_k(dst + e.z, r1.x, r1.y);
        }
    }
}
