#!/usr/bin/env bash
# The one command that verifies the GPU backend on a machine with a CUDA 12 GPU (issue 17):
#   bench/gpu_check.sh            (from the repository root, in the project's environment)
# 1. the kernels' host builds and the emulated backend (no GPU needed): the default suite's part;
# 2. the GPU tests: pytest -m gpu (CuPy RawKernels on the device, ON GPU queries end to end);
# 3. bench/gpu.py: exact and approximate OBE (vgg16, resnet18, mobilenet_v2, P16 S4) against
#    naive re-inference on the same GPU, plus video; writes bench/results/gpu.json and prints
#    PASS/FAIL for the acceptance checks. Extra arguments go to bench/gpu.py.
# Needs: pip install -e '.[gpu,test]' (cupy-cuda12x); onnxruntime-gpu and captum are optional.
# Exit status: 0 everything passed; 2 no GPU or no CuPy here; otherwise the failing step's.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if ! "$PY" -c 'import sys; from kryptondb.runtime.gpu import gpu_missing; w = gpu_missing(); print(w or "GPU: ok"); sys.exit(2 if w else 0)'; then
    echo "bench/gpu_check.sh: no usable GPU here (see above); nothing verified" >&2
    exit 2
fi
"$PY" -m pytest -q -p no:cacheprovider tests/test_kernels_host.py tests/test_gpu_emulated.py
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
"$PY" bench/gpu.py "$@"
