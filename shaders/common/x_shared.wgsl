// Matvec activations shared across the subgroup (XS = 1): vec4 `i` of the unit's activations,
// which invocation i read into `xl` (see the unit loop in matvec.wgsl).
fn x_shared(xl: vec4<f32>, i: u32) -> vec4<f32> {
    return subgroupShuffle(xl, i);
}
