"""PNG encoders on denoised photos: time and file size.

ddn's writer (``ddn_cli.pngwrite``: Sub, Up or Average per row + ISA-L deflate, and its zlib fallback)
against the encoder it replaced (OpenCV, Paeth filter, zlib level 1 run-length) and
Pillow (adaptive filters, zlib levels 1 and 6). Inputs: Kodak photos from ../shared (or
scikit-image's photos where ../shared is absent) with sigma 25 noise, denoised by the
default model, plus 256x320 crops of them (the folder benchmark's size). Each figure is
the minimum over --reps encodes, summed over the images.

    python benchmarks/png_encode.py [--n 8] [--reps 7]
Writes benchmarks/results/png_encode.json. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def photos(n: int) -> tuple[str, list[np.ndarray]]:
    from PIL import Image

    kodak = sorted((ROOT.parent / "shared/data/kodak24").glob("*.png"))
    if kodak:
        return "kodak24", [np.asarray(Image.open(p).convert("RGB")) for p in kodak[:n]]
    from skimage import data

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"]
    return "scikit-image", [getattr(data, k)() for k in names[:n]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/png_encode.json"))
    a = ap.parse_args()
    import cv2
    from PIL import Image

    import ddn_cli.pngwrite as pw
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.io import ImageData
    from ddn_cli.pipeline import denoise_image
    from ddn_cli.registry import resolve_weights

    source, clean = photos(a.n)
    den = Denoiser.load(resolve_weights(None), name="default")
    rng = np.random.default_rng(0)
    full = []
    for c in clean:
        noisy = np.clip(np.round(c + rng.normal(0, 25, c.shape)), 0, 255).astype(np.uint8)
        out, _ = denoise_image(ImageData(color=noisy, alpha=None, bits=8, format="png"), den, sigma=25,
                               tile=512, overlap=32, batch_size=1)
        full.append(out.color)
    crops = [f[:256, :320] for f in full]

    def ddn_isal(x):
        b = io.BytesIO()
        pw.write_png(b, x)
        return b.getvalue()

    def ddn_zlib(x):
        saved = sys.modules.get("isal")
        sys.modules["isal"] = None  # the fallback, as on a machine without isal
        try:
            return ddn_isal(x)
        finally:
            if saved is None:
                del sys.modules["isal"]
            else:
                sys.modules["isal"] = saved

    paeth = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
             cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH]

    def opencv_paeth(x):
        return cv2.imencode(".png", np.ascontiguousarray(x[..., ::-1]), paeth)[1].tobytes()

    def pillow(level):
        def enc(x):
            b = io.BytesIO()
            Image.fromarray(x).save(b, "PNG", compress_level=level)
            return b.getvalue()
        return enc

    encoders = {"ddn (Sub|Up|Average + ISA-L 3)": ddn_isal, "ddn without isal (zlib 1 RLE)": ddn_zlib,
                "OpenCV (Paeth + zlib 1 RLE; ddn before)": opencv_paeth, "Pillow level 1": pillow(1),
                "Pillow level 6 (its default)": pillow(6)}
    rows = []
    for set_name, images in (("full", full), ("256x320 crops", crops)):
        for name, enc in encoders.items():
            total, size = 0.0, 0
            for x in images:
                best = float("inf")
                for _ in range(a.reps):
                    t0 = time.perf_counter()
                    data = enc(x)
                    best = min(best, time.perf_counter() - t0)
                back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                assert np.array_equal(back, x), name  # every encoder is lossless
                total += best
                size += len(data)
            mp = sum(x.shape[0] * x.shape[1] for x in images) / 1e6
            rows.append({"set": set_name, "encoder": name, "ms_per_image": 1e3 * total / len(images),
                         "mp_per_s": mp / total, "kb": size / 1e3})
    for set_name in ("full", "256x320 crops"):
        ref = next(r for r in rows if r["set"] == set_name and r["encoder"].startswith("OpenCV"))
        for r in rows:
            if r["set"] == set_name:
                r["speed_vs_opencv"] = ref["ms_per_image"] / r["ms_per_image"]
                r["size_vs_opencv"] = r["kb"] / ref["kb"]
    print(f"{len(full)} {source} photos denoised by the default model (sigma 25), and 256x320 crops; "
          f"min of {a.reps} encodes each")
    print(f"{'set':14s} {'encoder':42s} {'ms/image':>9s} {'MP/s':>7s} {'kB':>8s} {'speed':>6s} {'size':>6s}")
    for r in rows:
        print(f"{r['set']:14s} {r['encoder']:42s} {r['ms_per_image']:9.2f} {r['mp_per_s']:7.1f} {r['kb']:8.0f} "
              f"{r['speed_vs_opencv']:5.2f}x {r['size_vs_opencv']:6.3f}")
    Path(a.json).write_text(json.dumps({"source": source, "images": len(full), "reps": a.reps, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
