#!/usr/bin/env bash
# Lent-GPU call of the 2026-11-30 evening session (issue #4): does the segmentation task loss
# help once the cascade is trained on far more crops than the CPU sweeps (1000 steps of 4 x 192 px)?
# Seg cascades from the shipped default (ddn.color-sigma v4), --task-augment, batch 16 x 256 px
# crops, the same time budget each, all side by side on the one GPU: lambda 0 (the control,
# MSE only) and the task loss at several lambdas. Selected on the cascade's held-out slice of
# the CamVid training images; CamVid val is measured afterwards on the CPU with `ddn eval seg`.
#   bash benchmarks/device_cascade.sh                   # on the device; results in $OUT
#   OUT=/tmp/o BUDGET=20 DEVICE=cpu LAMBDAS="0 0.0001" BATCH=2 PATCH=128 bash benchmarks/device_cascade.sh   # dry run here
# .devdata/camvid (git-ignored, carried, deleted after the call) holds CamVid's train/ and trainannot/.
set -u
OUT=${OUT:?}
BUDGET=${BUDGET:-360}
DEVICE=${DEVICE:-cuda}
LAMBDAS=${LAMBDAS:-0 0.00003 0.0001 0.0003 0.001}
BATCH=${BATCH:-16}
PATCH=${PATCH:-256}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 DDN_HOME=/tmp/ddn_home OMP_NUM_THREADS=${OMP_NUM_THREADS:-3}
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT/cascade.log"
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" 2>&1 | tee -a "$OUT/cascade.log"
pids=()
for lam in $LAMBDAS; do
  $PY benchmarks/cascade_sweep.py --task seg --data .devdata/camvid --lambdas "$lam" --steps 0 --budget "$BUDGET" \
      --val-every 1500 --batch "$BATCH" --patch "$PATCH" --lr 1e-4 ${AUGMENT---task-augment} --device "$DEVICE" \
      --tag "gpu$lam" --out /tmp/gpu_sweep > "/tmp/seg_$lam.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
for lam in $LAMBDAS; do
  echo "== lambda $lam" | tee -a "$OUT/cascade.log"
  grep -E '"event": "(calibrated|val|done)"|Error|error' "/tmp/seg_$lam.log" | cut -c1-400 | tee -a "$OUT/cascade.log"
  cp /tmp/gpu_sweep/*_gpu"$lam".safetensors "$OUT/" 2>/dev/null
done
cat benchmarks/results/cascade/sweep_seg_gpu*.json > "$OUT/sweep_rows.txt" 2>/dev/null
ls -la "$OUT"
