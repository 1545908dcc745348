// Q4_1 (20 bytes / 32 weights): d: f16 @0, m: f16 @2, qs[16] @4; weight = d * nibble + m.
// Nibble order as Q4_0. Blocks are 4-byte aligned.
fn dq8(blk: u32, j: u32) -> Dq8 {
    let dm = f16x2(ld_a32(blk));
    let q = ld_a32(blk + 4u + 4u * j);
    let a = dm.x * vec4<f32>(nib_lo4(q)) + dm.y;
    let b = dm.x * vec4<f32>(nib_hi4(q)) + dm.y;
    return Dq8(a, b, 4u * j, 16u + 4u * j);
}
