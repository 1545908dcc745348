// F16: IEEE half floats, two per word. Virtual block of 8 elements (QK = 8, QB = 16); rows are
// 16-byte aligned because row lengths are multiples of 8. No per-block header.
const HAS_MIN: bool = false;

struct Blk {
    unused: u32,
}

fn blk_load(blk: u32) -> Blk {
    return Blk(0u);
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    let i = blk >> 2u;
    let a = vec4<f32>(f16x2(wq[i]), f16x2(wq[i + 1u]));
    let b = vec4<f32>(f16x2(wq[i + 2u]), f16x2(wq[i + 3u]));
    return Dq8(a, b, vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 0.0), 0u, 4u);
}
