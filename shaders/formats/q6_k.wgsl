// Q6_K (210 bytes / 256 weights): ql[128] @0 (low 4 bits), qh[64] @128 (high 2 bits),
// scales: i8[16] @192 (one per 16 weights), d: f16 @208.
// In half h (128 weights; ql += 64h, qh += 32h), for l < 32:
//   weight l      = low nibble of ql[l]      | bits 0-1 of qh[l] << 4
//   weight l + 32 = low nibble of ql[l + 32] | bits 2-3 of qh[l] << 4
//   weight l + 64 = high nibble of ql[l]     | bits 4-5 of qh[l] << 4
//   weight l + 96 = high nibble of ql[l + 32]| bits 6-7 of qh[l] << 4
// each times d * scales[e / 16] after subtracting 32.
// Group j (h = j/16, q = (j/8) % 2, l0 = 4 (j % 8)) reads the words ql[64h + 32q + l0 ..+4] and
// qh[32h + l0 ..+4]: both nibbles of the ql word give weights e = 128h + 32q + l0 and e + 64.
// The load unit is the 8 groups of one (h, q) (LU = 8): d, the four scales they use, and, when a
// kernel decodes whole units (UG = LU), their 32 ql and 32 qh bytes, each from the three vec4s
// around them (blocks sit at any even offset).
const HAS_MIN: bool = false;

// Separate vec4 fields, not arrays: a group picks its word with selects, where an indexed array
// would be spilled to memory on CPU drivers.
struct Blk {
    d: f32,
    sc: u32,         // scales[e/16] for e = 128h + 32q + (0, 16, 64, 80), one per byte
    ql0: vec4<u32>,  // ql[64h + 32q ..+16] (loaded when UG = LU)
    ql1: vec4<u32>,  // ql[64h + 32q + 16 ..+16]
    qh0: vec4<u32>,  // qh[32h ..+16]
    qh1: vec4<u32>,  // qh[32h + 16 ..+16]
}

fn blk_load(blk: u32, g: u32) -> Blk {
    let hf = g / 16u;
    let q = (g / 8u) % 2u;
    let sc = blk + 192u + 8u * hf + 2u * q;
    var h = Blk(ld_f16(blk + 208u), ld_u16(sc) | (ld_u16(sc + 4u) << 16u), vec4<u32>(), vec4<u32>(), vec4<u32>(), vec4<u32>());
    if (UG == LU) {
        let lb = blk + 64u * hf + 32u * q;
        let l = ld_span(lb);
        h.ql0 = span_u32x4(l, lb & 15u);
        h.ql1 = span_u32x4(l, (lb & 15u) + 16u);
        let hb = blk + 128u + 32u * hf;
        let m = ld_span(hb);
        h.qh0 = span_u32x4(m, hb & 15u);
        h.qh1 = span_u32x4(m, (hb & 15u) + 16u);
    }
    return h;
}

// The four 6-bit quants from nibble `nib` of `ql` and bits hsh..hsh+2 of `qh`, minus 32.
fn q6k_q(ql: u32, qh: u32, nib: u32, hsh: u32) -> vec4<f32> {
    let lo = (bytes4(ql) >> vec4<u32>(4u * nib)) & vec4<u32>(15u);
    let hi = (bytes4(qh) >> vec4<u32>(hsh)) & vec4<u32>(3u);
    return vec4<f32>(lo | (hi << vec4<u32>(4u))) - 32.0;
}

// (d * scale, 0) with the signed scale in byte `k` of the unit's scales.
fn q6k_scale(h: Blk, k: u32) -> vec2<f32> {
    let sc = f32(bitcast<i32>(h.sc << (24u - 8u * k)) >> 24u);
    return vec2<f32>(h.d * sc, 0.0);
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let hf = j / 16u;
    let q = (j / 8u) % 2u;
    let w = j % 8u;
    var ql: u32;
    var qh: u32;
    if (UG == LU) {
        ql = word8(h.ql0, h.ql1, w);
        qh = word8(h.qh0, h.qh1, w);
    } else {
        ql = ld_u32(blk + 64u * hf + 32u * q + 4u * w);
        qh = ld_u32(blk + 128u + 32u * hf + 4u * w);
    }
    let e = 128u * hf + 32u * q + 4u * w;
    let a = q6k_q(ql, qh, 0u, 2u * q);
    let b = q6k_q(ql, qh, 1u, 4u + 2u * q);
    let k = w / 4u; // weights l0 >= 16 use the unit's second scale
    return Dq8(a, b, q6k_scale(h, k), q6k_scale(h, 2u + k), e, e + 64u);
}

// Integer path: four 6-bit quants as packed i8 minus 32, from nibble `nsh` of `ql` and bits
// hsh..hsh+2 of `qh`. The -32 flips bit 5 and extends the sign into bits 6-7, byte by byte (no
// borrows between bytes).
fn q6k_i8(ql: u32, qh: u32, nsh: u32, hsh: u32) -> u32 {
    let q = ((ql >> nsh) & 0x0f0f0f0fu) | (((qh >> hsh) & 0x03030303u) << 4u);
    return (q ^ 0x20202020u) | (((~q >> 5u) & 0x01010101u) * 0xc0u);
}

// Integer path: sub-block `sb` (0..8: half sb/4, quarter i = sb%4, weights 128 half + 32 i + l)
// dotted with 8-bit activations; its two 16-weight scales apply to the halves.
fn blk_idot(blk: u32, sb: u32, x: Xq8) -> f32 {
    let hf = sb / 4u;
    let i = sb % 4u;
    let lb = blk + 64u * hf + 32u * (i % 2u);
    let hb = blk + 128u + 32u * hf;
    let l0 = ld_u32x4(lb);
    let l1 = ld_u32x4(lb + 16u);
    let h0 = ld_u32x4(hb);
    let h1 = ld_u32x4(hb + 16u);
    let nsh = 4u * (i / 2u);
    var a = 0;
    var b = 0;
    for (var k = 0u; k < 4u; k++) {
        a += dot4I8Packed(q6k_i8(l0[k], h0[k], nsh, 2u * i), x.w[k]);
        b += dot4I8Packed(q6k_i8(l1[k], h1[k], nsh, 2u * i), x.w[k + 4u]);
    }
    let sc = ld_u16(blk + 192u + 8u * hf + 2u * i);
    let s0 = f32(bitcast<i32>(sc << 24u) >> 24u);
    let s1 = f32(bitcast<i32>(sc << 16u) >> 24u);
    return ld_f16(blk + 208u) * x.d * (s0 * f32(a) + s1 * f32(b));
}
