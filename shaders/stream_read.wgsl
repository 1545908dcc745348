// Bandwidth probe for the benchmark: every invocation sums part of a large buffer and writes one
// value (so the reads cannot be optimised away). Generated constants: WG, and CONTIG: 1 makes
// each invocation read one contiguous slice (CPU drivers), 0 a grid-strided one (GPUs).

struct Params {
    n_vec4: u32,  // vec4s to read
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let threads = nwg.x * WG;
    var s = vec4<f32>(0.0);
    if (CONTIG == 1u) {
        let per = (p.n_vec4 + threads - 1u) / threads;
        let end = min(p.n_vec4, (gid.x + 1u) * per);
        for (var i = gid.x * per; i < end; i++) {
            s += src[i];
        }
    } else {
        for (var i = gid.x; i < p.n_vec4; i += threads) {
            s += src[i];
        }
    }
    dst[gid.x] = dot(s, vec4<f32>(1.0));
}
