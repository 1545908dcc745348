// Q8_0 (34 bytes / 32 weights): d: f16 @0, qs: i8[32] @2; weight i = d * qs[i].
// Group j (0..4) is weights 8j..8j+8. The header holds the whole block.
const HAS_MIN: bool = false;

struct Blk {
    d: f32,
    lo: vec4<u32>, // qs[0..16]
    hi: vec4<u32>, // qs[16..32]
}

fn blk_load(blk: u32, g: u32) -> Blk {
    let s = ld_span(blk);
    let r = blk & 15u;
    return Blk(f16_to_f32(span_u16(s, r)), span_u32x4(s, r + 2u), span_u32x4(s, r + 18u));
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let q = select(h.lo, h.hi, j >= 2u);
    let k = 2u * (j & 1u);
    let s = vec2<f32>(h.d, 0.0);
    return Dq8(sbytes4(q[k]), sbytes4(q[k + 1u]), s, s, 8u * j, 8u * j + 4u);
}

// Integer path: the block (one sub-block of 32) dotted with 8-bit activations; the quants are
// packed i8 already.
fn blk_idot(blk: u32, sb: u32, x: Xq8) -> f32 {
    let h = blk_load(blk, 0u);
    var acc = 0;
    for (var i = 0u; i < 4u; i++) {
        acc += dot4I8Packed(h.lo[i], x.w[i]) + dot4I8Packed(h.hi[i], x.w[i + 4u]);
    }
    return h.d * x.d * f32(acc);
}
