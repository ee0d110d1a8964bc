#!/usr/bin/env bash
# One prepared run for a lent GPU machine (no network there): CUDA tests, the extraction benchmark at
# webssl-dino1b / Llama-3-8B sizes, and the alignment benchmarks on the GPU. Logs go to $OUT (or ./gpu-out).
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -15 | tee "$OUT/cuda_tests.log"
timeout 200 python3 bench/gpu_bench.py 2>&1 | grep -v "Loading weights" | tee "$OUT/gpu_bench.log" | tail -25
timeout 60 python3 bench/bench_align.py --device cuda --pairs 1 --permutations 200 --subsamples 100 2>&1 | tail -16 | tee "$OUT/bench_align_gpu.log"
