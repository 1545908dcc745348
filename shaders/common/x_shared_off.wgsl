// Matvec activations are not shared across the subgroup (XS = 0): every invocation reads the
// ones it needs, and this is never called. (Subgroup operations need a device feature, so a
// kernel may only name them where it uses them.)
fn x_shared(xl: vec4<f32>, i: u32) -> vec4<f32> {
    return xl;
}
