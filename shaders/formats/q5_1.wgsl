// Q5_1 (24 bytes / 32 weights): d: f16 @0, m: f16 @2, qh: u32 @4, qs[16] @8;
// weight = d * q5 + m with the 5-bit q5 built as in Q5_0. Blocks are 4-byte aligned.
struct Blk {
    dm: vec2<f32>,
    qh: u32,
}

fn blk_load(blk: u32) -> Blk {
    return Blk(f16x2(ld_a32(blk)), ld_a32(blk + 4u));
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let q = ld_a32(blk + 8u + 4u * j);
    let sh = vec4<u32>(0u, 1u, 2u, 3u) + 4u * j;
    let ha = ((vec4<u32>(h.qh) >> sh) & vec4<u32>(1u)) << vec4<u32>(4u);
    let hb = ((vec4<u32>(h.qh) >> (sh + 16u)) & vec4<u32>(1u)) << vec4<u32>(4u);
    let a = h.dm.x * vec4<f32>(nib_lo4(q) | ha) + h.dm.y;
    let b = h.dm.x * vec4<f32>(nib_hi4(q) | hb) + h.dm.y;
    return Dq8(a, b, 4u * j, 16u + 4u * j);
}
