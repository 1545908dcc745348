// Tiled matrix x matrix for prompt processing: Y[n][m] = sum_k W[m][k] * X[n][k].
// Each workgroup computes a BM x BN tile of Y. Per BK-wide step of k, the W tile is decoded from
// raw blocks (the format's dq8) into workgroup memory as f32, the X tile is copied beside it, and
// each invocation accumulates TM x TN outputs in registers: rows ty, ty + BM/TM, ... and columns
// tx, tx + BN/TN, ..., so that neighbouring invocations read neighbouring tile rows; on GPUs tile
// rows are one vec4 longer than BK (TPAD = 1), so that those reads fall in different memory
// banks. (With each invocation owning TM consecutive rows, the 16 invocations of a row of a
// 64-wide tile read addresses 512 bytes apart, all in one bank: a GPU serialises them.)
//
// Tiles hold T4: vec4<f32>, or vec4<f16> where the device has shader-f16 (TH = 1; half the
// workgroup memory and traffic, operands rounded to f16, products accumulated in f32).
//
// Generated constants: BM, BN, BK (a multiple of the format's SPAN, so every group decoded lands
// inside the tile), TM, TN, WG = (BM / TM) * (BN / TN), UG (groups per unit of tile loading),
// TPAD (vec4s of padding per tile row), TH, and the format's QK, QB, SPAN, GPB; the alias T4.

struct Params {
    k: u32,
    m: u32,         // rows in this weight chunk
    n: u32,         // columns of X / Y
    row_bytes: u32,
    x_off: u32,     // vec4 index of X[0][0]
    x_stride: u32,  // vec4s between columns of X
    y_off: u32,     // element index of Y[0][first row of this chunk]
    y_stride: u32,  // elements between columns of Y
    w_off: u32,     // weights in a texture: the chunk's first texel (see common/w_texture.wgsl)
    w_shift: u32,   // and log2 of the texels per texture row
}

// binding 0: the weights `wq`, read through wq_at (common/w_storage.wgsl or w_texture.wgsl)
@group(0) @binding(1) var<storage, read> xv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> yv: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const BK4: u32 = BK / 4u;
const TROW: u32 = BK4 + TPAD; // vec4s from one tile row to the next
var<workgroup> ws: array<T4, BM * TROW>;
var<workgroup> xs: array<T4, BN * TROW>;

// Decodes the W tile rows m0.. for the k window k0..k0+BK into ws, in units of UG groups of one
// block (each unit reads its block header once). Units past the end of the row (a last window
// that is only partly inside K) are stored as zeros.
fn load_w_tile(lid: u32, m0: u32, k0: u32) {
    let upr = BK / (8u * UG);
    let ngroups = p.k / 8u;
    for (var i = lid; i < BM * upr; i += WG) {
        let r = i / upr;
        let u = i % upr;
        let g0 = k0 / 8u + u * UG;
        if (g0 < ngroups) {
            let row = min(m0 + r, p.m - 1u);
            let blk = row * p.row_bytes + (g0 / GPB) * QB;
            let h = blk_load(blk, g0 % GPB);
            let e0 = (g0 / GPB) * QK - k0;
            for (var jj = 0u; jj < UG; jj++) {
                let d = blk_dq8(blk, h, g0 % GPB + jj);
                ws[r * TROW + (e0 + d.ia) / 4u] = T4(dq8_wa(d));
                ws[r * TROW + (e0 + d.ib) / 4u] = T4(dq8_wb(d));
            }
        } else {
            for (var q = 0u; q < 2u * UG; q++) {
                ws[r * TROW + 2u * UG * u + q] = T4(0.0);
            }
        }
    }
}

fn load_x_tile(lid: u32, n0: u32, k0: u32) {
    for (var i = lid; i < BN * BK4; i += WG) {
        let c = i / BK4;
        let kk = i % BK4;
        let col = n0 + c;
        var v = vec4<f32>(0.0);
        if (col < p.n && (k0 + 4u * kk) < p.k) {
            v = xv[p.x_off + col * p.x_stride + k0 / 4u + kk];
        }
        xs[c * TROW + kk] = T4(v);
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.x * BM;
    let n0 = wid.y * BN;
    let tx = lid % (BN / TN);
    let ty = lid / (BN / TN);
    var acc: array<f32, TM * TN>;

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        load_w_tile(lid, m0, k0);
        load_x_tile(lid, n0, k0);
        workgroupBarrier();
        for (var kk = 0u; kk < BK4; kk++) {
            var wr: array<vec4<f32>, TM>;
            for (var i = 0u; i < TM; i++) {
                wr[i] = vec4<f32>(ws[(ty + i * (BM / TM)) * TROW + kk]);
            }
            for (var j = 0u; j < TN; j++) {
                let xc = vec4<f32>(xs[(tx + j * (BN / TN)) * TROW + kk]);
                for (var i = 0u; i < TM; i++) {
                    acc[i * TN + j] += dot(wr[i], xc);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        let row = m0 + ty + i * (BM / TM);
        for (var j = 0u; j < TN; j++) {
            let col = n0 + tx + j * (BN / TN);
            if (row < p.m && col < p.n) {
                yv[p.y_off + col * p.y_stride + row] = acc[i * TN + j];
            }
        }
    }
}
