// Embedding lookup: OUT[r][..K] = dequantize(W[ids[r]]) for each of n_ids ids.
// One invocation decodes one 8-weight group. A table split into several chunks is looked up
// with one dispatch per chunk; each writes only the rows whose ids fall inside its chunk.
//
// Generated constants: WG, UG = 1 (groups decoded per header read), and the format's QK, QB,
// SPAN, GPB, LU.

struct Params {
    k: u32,
    row_bytes: u32,
    n_ids: u32,
    ids_off: u32,    // u32 index of the first id
    out_off: u32,    // vec4 index of OUT[0][0]
    out_stride: u32, // vec4s between output rows
    row0: u32,       // first table row held by this chunk
    rows: u32,       // rows held by this chunk
    w_off: u32,     // weights in a texture: the chunk's first texel (see common/w_texture.wgsl)
    w_shift: u32,   // and log2 of the texels per texture row
}

// binding 0: the weights `wq`, read through wq_at (common/w_storage.wgsl or w_texture.wgsl)
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> outv: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    let gpr = p.k / 8u;
    let r = t / gpr;
    let g = t % gpr;
    if (r >= p.n_ids) {
        return;
    }
    let id = ids[p.ids_off + r];
    if (id < p.row0 || id - p.row0 >= p.rows) {
        return;
    }
    let d = dq8((id - p.row0) * p.row_bytes + (g / GPB) * QB, g % GPB);
    let base = p.out_off + r * p.out_stride + (g / GPB) * (QK / 4u);
    outv[base + d.ia / 4u] = dq8_wa(d);
    outv[base + d.ib / 4u] = dq8_wb(d);
}
