// Matvec row reduction with subgroup operations: used only when TPR equals the device's fixed
// subgroup size, so one subgroup is exactly one row slot (no workgroup memory, no barriers).
fn reduce_acc(lid: u32, lane: u32) {
    for (var i = 0u; i < RPI * NCOLS; i++) {
        acc[i] = subgroupAdd(acc[i]);
    }
}
