// Q4_K (144 bytes / 256 weights): d: f16 @0, dmin: f16 @2, scales[12] @4 (8 packed 6-bit
// scale/min pairs, see kq_scale_min), qs[128] @16. Blocks are 4-aligned.
// In chunk c (0..4) of 64 weights, weight 64c + l (l < 32) is d * sc[2c] * (qs[32c + l] & 15)
// - dmin * m[2c], and weight 64c + 32 + l uses the high nibble with pair 2c + 1.
// Group j reads qs[32c + l0 ..+4] (c = j/8, l0 = 4 (j % 8)): weights 64c + l0 and 64c + 32 + l0.
fn dq8(blk: u32, j: u32) -> Dq8 {
    let c = j / 8u;
    let l0 = 4u * (j % 8u);
    let dm = f16x2(ld_a32(blk));
    let s0 = ld_a32(blk + 4u);
    let s1 = ld_a32(blk + 8u);
    let s2 = ld_a32(blk + 12u);
    let sa = kq_scale_min(s0, s1, s2, 2u * c);
    let sb = kq_scale_min(s0, s1, s2, 2u * c + 1u);
    let q = ld_a32(blk + 16u + 32u * c + l0);
    let a = dm.x * sa.x * vec4<f32>(nib_lo4(q)) - dm.y * sa.y;
    let b = dm.x * sb.x * vec4<f32>(nib_hi4(q)) - dm.y * sb.y;
    return Dq8(a, b, 64u * c + l0, 64u * c + 32u + l0);
}
