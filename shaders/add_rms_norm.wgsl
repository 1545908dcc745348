// The end of one transformer block and the input norm of the next, one workgroup per row:
//   r += norm(o) * w_post   (POST = 1: Gemma's post-norms)   or   r += o   (POST = 0)
//   h  = norm(r) * w
// where norm(v) = v / sqrt(mean(v²) + eps). One dispatch instead of two (or of an add and a
// norm); r is the residual stream, updated in place. Rows are read 4 elements at a time (the
// host checks that lengths and offsets are multiples of 4): a quarter of the loads, which on CPU
// devices is most of this kernel's time.
//
// Generated constants: WG (a power of two), POST (0 or 1). Composed after common/row_sum.wgsl.

struct Params {
    d: u32,      // row length, in vec4s
    n_rows: u32,
    o_off: u32,  // vec4 offsets of row 0 of o, r and h
    r_off: u32,
    h_off: u32,
    eps: f32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> o: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> w_post: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> r: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> h: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.n_rows) {
        return;
    }
    let ob = p.o_off + row * p.d;
    let rb = p.r_off + row * p.d;
    var post_scale = 1.0;
    if (POST == 1u) {
        var s = 0.0;
        for (var i = lid; i < p.d; i += WG) {
            let v = o[ob + i];
            s += dot(v, v);
        }
        post_scale = inverseSqrt(workgroup_sum(lid, s) / f32(4u * p.d) + p.eps);
    }
    // Each invocation rereads only the elements it wrote itself: no barrier needed.
    var s2 = 0.0;
    for (var i = lid; i < p.d; i += WG) {
        var v = o[ob + i];
        if (POST == 1u) {
            v *= post_scale * w_post[i];
        }
        let sum = r[rb + i] + v;
        r[rb + i] = sum;
        s2 += dot(sum, sum);
    }
    let scale = inverseSqrt(workgroup_sum(lid, s2) / f32(4u * p.d) + p.eps);
    let hb = p.h_off + row * p.d;
    for (var i = lid; i < p.d; i += WG) {
        h[hb + i] = r[rb + i] * scale * w[i];
    }
}
