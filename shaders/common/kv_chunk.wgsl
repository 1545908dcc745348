// Reading the KV cache 16 bytes at a time (attention_split.wgsl, attention_flash.wgsl): the
// cache holds raw words, f16 pairs when KV_F16 = 1, else f32 bits.

// Elements 4c..4c+4 of the cache vec4 `w` (f16: c is 0 or 1; f32: c is 0).
fn chunk(w: vec4<u32>, c: u32) -> vec4<f32> {
    if (KV_F16 == 1u) {
        let pair = select(w.xy, w.zw, c == 1u);
        return vec4<f32>(unpack2x16float(pair.x), unpack2x16float(pair.y));
    }
    return bitcast<vec4<f32>>(w);
}
