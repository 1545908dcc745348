// Q2_K (84 bytes / 256 weights): scales[16] @0 (low nibble: scale, high nibble: min, one pair
// per 16 weights), qs[64] @16 (2-bit quants), d: f16 @80, dmin: f16 @82. Blocks are 4-aligned.
// Weight e = 128h + 32s + l (h: half, s: 0..4, l: 0..32) is
//     d * (scales[e/16] & 15) * ((qs[32h + l] >> 2s) & 3) - dmin * (scales[e/16] >> 4).
// Group j reads the word qs[32h + l0 ..+4] once and takes two shifts of it: s = 2p and 2p + 1
// (h = j/16, p = (j/8) % 2, l0 = 4 (j % 8)), i.e. weights e and e + 32 with e = 128h + 64p + l0.
const HAS_MIN: bool = true;

struct Blk {
    dm: vec2<f32>,
    sc: vec4<u32>, // the 16 scale bytes
}

fn blk_load(blk: u32, g: u32) -> Blk {
    let sc = vec4<u32>(ld_a32(blk), ld_a32(blk + 4u), ld_a32(blk + 8u), ld_a32(blk + 12u));
    return Blk(f16x2(ld_a32(blk + 80u)), sc);
}

// (scale, offset) of the 16 weights around element e.
fn q2k_scale(h: Blk, e: u32) -> vec2<f32> {
    let i = e / 16u;
    let sc = (h.sc[i / 4u] >> (8u * (i % 4u))) & 0xffu;
    return vec2<f32>(h.dm.x * f32(sc & 15u), -(h.dm.y * f32(sc >> 4u)));
}

fn q2k_q(q: u32, s: u32) -> vec4<f32> {
    return vec4<f32>((bytes4(q) >> vec4<u32>(2u * s)) & vec4<u32>(3u));
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let hf = j / 16u;
    let p = (j / 8u) % 2u;
    let l0 = 4u * (j % 8u);
    let q = ld_a32(blk + 16u + 32u * hf + l0);
    let e = 128u * hf + 64u * p + l0;
    return Dq8(q2k_q(q, 2u * p), q2k_q(q, 2u * p + 1u), q2k_scale(h, e), q2k_scale(h, e + 32u), e, e + 32u);
}

// Integer path: sub-block sb (weights 32sb + l = 128h + 32s + l, h = sb / 4, s = sb % 4) dotted
// with 8-bit activations. Its two groups of 16 have their own scale and min; the mins meet the
// sum of each half's activations.
fn blk_idot(blk: u32, sb: u32, x: Xq8) -> f32 {
    let hf = sb / 4u;
    let s = sb % 4u;
    var a = 0;
    var b = 0;
    for (var k = 0u; k < 4u; k++) {
        a += dot4I8Packed((ld_a32(blk + 16u + 32u * hf + 4u * k) >> (2u * s)) & 0x03030303u, x.w[k]);
        b += dot4I8Packed((ld_a32(blk + 32u + 32u * hf + 4u * k) >> (2u * s)) & 0x03030303u, x.w[k + 4u]);
    }
    let xs = xq8_half_sums(x);
    let sc = (ld_a32(blk + 4u * (sb / 2u)) >> (16u * (sb % 2u))) & 0xffffu;
    let sc0 = sc & 0xffu;
    let sc1 = sc >> 8u;
    let dm = f16x2(ld_a32(blk + 80u));
    let dots = f32(sc0 & 15u) * f32(a) + f32(sc1 & 15u) * f32(b);
    let mins = f32(sc0 >> 4u) * f32(xs.x) + f32(sc1 >> 4u) * f32(xs.y);
    return x.d * (dm.x * dots - dm.y * mins);
}
