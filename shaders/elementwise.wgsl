// Element-wise ops on f32 buffers, one invocation per element of a, chosen by the generated OP:
//   0  a += b
//   1  a = silu(a) * b        (SiLU-gated FFN)
//   2  a = gelu_tanh(a) * b   (GELU-gated FFN)
//   3  a += b[i % b_len]      (a bias broadcast over rows)
//   4  a *= scale
//   5  a = scale * tanh(a / scale)   (soft-capping, Gemma 2's logits)
//
// Generated constants: WG, OP. Composed after common/activations.wgsl.

struct Params {
    n: u32,
    a_off: u32,
    b_off: u32,
    b_len: u32,
    scale: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n) {
        return;
    }
    let ia = p.a_off + i;
    switch OP {
        case 0u: { a[ia] += b[p.b_off + i]; }
        case 1u, 2u: { a[ia] = act(OP, a[ia]) * b[p.b_off + i]; }
        case 3u: { a[ia] += b[p.b_off + i % p.b_len]; }
        case 4u: { a[ia] *= p.scale; }
        default: { a[ia] = p.scale * tanh(a[ia] / p.scale); }
    }
}
