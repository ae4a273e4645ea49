"""Pick the cascade's lambda: short fine-tunes of the shipped denoiser through the frozen
high-level network at several lambdas (lambda 0 = the same fine-tune with the MSE alone, the
control), compared on the cascade's held-out slice of the training data (never the reported
evaluation sets). Writes benchmarks/results/cascade/sweep_<task>.json.

    python benchmarks/cascade_sweep.py --task cls --lambdas 0,0.01,0.1,1 --steps 400
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ddn_cli.training.config import TrainConfig
from ddn_cli.training.loop import train_denoiser


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=("seg", "cls"), required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--task-net", default=None)
    ap.add_argument("--lambdas", default="0,0.01,0.1,1")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--patch", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--out", default="runs/sweep")
    ap.add_argument("--target", default="labels", choices=("labels", "clean", "soft"))
    ap.add_argument("--sigma", default="0-75")
    ap.add_argument("--task-augment", action="store_true", help="seg: random shift + downscale before the segmenter")
    ap.add_argument("--no-class-weights", action="store_true", help="seg: the plain cross entropy, not class-weighted")
    ap.add_argument("--subset", default="", help="seg: comma-separated CamVid sequence ids to train on")
    ap.add_argument("--tag", default="", help="suffix for the weights and the JSON, to keep earlier sweeps")
    ap.add_argument("--rehearse", default="", help="comma-separated photo folders / list files: their MSE is added each step")
    ap.add_argument("--rehearse-batch", type=int, default=8)
    ap.add_argument("--rehearse-patch", type=int, default=96)
    ap.add_argument("--task-rec-weight", type=float, default=1.0, help="weight of L_rec on the task's images (0: only --rehearse photos)")
    ap.add_argument("--task-grad-blur", type=float, default=0.0, help="blur the task loss's gradient (Gaussian std, px)")
    ap.add_argument("--task-grad-highpass", type=float, default=0.0, help="remove the gradient's blur by this Gaussian (px)")
    ap.add_argument("--task-noise", type=float, default=0.0, help="Gaussian noise (8-bit levels) added before the task network")
    ap.add_argument("--task-scale", type=int, default=1, help="cls: upscale the images this much for the denoiser")
    ap.add_argument("--task-pcgrad", action="store_true", help="with --rehearse: project the task loss's gradient off the reconstruction loss's where they conflict")
    ap.add_argument("--rehearse-features", type=float, default=0.0, help="with --rehearse: weight of the task network's trunk-feature error on the photos")
    ap.add_argument("--train-only", default="", help="comma-separated denoiser layers that learn (default: all)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (a lent GPU: benchmarks/device_cascade.sh)")
    ap.add_argument("--budget", type=float, default=0.0, help="seconds per run; with --steps 0 the step count is calibrated to it")
    ap.add_argument("--val-every", type=int, default=0, help="validate every N steps (default: once, at the end)")
    ap.add_argument("--seed", type=int, default=0, help="another seed: other crops, noise and sample order")
    a = ap.parse_args()
    data = a.data or str(ROOT.parent / "shared/data" / ("camvid" if a.task == "seg" else "cifar10/train"))
    batch = a.batch or (4 if a.task == "seg" else 128)
    patch = a.patch or (192 if a.task == "seg" else 32)
    rows = []
    for lam in (float(v) for v in a.lambdas.split(",")):
        out = Path(a.out) / f"{a.task}_lambda{lam:g}{'' if a.target == 'labels' else '_' + a.target}{a.tag and '_' + a.tag}.safetensors"
        out.parent.mkdir(parents=True, exist_ok=True)
        cfg = TrainConfig(task=a.task, data=(data,), out=str(out), steps=a.steps, batch_size=batch, patch=patch,
                          lr=a.lr, warmup=min(100, a.steps // 10) if a.steps else 100, loss="mse", lam=lam, task_net=a.task_net,
                          task_target=a.target, task_augment=a.task_augment, task_class_weights=not a.no_class_weights, sigma=a.sigma, subset=tuple(v for v in a.subset.split(",") if v),
                          init="ddn.color-sigma", val_sigmas=(30.0, 60.0), val_every=a.val_every or a.steps or 10**9,
                          ema=0.0, ckpt_minutes=60, device=a.device, time_budget=a.budget,
                          rehearse=tuple(v for v in a.rehearse.split(",") if v), rehearse_batch=a.rehearse_batch,
                          rehearse_patch=a.rehearse_patch, task_rec_weight=a.task_rec_weight,
                          task_grad_blur=a.task_grad_blur, task_grad_highpass=a.task_grad_highpass, task_noise=a.task_noise, task_scale=a.task_scale, task_pcgrad=a.task_pcgrad, rehearse_features=a.rehearse_features,
                          train_only=tuple(v for v in a.train_only.split(",") if v), seed=a.seed)
        t0 = time.time()
        res = train_denoiser(cfg, lambda e: print(json.dumps(e, default=str), flush=True)
                             if e["event"] in ("val", "done", "cascade", "step") else None)
        best = res["best"]
        rows.append({"lambda": lam, "steps": res["steps_done"], "seconds": round(time.time() - t0, 1),
                     "psnr": best["psnr"], "metric": best.get("metric"), "weights": str(out)})
        print(json.dumps(rows[-1]), flush=True)
        write(a, data, batch, patch, rows)  # after every run, so an interrupted sweep keeps its rows


def write(a, data: str, batch: int, patch: int, rows: list[dict]) -> None:
    doc = {"task": a.task, "data": data, "steps": a.steps, "batch": batch, "patch": patch, "lr": a.lr,
           "held_out": "cascade validation slice of the training data", "metric": "mIoU" if a.task == "seg" else "top-1",
           "rows": rows, "command": " ".join(sys.argv)}
    dst = ROOT / "benchmarks/results/cascade" / f"sweep_{a.task}{'' if a.target == 'labels' else '_' + a.target}{a.tag and '_' + a.tag}.json"
    if dst.is_file():  # another run with this tag (e.g. one lambda per process, side by side): keep its rows
        old = json.loads(dst.read_text())
        mine = {r["weights"] for r in rows}
        doc["rows"] = [r for r in old["rows"] if r.get("weights") not in mine] + rows
        if old.get("command") and old["command"] != doc["command"] and doc["command"] not in old["command"]:
            doc["command"] = old["command"] + "` and `" + doc["command"]
    dst.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
