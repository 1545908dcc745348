// Q5_0 (22 bytes / 32 weights): d: f16 @0, qh: u32 @2 (5th bits), qs[16] @6.
// Weight i < 16 = d * ((low nibble of qs[i] | bit i of qh << 4) - 16);
// weight i + 16 = d * ((high nibble of qs[i] | bit i+16 of qh << 4) - 16).
// The header holds the whole block. The -16 is an offset (s.y = -16 d), so kernels apply it once
// per 4 weights through the activations' sum rather than to every quant.
const HAS_MIN: bool = true;

struct Blk {
    d: f32,
    qh: u32,
    qs: vec4<u32>,
}

fn blk_load(blk: u32, g: u32) -> Blk {
    let s = ld_span(blk);
    let r = blk & 15u;
    return Blk(f16_to_f32(span_u16(s, r)), span_u32x4(s, r + 2u).x, span_u32x4(s, r + 6u));
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let q = h.qs[j];
    let hb = h.qh >> (4u * j);
    let s = vec2<f32>(h.d, -16.0 * h.d);
    return Dq8(q5_quants(q, hb), q5_quants(q >> 4u, hb >> 16u), s, s, 4u * j, 16u + 4u * j);
}

// Integer path: the block (one sub-block of 32) dotted with 8-bit activations; the -16 goes
// through the activations' sum.
fn blk_idot(blk: u32, sb: u32, x: Xq8) -> f32 {
    let h = blk_load(blk, 0u);
    return h.d * (x.d * f32(q5_block_idot(h.qs, h.qh, x)) - 16.0 * x.dsum);
}
