// The parameters of the attention kernels (attention_split.wgsl, attention_flash.wgsl and
// attention_combine.wgsl), filled by `ops::attention::attention`.
struct Params {
    n_tokens: u32,
    n_head: u32,
    group: u32,       // query heads per KV head
    head_dim: u32,    // of q and k
    head_dim_v: u32,
    kv_dim: u32,      // elements per position in the K cache
    kv_dim_v: u32,    // elements per position in the V cache
    pos0: u32,        // position of query token 0
    n_ctx: u32,       // positions of the context
    window: u32,      // 0 = attend to every past position
    scale: f32,
    q_off: u32,
    q_stride: u32,
    o_off: u32,
    o_stride: u32,
    ring: u32,        // rows of the caches
    n_split: u32,     // attention_flash.wgsl: splits of each token's positions
    softcap: f32,     // > 0: scores become softcap * tanh(score / softcap) (Gemma 2)
}

// A scaled score, soft-capped where the model caps them.
fn capped(s: f32) -> f32 {
    if (p.softcap > 0.0) {
        return p.softcap * tanh(s / p.softcap);
    }
    return s;
}
