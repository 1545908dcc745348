// F16: IEEE half floats, two per word. Virtual block of 8 elements (QK = 8, QB = 16); rows are
// 16-byte aligned because row lengths are multiples of 8. No per-block header.
const HAS_MIN: bool = false;

struct Blk {
    unused: u32,
}

fn blk_load(blk: u32, g: u32) -> Blk {
    return Blk(0u);
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    // A virtual block is 16 bytes at a 16-byte offset: one aligned vec4 load.
    let w = wq_at(blk >> 4u);
    let a = vec4<f32>(f16x2(w.x), f16x2(w.y));
    let b = vec4<f32>(f16x2(w.z), f16x2(w.w));
    return Dq8(a, b, vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 0.0), 0u, 4u);
}
