// Depthwise convolution (groups == C, one KH x KW filter per channel): x is B x C x H x W,
// w is C x 1 x KH x KW, bias is C, out is B x C x OH x OW with
// out[b, c, oy, ox] = sum over (i, j) in row order of x[b, c, oy*SH - PT + i*DH, ox*SW - PL + j*DW]
// * w[c, 0, i, j] (positions outside x count 0), plus bias[c].
// One thread per output element, grid-stride over a 1-D grid; barrier-free.
extern "C" __global__ void depthwise_conv(const float* __restrict__ x,
                                          const float* __restrict__ w,
                                          const float* __restrict__ bias,
                                          int B, int C, int H, int W, int KH, int KW,
                                          int SH, int SW, int PT, int PL, int DH, int DW,
                                          int OH, int OW, float* __restrict__ out) {
    const long long total = (long long)B * C * OH * OW;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        const int ox = (int)(t % OW);
        const int oy = (int)((t / OW) % OH);
        const int c = (int)((t / ((long long)OW * OH)) % C);
        const long long plane = t / ((long long)OW * OH);  // b * C + c
        const float* xc = x + plane * H * W;
        const float* wc = w + (long long)c * KH * KW;
        float acc = 0.0f;
        for (int i = 0; i < KH; ++i) {
            const int y = oy * SH - PT + i * DH;
            if (y < 0 || y >= H) continue;
            for (int j = 0; j < KW; ++j) {
                const int xx = ox * SW - PL + j * DW;
                if (xx >= 0 && xx < W) acc += xc[(long long)y * W + xx] * wc[i * KW + j];
            }
        }
        out[t] = acc + bias[c];
    }
}
