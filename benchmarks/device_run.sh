#!/usr/bin/env bash
# One lent-GPU session, prepared on the CPU (issues #2, #3, #6). Run from the repo root:
#   bash benchmarks/device_run.sh            # on the device; results in $OUT
#   OUT=/tmp/o BUDGET=20 LIMIT=2 DEVICE=cpu bash benchmarks/device_run.sh   # dry run here
# .devdata/ (git-ignored, carried) mirrors ../shared/data for benchmarks/splits/*.txt, plus
# .devdata/cbsd68/ with the 68 CBSD68 JPEGs.
# 1. device_check.py: GPU precision PSNR vs fp32 on CBSD68 and 12 MP pipeline MP/s (alone on the GPU).
# 2. two fine-tunes of weights/ddn.color-sigma.safetensors side by side (selected later on the
#    held-out ImageNet validation images, then measured on CBSD68 with `ddn eval denoise`).
set -u
OUT=${OUT:?}
BUDGET=${BUDGET:-270}
LIMIT=${LIMIT:-0}
DEVICE=${DEVICE:-cuda}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 DDN_HOME=/tmp/ddn_home
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT/run.log"
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" 2>&1 | tee -a "$OUT/run.log"
timeout 200 $PY benchmarks/device_check.py --data .devdata/cbsd68 --limit "$LIMIT" --device "$DEVICE" --out "$OUT" 2>&1 | tee -a "$OUT/run.log"
rm -rf /tmp/ft_a /tmp/ft_b
$PY benchmarks/gpu_train.py --data-dir .devdata --out-dir /tmp/ft_a --budget "$BUDGET" --init weights/ddn.color-sigma.safetensors \
    --lr 1e-4 --warmup 200 --batch 32 --patch 192 --name ft_a > /tmp/ft_a.log 2>&1 &
A=$!
$PY benchmarks/gpu_train.py --data-dir .devdata --out-dir /tmp/ft_b --budget "$BUDGET" --init weights/ddn.color-sigma.safetensors \
    --lr 5e-5 --warmup 200 --batch 64 --patch 256 --name ft_b --no-bench > /tmp/ft_b.log 2>&1 &
B=$!
wait $A $B
for r in a b; do
  echo "== ft_$r" | tee -a "$OUT/run.log"; tail -n 5 /tmp/ft_$r.log | tee -a "$OUT/run.log"
  cp /tmp/ft_$r/ft_$r.safetensors "$OUT/ft_$r.safetensors" 2>/dev/null
  cp /tmp/ft_$r/train_log.jsonl "$OUT/ft_${r}_log.jsonl" 2>/dev/null
done
cp /tmp/ft_a/gpu_bench.json "$OUT/" 2>/dev/null
ls -la "$OUT"
