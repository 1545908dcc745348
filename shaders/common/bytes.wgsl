// Byte loaders over raw GGUF blocks.
//
// Every kernel that reads quantized weights reads them through `wq_at(i)`, the i-th 16 bytes of
// the tensor chunk (common/w_storage.wgsl or w_texture.wgsl): the tensor's bytes unchanged
// (little-endian, padded to 16 bytes plus one spare vec4 so that the two-load reads below never
// leave the chunk). Weights are read 16 bytes at a time:
// on CPU Vulkan drivers (lavapipe) a vec4 load streams about twice as fast as four u32 loads, and
// GPUs coalesce either. Blocks of 18, 22, 34, 110 or 210 bytes start at any even offset, so
// multi-byte fields are assembled from the aligned vec4s around them. Quant bytes are never
// viewed as f16 arrays: NaN canonicalisation would corrupt them.

// The 32-bit word at word index `i`.
fn wq_word(i: u32) -> u32 {
    return wq_at(i >> 2u)[i & 3u];
}

// Four consecutive words starting at word `k` (0..4) of the 8 words `a`, `c`.
fn window4(a: vec4<u32>, c: vec4<u32>, k: u32) -> vec4<u32> {
    let v1 = vec4<u32>(a.yzw, c.x);
    let v2 = vec4<u32>(a.zw, c.xy);
    let v3 = vec4<u32>(a.w, c.xyz);
    return select(select(select(select(c, v3, k == 3u), v2, k == 2u), v1, k == 1u), a, k == 0u);
}

// The 16 bytes at byte `r` (0..=16) of the 32 bytes `a`, `c`.
fn window16(a: vec4<u32>, c: vec4<u32>, r: u32) -> vec4<u32> {
    let k = r >> 2u;
    let v = window4(a, c, k);
    let s = (r & 3u) << 3u;
    let n = window4(a, c, k + 1u);
    // `(n << 1) << (31 - s)` is `n << (32 - s)` without the shift-by-32 that WGSL reduces mod 32.
    return select((v >> vec4<u32>(s)) | ((n << vec4<u32>(1u)) << vec4<u32>(31u - s)), v, s == 0u);
}

// The 16 bytes at byte offset `b` (any alignment): one aligned vec4 load, or two and a shift.
fn ld_u32x4(b: u32) -> vec4<u32> {
    let q = b >> 4u;
    let a = wq_at(q);
    let r = b & 15u;
    if (r == 0u) {
        return a;
    }
    return window16(a, wq_at(q + 1u), r);
}

// A block read whole: the aligned vec4s from the one holding its first byte on, three of them
// (48 bytes: any block of up to 34 bytes at an even offset). Small blocks sit at any offset, so
// reading them field by field costs a load or two per field; on CPU devices a load is the
// expensive part of a matvec, and the fields are then cut out of these registers.
struct Span {
    a: vec4<u32>,
    b: vec4<u32>,
    c: vec4<u32>,
}

// The span of the block at byte `blk`; fields are addressed from `blk & 15` (see `span_*`).
fn ld_span(blk: u32) -> Span {
    let q = blk >> 4u;
    return Span(wq_at(q), wq_at(q + 1u), wq_at(q + 2u));
}

// The same for blocks that end within 32 bytes of the aligned start (`(blk & 15) + size <= 32`):
// two loads, the third vec4 repeats the second and is never selected.
fn ld_span2(blk: u32) -> Span {
    let q = blk >> 4u;
    let b = wq_at(q + 1u);
    return Span(wq_at(q), b, b);
}

// The 16 bytes at byte `off` (0..=32) of a span.
fn span_u32x4(s: Span, off: u32) -> vec4<u32> {
    let hi = off > 16u;
    return window16(select(s.a, s.b, hi), select(s.b, s.c, hi), select(off, off - 16u, hi));
}

// The u16 at an even byte `off` (0..=14) of a span.
fn span_u16(s: Span, off: u32) -> u32 {
    return (s.a[off >> 2u] >> ((off & 2u) << 3u)) & 0xffffu;
}

// Word `w` (0..8) of the 32 bytes held as the vec4s `lo`, `hi` (a load unit's cached quants).
fn word8(lo: vec4<u32>, hi: vec4<u32>, w: u32) -> u32 {
    return select(lo, hi, w >= 4u)[w % 4u];
}

// The 4 bytes at byte offset `b` (any alignment) as one little-endian u32.
fn ld_u32(b: u32) -> u32 {
    let i = b >> 2u;
    let s = (b & 3u) << 3u;
    // A branch, not a blend: neighbouring invocations usually read blocks of the same alignment
    // (rows of whole words), so the aligned case costs one load.
    if (s == 0u) {
        return wq_word(i);
    }
    return (wq_word(i) >> s) | ((wq_word(i + 1u) << 1u) << (31u - s));
}

// The 4 bytes at a 4-aligned byte offset (formats whose block size is a multiple of 4).
fn ld_a32(b: u32) -> u32 {
    return wq_word(b >> 2u);
}

// The u16 at an even byte offset (every 16-bit field of every format is at an even offset).
fn ld_u16(b: u32) -> u32 {
    return (wq_word(b >> 2u) >> ((b & 2u) << 3u)) & 0xffffu;
}

// The f16 at an even byte offset, as f32.
fn ld_f16(b: u32) -> f32 {
    return f16_to_f32(ld_u16(b));
}

// The four bytes of `w`, lowest first.
fn bytes4(w: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
}

