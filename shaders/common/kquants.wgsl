// Pieces of bit layout shared by several formats (written once here, used by their decoders).

// Q4_K / Q5_K: 8 pairs of 6-bit (scale, min) packed into 12 bytes, passed as the three words
// s0, s1, s2 of those bytes. Pair i < 4 is in the low 6 bits of bytes i and i+4; pair i >= 4
// takes its low 4 bits from the nibbles of byte i+4 and its high 2 bits from the tops of bytes
// i-4 and i (ggml's get_scale_min_k4).
fn kq_scale_min(s: vec3<u32>, i: u32) -> vec2<f32> {
    let k = (i & 3u) * 8u;
    let b0 = (s.x >> k) & 0xffu;
    let b1 = (s.y >> k) & 0xffu;
    let b2 = (s.z >> k) & 0xffu;
    let lo = vec2<u32>(b0 & 63u, b1 & 63u);
    let hi = vec2<u32>((b2 & 0xfu) | ((b0 >> 6u) << 4u), (b2 >> 4u) | ((b1 >> 6u) << 4u));
    return vec2<f32>(select(hi, lo, i < 4u));
}

// IQ4_NL / IQ4_XS: the 16-entry non-linear codebook, as signed bytes packed four per word.
// Looked up with selects rather than an indexed array so that it stays in registers.
const IQ4_K0: u32 = 0xbfad9881u; // -127, -104, -83, -65
const IQ4_K1: u32 = 0xf6eaddcfu; //  -49,  -35, -22, -10
const IQ4_K2: u32 = 0x26190d01u; //    1,   13,  25,  38
const IQ4_K3: u32 = 0x71594535u; //   53,   69,  89, 113

// The codebook bytes of four indices (0..15), each in the low 8 bits of its lane.
fn iq4_bytes(v: vec4<u32>) -> vec4<u32> {
    let hi4 = (v & vec4<u32>(4u)) != vec4<u32>(0u);
    let hi8 = (v & vec4<u32>(8u)) != vec4<u32>(0u);
    let lo = select(vec4<u32>(IQ4_K0), vec4<u32>(IQ4_K1), hi4);
    let up = select(vec4<u32>(IQ4_K2), vec4<u32>(IQ4_K3), hi4);
    let w = select(lo, up, hi8);
    return (w >> ((v & vec4<u32>(3u)) * 8u)) & vec4<u32>(0xffu);
}

fn iq4_values(v: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(iq4_bytes(v) << vec4<u32>(24u)) >> vec4<u32>(24u));
}

// Integer path: the codebook values of a 32-weight IQ4 sub-block (`qs`: low nibbles are weights
// 0..16, high ones 16..32, as in IQ4_NL) dotted with 8-bit activations, the values packed four
// per word as signed bytes.
fn iq4_block_idot(qs: vec4<u32>, x: Xq8) -> i32 {
    var acc = 0;
    for (var i = 0u; i < 4u; i++) {
        for (var half = 0u; half < 2u; half++) {
            let b = iq4_bytes(nib_lo4(qs[i] >> (4u * half)));
            let packed = b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
            acc += dot4I8Packed(packed, x.w[i + 4u * half]);
        }
    }
    return acc;
}
