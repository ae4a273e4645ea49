"""`--sigma auto` on chroma-subsampled files: JPEGs at 4:2:0 (what cameras, phones and
Pillow write by default) and lossy WebP, whose colour noise is averaged away.

For clean photos with Gaussian noise (sigma 0, 15, 25, 50), saved as JPEG at quality 95 / 85 / 75
with 4:2:0 chroma, at quality 95 with full chroma (4:4:4, the control), and as lossy WebP
(quality 90): the noise level ddn's reader and estimator find (``read_image`` + ``denoise_image``
with ``sigma=None``, as `ddn denoise` runs), the colour-patch estimate used for every file before
2026-12-03 (``estimate_sigma(color)``), and the PSNR against the clean photo of the file
itself and of the default model's output with each sigma and with the true sigma. Photos:
Kodak24 from ../shared (every third by default), or scikit-image's samples where it is absent.

    python benchmarks/jpeg_sigma.py [--n 8] [--json benchmarks/results/jpeg_sigma.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SIGMAS = (0, 15, 25, 50)
FILES = {  # name -> Pillow save arguments
    "jpeg q95 4:2:0": ("jpg", {"quality": 95, "subsampling": 2}),
    "jpeg q85 4:2:0": ("jpg", {"quality": 85, "subsampling": 2}),
    "jpeg q75 4:2:0": ("jpg", {"quality": 75, "subsampling": 2}),
    "jpeg q95 4:4:4": ("jpg", {"quality": 95, "subsampling": 0}),
    "webp q90 (lossy)": ("webp", {"quality": 90}),
}


def photos(n: int) -> tuple[str, list[np.ndarray]]:
    from PIL import Image

    kodak = sorted((ROOT.parent / "shared/data/kodak24").glob("*.png"))
    if kodak:
        step = max(1, len(kodak) // n)
        return "kodak24", [np.asarray(Image.open(p).convert("RGB")) for p in kodak[::step][:n]]
    from skimage import data

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"]
    return "scikit-image", [getattr(data, k)() for k in names[:n]]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/jpeg_sigma.json"))
    a = ap.parse_args()
    from PIL import Image

    from ddn_cli.descriptor import Denoiser
    from ddn_cli.io import read_image
    from ddn_cli.noise import estimate_sigma
    from ddn_cli.pipeline import auto_tile, denoise_image
    from ddn_cli.registry import resolve_weights

    source, clean = photos(a.n)
    den = Denoiser.load(resolve_weights(None), name="default")
    tile, batch = auto_tile(den.device.type)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for sigma in SIGMAS:
            noisy = [np.clip(np.round(c + rng.normal(0, sigma, c.shape)), 0, 255).astype(np.uint8) for c in clean]
            for name, (ext, kw) in FILES.items():
                per = []
                for i, (c, x) in enumerate(zip(clean, noisy)):
                    path = Path(td) / f"{i}.{ext}"
                    Image.fromarray(x).save(path, **kw)
                    img = read_image(path)

                    def run(s: float | None, img=img, c=c) -> tuple[float, float]:
                        out, used = denoise_image(img, den, sigma=s, tile=tile, overlap=den.overlap, batch_size=batch)
                        return psnr(out.color, c), used

                    auto_psnr, auto_sigma = run(None)
                    old_sigma = estimate_sigma(img.color)
                    per.append({"subsampled": img.chroma_subsampled, "auto_sigma": auto_sigma,
                                "colour_patch_sigma": old_sigma, "psnr_file": psnr(img.color, c),
                                "psnr_auto": auto_psnr, "psnr_colour_patch": run(old_sigma)[0],
                                "psnr_true_sigma": run(float(sigma))[0] if sigma else psnr(img.color, c)})
                row = {"sigma": sigma, "file": name, "subsampled": all(p["subsampled"] for p in per)}
                for k in ("auto_sigma", "colour_patch_sigma", "psnr_file", "psnr_auto", "psnr_colour_patch",
                          "psnr_true_sigma"):
                    row[k] = round(statistics.mean(p[k] for p in per), 3)
                row["auto_sigma_range"] = [round(min(p["auto_sigma"] for p in per), 2),
                                           round(max(p["auto_sigma"] for p in per), 2)]
                rows.append(row)
                print(f"sigma {sigma:2d}  {name:17s} subsampled={row['subsampled']!s:5s}  "
                      f"auto {row['auto_sigma']:5.1f} (colour patches {row['colour_patch_sigma']:5.1f})  PSNR: file "
                      f"{row['psnr_file']:.2f}  auto {row['psnr_auto']:.2f}  colour-patch sigma "
                      f"{row['psnr_colour_patch']:.2f}  true sigma {row['psnr_true_sigma']:.2f}", flush=True)
    out = {"photos": source, "n": len(clean), "model": "ddn.color-sigma (default)", "precision": den.precision.name, "rows": rows, "command": " ".join(sys.argv)}
    Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