// The four bytes of `w` as signed values.
fn sbytes4(w: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// Low nibbles of the four bytes of `w`.
fn nib_lo4(w: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xfu);
}

// High nibbles of the four bytes of `w`.
fn nib_hi4(w: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(0xfu);
}

// Eight weights decoded from one group of a block: weight = s.x * q + s.y, with `qa` (scale and
// offset `sa`) holding elements ia..ia+3 of the block and `qb` (`sb`) elements ib..ib+3. Kernels
// dot q with the activations first and apply the scale once per 4 weights; formats without an
// offset declare `const HAS_MIN = false` and set s.y = 0. Which elements a group covers is the
// format's choice (the one that reads the fewest bytes); a group never leaves its SPAN-aligned
// window of the block.
struct Dq8 {
    qa: vec4<f32>,
    qb: vec4<f32>,
    sa: vec2<f32>,
    sb: vec2<f32>,
    ia: u32,
    ib: u32,
}

// The decoded weights themselves (for kernels that store them, such as matmul tiles).
fn dq8_wa(d: Dq8) -> vec4<f32> {
    return d.sa.x * d.qa + d.sa.y;
}

fn dq8_wb(d: Dq8) -> vec4<f32> {
    return d.sb.x * d.qb + d.sb.y;
}

// Four 5-bit quants (Q5_0, Q5_1): the low nibbles of `w`'s four bytes, with bits 0..3 of `bits`
// as their fifth bits. The quants are assembled in one word and split once: multiplying by
// 0x02040810 (bits 4, 11, 18, 25) moves bit k of `bits` to bit 8k + 4, and no two of the partial
// products meet, so there are no carries. On CPU devices this is a third of the instructions of
// building each lane separately.
fn q5_quants(w: u32, bits: u32) -> vec4<f32> {
    return vec4<f32>(bytes4(q5_word(w, bits)));
}

// The same four 5-bit quants packed in one word, a byte each (the integer path's form).
fn q5_word(w: u32, bits: u32) -> u32 {
    let fifth = ((bits & 0xfu) * 0x02040810u) & 0x10101010u;
    return (w & 0x0f0f0f0fu) | fifth;
}

// The low (`sh` = 0) or high (`sh` = 4) nibbles of the four bytes of `w`, a byte each.
fn nibbles_word(w: u32, sh: u32) -> u32 {
    return (w >> sh) & 0x0f0f0f0fu;
}

// Every format decoder provides
//     struct Blk { ... }                         the header of a load unit (scales, mins, bits)
//     fn blk_load(blk: u32, g: u32) -> Blk       reads it for the load unit holding group g of
//                                                the block at byte blk
//     fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8  decodes group j (0 <= j < GPB) of that unit
// so kernels that walk a block read each header once. A load unit is LU consecutive groups
// (generated from the format table). Kernels set UG, the groups they decode per blk_load: at
// most LU, all inside one unit (g0 % UG == 0, UG dividing LU). Formats that cache a unit's quants
// do so only when UG = LU; any other UG reads them group by group. Formats with 32-weight blocks
// load the whole block into the header (a handful of vec4s, each read once; LU = GPB); most
// k-quants load only their scales (LU = GPB); Q4_K, Q5_K and Q6_K load a 64-weight unit's quants
// with its scales when UG = LU = 8, a few vec4 loads where a group at a time would take eight or
// more word loads. dq8 is the one-shot form.
fn dq8(blk: u32, j: u32) -> Dq8 {
    return blk_dq8(blk, blk_load(blk, j), j);
}

// The 32 activations of one sub-block quantized to 8 bits for the integer matvec
// (shaders/quantize_q8.wgsl): four packed i8 per word, lowest first, with their scale `d`
// (activation = d · q) and `dsum` = d · Σq (for weights with an offset). A format's `blk_idot`
// dots them with its quants four at a time (dot4I8Packed).
struct Xq8 {
    w: array<u32, 8>,
    d: f32,
    dsum: f32,
}

// Σq over each half (16 activations) of a sub-block: the term of an offset per group of 16.
fn xq8_half_sums(x: Xq8) -> vec2<i32> {
    var sums = vec2<i32>(0);
    for (var k = 0u; k < 4u; k++) {
        sums += vec2<i32>(dot4I8Packed(0x01010101u, x.w[k]), dot4I8Packed(0x01010101u, x.w[k + 4u]));
    }
    return sums;
}

// The integer dot of a 32-weight block of 4-bit quants (Q4_0, Q4_1: the low nibbles of qs are
// weights 0..16, the high ones 16..32) with a sub-block of 8-bit activations.
fn nibble_block_idot(qs: vec4<u32>, x: Xq8) -> i32 {
    var acc = 0;
    for (var i = 0u; i < 4u; i++) {
        acc += dot4I8Packed(nibbles_word(qs[i], 0u), x.w[i]) + dot4I8Packed(nibbles_word(qs[i], 4u), x.w[i + 4u]);
    }
    return acc;
}

// The same for 5-bit quants (Q5_0, Q5_1), their fifth bits in `qh` (bit i for weight i).
fn q5_block_idot(qs: vec4<u32>, qh: u32, x: Xq8) -> i32 {
    var acc = 0;
    for (var i = 0u; i < 4u; i++) {
        let hb = qh >> (4u * i);
        acc += dot4I8Packed(q5_word(qs[i], hb), x.w[i]) + dot4I8Packed(q5_word(qs[i] >> 4u, hb >> 16u), x.w[i + 4u]);
    }
    return acc;
}
