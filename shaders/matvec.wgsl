// Matrix x vector(s) for decode: Y[n][m] = sum_k W[m][k] * X[n][k] for NCOLS columns at once,
// with W in raw blocks (any format, through the format's dq8) and f32 accumulation.
//
// Generated constants (the host keeps the same numbers for its dispatch arithmetic):
//   WG    invocations per workgroup
//   TPR   invocations sharing one row slot (power of two; > 1 adds a workgroup reduction)
//   RPI   rows per invocation: each loaded activation is reused for RPI rows
//   NCOLS activation columns, 1..8
//   UG    groups per unit of work: the format's load unit (LU, usually a whole block) or one group
//   QK, QB, SPAN, GPB  the format's block geometry (GPB = QK / 8 groups per block)
//   RED   size of the workgroup reduction scratch (1 when unused)
//   SG    1: rows are reduced with subgroupAdd (TPR is the subgroup size), 0: workgroup memory
//   XU    > 0: X is a uniform-buffer window of XU vec4s (CPU devices), 0: a storage buffer
//   WARM  > 0 (CPU devices): before decoding, each invocation reads one word every WARM vec4s
//         (every cache line) of its rows; 0: no warm-up (GPUs)
//   GATE  0: Y = the products; 1 (SiLU) or 2 (GELU): Y = act(Y) * the products, Y holding the
//         gate projection on entry (the up projection of a gated FFN, its activation fused in)
//   UNROLL 1: a unit's groups are spelled out (at most 8), 0: looped over
//   XS    1 (CPU devices): the invocations share the unit's activations through subgroupShuffle
//         (the workgroup is one subgroup, one column, whole-block units of at most 2 WG vec4s)
//   PAIR  1: W stacks an FFN's gate matrix (rows 0..m) over its up matrix (rows m..2m); each
//         invocation decodes RPI / 2 gate rows and the same up rows, and Y = act(gate) * up
//         (GATE names the activation); 0: plain rows
// A workgroup covers (WG / TPR) * ROWS consecutive output rows.
//
// Rows of a stack of matrices (one weight allocation, see GpuTensor::upload_stack) can go to up to
// three outputs: rows from seg1 on to Y1 (y_off1), from seg2 on to Y2 (y_off2); one column then.

struct Params {
    k: u32,         // elements per row
    m: u32,         // rows in this weight chunk
    row_bytes: u32, // bytes per row of W
    x_off: u32,     // vec4 index of X[0][0]
    x_stride: u32,  // vec4s from one column of X to the next
    y_off: u32,     // element index of Y[0][first row of this chunk]
    y_stride: u32,  // elements from one column of Y to the next
    zero: u32,      // always 0: the warm-up words are masked with it (see warm_rows)
    seg1: u32,      // first row of the second output (m when there is one output)
    seg2: u32,      // first row of the third output (m when there are fewer)
    y_off1: u32,    // element index of its first row
    y_off2: u32,
    w_off: u32,     // weights in a texture: the chunk's first texel (see common/w_texture.wgsl)
    w_shift: u32,   // and log2 of the texels per texture row
}

// Output rows per invocation: with PAIR, half the RPI rows are the up rows of the other half.
const ROWS = RPI / (1u + PAIR);

// binding 0: the weights `wq`, read through wq_at (common/w_storage.wgsl or w_texture.wgsl)
// binding 1: the activations `xv`, read through ld_x (common/x_storage.wgsl or x_uniform.wgsl)
@group(0) @binding(2) var<storage, read_write> yv: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// Per-invocation partial sums, [row][column]; module scope so the reduction (composed from
// common/reduce_*.wgsl) can reach it.
var<private> acc: array<f32, RPI * NCOLS>;

// Reads one word per cache line of bytes [start, end) of W. On a CPU device a matrix streamed
// from memory otherwise stalls the decode loop once per line: its loads are long per-lane
// sequences, so few misses are in flight at a time. This loop has little else in it, so the
// misses of all the lines overlap and the decode loop then finds them in cache. Returns the
// words folded together, for the caller to keep (an unused load would be optimised away).
fn warm_rows(start: u32, end: u32) -> u32 {
    var folded = 0u;
    for (var i = start / 16u; i < (end + 15u) / 16u; i += WARM) {
        folded ^= wq_at(i).x;
    }
    return folded;
}

// Where output row `row` of column `c` goes.
fn y_index(row: u32, c: u32) -> u32 {
    if (row >= p.seg2) {
        return p.y_off2 + row - p.seg2;
    }
    if (row >= p.seg1) {
        return p.y_off1 + row - p.seg1;
    }
    return p.y_off + c * p.y_stride + row;
}

