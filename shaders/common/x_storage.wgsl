// Matvec activations as a storage buffer (any size; the GPU path).
@group(0) @binding(1) var<storage, read> xv: array<vec4<f32>>;

fn ld_x(i: u32) -> vec4<f32> {
    return xv[i];
}
