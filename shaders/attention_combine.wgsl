// Merges the partial results of attention_flash.wgsl's splits: for each (query token, head), the
// splits' outputs weighted by exp(m_s - M) (M the largest of their maxima) and divided by the
// weighted sum of their sums. One workgroup of WG invocations per (token, head), an invocation
// per output element. Composed after common/attention_params.wgsl.

@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let wgi = wid.x + wid.y * nwg.x;
    if (wgi >= p.n_tokens * p.n_head) {
        return;
    }
    let t = wgi / p.n_head;
    let h = wgi % p.n_head;
    let stride = p.head_dim_v + 2u;
    let base = wgi * p.n_split * stride;
    var top = -3.4e38;
    for (var s = 0u; s < p.n_split; s++) {
        top = max(top, part[base + s * stride]);
    }
    var sum = 0.0;
    for (var s = 0u; s < p.n_split; s++) {
        sum += part[base + s * stride + 1u] * exp(part[base + s * stride] - top);
    }
    for (var d = lid; d < p.head_dim_v; d += WG) {
        var o = 0.0;
        for (var s = 0u; s < p.n_split; s++) {
            o += part[base + s * stride + 2u + d] * exp(part[base + s * stride] - top);
        }
        out[p.o_off + t * p.o_stride + h * p.head_dim_v + d] = o / sum;
    }
}
