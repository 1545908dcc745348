// Q4_K (144 bytes / 256 weights): d: f16 @0, dmin: f16 @2, scales[12] @4 (8 packed 6-bit
// scale/min pairs, see kq_scale_min), qs[128] @16. 144 bytes is nine vec4s, so blocks are
// 16-aligned within their tensor (rows are whole blocks).
// In chunk c (0..4) of 64 weights, weight 64c + l (l < 32) is d * sc[2c] * (qs[32c + l] & 15)
// - dmin * m[2c], and weight 64c + 32 + l uses the high nibble with pair 2c + 1.
// Group j reads qs[32c + l0 ..+4] (c = j/8, l0 = 4 (j % 8)): weights 64c + l0 and 64c + 32 + l0.
// The load unit is a chunk (LU = 8 groups): its two scale pairs, and, when a kernel decodes
// whole chunks (UG = LU), its 32 quant bytes as two vec4s.
const HAS_MIN: bool = true;

struct Blk {
    sa: vec2<f32>, // (d * scale, -dmin * min) of the chunk's low nibbles
    sb: vec2<f32>, // and of its high nibbles
    lo: vec4<u32>, // qs[32c .. 32c + 16] (loaded when UG = LU)
    hi: vec4<u32>, // qs[32c + 16 .. 32c + 32]
}

fn blk_load(blk: u32, g: u32) -> Blk {
    let c = g / 8u;
    let head = wq_at(blk >> 4u);
    let dm = f16x2(head.x) * vec2<f32>(1.0, -1.0);
    var h = Blk(dm * kq_scale_min(head.yzw, 2u * c), dm * kq_scale_min(head.yzw, 2u * c + 1u), vec4<u32>(), vec4<u32>());
    if (UG == LU) {
        let q = (blk >> 4u) + 1u + 2u * c;
        h.lo = wq_at(q);
        h.hi = wq_at(q + 1u);
    }
    return h;
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let c = j / 8u;
    let l0 = 4u * (j % 8u);
    var q: u32;
    if (UG == LU) {
        q = word8(h.lo, h.hi, j % 8u);
    } else {
        q = ld_a32(blk + 16u + 32u * c + l0);
    }
    return Dq8(vec4<f32>(nib_lo4(q)), vec4<f32>(nib_hi4(q)), h.sa, h.sb, 64u * c + l0, 64u * c + 32u + l0);
}

// Integer path: sub-block `sb` (0..8, 32 weights: the low nibbles of chunk sb/2 when sb is even,
// the high ones when odd) dotted with 8-bit activations, with its scale/min pair.
fn blk_idot(blk: u32, sb: u32, x: Xq8) -> f32 {
    let v = blk >> 4u;
    let head = wq_at(v);
    let dm = f16x2(head.x);
    let sm = kq_scale_min(head.yzw, sb);
    let q0 = wq_at(v + 1u + 2u * (sb / 2u));
    let q1 = wq_at(v + 2u + 2u * (sb / 2u));
    let sh = 4u * (sb % 2u);
    var acc = 0;
    for (var i = 0u; i < 4u; i++) {
        acc += dot4I8Packed(nibbles_word(q0[i], sh), x.w[i]) + dot4I8Packed(nibbles_word(q1[i], sh), x.w[i + 4u]);
    }
    return dm.x * sm.x * x.d * f32(acc) - dm.y * sm.y * x.dsum;
}
