// Average pooling (no dilation, as ONNX AveragePool): x is B x C x H x W, out is
// B x C x OH x OW with out[b, c, oy, ox] = (sum of x over the window's positions inside x) / n,
// the window being rows oy*SH - PT + i, columns ox*SW - PL + j (i < KH, j < KW), and n the count
// of its positions inside x (count_include_pad == 0) or inside the explicitly padded extent
// [-PT, H + PB) x [-PL, W + PR) (count_include_pad != 0; a ceil-mode overhang never counts).
// One thread per output element, grid-stride over a 1-D grid; barrier-free.
extern "C" __global__ void avg_pool(const float* __restrict__ x, int B, int C, int H, int W,
                                    int KH, int KW, int SH, int SW, int PT, int PL, int PB,
                                    int PR, int OH, int OW, int count_include_pad,
                                    float* __restrict__ out) {
    const long long total = (long long)B * C * OH * OW;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        const int ox = (int)(t % OW);
        const int oy = (int)((t / OW) % OH);
        const float* xc = x + (t / ((long long)OW * OH)) * H * W;
        const int y0 = oy * SH - PT, x0 = ox * SW - PL;
        const int lo_y = count_include_pad ? -PT : 0, hi_y = count_include_pad ? H + PB : H;
        const int lo_x = count_include_pad ? -PL : 0, hi_x = count_include_pad ? W + PR : W;
        const int ny = min(y0 + KH, hi_y) - max(y0, lo_y), nx = min(x0 + KW, hi_x) - max(x0, lo_x);
        float acc = 0.0f;
        for (int y = max(y0, 0); y < min(y0 + KH, H); ++y)
            for (int xx = max(x0, 0); xx < min(x0 + KW, W); ++xx) acc += xc[(long long)y * W + xx];
        out[t] = acc / (float)(max(ny, 0) * max(nx, 0));
    }
}
