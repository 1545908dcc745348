// Append n rows of keys (or values) to a layer's cache at position pos0. The cache is raw u32
// words: f16 pairs packed with pack2x16float when KV_F16 = 1 (halving its size), f32 bits otherwise.
// Position p lives in row p % ring: sliding-window layers keep a ring shorter than the context.
//
// Generated constants: WG, KV_F16.

struct Params {
    n_rows: u32,
    row_len: u32,   // elements per row (even)
    src_off: u32,   // element offset of row 0 in src
    pos0: u32,
    ring: u32,      // rows of the cache
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> cache: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;   // one element pair per invocation
    let pairs = p.row_len / 2u;
    if (idx >= p.n_rows * pairs) {
        return;
    }
    let row = idx / pairs;
    let e = 2u * (idx % pairs);
    let s = p.src_off + row * p.row_len + e;
    let d = ((p.pos0 + row) % p.ring) * p.row_len + e;
    if (KV_F16 == 1u) {
        cache[d / 2u] = pack2x16float(vec2<f32>(src[s], src[s + 1u]));
    } else {
        cache[d] = bitcast<u32>(src[s]);
        cache[d + 1u] = bitcast<u32>(src[s + 1u]);
    }
}
