// Matvec activations as a uniform buffer of XU vec4s (a window of the activation buffer).
// CPU Vulkan drivers (llvmpipe) read storage buffers one invocation and one component at a time
// with a bounds check each, but gather uniform-buffer reads in one go; every invocation of a CPU
// matvec reads the same activations, so they come from here. Not for GPUs: invocations of a row
// read different activations, which serialises in a constant cache.
@group(0) @binding(1) var<uniform> xv: array<vec4<f32>, XU>;

fn ld_x(i: u32) -> vec4<f32> {
    return xv[i];
}
