// Max pooling: x is B x C x H x W, out is B x C x OH x OW with out[b, c, oy, ox] the max of
// x[b, c, oy*SH - PT + i*DH, ox*SW - PL + j*DW] over the window's positions inside x; padding
// and a ceil-mode overhang are -inf (a window wholly outside x gives -inf). NaN propagates.
// One thread per output element, grid-stride over a 1-D grid; barrier-free.
extern "C" __global__ void max_pool(const float* __restrict__ x, int B, int C, int H, int W,
                                    int KH, int KW, int SH, int SW, int PT, int PL,
                                    int DH, int DW, int OH, int OW, float* __restrict__ out) {
    const long long total = (long long)B * C * OH * OW;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        const int ox = (int)(t % OW);
        const int oy = (int)((t / OW) % OH);
        const float* xc = x + (t / ((long long)OW * OH)) * H * W;
        float m = __int_as_float((int)0xff800000u);  // -inf
        for (int i = 0; i < KH; ++i) {
            const int y = oy * SH - PT + i * DH;
            if (y < 0 || y >= H) continue;
            for (int j = 0; j < KW; ++j) {
                const int xx = ox * SW - PL + j * DW;
                if (xx < 0 || xx >= W) continue;
                const float v = xc[(long long)y * W + xx];
                if (v > m || v != v) m = (m != m) ? m : v;
            }
        }
        out[t] = m;
    }
}
