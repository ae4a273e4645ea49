#!/usr/bin/env bash
# A lent-GPU call for issue #6, prepared on the CPU (2026-12-01): distil the narrowed copies of
# the default denoiser (benchmarks/prune_width.py) from it with a GPU's amount of training, side
# by side, then measure them against it on CBSD68 in fp32. The CPU speed of what comes back is
# measured here afterwards (`python benchmarks/pipeline_ab.py --candidate ...`); the rule fixed
# before any run: a narrowed model replaces the default only if it is above CDnCNN-B and FFDNet
# on CBSD68 at sigma 15, 25 and 50 (benchmarks/results/anchors_cbsd68.json).
#
#   python benchmarks/make_devdata.py                                    # here, once
#   python benchmarks/prune_width.py --width 192 --out runs/prune/w192_init.safetensors   # if absent
#   run: bash benchmarks/device_distill.sh, carry [".devdata", "runs/prune/w224d.safetensors",
#        "runs/prune/w192_init.safetensors"] (63.2 MiB of the 64 allowed), timeout_s 560
#        (BUDGET 300 s of training each, then up to 120 s of evaluation)
#   OUT=/tmp/o BUDGET=20 LIMIT=2 DEVICE=cpu bash benchmarks/device_distill.sh   # dry run here
# The 224-wide one continues from the 55-minute CPU distillation (runs/prune/w224d); the 192-wide
# one starts from the pruned copy. Each: batch 64 of 256 px patches (16x the pixels of a CPU step).
set -uo pipefail
OUT=${OUT:?}
BUDGET=${BUDGET:-300}
LIMIT=${LIMIT:-0}
DEVICE=${DEVICE:-cuda}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 DDN_HOME=/tmp/ddn_home
PY=${PY:-python3}
BATCH=${BATCH:-64}
PATCH=${PATCH:-256}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT/distill.log"
pids=()
for init in runs/prune/w224d.safetensors runs/prune/w192_init.safetensors; do
  name=$(basename "$init" .safetensors)
  rm -rf "/tmp/$name"; mkdir -p "/tmp/$name"
  $PY -m ddn_cli train --init "$init" --distill ddn.color-sigma --data benchmarks/splits/denoise_train.txt \
      --val benchmarks/splits/denoise_val.txt --data-root .devdata --loss mse --lr 1e-4 --warmup 200 \
      --batch-size "$BATCH" --patch "$PATCH" --steps 0 --time-budget "$BUDGET" --val-every 100000 \
      --device "$DEVICE" --out "/tmp/$name/${name}_gpu.safetensors" > "/tmp/$name/train.out" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
models=(-m ddn.color-sigma)
for name in w224d w192_init; do
  echo "== $name" | tee -a "$OUT/distill.log"; tail -n 3 "/tmp/$name/train.out" | tee -a "$OUT/distill.log"
  f="/tmp/$name/${name}_gpu.safetensors"
  if [ -f "$f" ]; then cp "$f" "$OUT/"; models+=(-m "$f"); fi
  cp "/tmp/$name/${name}_gpu.json" "/tmp/$name/${name}_gpu.log" "$OUT/" 2>/dev/null
done
timeout 120 $PY -m ddn_cli eval denoise .devdata/bsds500/CBSD68_ids.txt --data-root .devdata/bsds500/images \
    --sigma 15,25,50 --no-ssim --limit "$LIMIT" --device "$DEVICE" --precision fp32 "${models[@]}" \
    --json "$OUT/eval_cbsd68_distilled.json" 2>&1 | tail -n 12 | tee -a "$OUT/distill.log" || rc=1
ls -la "$OUT"
exit "$rc"
