// Q8_0 (34 bytes / 32 weights): d: f16 @0, qs: i8[32] @2; weight i = d * qs[i].
// Group j (0..4) is weights 8j..8j+8.
struct Blk {
    d: f32,
}

fn blk_load(blk: u32) -> Blk {
    return Blk(ld_f16(blk));
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let q = ld_u64(blk + 2u + 8u * j);
    return Dq8(h.d * sbytes4(q.x), h.d * sbytes4(q.y), 8u * j, 8u * j + 4u);
}
