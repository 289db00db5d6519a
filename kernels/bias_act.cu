// Fused bias + activation: out[t] = act(x[t] + bias[(t / HW) % C]) over N x C x HW elements
// (out may be x itself). act (kryptondb.runtime.kernels.ACTIVATIONS): 0 none, 1 relu,
// 2 clip(alpha, beta) (relu6: 0, 6), 3 sigmoid, 4 silu, 5 hardswish, 6 hard_sigmoid(alpha, beta),
// 7 leaky_relu(alpha), 8 gelu (erf), 9 gelu (tanh); others pass the sum through.
// One thread per output element, grid-stride over a 1-D grid; barrier-free.
__device__ float krypton_act(float v, int act, float alpha, float beta) {
    switch (act) {
    case 1: return v > 0.0f ? v : 0.0f;
    case 2: return fminf(fmaxf(v, alpha), beta);
    case 3: return 1.0f / (1.0f + expf(-v));
    case 4: return v / (1.0f + expf(-v));
    case 5: return v * fminf(fmaxf(v * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f);
    case 6: return fminf(fmaxf(alpha * v + beta, 0.0f), 1.0f);
    case 7: return v >= 0.0f ? v : v * alpha;
    case 8: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case 9: return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    default: return v;
    }
}

extern "C" __global__ void bias_act(const float* x, const float* __restrict__ bias, int N, int C,
                                    int HW, int act, float alpha, float beta, float* out) {
    const long long total = (long long)N * C * HW;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        out[t] = krypton_act(x[t] + bias[(t / HW) % C], act, alpha, beta);
    }
}
