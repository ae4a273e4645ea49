"""`ddn segment` on clean CamVid val frames turned grey: pixel accuracy and mIoU against the
ground truth with `--sigma auto` (the default), with `--no-denoise` and with `--sigma 0.5`.

    python benchmarks/grey_segment.py [--camvid ../shared/data/camvid] [--every 20] [--n 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--camvid", default=str(ROOT.parent / "shared/data/camvid"))
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--n", type=int, default=5)
    a = ap.parse_args()
    cv = Path(a.camvid)
    names = sorted(p.stem for p in (cv / "val").glob("*.jpg"))[::a.every][:a.n]
    work = Path(tempfile.mkdtemp(prefix="ddn_grey_seg_"))
    try:
        frames = work / "grey"
        frames.mkdir()
        for n in names:
            Image.open(cv / "val" / f"{n}.jpg").convert("L").save(frames / f"{n}.png")
        for label, extra in (("auto", []), ("no-denoise", ["--no-denoise"]), ("sigma 0.5", ["--sigma", "0.5"])):
            out = work / label.replace(" ", "_")
            subprocess.run([sys.executable, "-m", "ddn_cli", "segment", str(frames), str(out), "--json",
                            str(out) + ".json", *extra], check=True, capture_output=True)
            conf = np.zeros((11, 11), np.int64)
            for n in names:
                gt = np.asarray(Image.open(cv / "valannot" / f"{n}.png")).astype(int)
                pr = np.asarray(Image.open(out / f"{n}.mask.png")).astype(int)
                k = gt < 11
                conf += np.bincount(gt[k] * 11 + pr[k], minlength=121).reshape(11, 11)
            inter = np.diag(conf)
            union = conf.sum(0) + conf.sum(1) - inter
            sig = [r["sigma"] for r in json.loads(Path(str(out) + ".json").read_text())]
            print(f"{label}: sigmas {sig}  pixel acc {inter.sum() / conf.sum():.4f}  "
                  f"mIoU {np.mean(inter[union > 0] / union[union > 0]):.4f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
