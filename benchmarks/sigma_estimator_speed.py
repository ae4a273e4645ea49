"""The `--sigma auto` estimator of this checkout against another's, in one process: how long
one estimate takes (a noisy 256 x 320 crop, a 12 MP photo) and how far the two estimates lie
apart on Kodak24 images at several sigmas, as 8-bit, 16-bit, float (unclipped), grey, luma
(chroma-subsampled files), with alpha, cropped and tiled to 12 MP (the sampled branch).

    python benchmarks/sigma_estimator_speed.py --against OLD/src [--data ../shared/data/kodak24] [--images 10] [--json PATH]
``OLD``: e.g. a `git worktree` of an older commit. numpy's BLAS is kept to one thread, as the
CLI keeps it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np

from ddn_cli import noise
from ddn_cli.evaluation.protocol import make_noisy
from ddn_cli.training.data import decode_rgb8, list_training_images


def load_other(src: str):
    spec = importlib.util.spec_from_file_location("noise_other", Path(src) / "ddn_cli" / "noise.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--against", required=True, help="src folder of the other checkout")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "kodak24"))
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--sigmas", default="0,2,15,50")
    ap.add_argument("--json")
    a = ap.parse_args()
    other = load_other(a.against)
    imgs = [decode_rgb8(p) for p in list_training_images([a.data])][:a.images]
    rng = np.random.default_rng(0)
    worst: dict[str, float] = {}
    for s in (float(v) for v in a.sigmas.split(",")):
        for i, c in enumerate(imgs):
            for clip in (True, False):
                x = make_noisy(c, s, f"k{i}", clip=clip)  # float32 in [0, 1] (unclipped: beyond)
                u8 = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
                alpha = np.where(rng.random(u8.shape[:2]) < 0.002, 0, 255).astype(np.uint8)
                cases = {"float": (x, {}), "8-bit": (u8, {}), "16-bit": (u8.astype(np.uint16) * 257, {}),
                         "crop 256x320": (u8[:256, :320], {}), "luma": (u8, {"luma": True}), "grey": (u8[..., :1], {}),
                         "alpha": (u8, {"alpha": alpha}), "12 MP (sampled)": (np.tile(u8, (4, 4, 1))[:3000, :4000], {}),
                         "12 MP luma": (np.tile(u8, (4, 4, 1))[:3000, :4000], {"luma": True})}
                for name, (img, kw) in cases.items():
                    d = abs(noise.estimate_sigma(img, **kw) - other.estimate_sigma(img, **kw))
                    worst[name] = max(worst.get(name, 0.0), d)
    u8 = np.clip(np.rint(make_noisy(imgs[0], 25, "t", clip=True) * 255), 0, 255).astype(np.uint8)
    crop, big = u8[:256, :320], np.tile(u8, (4, 4, 1))[:3000, :4000]
    timing = {}
    for name, img, reps in (("crop 256x320", crop, 40), ("12 MP", big, 7)):
        timing[name] = {"this_ms": round(ms(lambda: noise.estimate_sigma(img), reps), 2),
                        "against_ms": round(ms(lambda: other.estimate_sigma(img), reps), 2)}
    res = {"against": a.against, "data": a.data, "images": len(imgs), "sigmas": a.sigmas,
           "max_abs_difference": {k: round(v, 4) for k, v in worst.items()}, "timing_median_ms": timing,
           "command": " ".join(sys.argv)}
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