// Adds group jj of a unit (UG groups from group g0, in the block at byte boff of each row, whose
// headers are `hdr`; activations from vec4 kb on, or in `xl` across the subgroup with XS) of
// every row to the accumulators.
fn add_group(rb: array<u32, RPI>, hdr: array<Blk, RPI>, boff: u32, kb: u32, g0: u32, jj: u32, xl: vec4<f32>) {
    // With whole-block units (UG = GPB) the group is jj itself, a constant where the unit's groups
    // are spelled out (UNROLL): decoders then pick their fields without select ladders.
    let j = select(g0 % GPB, 0u, UG == GPB) + jj;
    var xa: array<vec4<f32>, NCOLS>;
    var xb: array<vec4<f32>, NCOLS>;
    // Sums of the activations, for formats whose weights have an offset (s.y).
    var sa: array<f32, NCOLS>;
    var sb: array<f32, NCOLS>;
    for (var r = 0u; r < RPI; r++) {
        let d = blk_dq8(rb[r] + boff, hdr[r], j);
        if (r == 0u) {
            for (var c = 0u; c < NCOLS; c++) {
                if (XS == 1u) {
                    // From the invocations holding them (one column, see the unit loop).
                    xa[c] = x_shared(xl, d.ia / 4u);
                    xb[c] = x_shared(xl, d.ib / 4u);
                } else {
                    xa[c] = ld_x(kb + c * p.x_stride + d.ia / 4u);
                    xb[c] = ld_x(kb + c * p.x_stride + d.ib / 4u);
                }
                if (HAS_MIN) {
                    sa[c] = dot(xa[c], vec4<f32>(1.0));
                    sb[c] = dot(xb[c], vec4<f32>(1.0));
                }
            }
        }
        // The quants are dotted with the activations first and scaled once per 4 weights.
        for (var c = 0u; c < NCOLS; c++) {
            var t = d.sa.x * dot(d.qa, xa[c]) + d.sb.x * dot(d.qb, xb[c]);
            if (HAS_MIN) {
                t += d.sa.y * sa[c] + d.sb.y * sb[c];
            }
            acc[r * NCOLS + c] += t;
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let wgi = wid.x + wid.y * nwg.x;
    let lane = lid % TPR;
    let row0 = (wgi * (WG / TPR) + lid / TPR) * ROWS;

    // Rows past the end are clamped (their loads stay in bounds) and not written. Slot r reads
    // output row row0 + r % ROWS of matrix r / ROWS (the up matrix for the second half of PAIR).
    var rb: array<u32, RPI>;
    for (var r = 0u; r < RPI; r++) {
        rb[r] = (min(row0 + r % ROWS, p.m - 1u) + (r / ROWS) * p.m) * p.row_bytes;
    }

    // On CPU devices, this invocation's rows (consecutive in each matrix, so one span of W per
    // matrix) into cache first.
    var warmed = 0u;
    if (WARM > 0u) {
        for (var h = 0u; h < RPI; h += ROWS) {
            warmed ^= warm_rows(rb[h], rb[h + ROWS - 1u] + p.row_bytes);
        }
    }

    // The row is walked in units of UG consecutive groups of one block; the TPR invocations of a
    // row take interleaved units (neighbours read neighbouring bytes, coalesced on GPUs). Each
    // unit reads its block header once per row and each activation once for all RPI rows.
    let nunits = p.k / (8u * UG);
    for (var u = lane; u < nunits; u += TPR) {
        let g0 = u * UG;
        let boff = (g0 / GPB) * QB;
        let kb = p.x_off + (g0 / GPB) * (QK / 4u);
        var hdr: array<Blk, RPI>;
        for (var r = 0u; r < RPI; r++) {
            hdr[r] = blk_load(rb[r] + boff, g0 % GPB);
        }
        // With XS, invocation i reads vec4 i of the unit's activations, and each group takes its
        // two vec4s from the invocations holding them (common/x_shared.wgsl): one gather per unit
        // instead of two per group. The workgroup is one subgroup and the unit's activations
        // at most WG vec4s (the host checks both).
        var xl = vec4<f32>(0.0);
        if (XS == 1u) {
            xl = ld_x(kb + min(lid, 2u * UG - 1u));
        }
        if (UNROLL == 1u) {
            // The unit's groups spelled out rather than looped over: a loop this large is left
            // rolled (by llvmpipe), the group index then stays a variable and every decoder picks
            // its fields with selects at run time (see `unroll_groups` for where this pays). UG is
            // at most 8 here.
            add_group(rb, hdr, boff, kb, g0, 0u, xl);
            if (UG > 1u) {
                add_group(rb, hdr, boff, kb, g0, 1u, xl);
            }
            if (UG > 2u) {
                add_group(rb, hdr, boff, kb, g0, 2u, xl);
                add_group(rb, hdr, boff, kb, g0, 3u, xl);
            }
            if (UG > 4u) {
                add_group(rb, hdr, boff, kb, g0, 4u, xl);
                add_group(rb, hdr, boff, kb, g0, 5u, xl);
                add_group(rb, hdr, boff, kb, g0, 6u, xl);
                add_group(rb, hdr, boff, kb, g0, 7u, xl);
            }
        } else {
            for (var jj = 0u; jj < UG; jj++) {
                add_group(rb, hdr, boff, kb, g0, jj, xl);
            }
        }
    }

    // Adds exactly 0 (p.zero is 0), but the compiler cannot know it and keeps the warm-up loads.
    acc[0] += f32(warmed & p.zero);

    if (TPR > 1u) {
        reduce_acc(lid, lane);
    }

    if (lane == 0u) {
        for (var r = 0u; r < ROWS; r++) {
            let row = row0 + r;
            if (row < p.m) {
                for (var c = 0u; c < NCOLS; c++) {
                    let yi = y_index(row, c);
                    let product = acc[r * NCOLS + c];
                    if (PAIR == 1u) {
                        yv[yi] = act(GATE, product) * acc[(r + ROWS) * NCOLS + c];
                    } else if (GATE == 0u) {
                        yv[yi] = product;
                    } else {
                        yv[yi] = act(GATE, yv[yi]) * product;
                    }
                }
            }
        }
    }
}
