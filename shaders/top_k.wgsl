// Top-k on the device: the k likeliest tokens of each row of logits, sorted, so that a sampled
// decode step reads back k (key, id) pairs instead of the logits (1 MiB a token for Gemma's
// vocabulary), and the host samples from those alone.
//
// A level reduces each row's candidates by a factor of CHUNK / k: workgroup (g, row) keeps the
// k best of elements g * chunk .. (g + 1) * chunk of the row and writes them, best first, at
// cout[(row * groups + g) * k ..]. The host runs levels until one workgroup per row is left.
// The first level reads the logits (RAW = 1, ids implicit), later ones the candidates of the
// level before (RAW = 0); the binding a level does not read is bound to something unused.
//
// A workgroup keeps its best so far, sorted, in best[0..kp) (kp: a power of two >= k). Each tile
// of WG elements is filtered against the k-th best so far: most elements cannot enter, and those
// that can are gathered in `fresh`. They join the best in batches of kp, each batch placed in
// best[kp..2 kp) and the 2 kp slots bitonic-sorted by the first kp invocations. Past the first
// tiles a tile brings a few elements, one small sort, instead of a sort of everything.
//
// Order: larger logit first, then smaller id, exactly the CPU sampler's (`f32::total_cmp` on the
// logit; NaN counts as -inf), through an order-preserving map of the float bits to u32 keys.
// Sentinels have key 0 (below every logit's) and id 0xffffffff.
//
// Generated constants: WG (a power of two), RAW.

struct Params {
    n: u32,     // elements per row of the input
    chunk: u32, // elements per workgroup, a multiple of WG
    k: u32,     // candidates kept per workgroup, at most WG
    kp: u32,    // a power of two, k <= kp <= WG
    base: u32,  // first logit of row 0 in the `logits` binding (RAW)
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> cin: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> cout: array<vec2<u32>>;
@group(0) @binding(3) var<uniform> p: Params;

const SENTINEL: vec2<u32> = vec2<u32>(0u, 0xffffffffu);

var<workgroup> best: array<vec2<u32>, 2 * WG>;
var<workgroup> fresh: array<vec2<u32>, WG>;
var<workgroup> n_fresh: atomic<u32>;
var<workgroup> n_fresh_now: u32;

// The float's bits mapped so that unsigned order is f32::total_cmp's order; NaN maps as -inf.
fn order_key(bits: u32) -> u32 {
    let b = select(bits, 0xff800000u, (bits & 0x7fffffffu) > 0x7f800000u);
    return select(b ^ 0x80000000u, ~b, (b >> 31u) == 1u);
}

// Whether candidate a comes before b.
fn before(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.x > b.x || (a.x == b.x && a.y < b.y);
}

// Element e of the row starting at element `row0` of the input.
fn load(row0: u32, e: u32) -> vec2<u32> {
    if (RAW == 1u) {
        return vec2<u32>(order_key(bitcast<u32>(logits[p.base + row0 + e])), e);
    }
    return cin[row0 + e];
}

// Sorts best[0..2 kp), best first; the first kp invocations swap, every one meets the barriers.
fn bitonic_sort(lid: u32) {
    for (var size = 2u; size <= 2u * p.kp; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            workgroupBarrier();
            if (lid < p.kp) {
                let i = 2u * stride * (lid / stride) + lid % stride;
                let j = i + stride;
                let a = best[i];
                let b = best[j];
                if (before(b, a) == ((i & size) == 0u)) {
                    best[i] = b;
                    best[j] = a;
                }
            }
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let row0 = wg.y * p.n;
    let begin = wg.x * p.chunk;
    let end = min(begin + p.chunk, p.n);
    best[lid] = SENTINEL;
    best[WG + lid] = SENTINEL;
    for (var t = begin; t < end; t += WG) {
        workgroupBarrier();
        // The k-th best so far: an element must beat it to matter.
        let kth = best[p.k - 1u];
        if (lid == 0u) {
            atomicStore(&n_fresh, 0u);
        }
        workgroupBarrier();
        if (t + lid < end) {
            let c = load(row0, t + lid);
            if (before(c, kth)) {
                fresh[atomicAdd(&n_fresh, 1u)] = c;
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            n_fresh_now = atomicLoad(&n_fresh);
        }
        let m = workgroupUniformLoad(&n_fresh_now);
        for (var b = 0u; b < m; b += p.kp) {
            if (lid < p.kp) {
                best[p.kp + lid] = select(SENTINEL, fresh[b + lid], b + lid < m);
            }
            bitonic_sort(lid);
        }
    }
    workgroupBarrier();
    if (lid < p.k) {
        cout[(wg.y * groups.x + wg.x) * p.k + lid] = best[lid];
    }
}
