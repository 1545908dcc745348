// F32: plain little-endian floats. The host treats 8 elements as one virtual block (QK = 8,
// QB = 32), so a group is a whole block; rows are 4-byte aligned. No per-block header.
const HAS_MIN: bool = false;

struct Blk {
    unused: u32,
}

fn blk_load(blk: u32, g: u32) -> Blk {
    return Blk(0u);
}

fn blk_dq8(blk: u32, h: Blk, j: u32) -> Dq8 {
    // A virtual block is 32 bytes at a 32-byte offset: two aligned vec4 loads.
    let i = blk >> 4u;
    let a = bitcast<vec4<f32>>(wq_at(i));
    let b = bitcast<vec4<f32>>(wq_at(i + 1u));
    return Dq8(a, b, vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 0.0), 0u, 4u);
}
