// Weights in a 2-D rgba32uint texture (CPU devices): the same bytes, 16 per texel, row after row,
// 2^p.w_shift texels per row. llvmpipe gathers texels for all lanes at once, where a storage load
// becomes a loop over the lanes with a bounds check in each. Bound as a read-only storage texture:
// a sampled one's loads also work out a mip level per lane (lavapipe, streaming 64 MiB of vec4s:
// storage buffer 5.2 GB/s, sampled texture 19 GB/s, storage texture 27 GB/s).
// The chunk starts at texel `p.w_off` (the parts of a stack share one texture); every kernel
// that reads weights has these two fields in its parameters.
@group(0) @binding(0) var wq: texture_storage_2d<rgba32uint, read>;

// The 16 bytes at vec4 index `i` of the chunk.
fn wq_at(i: u32) -> vec4<u32> {
    let t = i + p.w_off;
    return textureLoad(wq, vec2<u32>(t & ((1u << p.w_shift) - 1u), t >> p.w_shift));
}
