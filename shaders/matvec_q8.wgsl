// Matrix x one column for decode on the integer path: the column quantized to 8 bits
// (quantize_q8.wgsl) is dotted with the weights' quants four at a time (dot4I8Packed, one
// instruction on GPUs that have integer dot products) through the format's `blk_idot`, and
// scaled once per 32 weights. The float kernel (matvec.wgsl) unpacks, converts and multiplies
// every weight: on an H200 it read quantized matrices at 2-11 % of the memory bandwidth.
//
// Each row slot of TPR invocations (a subgroup when SG = 1) walks one row, invocation `lane`
// taking sub-blocks lane, lane + TPR, ...: neighbours read neighbouring bytes of the row. The
// partial sums are reduced as in matvec.wgsl (common/reduce_*.wgsl, RPI = NCOLS = 1).
//
// Generated constants: WG, TPR, SG, RPI, NCOLS, RED; the format's QK and QB.

struct Params {
    k: u32,         // elements per row (a multiple of 32)
    m: u32,         // rows in this weight chunk
    row_bytes: u32, // bytes per row of W
    x_blk: u32,     // index of the column's first 32-activation block in xq / xs
    y_off: u32,     // element index of Y[first row of this chunk]
    pad0: u32,
    w_off: u32,     // weights in a texture: the chunk's first texel (see common/w_texture.wgsl)
    w_shift: u32,   // and log2 of the texels per texture row
}

// binding 0: the weights `wq`, read through wq_at (common/w_storage.wgsl or w_texture.wgsl)
@group(0) @binding(1) var<storage, read> xq: array<vec4<u32>>; // [blocks][2]: 8 words of packed i8
@group(0) @binding(2) var<storage, read> xs: array<vec2<f32>>; // [blocks]: (d, d · Σq)
@group(0) @binding(3) var<storage, read_write> yv: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<private> acc: array<f32, 1>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let wgi = wid.x + wid.y * nwg.x;
    let lane = lid % TPR;
    let row = wgi * (WG / TPR) + lid / TPR;
    // Rows past the end are clamped (their loads stay in bounds) and not written.
    let rb = min(row, p.m - 1u) * p.row_bytes;
    let spb = QK / 32u;
    for (var sb = lane; sb < p.k / 32u; sb += TPR) {
        let xb = p.x_blk + sb;
        let lo = xq[2u * xb];
        let hi = xq[2u * xb + 1u];
        let s = xs[xb];
        let x = Xq8(array<u32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w), s.x, s.y);
        acc[0] += blk_idot(rb + (sb / spb) * QB, sb % spb, x);
    }
    if (TPR > 1u) {
        reduce_acc(lid, lane);
    }
    if (lane == 0u && row < p.m) {
        yv[p.y_off + row] = acc[0];
    }
}
