// Greedy sampling on the device: the index of the largest of n logits, the first one where
// several are equal (as the CPU sampler's argmax), so a decode step reads back one word instead
// of the logits (1 MiB a token for Gemma's vocabulary).
//
// One workgroup of WG invocations (a power of two): invocation i scans elements i, i + WG, ...,
// then the workgroup reduces the (value, index) pairs. NaN counts as -inf, as on the CPU; it is
// recognised from its bits, since WGSL lets a compiler assume floats are never NaN.
//
// Generated constants: WG.

struct Params {
    n: u32,
    off: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> best: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> vals: array<f32, WG>;
var<workgroup> idxs: array<u32, WG>;

// Whether (v, i) comes before (w, j): larger, or as large and earlier.
fn before(v: f32, i: u32, w: f32, j: u32) -> bool {
    return v > w || (v == w && i < j);
}

// Logit e, NaN as -inf. (The bits are chosen before the bitcast: WebGPU refuses -inf as a
// constant.)
fn logit(e: u32) -> f32 {
    let bits = bitcast<u32>(logits[p.off + e]);
    return bitcast<f32>(select(bits, 0xff800000u, (bits & 0x7fffffffu) > 0x7f800000u));
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    var v = logit(0u);
    var i = 0u;
    for (var e = lid; e < p.n; e += WG) {
        let x = logit(e);
        if (before(x, e, v, i)) {
            v = x;
            i = e;
        }
    }
    vals[lid] = v;
    idxs[lid] = i;
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if (lid < stride) {
            let w = vals[lid + stride];
            let j = idxs[lid + stride];
            if (before(w, j, vals[lid], idxs[lid])) {
                vals[lid] = w;
                idxs[lid] = j;
            }
        }
    }
    if (lid == 0u) {
        best[0] = idxs[0];
    }
}
