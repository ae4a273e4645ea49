"""Train the bundled CIFAR-10 classifier on the CPU (bf16 + channels_last), in the background:

    nohup python benchmarks/train_classifier.py --out runs/cls/resnet9.safetensors --epochs 20 > runs/cls.log &
    python benchmarks/train_classifier.py ... --resume      # continue after an interrupt
    python benchmarks/train_classifier.py --init resnet9.cifar10 --noise-max 50 --epochs 10 --lr 0.04 \
        --out runs/cls/resnet9_noisy50.safetensors               # a noise-robust fine-tune (RESULTS.md)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ddn_cli.training.classifier import ClassifierConfig, train_classifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10/train"))
    ap.add_argument("--out", default="runs/cls/resnet9.safetensors")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--budget", type=float, default=0.0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--noise-max", type=float, default=0.0,
                    help="Gaussian noise of std U(0, this) 8-bit levels on every training image (noise-robust)")
    ap.add_argument("--init", default=None, help="fine-tune this resnet9 classifier (name or path) instead of from scratch")
    ap.add_argument("--warmup-frac", type=float, default=0.15)
    a = ap.parse_args()
    cfg = ClassifierConfig(data=a.data, out=a.out, epochs=a.epochs, batch_size=a.batch, lr=a.lr, time_budget=a.budget,
                           resume=a.resume, ckpt_minutes=3.0, noise_max=a.noise_max, init=a.init,
                           warmup_frac=a.warmup_frac)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    train_classifier(cfg, lambda e: print(json.dumps({**e, "t": round(time.time() - t0, 1)}), flush=True))


if __name__ == "__main__":
    main()
