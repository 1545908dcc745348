// Causal (sliding-window) attention with the head dimensions split across one subgroup: one
// workgroup of WG invocations (the device's fixed subgroup size) per query token and group of HPW
// query heads sharing a KV head. Invocation i owns dimensions [i * DPI, (i + 1) * DPI) of q, k,
// v and the output; positions are walked in order by the whole workgroup. A score is the
// subgroupAdd of the invocations' partial dot products, and the softmax is computed online (a
// running maximum and sum per head), so each cached key and value is read once, 16 bytes at a
// time, for all HPW heads, and nothing goes through memory but the output.
//
// Made for CPU devices (lavapipe), where a one-position-per-invocation kernel's per-element
// loads cost several times more (decode attention 4.0 -> 2.0 ms per step against the kernel it
// replaced); any device with subgroups can run it. Cache layout: position j in row j % ring, raw
// u32 words (f16 pairs when KV_F16 = 1, else f32 bits).
//
// Generated constants: WG (the subgroup size), DPI (head_dim / WG, a multiple of 8 with f16 or 4
// with f32), HPW (query heads per workgroup), KV_F16. Composed after common/attention_params.wgsl
// and common/kv_chunk.wgsl.

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> vc: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// Elements per cache vec4, and vec4s and 4-element chunks per invocation's slice.
const EPV = select(4u, 8u, KV_F16 == 1u);
const NW = DPI / EPV;
const NC = DPI / 4u;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let groups = p.n_head / HPW;
    let wgi = wid.x + wid.y * nwg.x;
    if (wgi >= p.n_tokens * groups) {
        return;
    }
    let t = wgi / groups;
    let h0 = (wgi % groups) * HPW;
    let kvh = h0 / p.group;
    let pos = p.pos0 + t;
    var first = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        first = pos + 1u - p.window;
    }
    let dim0 = lid * DPI;

    // This invocation's slice of each head's query, scaled.
    var qv: array<vec4<f32>, HPW * NC>;
    for (var hh = 0u; hh < HPW; hh++) {
        let qb = p.q_off + t * p.q_stride + (h0 + hh) * p.head_dim + dim0;
        for (var c = 0u; c < NC; c++) {
            let e = qb + 4u * c;
            qv[hh * NC + c] = vec4<f32>(q[e], q[e + 1u], q[e + 2u], q[e + 3u]) * p.scale;
        }
    }

    var m: array<f32, HPW>;
    var l: array<f32, HPW>;
    var acc: array<vec4<f32>, HPW * NC>;
    for (var hh = 0u; hh < HPW; hh++) {
        m[hh] = -3.4e38;
    }
    for (var j = first; j <= pos; j++) {
        let row = j % p.ring;
        let kb = (row * p.kv_dim + kvh * p.head_dim + dim0) / EPV;
        let vb = (row * p.kv_dim_v + kvh * p.head_dim + dim0) / EPV;
        var part: array<f32, HPW>;
        for (var w = 0u; w < NW; w++) {
            let kw = kc[kb + w];
            for (var c = 0u; c < EPV / 4u; c++) {
                let k4 = chunk(kw, c);
                for (var hh = 0u; hh < HPW; hh++) {
                    part[hh] += dot(qv[hh * NC + w * (EPV / 4u) + c], k4);
                }
            }
        }
        // Online softmax: rescale what was summed so far when the maximum grows.
        var weight: array<f32, HPW>;
        var rescale: array<f32, HPW>;
        for (var hh = 0u; hh < HPW; hh++) {
            let s = capped(subgroupAdd(part[hh]));
            let m_new = max(m[hh], s);
            rescale[hh] = exp(m[hh] - m_new);
            weight[hh] = exp(s - m_new);
            l[hh] = l[hh] * rescale[hh] + weight[hh];
            m[hh] = m_new;
        }
        for (var w = 0u; w < NW; w++) {
            let vw = vc[vb + w];
            for (var c = 0u; c < EPV / 4u; c++) {
                let v4 = chunk(vw, c);
                for (var hh = 0u; hh < HPW; hh++) {
                    let i = hh * NC + w * (EPV / 4u) + c;
                    acc[i] = acc[i] * rescale[hh] + weight[hh] * v4;
                }
            }
        }
    }

    for (var hh = 0u; hh < HPW; hh++) {
        let ob = p.o_off + t * p.o_stride + (h0 + hh) * p.head_dim + dim0;
        let inv = 1.0 / l[hh];
        for (var c = 0u; c < NC; c++) {
            let o4 = acc[hh * NC + c] * inv;
            let e = ob + 4u * c;
            out[e] = o4.x;
            out[e + 1u] = o4.y;
            out[e + 2u] = o4.z;
            out[e + 3u] = o4.w;
        }
    }
}
