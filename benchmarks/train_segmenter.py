"""Train the bundled CamVid segmenter on the CPU (bf16 + channels_last), in the background:

    nohup python benchmarks/train_segmenter.py --out runs/seg/resunet.safetensors --steps 6000 > runs/seg/train.log &
    python benchmarks/train_segmenter.py ... --resume      # continue after an interrupt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ddn_cli.training.segmenter import SegmenterConfig, train_segmenter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/camvid"))
    ap.add_argument("--out", default="runs/seg/resunet.safetensors")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", default="256,320")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--arch", default="resunet_s", choices=("resunet_s", "resnet9_unet"))
    ap.add_argument("--backbone", default=None, help="resnet9_unet: classifier weights for its trunk (e.g. resnet9.cifar10)")
    ap.add_argument("--train-trunk", action="store_true", help="resnet9_unet: fine-tune the trunk too (default: frozen)")
    ap.add_argument("--trunk-lr-scale", type=float, default=1.0,
                    help="resnet9_unet with --train-trunk: the trunk's learning rate relative to --lr")
    ap.add_argument("--subset", default="", help="comma-separated CamVid sequence ids to train on (default: all)")
    a = ap.parse_args()
    crop = tuple(int(v) for v in a.crop.split(","))
    cfg = SegmenterConfig(data=a.data, out=a.out, steps=a.steps, batch_size=a.batch, crop=crop, lr=a.lr,
                          width=a.width, val_every=a.val_every, resume=a.resume,
                          subset=tuple(v for v in a.subset.split(",") if v), arch=a.arch, backbone=a.backbone,
                          frozen_trunk=not a.train_trunk, trunk_lr_scale=a.trunk_lr_scale)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    train_segmenter(cfg, lambda e: print(json.dumps({**e, "t": round(time.time() - t0, 1)}), flush=True))


if __name__ == "__main__":
    main()
