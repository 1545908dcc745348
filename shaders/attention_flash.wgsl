// Causal (sliding-window) attention for GPUs, flash style: no score row per position goes
// through memory, and a long context is split across workgroups (flash decoding).
//
// One workgroup of WG invocations per (query token, HPW query heads of one KV group, split of the
// token's positions). It walks its positions in tiles of WG: invocation i scores position
// tile + i against all HPW queries (reading that key once, 16 bytes at a time), the workgroup
// takes the tile's maximum, and the softmax is kept online (a running maximum per head, each
// invocation's running sum, the outputs rescaled when the maximum grows). Then every invocation
// adds the tile's weighted values for the PPI element pairs it owns: neighbouring invocations
// read neighbouring words of a value row.
//
// With one split (N_SPLIT = 1 in the parameters) the normalised output is written directly.
// With several, each writes its partial result to `part` (maximum, sum, unnormalised output) and
// attention_combine.wgsl merges them: a decode step over a long context then has enough
// workgroups to fill the GPU, where one per head would leave most of it idle.
//
// Generated constants: WG (invocations, a power of two), HPW (query heads per workgroup), HD
// (head_dim rounded up to a power of two: the staged queries), PPI (element pairs of the output
// per invocation), KV_F16. Cache layout: position j in row j % ring, raw words (f16 pairs or f32
// bits); head_dim a multiple of 8 with f16 and of 4 with f32 (the host checks),
// so a key's slice is whole vec4s. Composed after common/attention_params.wgsl and
// common/kv_chunk.wgsl.

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> vc: array<u32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

// Elements per key vec4.
const EPV = select(4u, 8u, KV_F16 == 1u);
const NEG = -3.4e38;

var<workgroup> qs: array<f32, HPW * HD>;   // the HPW queries, scaled
var<workgroup> probs: array<f32, HPW * WG>; // the tile's weights exp(score - max)
var<workgroup> red: array<f32, HPW * WG>;   // reduction scratch

// Element pair e of value row `row` of KV head `kvh`.
fn value_pair(row: u32, kvh: u32, e: u32) -> vec2<f32> {
    let first = row * p.kv_dim_v + kvh * p.head_dim_v + 2u * e;
    if (KV_F16 == 1u) {
        return unpack2x16float(vc[first / 2u]);
    }
    return vec2<f32>(bitcast<f32>(vc[first]), bitcast<f32>(vc[first + 1u]));
}

