#!/usr/bin/env bash
# Second lent-GPU call of the 2026-11-26 session (issues #3, #6), after device_run.sh:
# where a 12 MP denoise spends its time on the GPU, then two MSE (L2) fine-tunes of the
# val-best L1 fine-tune (runs/ft/ft_b.safetensors, carried) side by side. L2 is PSNR's own loss.
#   bash benchmarks/device_run2.sh          # on the device; results in $OUT
#   OUT=/tmp/o BUDGET=20 DEVICE=cpu bash benchmarks/device_run2.sh   # dry run here
set -u
OUT=${OUT:?}
BUDGET=${BUDGET:-230}
DEVICE=${DEVICE:-cuda}
INIT=${INIT:-runs/ft/ft_b.safetensors}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 DDN_HOME=/tmp/ddn_home
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT/run2.log"
if [ "$DEVICE" = cuda ]; then P=(); else P=(--tiles 512 --precisions bf16 --reps 1); fi
timeout 100 $PY benchmarks/gpu_pipeline_probe.py --device "$DEVICE" "${P[@]}" --out "$OUT" 2>&1 | tee -a "$OUT/run2.log"
rm -rf /tmp/ft_c /tmp/ft_d
$PY benchmarks/gpu_train.py --data-dir .devdata --out-dir /tmp/ft_c --budget "$BUDGET" --init "$INIT" \
    --loss mse --lr 5e-5 --warmup 100 --batch 64 --patch 256 --name ft_c --no-bench > /tmp/ft_c.log 2>&1 &
C=$!
$PY benchmarks/gpu_train.py --data-dir .devdata --out-dir /tmp/ft_d --budget "$BUDGET" --init "$INIT" \
    --loss mse --lr 2e-5 --warmup 100 --batch 64 --patch 256 --name ft_d --no-bench > /tmp/ft_d.log 2>&1 &
D=$!
wait $C $D
for r in c d; do
  echo "== ft_$r" | tee -a "$OUT/run2.log"; tail -n 4 /tmp/ft_$r.log | tee -a "$OUT/run2.log"
  cp /tmp/ft_$r/ft_$r.safetensors "$OUT/" 2>/dev/null
  cp /tmp/ft_$r/train_log.jsonl "$OUT/ft_${r}_log.jsonl" 2>/dev/null
done
ls -la "$OUT"
