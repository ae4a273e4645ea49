"""Fit the noise-level calibration (``sigma_gain``) of a noise-level denoiser on validation
photos, and write a copy of the weights that carries it.

The network gets a constant sigma map. A trained model does not have to be at its best
when that map holds exactly the true sigma: on the validation photos the v2 default gains
about 0.02 dB at sigma 15 when it is told 0.97 x sigma. For each knot sigma this script
tries gains on a grid (then half a step either side of the best), with the standard
protocol (seeded unclipped noise, round to uint8, PSNR), on the *validation* list only,
and stores the best gain per knot in the model's config; the model interpolates between
knots. CBSD68 and Kodak24 are never used here.

    python benchmarks/sigma_calibration.py --out runs/cal/ddn.color-sigma.safetensors \\
        --json benchmarks/results/sigma_calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ddn_cli.descriptor import Denoiser
from ddn_cli.evaluation.denoise_eval import evaluate, load_eval_images
from ddn_cli.registry import resolve_weights
from ddn_cli.weightfile import load_weights, save_weights


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ddn.color-sigma")
    ap.add_argument("--val", default=str(ROOT / "benchmarks/splits/denoise_val.txt"))
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared/data"))
    ap.add_argument("--knots", default="5,10,15,20,25,35,50,75")
    ap.add_argument("--grid", default="0.95,1.03,0.01", help="lo,hi,step of the gain grid")
    ap.add_argument("--out", required=True, help="calibrated copy of the weights (.safetensors)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    src = resolve_weights(a.model)
    sd, meta = load_weights(src)
    config = dict(meta.get("config", {}))
    if not config.get("noise_level", True):
        sys.exit(f"{src}: not a noise-level model; nothing to calibrate")
    base = {**meta, "config": {**config, "sigma_gain": []}}  # fit from the uncalibrated network
    tmp = Path(a.out).with_suffix(".uncalibrated.safetensors")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    save_weights(sd, tmp, base)
    den = Denoiser.load(tmp, device="cpu", precision="fp32")
    images = load_eval_images([a.val], 0, a.data_root)

    def score(sigma: float, gain: float) -> float:
        fn = lambda n, s: den(np.clip(n, -1, 2)[None].astype("float32"), s)[0]
        return evaluate(fn, images, [sigma], sigma_for_model=lambda n, s: s * gain)[float(sigma)]["psnr"]

    lo, hi, step = (float(v) for v in a.grid.split(","))
    grid = [round(lo + i * step, 4) for i in range(round((hi - lo) / step) + 1)]
    t0 = time.time()
    rows = []
    for sigma in (float(v) for v in a.knots.split(",")):
        tried = {g: score(sigma, g) for g in grid}
        best = max(tried, key=tried.get)
        for g in (round(best - step / 2, 4), round(best + step / 2, 4)):
            tried[g] = score(sigma, g)
        best = max(tried, key=tried.get)
        rows.append({"sigma": sigma, "gain": best, "psnr": tried[best], "psnr_gain1": tried[1.0],
                     "tried": {f"{g:g}": round(v, 4) for g, v in sorted(tried.items())}})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "tried"}), flush=True)
    tmp.unlink()
    knots = [[r["sigma"], r["gain"]] for r in rows]
    out_meta = {**meta, "config": {**config, "sigma_gain": knots},
                "calibration": {"what": "sigma_gain fitted on validation photos", "val": a.val, "images": len(images),
                                "grid": a.grid, "command": " ".join(["python", *sys.argv])}}
    save_weights(sd, Path(a.out), out_meta)
    doc = {"model": str(src), "val": a.val, "images": len(images), "seconds": round(time.time() - t0, 1),
           "knots": rows, "out": a.out}
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"out": a.out, "sigma_gain": knots, "seconds": doc["seconds"]}))


if __name__ == "__main__":
    main()
