"""Train the default denoiser on a lent GPU within a fixed time budget, then time raw
forward throughput. Prints JSON lines; everything lands in --out-dir.

Used for the shipped `ddn.color-sigma` weights (see weights/manifest.json):
    PYTHONPATH=src python3 benchmarks/gpu_train.py --data-dir .devdata --out-dir $OUT --budget 470
where .devdata mirrors ../shared/data for the files named in benchmarks/splits/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ddn_cli.training.config import TrainConfig
from ddn_cli.training.loop import train_denoiser


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--budget", type=float, default=470)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--init", default=None)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--name", default="ddn_color_sigma")
    ap.add_argument("--loss", default="l1", choices=("l1", "mse", "charbonnier"))
    ap.add_argument("--no-bench", action="store_true", help="skip the forward-throughput table")
    args = ap.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dd = Path(args.data_dir)
    log = open(out / "train_log.jsonl", "a")
    print(json.dumps({"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                      "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}), flush=True)
    cfg = TrainConfig(
        data=(str(ROOT / "benchmarks/splits/denoise_train.txt"),), val=(str(ROOT / "benchmarks/splits/denoise_val.txt"),),
        data_root=str(dd), val_sigmas=(15.0, 25.0, 50.0),
        out=str(out / f"{args.name}.safetensors"), init=args.init, steps=args.steps, time_budget=args.budget,
        batch_size=args.batch, patch=args.patch, lr=args.lr, warmup=args.warmup, val_every=1000, ckpt_minutes=1.0,
        sigma="0-75", clip_fraction=0.5, loss=args.loss, ema=0.999, device="auto", precision="bf16", seed=0,
    )
    t0 = time.time()

    def on_event(e: dict) -> None:
        e = {**e, "t": round(time.time() - t0, 1)}
        line = json.dumps(e, default=str)
        log.write(line + "\n")
        log.flush()
        if e["event"] != "step" or e["step"] % 1000 == 0:
            print(line, flush=True)

    train_denoiser(cfg, on_event)
    if torch.cuda.is_available() and not args.no_bench:
        bench(out)


@torch.no_grad()
def bench(out: Path) -> None:
    from ddn_cli.models import build_denoiser

    m = build_denoiser().cuda().eval()
    res = {}
    for name, dt in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        for cl in (False, True):
            mm = m.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            x = torch.rand(4, 3, 1024, 1024, device="cuda")
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            ctx = torch.autocast("cuda", dtype=dt) if dt else torch.autocast("cuda", enabled=False)
            with ctx:
                for _ in range(3):
                    mm(x, 0.1)
                torch.cuda.synchronize()
                t = time.perf_counter()
                n = 10
                for _ in range(n):
                    mm(x, 0.1)
                torch.cuda.synchronize()
            res[f"{name}{'_cl' if cl else ''}"] = n * 4 * 1024 * 1024 / 1e6 / (time.perf_counter() - t)
    rec = {"event": "gpu_forward_mp_per_s", "gpu": torch.cuda.get_device_name(), "tile": "4x1024x1024", **res}
    print(json.dumps(rec), flush=True)
    (out / "gpu_bench.json").write_text(json.dumps(rec, indent=2))


if __name__ == "__main__":
    main()
