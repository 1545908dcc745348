// Activations to 8 bits for the integer matvec (matvec_q8.wgsl), one invocation per block of 32:
// d = max|x| / 127, q = round(x / d) as four packed i8 per word, and (d, d · Σq) beside them
// (see `Xq8` in common/bytes.wgsl). CPU reference: `wgquant::format::dot::quantize_activations`.
//
// Generated constants: WG.

struct Params {
    n_blocks: u32, // blocks of 32 activations, contiguous from x_off
    x_off: u32,    // vec4 index of the first activation
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> xv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> xq: array<vec4<u32>>; // [n_blocks][2]
@group(0) @binding(2) var<storage, read_write> xs: array<vec2<f32>>; // [n_blocks]
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = gid.x + gid.y * nwg.x * WG;
    if (b >= p.n_blocks) {
        return;
    }
    var v: array<vec4<f32>, 8>;
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
        v[i] = xv[p.x_off + 8u * b + i];
        let a = abs(v[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    let d = amax / 127.0;
    let id = select(0.0, 1.0 / d, d > 0.0);
    var sum = 0;
    var words: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        let q = vec4<i32>(round(v[i] * id));
        sum += q.x + q.y + q.z + q.w;
        words[i] = pack4xI8(q);
    }
    xq[2u * b] = vec4<u32>(words[0], words[1], words[2], words[3]);
    xq[2u * b + 1u] = vec4<u32>(words[4], words[5], words[6], words[7]);
    xs[b] = vec2<f32>(d, d * f32(sum));
}
