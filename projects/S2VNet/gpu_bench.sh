#!/usr/bin/env bash
# The GPU benchmark, for a lent H100/H200 (see the device tool): one call of at most 8 minutes.
#
# The device machine reaches no package registry, so its extra Python packages travel as wheels:
#   here, once:   make gpu-wheels           # cp312 wheels of what the GPU image lacks + the benchmark CTs
#   on the GPU:   bash projects/S2VNet/gpu_bench.sh     (carry: .cache/gpu_wheels datasets/benchmark)
# It installs those wheels without an index, then runs the benchmark on the real 512 x 512 CTs and a
# synthetic 512 x 512 x 200 volume, 3D peers on whole volumes, and writes the JSON into $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
"$PY" -m pip install --no-index --find-links .cache/gpu_wheels --no-deps .cache/gpu_wheels/*.whl
"$PY" -m pip install --no-index --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,memory.total --format=csv
timeout 460 "$PY" projects/S2VNet/benchmark.py --device cuda --volumes lung1 lung2 --synthetic-depth 200 --full-3d \
    --repeats 3 --data-dir datasets/benchmark --output "${OUT:-output/benchmark}/benchmark_gpu.json"
