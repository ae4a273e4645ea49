"""`--sigma auto` on black-and-white content saved as a colour 4:2:0 JPEG: noise that is the
same in all three channels. Kodak24 photos (every fourth; ../shared) turned grey, noised
(sigma 10 and 25), replicated to RGB, saved at quality 95 with 4:2:0 chroma; each is denoised
by the default model with auto's sigma, the per-channel sigma, 1.5x and sqrt(3)x it (what ddn
tells the model for grey files), and the mean PSNR against the clean grey photo is reported.

    python benchmarks/grey_jpeg_sigma.py [--json benchmarks/results/grey_jpeg_sigma.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/grey_jpeg_sigma.json"))
    a = ap.parse_args()
    from PIL import Image

    from ddn_cli.descriptor import Denoiser
    from ddn_cli.io import read_image
    from ddn_cli.pipeline import denoise_image
    from ddn_cli.registry import resolve_weights

    paths = sorted((ROOT.parent / "shared/data/kodak24").glob("*.png"))[::4]
    if not paths:
        raise SystemExit("needs ../shared/data/kodak24")
    den = Denoiser.load(resolve_weights(None), name="default")
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for sigma in (10, 25):
            per: dict[str, list[float]] = {}
            used = []
            for p in paths:
                g = np.asarray(Image.open(p).convert("L")).astype(np.float64)
                n = np.clip(np.round(g + rng.normal(0, sigma, g.shape)), 0, 255).astype(np.uint8)
                Image.fromarray(np.repeat(n[..., None], 3, 2)).save(Path(td) / "bw.jpg", quality=95, subsampling=2)
                img = read_image(Path(td) / "bw.jpg")
                clean = np.repeat(g[..., None], 3, 2)
                for name, s in (("auto", None), ("per-channel", sigma), ("1.5x", 1.5 * sigma),
                                ("sqrt3x", sigma * 3 ** 0.5)):
                    out, s_used = denoise_image(img, den, sigma=s, tile=512, overlap=48, batch_size=1)
                    mse = np.mean((out.color.astype(np.float64) - clean) ** 2)
                    per.setdefault(name, []).append(float(10 * np.log10(255.0 ** 2 / mse)))
                    if s is None:
                        used.append(s_used)
            row = {"sigma": sigma, "auto_sigma_mean": round(float(np.mean(used)), 2),
                   "psnr": {k: round(float(np.mean(v)), 2) for k, v in per.items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(a.json).write_text(json.dumps({"photos": [p.name for p in paths], "rows": rows,
                                        "command": " ".join(["python"] + sys.argv)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
