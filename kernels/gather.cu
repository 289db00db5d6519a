// gather: the read-in contexts of a batch in one launch (Krypton's gather kernel).
// out[b, c, i, j] (B x C x rh x rw) is, at map position (y, x) = (ys[b] + i, xs[b] + j):
//   the new value of the last region of b's owner that covers (y, x), b's own region winning
//     (region k: nv[k, c, y - nys[k], x - nxs[k]], 0 <= y - nys[k] < nh, 0 <= x - nxs[k] < nw);
//   else the stored view[c, y, x] (C x H x W, shared by the batch) where (y, x) is in the map;
//   else pad.
// With grouped == 0 each query's only region is its own (owners is not read); with grouped != 0
// items k with owners[k] == owners[b] are regions of one input (kryptondb/ivm/gather.py's
// owners). One thread per output element, grid-stride over a 1-D grid; barrier-free.
extern "C" __global__ void gather(const float* __restrict__ view, int C, int H, int W,
                                  const int* __restrict__ ys, const int* __restrict__ xs,
                                  int B, int rh, int rw,
                                  const float* __restrict__ nv,
                                  const int* __restrict__ nys, const int* __restrict__ nxs,
                                  int nh, int nw,
                                  const int* __restrict__ owners, int grouped,
                                  float pad, float* __restrict__ out) {
    const long long total = (long long)B * C * rh * rw;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        const int j = (int)(t % rw);
        const int i = (int)((t / rw) % rh);
        const int c = (int)((t / ((long long)rw * rh)) % C);
        const int b = (int)(t / ((long long)rw * rh * C));
        const int y = ys[b] + i, x = xs[b] + j;
        int src = -1;
        if (y >= nys[b] && y < nys[b] + nh && x >= nxs[b] && x < nxs[b] + nw) {
            src = b;
        } else if (grouped) {
            for (int k = B - 1; k >= 0; --k) {
                if (owners[k] == owners[b] && y >= nys[k] && y < nys[k] + nh &&
                    x >= nxs[k] && x < nxs[k] + nw) {
                    src = k;
                    break;
                }
            }
        }
        float v;
        if (src >= 0) {
            v = nv[(((long long)src * C + c) * nh + (y - nys[src])) * nw + (x - nxs[src])];
        } else if (y >= 0 && y < H && x >= 0 && x < W) {
            v = view[((long long)c * H + y) * W + x];
        } else {
            v = pad;
        }
        out[t] = v;
    }
}
