#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run: the gpu-marked tests, the PAC benchmark on CUDA, and a short
# Lightning training of every paper with trainer=gpu. Writes logs under ${OUT:-gpu_check}/.
#
#   bash scripts/gpu_check.sh            # from the repository root, with the project installed (or on PYTHONPATH)
set -uo pipefail
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 NVRESEARCH_OUTPUT=${NVRESEARCH_OUTPUT:-/tmp/nvresearch_gpu_runs}
nvidia-smi -L
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

echo "== gpu tests"
timeout 240 $PY -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$OUT/gpu_tests.log" | tail -25

echo "== PAC bench (CUDA)"
timeout 150 $PY scripts/bench/pac.py --device cuda --repeats 30 2>&1 | tee "$OUT/bench_pac_cuda.txt"
if [ "${COMPILE_BENCH:-1}" = 1 ]; then
  timeout 120 $PY scripts/bench/pac.py --device cuda --repeats 30 --no-peak --compile --skip-reference \
    --shapes "k5 B4" "k5 B16" 2>&1 | grep -v Warning | tee "$OUT/bench_pac_cuda_compile.txt"
fi

echo "== one short GPU training per paper"
for paper in ${PAPERS:-pac taylor faze funit vinterp scops dgnet}; do
  start=$(date +%s)
  timeout 90 $PY -m nvresearch.train paper="$paper" trainer=gpu trainer.max_epochs=1 \
    ++trainer.limit_train_batches=10 ++trainer.limit_val_batches=2 ++trainer.limit_test_batches=2 \
    >"$OUT/train_$paper.log" 2>&1
  rc=$?
  echo "$paper: rc=$rc in $(( $(date +%s) - start )) s; $(grep -m1 -o 'GPU available: [A-Za-z]*.*' "$OUT/train_$paper.log")"
  tail -4 "$OUT/train_$paper.log"
done
