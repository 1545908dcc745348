// Weights in a storage buffer: the binding starts at the tensor chunk's first byte.
@group(0) @binding(0) var<storage, read> wq: array<vec4<u32>>;

// The 16 bytes at vec4 index `i` of the chunk.
fn wq_at(i: u32) -> vec4<u32> {
    return wq[i];
}
