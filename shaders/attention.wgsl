// Causal attention with an optional sliding window, one workgroup per (query token, head).
// Scores go to a scratch buffer (one row of n_ctx per query and head), then softmax, then the
// weighted sum of values, each thread owning some output dimensions. Grouped-query attention maps
// query head h to KV head h / group. Keys and values are read from the raw u32 cache words
// (f16 pairs when KV_F16 = 1, else f32 bits; see kv_store.wgsl); position j is in row j % ring.
//
// Generated constants: WG (a power of two), KV_F16, HD (head_dim, ≤ the workgroup array).
// Composed after common/attention_params.wgsl.

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<u32>;
@group(0) @binding(2) var<storage, read> vc: array<u32>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

var<workgroup> qs: array<f32, HD>;
var<workgroup> red: array<f32, WG>;

// Elements e and e + 1 (e even) of a cache.
fn k_pair(e: u32) -> vec2<f32> {
    if (KV_F16 == 1u) {
        return unpack2x16float(kc[e / 2u]);
    }
    return vec2<f32>(bitcast<f32>(kc[e]), bitcast<f32>(kc[e + 1u]));
}

fn v_elem(e: u32) -> f32 {
    if (KV_F16 == 1u) {
        let pair = unpack2x16float(vc[e / 2u]);
        return select(pair.x, pair.y, (e & 1u) == 1u);
    }
    return bitcast<f32>(vc[e]);
}

fn reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var o = WG / 2u; o > 0u; o >>= 1u) {
        if (lid < o) {
            if (is_max) {
                red[lid] = max(red[lid], red[lid + o]);
            } else {
                red[lid] += red[lid + o];
            }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let wgi = wid.x + wid.y * nwg.x;
    if (wgi >= p.n_tokens * p.n_head) {
        return;
    }
    let t = wgi / p.n_head;
    let h = wgi % p.n_head;
    let kvh = h / p.group;
    let pos = p.pos0 + t;
    var first = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        first = pos + 1u - p.window;
    }
    let srow = wgi * p.n_ctx;

    let qb = p.q_off + t * p.q_stride + h * p.head_dim;
    for (var d = lid; d < p.head_dim; d += WG) {
        qs[d] = q[qb + d] * p.scale;
    }
    workgroupBarrier();

    // scores and their maximum
    var m = -3.4e38;
    for (var j = first + lid; j <= pos; j += WG) {
        let kb = (j % p.ring) * p.kv_dim + kvh * p.head_dim;
        var s = 0.0;
        for (var d = 0u; d < p.head_dim; d += 2u) {
            let k2 = k_pair(kb + d);
            s += qs[d] * k2.x + qs[d + 1u] * k2.y;
        }
        scores[srow + j] = s;
        m = max(m, s);
    }
    m = reduce(m, lid, true);

    // softmax numerators and their sum
    var sum = 0.0;
    for (var j = first + lid; j <= pos; j += WG) {
        let e = exp(scores[srow + j] - m);
        scores[srow + j] = e;
        sum += e;
    }
    sum = reduce(sum, lid, false);
    storageBarrier();

    // weighted sum of values
    let inv = 1.0 / sum;
    let ob = p.o_off + t * p.o_stride + h * p.head_dim_v;
    for (var d = lid; d < p.head_dim_v; d += WG) {
        var acc = 0.0;
        for (var j = first; j <= pos; j++) {
            acc += scores[srow + j] * v_elem((j % p.ring) * p.kv_dim_v + kvh * p.head_dim_v + d);
        }
        out[ob + d] = acc * inv;
    }
}
