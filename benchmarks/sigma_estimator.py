"""Error of the --sigma auto estimator on a folder of clean images (default Kodak24).

    python benchmarks/sigma_estimator.py ../shared/data/kodak24 --json benchmarks/results/sigma_estimator.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from ddn_cli.evaluation.protocol import make_noisy
from ddn_cli.noise import estimate_sigma
from ddn_cli.training.data import decode_rgb8, list_training_images


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default="../shared/data/kodak24")
    ap.add_argument("--sigmas", default="0,5,10,15,20,25,30,40,50")
    ap.add_argument("--json")
    a = ap.parse_args()
    imgs = [(p.stem, decode_rgb8(p)) for p in list_training_images([a.data])]
    rows = []
    for clip in (False, True):
        for s in [float(v) for v in a.sigmas.split(",")]:
            t = time.perf_counter()
            err = np.array([estimate_sigma(make_noisy(c, s, n, clip=clip)) - s for n, c in imgs])
            rows.append({"sigma": s, "clip": clip, "mean_err": float(err.mean()), "mean_abs_err": float(np.abs(err).mean()),
                         "max_abs_err": float(np.abs(err).max()), "s_per_image": (time.perf_counter() - t) / len(imgs)})
            r = rows[-1]
            print(f"{'clipped  ' if clip else 'unclipped'} sigma {s:4g}: mean err {r['mean_err']:+.2f}  "
                  f"mean |err| {r['mean_abs_err']:.2f}  max |err| {r['max_abs_err']:.2f}  {r['s_per_image']:.2f} s/img")
    if a.json:
        Path(a.json).write_text(json.dumps({"data": a.data, "images": len(imgs), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
