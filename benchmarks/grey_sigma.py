"""Grey images through ddn, two source trees side by side: the `--sigma auto` estimate and the
PSNR of the default model's output with it and with the true sigma, on Kodak24 turned grey
(BT.601 luma, 8-bit), noised, clipped and quantised like a real file. Each tree runs in its
own process (``PYTHONPATH=TREE``), through ``pipeline.denoise_image`` as `ddn denoise` does.

    python benchmarks/grey_sigma.py --against /tmp/old/src [--json benchmarks/results/grey_sigma.json]

``--against``: the other tree's ``src`` folder (e.g. a `git worktree` of an earlier commit).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def worker(data: str, sigmas: list[float], limit: int) -> list[dict]:
    """In a process whose ``ddn_cli`` is the tree under test."""
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.evaluation.metrics import psnr
    from ddn_cli.io import ImageData
    from ddn_cli.noise import estimate_sigma
    from ddn_cli.pipeline import denoise_image
    from ddn_cli.registry import resolve_weights
    from ddn_cli.training.data import decode_rgb8, list_training_images

    den = Denoiser.load(resolve_weights(None), device="cpu", precision="auto")
    paths = list_training_images([data])[:limit or None]
    greys = [np.rint(decode_rgb8(p) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None] for p in paths]
    rows = []
    for s in sigmas:
        est, p_auto, p_true = [], [], []
        for i, g in enumerate(greys):
            rng = np.random.default_rng(1000 + i)
            noisy = np.clip(np.rint(g + rng.normal(0, s, g.shape)), 0, 255).astype(np.uint8)
            img = ImageData(noisy, None, 8, "png")
            e = estimate_sigma(noisy)
            est.append(e)
            for sig, acc in ((e, p_auto), (s, p_true)):
                out, _ = denoise_image(img, den, sigma=sig, tile=512, overlap=48, batch_size=1)
                acc.append(psnr(out.color, g))
        rows.append({"sigma": s, "estimate_mean": float(np.mean(est)), "estimate_min": float(np.min(est)),
                     "estimate_max": float(np.max(est)), "psnr_noisy_auto": float(np.mean(p_auto)),
                     "psnr_true_sigma": float(np.mean(p_true)), "images": len(greys)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/kodak24"))
    ap.add_argument("--against", help="the other tree's src/ folder (compared with this tree's)")
    ap.add_argument("--sigmas", default="0,5,10,15,25,50")
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0 = all)")
    ap.add_argument("--json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    sigmas = [float(v) for v in a.sigmas.split(",")]
    if a.worker:
        print(json.dumps(worker(a.data, sigmas, a.limit)))
        return
    trees = {"this": ROOT / "src"} | ({"against": Path(a.against)} if a.against else {})
    res = {}
    for tag, src in trees.items():
        env = {**os.environ, "PYTHONPATH": str(src)}
        r = subprocess.run([sys.executable, __file__, "--worker", "--data", a.data, "--sigmas", a.sigmas,
                            "--limit", str(a.limit)], env=env, capture_output=True, text=True, check=True)
        res[tag] = json.loads(r.stdout.strip().splitlines()[-1])
    for i, s in enumerate(sigmas):
        line = f"sigma {s:4g}:"
        for tag in res:
            r = res[tag][i]
            line += (f"  [{tag}] estimate {r['estimate_mean']:.2f} ({r['estimate_min']:.2f}-{r['estimate_max']:.2f}),"
                     f" PSNR auto {r['psnr_noisy_auto']:.2f} / true sigma {r['psnr_true_sigma']:.2f} dB")
        print(line, flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"data": a.data, "trees": {k: str(v) for k, v in trees.items()},
                                            "rows": res}, indent=2) + "\n")


if __name__ == "__main__":
    main()
