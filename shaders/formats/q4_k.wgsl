// Q4_K (144 bytes / 256 weights): d: f16 @0, dmin: f16 @2, scales[12] @4 (8 packed 6-bit
// scale/min pairs, see kq_scale_min), qs[128] @16. Blocks are 4-aligned.
// In chunk c (0..4) of 64 weights, weight 64c + l (l < 32) is d * sc[2c] * (qs[32c + l] & 15)
// - dmin * m[2c], and weight 64c + 32 + l uses the high nibble with pair 2c + 1.
// Group j reads qs[32c + l0 ..+4] (c = j/8, l0 = 4 (j % 8)): weights 64c + l0 and 64c + 32 + l0.
const HAS_MIN: bool = true;

struct Blk {
    dm: vec2<f32>,
    s: vec3<u32>, // the 12 packed scale bytes
}

fn blk_load(blk: u32) -> Blk {
    return Blk(f16x2(ld_a32(blk)), vec3<u32>(ld_a32(blk + 4u), ld_a32(blk + 8u), ld_a32(blk + 12u)));
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let c = j / 8u;
    let l0 = 4u * (j % 8u);
    let sa = h.dm * kq_scale_min(h.s, 2u * c);
    let sb = h.dm * kq_scale_min(h.s, 2u * c + 1u);
    let q = ld_a32(blk + 16u + 32u * c + l0);
    let a = vec4<f32>(nib_lo4(q));
    let b = vec4<f32>(nib_hi4(q));
    return Dq8(a, b, vec2<f32>(sa.x, -sa.y), vec2<f32>(sb.x, -sb.y), 64u * c + l0, 64u * c + 32u + l0);
}
