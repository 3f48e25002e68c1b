#!/usr/bin/env bash
# One real-GPU check of the CUDA target, prepared to run in a single call on a lent GPU
# machine (the device tool: graphjit is pure Python, so the working tree runs as it is,
# with that machine's numba, numba-cuda and CUDA toolkit):
#
#     bash benchmarks/gpu_session.sh            # writes under $OUT (default ./gpu_out)
#
# 1. the CUDA tests on the GPU (NUMBA_ENABLE_CUDASIM=0): the op table eager on CUDA against
#    the CPU, training, devices (tests/cuda; test_ptx needs no GPU and is skipped here);
# 2. benchmarks/gpu.py: copy bandwidth, a matrix product, the MLP step, the elementwise
#    chain, the 10M-parameter Adam update, as JSON.
# Each part has its own time limit and its log is kept, so one failing part still leaves
# the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export NUMBA_ENABLE_CUDASIM=0 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  $PY -c "import numba, numba_cuda, numpy; print('numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'numpy', numpy.__version__)" || true
  $PY -c "import graphjit as gj; print('cuda available:', gj.cuda.is_available(), gj.cuda.why_unavailable() or gj.cuda.get_device_name())"
} 2>&1 | tee "$OUT/env.txt"

timeout 300 $PY -m pytest tests/cuda -x -q -p no:cacheprovider --ignore=tests/cuda/test_ptx.py \
  2>&1 | tee "$OUT/tests.log"
echo "tests exit: ${PIPESTATUS[0]}" | tee -a "$OUT/tests.log"

timeout 240 $PY benchmarks/gpu.py --repeats 50 --json "$OUT/gpu.json" 2>&1 | tee "$OUT/bench.log"
echo "bench exit: ${PIPESTATUS[0]}" | tee -a "$OUT/bench.log"
