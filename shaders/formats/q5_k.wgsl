// Q5_K (176 bytes / 256 weights): d: f16 @0, dmin: f16 @2, scales[12] @4 (as Q4_K), qh[32] @16,
// qs[128] @48. Blocks are 4-aligned. As Q4_K with a fifth bit: weight 64c + l takes bit 2c of
// qh[l], weight 64c + 32 + l takes bit 2c + 1.
const HAS_MIN: bool = true;

struct Blk {
    dm: vec2<f32>,
    s: vec3<u32>, // the 12 packed scale bytes
}

fn blk_load(blk: u32, g: u32) -> Blk {
    return Blk(f16x2(ld_a32(blk)), vec3<u32>(ld_a32(blk + 4u), ld_a32(blk + 8u), ld_a32(blk + 12u)));
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let c = j / 8u;
    let l0 = 4u * (j % 8u);
    let sa = h.dm * kq_scale_min(h.s, 2u * c);
    let sb = h.dm * kq_scale_min(h.s, 2u * c + 1u);
    let qh = bytes4(ld_a32(blk + 16u + l0));
    let q = ld_a32(blk + 48u + 32u * c + l0);
    let ha = ((qh >> vec4<u32>(2u * c)) & vec4<u32>(1u)) << vec4<u32>(4u);
    let hb = ((qh >> vec4<u32>(2u * c + 1u)) & vec4<u32>(1u)) << vec4<u32>(4u);
    let a = vec4<f32>(nib_lo4(q) | ha);
    let b = vec4<f32>(nib_hi4(q) | hb);
    return Dq8(a, b, vec2<f32>(sa.x, -sa.y), vec2<f32>(sb.x, -sb.y), 64u * c + l0, 64u * c + 32u + l0);
}
