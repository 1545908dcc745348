// f16 -> f32 with the WGSL builtin (needs the SHADER_F16_IN_F32 downlevel capability, which
// every Vulkan, Metal and D3D12 device has).
fn f16_to_f32(h: u32) -> f32 {
    return unpack2x16float(h).x;
}

// The two f16 halves of `w`, low half first.
fn f16x2(w: u32) -> vec2<f32> {
    return unpack2x16float(w);
}
