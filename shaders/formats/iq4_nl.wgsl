// IQ4_NL (18 bytes / 32 weights): d: f16 @0, qs[16] @2. Like Q4_0, but each nibble indexes the
// non-linear codebook (iq4_values) instead of being offset by 8.
fn dq8(blk: u32, j: u32) -> Dq8 {
    let d = ld_f16(blk);
    let q = ld_u32(blk + 2u + 4u * j);
    return Dq8(d * iq4_values(nib_lo4(q)), d * iq4_values(nib_hi4(q)), 4u * j, 16u + 4u * j);
}
