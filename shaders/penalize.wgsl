// Sampling penalties on the device, before top_k.wgsl: for each entry (row, id, subtract,
// divide), logit = logit - subtract, then divided by `divide` when positive and multiplied by it
// otherwise: OpenAI's frequency and presence penalties, then llama.cpp's repetition penalty, the
// order the host samplers apply them in (`crate::sampler::TokenPenalty`). Entries name distinct
// (row, id) pairs, so no two invocations write one logit.
//
// Generated constants: WG.

struct Params {
    count: u32,   // entries
    n_vocab: u32, // logits per row
    base: u32,    // first logit of row 0 in the binding
    pad0: u32,
}

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> entries: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.count) {
        return;
    }
    let e = entries[i];
    let at = p.base + e.x * p.n_vocab + e.y;
    let divide = bitcast<f32>(e.w);
    let l = logits[at] - bitcast<f32>(e.z);
    logits[at] = select(l * divide, l / divide, l > 0.0);
}
