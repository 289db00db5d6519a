// im2col of a batch (the read-in contexts): x is B x C x H x W, cols is
// B x (C*KH*KW) x (OH*OW) with cols[b, (c*KH + i)*KW + j, oy*OW + ox] =
// x[b, c, oy*SH - PT + i*DH, ox*SW - PL + j*DW], 0 where that falls outside x. Rows in the
// weight's (c, i, j) order, so cupy.matmul(w.reshape(O, C*KH*KW), cols) is B x O x (OH*OW).
// One thread per element of cols, grid-stride over a 1-D grid; barrier-free.
extern "C" __global__ void im2col(const float* __restrict__ x, int B, int C, int H, int W,
                                  int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW,
                                  int OH, int OW, float* __restrict__ cols) {
    const long long L = (long long)OH * OW, K = (long long)C * KH * KW;
    const long long total = (long long)B * K * L;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        const int ox = (int)(t % OW);
        const int oy = (int)((t / OW) % OH);
        const long long r = (t / L) % K;
        const long long b = t / (L * K);
        const int j = (int)(r % KW), i = (int)((r / KW) % KH), c = (int)(r / ((long long)KW * KH));
        const int y = oy * SH - PT + i * DH, xx = ox * SW - PL + j * DW;
        cols[t] = (y >= 0 && y < H && xx >= 0 && xx < W)
                      ? x[((b * C + c) * H + y) * W + xx] : 0.0f;
    }
}
