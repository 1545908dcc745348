// Q3_K (110 bytes / 256 weights): hmask[32] @0 (high bits), qs[64] @32 (low 2 bits),
// scales[12] @96 (16 packed 6-bit signed scales), d: f16 @108.
// Weight e = 128h + 32s + l (h: half, s: 0..4, l: 0..32) is
//     d * (scale[e/16] - 32) * (((qs[32h + l] >> 2s) & 3) - (bit (4h + s) of hmask[l] ? 0 : 4)).
// Groups pair the shifts as Q2_K does: weights e and e + 32, e = 128h + 64p + l0.
const HAS_MIN: bool = false;

struct Blk {
    d: f32,
    s: vec3<u32>, // the 12 packed scale bytes
}

fn blk_load(blk: u32, g: u32) -> Blk {
    return Blk(ld_f16(blk + 108u), vec3<u32>(ld_u32(blk + 96u), ld_u32(blk + 100u), ld_u32(blk + 104u)));
}

// 6-bit scale i: low 4 bits are nibble i/8 of byte i%8, high 2 bits are bits 2(i/4).. of byte
// 8 + i%4 (ggml's kmask shuffling, written per scale).
fn q3k_scale(h: Blk, i: u32) -> f32 {
    let b = i & 7u;
    let lo = (h.s[b / 4u] >> (8u * (b % 4u) + 4u * (i / 8u))) & 15u;
    let hi = (h.s.z >> (8u * (i & 3u) + 2u * (i / 4u))) & 3u;
    return f32(i32(lo | (hi << 4u)) - 32);
}

fn q3k_q(q: u32, hm: u32, s: u32, hbit: u32) -> vec4<f32> {
    let lo = (bytes4(q) >> vec4<u32>(2u * s)) & vec4<u32>(3u);
    let hi = (bytes4(hm) >> vec4<u32>(hbit)) & vec4<u32>(1u);
    return vec4<f32>(lo + 4u * hi) - 4.0;
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let hf = j / 16u;
    let p = (j / 8u) % 2u;
    let l0 = 4u * (j % 8u);
    let q = ld_u32(blk + 32u + 32u * hf + l0);
    let hm = ld_u32(blk + l0);
    let e = 128u * hf + 64u * p + l0;
    let s = 2u * p;
    let a = q3k_q(q, hm, s, 4u * hf + s);
    let b = q3k_q(q, hm, s + 1u, 4u * hf + s + 1u);
    let sa = vec2<f32>(h.d * q3k_scale(h, e / 16u), 0.0);
    let sb = vec2<f32>(h.d * q3k_scale(h, (e + 32u) / 16u), 0.0);
    return Dq8(a, b, sa, sb, e, e + 32u);
}

// Integer path: sub-block sb (weights 32sb + l = 128h + 32s + l, h = sb / 4, s = sb % 4) dotted
// with 8-bit activations. The quants go in as 0..7 (low bits | high bit << 2); the -4 meets the
// sum of each half's activations.
fn blk_idot(blk: u32, sb: u32, x: Xq8) -> f32 {
    let hf = sb / 4u;
    let s = sb % 4u;
    let hbit = 4u * hf + s;
    var ab = vec2<i32>(0);
    for (var k = 0u; k < 4u; k++) {
        for (var half = 0u; half < 2u; half++) {
            let low = (ld_u32(blk + 32u + 32u * hf + 16u * half + 4u * k) >> (2u * s)) & 0x03030303u;
            let high = (ld_u32(blk + 16u * half + 4u * k) >> hbit) & 0x01010101u;
            ab[half] += dot4I8Packed(low | (high << 2u), x.w[k + 4u * half]);
        }
    }
    let h = blk_load(blk, 0u);
    let d = ab - 4 * xq8_half_sums(x);
    return h.d * x.d * (q3k_scale(h, 2u * sb) * f32(d.x) + q3k_scale(h, 2u * sb + 1u) * f32(d.y));
}
