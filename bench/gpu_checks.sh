#!/usr/bin/env bash
# One prepared run for a lent GPU machine (no network there), about 8 minutes on an H200: the CUDA tests, the
# end-to-end extraction benchmark (forward only vs probe extract, token-budget text batches, torch.compile),
# model MFU at webssl-dino1b / Llama-3-8B shapes, every metric (and per-row agreement) at N = 50,000 on the GPU,
# and a calibrated score against the raw one at the demo's and PRH's shapes. Logs go to $OUT
# (or ./gpu-out); copy them to bench/results/. Each step has its own timeout, so one slow step cannot eat the
# others' time. Check on CPU first: TINY=1 bash bench/gpu_checks.sh
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ "${TINY:-0}" = 1 ]; then
  E2E="--tiny --compile"; BENCH="--quick"; SCALE="--rows 2000 --layers 2 --dims 64 --device cpu --per-row"; CALIB="--quick --device cpu"
else
  E2E="--compile"; BENCH=""; CALIB="--device cuda"
  SCALE="--rows 50000 --layers 4 --dims 1024 --device cuda --metrics mutual_knn,cka,unbiased_cka,cknna --per-row"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
fi
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
timeout 120 python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_models/test_cuda.py > "$OUT/cuda_tests.log" 2>&1; tail -15 "$OUT/cuda_tests.log"
timeout 240 python3 bench/gpu_e2e.py $E2E 2>&1 | grep -v "Loading weights" | tee "$OUT/gpu_e2e.log" | tail -12
timeout 150 python3 bench/gpu_bench.py $BENCH 2>&1 | grep -v "Loading weights" | tee "$OUT/gpu_bench.log" | tail -14
timeout 90 python3 bench/bench_align_scale.py $SCALE 2>&1 | tail -30 | tee "$OUT/bench_align_scale_gpu.log"
timeout 150 python3 bench/bench_calibration.py $CALIB 2>&1 | tee "$OUT/bench_calibration_gpu.log" | tail -16
