// RMSNorm of each row: y = x / sqrt(mean(x²) + eps) * w, one workgroup per row.
// With ADD = 1 the result is added to y instead (Gemma's post-norms feed the residual directly).
// Rows are read 4 elements at a time (lengths and offsets are multiples of 4, checked by the host).
//
// Generated constants: WG (a power of two), ADD (0 or 1). Composed after common/row_sum.wgsl.

struct Params {
    d: u32,      // row length (also the length of w), in vec4s
    n_rows: u32,
    x_off: u32,  // vec4 offset of row 0 of x
    y_off: u32,  // vec4 offset of row 0 of y
    eps: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.n_rows) {
        return;
    }
    let xb = p.x_off + row * p.d;
    var s = 0.0;
    for (var i = lid; i < p.d; i += WG) {
        let v = x[xb + i];
        s += dot(v, v);
    }
    let scale = inverseSqrt(workgroup_sum(lid, s) / f32(4u * p.d) + p.eps);
    let yb = p.y_off + row * p.d;
    for (var i = lid; i < p.d; i += WG) {
        let v = x[xb + i] * scale * w[i];
        if (ADD == 1u) {
            y[yb + i] += v;
        } else {
            y[yb + i] = v;
        }
    }
}
