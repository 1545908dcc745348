// Matvec row reduction through workgroup memory: the TPR invocations of a row slot add their
// partial sums (`acc`) in a tree, leaving the totals in lane 0's `acc`. Works on every device.
var<workgroup> red: array<f32, RED>;

fn reduce_acc(lid: u32, lane: u32) {
    for (var i = 0u; i < RPI * NCOLS; i++) {
        red[lid * RPI * NCOLS + i] = acc[i];
    }
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (lane < s) {
            for (var i = 0u; i < RPI * NCOLS; i++) {
                red[lid * RPI * NCOLS + i] += red[(lid + s) * RPI * NCOLS + i];
            }
        }
    }
    if (lane == 0u) {
        for (var i = 0u; i < RPI * NCOLS; i++) {
            acc[i] = red[lid * RPI * NCOLS + i];
        }
    }
}
