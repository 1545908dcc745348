// IQ4_NL (18 bytes / 32 weights): d: f16 @0, qs[16] @2. Like Q4_0, but each nibble indexes the
// non-linear codebook (iq4_values) instead of being offset by 8. The header holds the whole block.
const HAS_MIN: bool = false;

struct Blk {
    d: f32,
    qs: vec4<u32>,
}

fn blk_load(blk: u32, g: u32) -> Blk {
    let s = ld_span2(blk);
    let r = blk & 15u;
    return Blk(f16_to_f32(span_u16(s, r)), span_u32x4(s, r + 2u));
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let q = h.qs[j];
    let s = vec2<f32>(h.d, 0.0);
    return Dq8(iq4_values(nib_lo4(q)), iq4_values(nib_hi4(q)), s, s, 4u * j, 16u + 4u * j);
}

// Integer path: the block (one sub-block of 32) dotted with 8-bit activations.
fn blk_idot(blk: u32, sb: u32, x: Xq8) -> f32 {
    let h = blk_load(blk, 0u);
    return h.d * x.d * f32(iq4_block_idot(h.qs, x));
}
