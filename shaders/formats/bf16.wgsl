// BF16: the top 16 bits of an f32, two per word. Virtual block of 8 elements (QK = 8, QB = 16).
const HAS_MIN: bool = false;

struct Blk {
    unused: u32,
}

fn blk_load(blk: u32, g: u32) -> Blk {
    return Blk(0u);
}

fn bf16x2(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    // A virtual block is 16 bytes at a 16-byte offset: one aligned vec4 load.
    let w = wq_at(blk >> 4u);
    let a = vec4<f32>(bf16x2(w.x), bf16x2(w.y));
    let b = vec4<f32>(bf16x2(w.z), bf16x2(w.w));
    return Dq8(a, b, vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 0.0), 0u, 4u);
}
