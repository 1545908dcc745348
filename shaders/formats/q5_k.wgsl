// Q5_K (176 bytes / 256 weights): d: f16 @0, dmin: f16 @2, scales[12] @4 (as Q4_K), qh[32] @16,
// qs[128] @48. 176 bytes is eleven vec4s, so blocks are 16-aligned within their tensor. As Q4_K
// with a fifth bit: weight 64c + l takes bit 2c of qh[l], weight 64c + 32 + l takes bit 2c + 1.
// The load unit is a chunk (LU = 8 groups), as for Q4_K: its scale pairs, and, when a kernel
// decodes whole chunks (UG = LU), its 32 qs bytes and the 32 qh bytes as four aligned vec4s.
const HAS_MIN: bool = true;

struct Blk {
    sa: vec2<f32>,  // (d * scale, -dmin * min) of the chunk's low nibbles
    sb: vec2<f32>,  // and of its high nibbles
    lo: vec4<u32>,  // qs[32c .. 32c + 16] (loaded when UG = LU)
    hi: vec4<u32>,  // qs[32c + 16 .. 32c + 32]
    hlo: vec4<u32>, // qh[0 .. 16]
    hhi: vec4<u32>, // qh[16 .. 32]
}

fn blk_load(blk: u32, g: u32) -> Blk {
    let c = g / 8u;
    let v = blk >> 4u;
    let head = wq_at(v);
    let dm = f16x2(head.x) * vec2<f32>(1.0, -1.0);
    let sa = dm * kq_scale_min(head.yzw, 2u * c);
    let sb = dm * kq_scale_min(head.yzw, 2u * c + 1u);
    var h = Blk(sa, sb, vec4<u32>(), vec4<u32>(), vec4<u32>(), vec4<u32>());
    if (UG == LU) {
        h.hlo = wq_at(v + 1u);
        h.hhi = wq_at(v + 2u);
        h.lo = wq_at(v + 3u + 2u * c);
        h.hi = wq_at(v + 4u + 2u * c);
    }
    return h;
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let c = j / 8u;
    let w = j % 8u;
    var q: u32;
    var qh: u32;
    if (UG == LU) {
        q = word8(h.lo, h.hi, w);
        qh = word8(h.hlo, h.hhi, w);
    } else {
        q = ld_a32(blk + 48u + 32u * c + 4u * w);
        qh = ld_a32(blk + 16u + 4u * w);
    }
    // The fifth bits: bit 2c (low nibbles) and 2c + 1 (high nibbles) of each byte of qh, moved to
    // bit 4 of the byte and joined to the nibbles in one word.
    let ha = ((qh >> (2u * c)) & 0x01010101u) << 4u;
    let hh = ((qh >> (2u * c + 1u)) & 0x01010101u) << 4u;
    let a = vec4<f32>(bytes4((q & 0x0f0f0f0fu) | ha));
    let b = vec4<f32>(bytes4(((q >> 4u) & 0x0f0f0f0fu) | hh));
    let l0 = 4u * w;
    return Dq8(a, b, h.sa, h.sb, 64u * c + l0, 64u * c + 32u + l0);
}

// Integer path: sub-block `sb` (0..8) as Q4_K's, each quant's fifth bit being bit `sb` of its
// qh byte.
fn blk_idot(blk: u32, sb: u32, x: Xq8) -> f32 {
    let v = blk >> 4u;
    let head = wq_at(v);
    let dm = f16x2(head.x);
    let sm = kq_scale_min(head.yzw, sb);
    let h0 = wq_at(v + 1u);
    let h1 = wq_at(v + 2u);
    let q0 = wq_at(v + 3u + 2u * (sb / 2u));
    let q1 = wq_at(v + 4u + 2u * (sb / 2u));
    let sh = 4u * (sb % 2u);
    var acc = 0;
    for (var i = 0u; i < 4u; i++) {
        let a = nibbles_word(q0[i], sh) | (((h0[i] >> sb) & 0x01010101u) << 4u);
        let b = nibbles_word(q1[i], sh) | (((h1[i] >> sb) & 0x01010101u) << 4u);
        acc += dot4I8Packed(a, x.w[i]) + dot4I8Packed(b, x.w[i + 4u]);
    }
    return dm.x * sm.x * x.d * f32(acc) - dm.y * sm.y * x.dsum;
}
