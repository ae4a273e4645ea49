"""CPU tile size against whole-image speed: the suite's 12 MP photo through `ddn denoise`'s
own path (``pipeline.denoise_image``: the default model, auto precision, the default 48 px
overlap, batches of 1), one tile size after another, round after round, so this machine's
drift falls on all sizes alike. Bigger tiles waste less on overlap; the question is whether
that shows once cache effects are counted.

    python benchmarks/tile_size_whole.py [--tiles 512,768,1024] [--rounds 7] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    from machine import cpu_name

    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", default="512,768,1024")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json")
    a = ap.parse_args()
    import cv2
    import torch
    from suite import make_photo

    from ddn_cli.descriptor import Denoiser
    from ddn_cli.io import ImageData
    from ddn_cli.pipeline import denoise_image
    from ddn_cli.registry import resolve_weights

    with tempfile.TemporaryDirectory() as td:
        photo = Path(td) / "photo12mp.png"
        make_photo(photo)
        big = np.ascontiguousarray(cv2.imread(str(photo))[..., ::-1])
    img = ImageData(color=big, alpha=None, bits=8, format="png")
    den = Denoiser.load(resolve_weights(None), precision="auto")
    tiles = [int(t) for t in a.tiles.split(",")]
    mp = big.shape[0] * big.shape[1] / 1e6
    den(np.random.default_rng(0).random((1, 512, 512, 3), dtype=np.float32), 25)  # warm-up
    speeds: dict[int, list[float]] = {t: [] for t in tiles}
    for r in range(a.rounds):
        for t in tiles:
            t0 = time.perf_counter()
            denoise_image(img, den, sigma=25.0, tile=t, overlap=den.overlap, batch_size=1)
            speeds[t].append(mp / (time.perf_counter() - t0))
        print(json.dumps({"round": r, **{str(t): round(v[-1], 3) for t, v in speeds.items()}}), flush=True)
    rows = [{"tile": t, "mp_per_s_median": round(statistics.median(v), 3), "mp_per_s_min": round(min(v), 3),
             "mp_per_s_max": round(max(v), 3),
             "x_512_median_of_rounds": round(statistics.median(x / y for x, y in zip(v, speeds[tiles[0]])), 3)}
            for t, v in speeds.items()]
    for r in rows:
        print(f"tile {r['tile']:5d}: {r['mp_per_s_median']:.3f} MP/s median ({r['mp_per_s_min']:.3f}-"
              f"{r['mp_per_s_max']:.3f}), x{r['x_512_median_of_rounds']:.3f} of tile {tiles[0]} (median of rounds)")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "command": "python benchmarks/tile_size_whole.py " + " ".join(sys.argv[1:]),
            "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
            "precision": den.precision.name,
            "photo": f"{big.shape[1]}x{big.shape[0]}", "overlap": den.overlap, "rounds": a.rounds,
            "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