// The maximum (op 0) or sum (op 1) over the workgroup of each head's value in `red`, which every
// invocation has filled at hh * WG + lid; the result is in red[hh * WG] on return.
fn reduce_red(lid: u32, op: u32) {
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if (lid < stride) {
            for (var hh = 0u; hh < HPW; hh++) {
                let a = red[hh * WG + lid];
                let b = red[hh * WG + lid + stride];
                red[hh * WG + lid] = select(a + b, max(a, b), op == 0u);
            }
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let groups = p.n_head / HPW;
    let wgi = wid.x + wid.y * nwg.x;
    // Every invocation of a workgroup takes the same branch: barriers below stay uniform.
    if (wgi >= p.n_tokens * groups * p.n_split) {
        return;
    }
    let split = wgi % p.n_split;
    let t = wgi / p.n_split / groups;
    let h0 = (wgi / p.n_split % groups) * HPW;
    let kvh = h0 / p.group;
    let pos = p.pos0 + t;
    var first = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        first = pos + 1u - p.window;
    }
    // This split's positions: [begin, end).
    let per_split = (pos + 1u - first + p.n_split - 1u) / p.n_split;
    let begin = min(first + split * per_split, pos + 1u);
    let end = min(begin + per_split, pos + 1u);

    for (var i = lid; i < HPW * p.head_dim; i += WG) {
        let hh = i / p.head_dim;
        let d = i % p.head_dim;
        qs[hh * HD + d] = q[p.q_off + t * p.q_stride + (h0 + hh) * p.head_dim + d] * p.scale;
    }

    var m: array<f32, HPW>;        // the running maximum (the same in every invocation)
    var l: array<f32, HPW>;        // this invocation's share of the running sum
    var acc: array<vec2<f32>, HPW * PPI>;
    for (var hh = 0u; hh < HPW; hh++) {
        m[hh] = NEG;
    }
    let n_vec4 = p.head_dim / EPV;
    for (var tile = begin; tile < end; tile += WG) {
        // Score position tile + lid against every query of the group.
        let j = tile + lid;
        let valid = j < end;
        var s: array<f32, HPW>;
        workgroupBarrier(); // qs written (first tile); probs no longer read (later tiles)
        if (valid) {
            let kb = ((j % p.ring) * p.kv_dim + kvh * p.head_dim) / EPV;
            for (var w = 0u; w < n_vec4; w++) {
                let kw = kc[kb + w];
                for (var c = 0u; c < EPV / 4u; c++) {
                    let k4 = chunk(kw, c);
                    let d = w * EPV + 4u * c;
                    for (var hh = 0u; hh < HPW; hh++) {
                        let q4 = vec4<f32>(qs[hh * HD + d], qs[hh * HD + d + 1u], qs[hh * HD + d + 2u], qs[hh * HD + d + 3u]);
                        s[hh] += dot(q4, k4);
                    }
                }
            }
        }
        for (var hh = 0u; hh < HPW; hh++) {
            s[hh] = capped(s[hh]);
            red[hh * WG + lid] = select(NEG, s[hh], valid);
        }
        reduce_red(lid, 0u);
        for (var hh = 0u; hh < HPW; hh++) {
            let m_new = max(m[hh], red[hh * WG]);
            let rescale = exp(m[hh] - m_new);
            let weight = select(0.0, exp(s[hh] - m_new), valid);
            probs[hh * WG + lid] = weight;
            l[hh] = l[hh] * rescale + weight;
            m[hh] = m_new;
            for (var e = 0u; e < PPI; e++) {
                acc[hh * PPI + e] *= rescale;
            }
        }
        workgroupBarrier(); // probs written
        let n = min(WG, end - tile);
        for (var e = 0u; e < PPI; e++) {
            let pair = lid + e * WG;
            if (2u * pair < p.head_dim_v) {
                for (var i = 0u; i < n; i++) {
                    let v2 = value_pair((tile + i) % p.ring, kvh, pair);
                    for (var hh = 0u; hh < HPW; hh++) {
                        acc[hh * PPI + e] += probs[hh * WG + i] * v2;
                    }
                }
            }
        }
    }

    // The sums of all invocations' shares.
    workgroupBarrier();
    for (var hh = 0u; hh < HPW; hh++) {
        red[hh * WG + lid] = l[hh];
    }
    reduce_red(lid, 1u);
    for (var hh = 0u; hh < HPW; hh++) {
        let h = h0 + hh;
        let sum = red[hh * WG];
        // Partial results: [m, l, output...] per (token, head, split).
        let pb = ((t * p.n_head + h) * p.n_split + split) * (p.head_dim_v + 2u);
        if (p.n_split > 1u && lid == 0u) {
            part[pb] = m[hh];
            part[pb + 1u] = sum;
        }
        for (var e = 0u; e < PPI; e++) {
            let pair = lid + e * WG;
            if (2u * pair < p.head_dim_v) {
                let a = acc[hh * PPI + e];
                if (p.n_split > 1u) {
                    part[pb + 2u + 2u * pair] = a.x;
                    part[pb + 3u + 2u * pair] = a.y;
                } else {
                    let o = p.o_off + t * p.o_stride + h * p.head_dim_v + 2u * pair;
                    out[o] = a.x / sum;
                    out[o + 1u] = a.y / sum;
                }
            }
        }
    }
}
