// Bandwidth probe for the benchmark: every invocation folds part of a weight tensor's bytes
// (read through wq_at, as the matrix kernels read weights: common/w_storage.wgsl or
// w_texture.wgsl) and writes one word, so the reads cannot be optimised away. Generated
// constants: WG, and CONTIG: 1 makes each invocation read one contiguous slice (CPU drivers), 0 a
// grid-strided one (GPUs).

struct Params {
    n_vec4: u32,  // vec4s to read
    w_off: u32,   // weights in a texture: the chunk's first texel
    w_shift: u32, // and log2 of the texels per texture row
    pad: u32,
}

// binding 0: the weights `wq`
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let threads = nwg.x * WG;
    var s = vec4<u32>(0u);
    if (CONTIG == 1u) {
        let per = (p.n_vec4 + threads - 1u) / threads;
        let end = min(p.n_vec4, (gid.x + 1u) * per);
        for (var i = gid.x * per; i < end; i++) {
            s ^= wq_at(i);
        }
    } else {
        for (var i = gid.x; i < p.n_vec4; i += threads) {
            s ^= wq_at(i);
        }
    }
    dst[gid.x] = s.x ^ s.y ^ s.z ^ s.w;
}
