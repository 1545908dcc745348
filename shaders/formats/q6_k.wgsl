// Q6_K (210 bytes / 256 weights): ql[128] @0 (low 4 bits), qh[64] @128 (high 2 bits),
// scales: i8[16] @192 (one per 16 weights), d: f16 @208.
// In half h (128 weights; ql += 64h, qh += 32h), for l < 32:
//   weight l      = low nibble of ql[l]      | bits 0-1 of qh[l] << 4
//   weight l + 32 = low nibble of ql[l + 32] | bits 2-3 of qh[l] << 4
//   weight l + 64 = high nibble of ql[l]     | bits 4-5 of qh[l] << 4
//   weight l + 96 = high nibble of ql[l + 32]| bits 6-7 of qh[l] << 4
// each times d * scales[e / 16] after subtracting 32.
// Group j (h = j/16, q = (j/8) % 2, l0 = 4 (j % 8)) reads the words ql[64h + 32q + l0 ..+4] and
// qh[32h + l0 ..+4]: both nibbles of the ql word give weights e = 128h + 32q + l0 and e + 64.
const HAS_MIN: bool = false;

struct Blk {
    d: f32,
    sc: vec4<u32>, // the 16 signed scale bytes
}

fn blk_load(blk: u32) -> Blk {
    let sc = vec4<u32>(ld_u32(blk + 192u), ld_u32(blk + 196u), ld_u32(blk + 200u), ld_u32(blk + 204u));
    return Blk(ld_f16(blk + 208u), sc);
}

// The four 6-bit quants from nibble `nib` of `ql` and bits hsh..hsh+2 of `qh`, minus 32.
fn q6k_q(ql: u32, qh: u32, nib: u32, hsh: u32) -> vec4<f32> {
    let lo = (bytes4(ql) >> vec4<u32>(4u * nib)) & vec4<u32>(15u);
    let hi = (bytes4(qh) >> vec4<u32>(hsh)) & vec4<u32>(3u);
    return vec4<f32>(lo | (hi << vec4<u32>(4u))) - 32.0;
}

// (d * scale, 0) of the 16 weights around element e.
fn q6k_scale(h: Blk, e: u32) -> vec2<f32> {
    let i = e / 16u;
    let sc = f32(bitcast<i32>(h.sc[i / 4u] << (24u - 8u * (i % 4u))) >> 24u);
    return vec2<f32>(h.d * sc, 0.0);
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let hf = j / 16u;
    let q = (j / 8u) % 2u;
    let l0 = 4u * (j % 8u);
    let ql = ld_u32(blk + 64u * hf + 32u * q + l0);
    let qh = ld_u32(blk + 128u + 32u * hf + l0);
    let e = 128u * hf + 32u * q + l0;
    let a = q6k_q(ql, qh, 0u, 2u * q);
    let b = q6k_q(ql, qh, 1u, 4u + 2u * q);
    return Dq8(a, b, q6k_scale(h, e), q6k_scale(h, e + 64u), e, e + 64u);
}
