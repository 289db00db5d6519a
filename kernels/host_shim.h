/* host_shim.h: compiles a kernels/*.cu source with gcc so the default test suite runs it on the
 * CPU. It supplies what nvcc/NVRTC give a kernel for free: the qualifiers, dim3, the built-in
 * indices, the few intrinsics the kernels use, and KRYPTON_LAUNCH, which runs a launch as plain
 * loops over every block and thread (faithful because every kernel here is barrier-free: no
 * __syncthreads, no shared memory, no atomics). kryptondb/runtime/kernels.py writes, per kernel,
 *
 *     #include "host_shim.h"
 *     #include "<name>.cu"
 *     extern "C" void launch_<name>(int gx, int gy, int gz, int bx, int by, int bz, <params>)
 *     { KRYPTON_LAUNCH(gx, gy, gz, bx, by, bz, <name>(<args>)); }
 *
 * and loads launch_<name> with ctypes. Nothing host-only lives in the .cu sources themselves.
 */
#ifndef KRYPTON_HOST_SHIM_H
#define KRYPTON_HOST_SHIM_H

#include <math.h>
#include <string.h>

#define __global__
#define __device__ static inline
#define __forceinline__
#define __restrict__ __restrict

struct dim3 {
    unsigned int x, y, z;
};

/* The built-in indices, per host thread: ctypes releases the GIL, so two Python threads may
 * launch at once. */
static thread_local dim3 gridDim, blockDim, blockIdx, threadIdx;

static inline float __int_as_float(int bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* CUDA's integer min and max. */
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }

/* Run `call` once for every (block, thread) of a grid x block launch, blocks outermost. */
#define KRYPTON_LAUNCH(gx, gy, gz, bx, by, bz, call)                                          \
    do {                                                                                      \
        gridDim = dim3{(unsigned)(gx), (unsigned)(gy), (unsigned)(gz)};                       \
        blockDim = dim3{(unsigned)(bx), (unsigned)(by), (unsigned)(bz)};                      \
        for (blockIdx.z = 0; blockIdx.z < gridDim.z; ++blockIdx.z)                            \
        for (blockIdx.y = 0; blockIdx.y < gridDim.y; ++blockIdx.y)                            \
        for (blockIdx.x = 0; blockIdx.x < gridDim.x; ++blockIdx.x)                            \
        for (threadIdx.z = 0; threadIdx.z < blockDim.z; ++threadIdx.z)                        \
        for (threadIdx.y = 0; threadIdx.y < blockDim.y; ++threadIdx.y)                        \
        for (threadIdx.x = 0; threadIdx.x < blockDim.x; ++threadIdx.x) {                      \
            call;                                                                             \
        }                                                                                     \
    } while (0)

#endif
