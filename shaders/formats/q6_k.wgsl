// Q6_K (210 bytes / 256 weights): ql[128] @0 (low 4 bits), qh[64] @128 (high 2 bits),
// scales: i8[16] @192 (one per 16 weights), d: f16 @208.
// In half h (128 weights; ql += 64h, qh += 32h), for l < 32:
//   weight l      = low nibble of ql[l]      | bits 0-1 of qh[l] << 4
//   weight l + 32 = low nibble of ql[l + 32] | bits 2-3 of qh[l] << 4
//   weight l + 64 = high nibble of ql[l]     | bits 4-5 of qh[l] << 4
//   weight l + 96 = high nibble of ql[l + 32]| bits 6-7 of qh[l] << 4
// each times d * scales[e / 16] after subtracting 32.
// Group j (h = j/16, n = (j/8) % 2 picks the nibble, l0 = 4 (j % 8)) gives weights
// e = 128h + 64n + l0 and e + 32.
fn q6k_part(blk: u32, ql: u32, qh: u32, d: f32, e: u32, nib: u32, hsh: u32) -> vec4<f32> {
    let lo = (bytes4(ql) >> vec4<u32>(4u * nib)) & vec4<u32>(15u);
    let hi = (bytes4(qh) >> vec4<u32>(hsh)) & vec4<u32>(3u);
    let sc = f32(ld_i8(blk + 192u + e / 16u));
    return d * sc * (vec4<f32>(lo | (hi << vec4<u32>(4u))) - 32.0);
}

fn dq8(blk: u32, j: u32) -> Dq8 {
    let h = j / 16u;
    let n = (j / 8u) % 2u;
    let l0 = 4u * (j % 8u);
    let d = ld_f16(blk + 208u);
    let qa = ld_u32(blk + 64u * h + l0);
    let qb = ld_u32(blk + 64u * h + 32u + l0);
    let qh = ld_u32(blk + 128u + 32u * h + l0);
    let e = 128u * h + 64u * n + l0;
    let a = q6k_part(blk, qa, qh, d, e, n, 4u * n);
    let b = q6k_part(blk, qb, qh, d, e + 32u, n, 4u * n + 2u);
    return Dq8(a, b, e, e + 32u);
}
