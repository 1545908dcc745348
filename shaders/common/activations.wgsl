// Activation functions of gated feed-forward blocks; `act(kind, x)` with kind 1 = SiLU,
// 2 = GELU (tanh approximation), the numbering of the elementwise OP and matvec GATE constants.

fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

fn gelu_tanh(x: f32) -> f32 {
    // Clamped so tanh's exponentials cannot overflow into inf/inf on any implementation.
    let u = clamp(0.7978845608 * x * (1.0 + 0.044715 * x * x), -15.0, 15.0);
    return 0.5 * x * (1.0 + tanh(u));
}

fn act(kind: u32, x: f32) -> f32 {
    if (kind == 1u) {
        return silu(x);
    }
    return gelu_tanh(x);
}
