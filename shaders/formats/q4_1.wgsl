// Q4_1 (20 bytes / 32 weights): d: f16 @0, m: f16 @2, qs[16] @4; weight = d * nibble + m.
// Nibble order as Q4_0. Blocks are 4-byte aligned. The header holds the whole block.
const HAS_MIN: bool = true;

struct Blk {
    dm: vec2<f32>,
    qs: vec4<u32>,
}

fn blk_load(blk: u32, g: u32) -> Blk {
    let s = ld_span2(blk);
    let r = blk & 15u;
    return Blk(f16x2(s.a[r >> 2u]), span_u32x4(s, r + 4u));
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let q = h.qs[j];
    return Dq8(vec4<f32>(nib_lo4(q)), vec4<f32>(nib_hi4(q)), h.dm, h.dm, 4u * j, 16u + 4u * j);
}

// Integer path: the block (one sub-block of 32) dotted with 8-bit activations; the minimum goes
// through the activations' sum.
fn blk_idot(blk: u32, sb: u32, x: Xq8) -> f32 {
    let h = blk_load(blk, 0u);
    return h.dm.x * x.d * f32(nibble_block_idot(h.qs, x)) + h.dm.y * x.dsum;
}
