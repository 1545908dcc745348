// IQ4_XS (136 bytes / 256 weights): d: f16 @0, scales_h: u16 @2, scales_l[4] @4, qs[128] @8.
// Sub-block b (32 weights) has the 6-bit scale ls = nibble (b % 2) of scales_l[b / 2]
// | bits 2b..2b+2 of scales_h << 4, and weights d * (ls - 32) * codebook[nibble], nibbles
// ordered as in IQ4_NL within qs[16b .. 16b + 16]. Blocks are 4-aligned.
const HAS_MIN: bool = false;

struct Blk {
    d: f32,
    sh: u32, // scales_h
    sl: u32, // scales_l, four bytes
}

fn blk_load(blk: u32, g: u32) -> Blk {
    let w0 = ld_a32(blk);
    return Blk(f16_to_f32(w0 & 0xffffu), w0 >> 16u, ld_a32(blk + 4u));
}

// The scale of sub-block sb: d * (ls - 32).
fn blk_scale(h: Blk, sb: u32) -> f32 {
    let lo = (h.sl >> (4u * sb)) & 15u;
    let hi = (h.sh >> (2u * sb)) & 3u;
    return h.d * f32(i32(lo | (hi << 4u)) - 32);
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let sb = j / 4u;
    let g = j % 4u;
    let s = vec2<f32>(blk_scale(h, sb), 0.0);
    let q = ld_a32(blk + 8u + 16u * sb + 4u * g);
    return Dq8(iq4_values(nib_lo4(q)), iq4_values(nib_hi4(q)), s, s, 32u * sb + 4u * g, 32u * sb + 16u + 4u * g);
}

// Integer path: sub-block sb dotted with 8-bit activations.
fn blk_idot(blk: u32, sb: u32, x: Xq8) -> f32 {
    let q = blk + 8u + 16u * sb;
    let qs = vec4<u32>(ld_a32(q), ld_a32(q + 4u), ld_a32(q + 8u), ld_a32(q + 12u));
    return blk_scale(blk_load(blk, 0u), sb) * x.d * f32(iq4_block_idot(qs, x));
}
