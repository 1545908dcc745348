// Q5_1 (24 bytes / 32 weights): d: f16 @0, m: f16 @2, qh: u32 @4, qs[16] @8;
// weight = d * q5 + m with the 5-bit q5 built as in Q5_0 (q5_quants). Blocks are 8-byte aligned
// (rows are whole blocks), so a block ends within the two aligned vec4s from its start.
// The header holds the whole block.
const HAS_MIN: bool = true;

struct Blk {
    dm: vec2<f32>,
    qh: u32,
    qs: vec4<u32>,
}

fn blk_load(blk: u32, g: u32) -> Blk {
    let s = ld_span2(blk);
    let r = blk & 15u;
    let dq = span_u32x4(s, r);
    return Blk(f16x2(dq.x), dq.y, span_u32x4(s, r + 8u));
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let q = h.qs[j];
    let hb = h.qh >> (4u * j);
    return Dq8(q5_quants(q, hb), q5_quants(q >> 4u, hb >> 16u), h.dm, h.dm, 4u * j, 16u + 4u * j);
}

// Integer path: the block (one sub-block of 32) dotted with 8-bit activations; the minimum goes
// through the activations' sum.
fn blk_idot(blk: u32, sb: u32, x: Xq8) -> f32 {
    let h = blk_load(blk, 0u);
    return h.dm.x * x.d * f32(q5_block_idot(h.qs, h.qh, x)) + h.dm.y * x.dsum;
}
