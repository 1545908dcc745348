// The sum of one value per invocation over the workgroup, returned to every invocation (a tree
// in workgroup memory; WG is a power of two). Call from uniform control flow.
var<workgroup> red: array<f32, WG>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var o = WG / 2u; o > 0u; o >>= 1u) {
        if (lid < o) {
            red[lid] += red[lid + o];
        }
        workgroupBarrier();
    }
    let total = red[0];
    // Every invocation has read the total before `red` can be reused.
    workgroupBarrier();
    return total;
}
