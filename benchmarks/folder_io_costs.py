"""What each part of a folder run's file work costs, and what the cheaper alternatives would
save: ``ddn_cli.pipeline.process`` over the same folder of small crops with one piece at a time
replaced (in process, one model load, the variants alternated round by round).

Variants: ``full`` (as shipped); ``no-decode`` (images served pre-decoded), ``no-encode``
(a 1-byte file instead of the PNG; no write either), ``no-write`` (encoded, never written),
``none`` (all three: the pipeline's own cost over pure compute); and the alternatives that
were measured and not adopted: ``cv2-decode`` (OpenCV's PNG decoder in place of the whole of
``read_image`` for these 8-bit RGB crops, so an upper bound: it skips the CRC check, the
metadata and the mode handling; OpenCV behind ``read_image``'s checks measured 1.004x, as its
libpng takes as long as Pillow's decoder), ``no-fsync`` (not durable on a power cut),
``up-filter`` (every PNG row filtered Up, no per-row choice: 7.8% more bytes on these crops);
and ``pillow-decode``, the decode before the PNG fast path (pngread, 2026-12-03): Pillow's.

    python benchmarks/folder_io_costs.py [--n 120] [--rounds 6] [--variants full,cv2-decode] [--json PATH]
Writes benchmarks/results/folder_io_costs.json by default. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from folder_throughput import add_crop_args, make_crops

VARIANTS = ["full", "no-decode", "no-encode", "no-write", "none", "cv2-decode", "no-fsync", "up-filter", "pillow-decode"]


def main() -> None:
    ap = argparse.ArgumentParser()
    add_crop_args(ap)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, 'full' first")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/folder_io_costs.json"))
    a = ap.parse_args()
    H, W = (int(v) for v in a.size.split("x"))
    import cv2
    from machine import cpu_name

    import ddn_cli.io as dio
    import ddn_cli.pipeline as pl
    import ddn_cli.pngwrite as pw
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.io import ImageData, Job
    from ddn_cli.registry import resolve_weights

    den = Denoiser.load(resolve_weights(None), name="default")
    from ddn_cli import pngread

    real = {"read": pl.read_image, "encode": pl.encode_output, "write": pl.write_atomic, "fsync": os.fsync,
            "filter": pw.filter_rows, "fast": pngread.worth_trying}

    def cv2_read(src, max_pixels=0):
        x = cv2.imdecode(np.fromfile(src, np.uint8), cv2.IMREAD_UNCHANGED)
        return ImageData(color=cv2.cvtColor(x, cv2.COLOR_BGR2RGB), alpha=None, bits=8, format="png")

    def up_filter(rows, prev, bpp):
        out = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
        out[:, 0] = 2
        np.subtract(rows[:1], 0 if prev is None else prev, out=out[:1, 1:])
        np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
        return out

    variants = a.variants.split(",")
    if variants[0] != "full" or not set(variants) <= set(VARIANTS):
        raise SystemExit(f"--variants: 'full' first, then any of {', '.join(VARIANTS[1:])}")
    res: dict[str, list[float]] = {v: [] for v in variants}
    sizes: dict[str, int] = {}  # bytes written per variant (its last pass)
    with tempfile.TemporaryDirectory() as td:
        src = Path(td) / "in"
        src.mkdir()
        make_crops(src, a.n, H, W, a.sigma)
        files = sorted(src.glob("*.png"))
        cache = {f: real["read"](f) for f in files}

        def use(v: str) -> None:
            pl.read_image = {"no-decode": lambda s, m=0: cache[s], "none": lambda s, m=0: cache[s],
                             "cv2-decode": cv2_read}.get(v, real["read"])
            pl.encode_output = (lambda *x, **k: b"x") if v in ("no-encode", "none") else real["encode"]
            pl.write_atomic = (lambda d, data: None) if v in ("no-encode", "no-write", "none") else real["write"]
            dio.os.fsync = (lambda fd: None) if v == "no-fsync" else real["fsync"]
            pw.filter_rows = up_filter if v == "up-filter" else real["filter"]
            pngread.worth_trying = (lambda head, max_pixels: False) if v == "pillow-decode" else real["fast"]

        try:
            for r in range(a.rounds):
                for v in (variants if r % 2 == 0 else variants[::-1]):
                    use(v)
                    out = Path(td) / "out"
                    jobs = [Job(f, out / f.name) for f in files]
                    t0 = time.perf_counter()
                    for x in pl.process(jobs, den, pl.DenoiseOptions(sigma=a.sigma)):
                        assert x.status == "ok", x.error
                    res[v].append(time.perf_counter() - t0)
                    sizes[v] = sum(p.stat().st_size for p in out.glob("*.png")) if out.is_dir() else 0
                    shutil.rmtree(out, ignore_errors=True)
        finally:
            use("full")
    full = res["full"]
    out = {"machine": cpu_name(), "images": a.n, "size": [H, W], "rounds": a.rounds,
           "variants": {v: {"median_s": round(statistics.median(t), 3), "runs_s": [round(x, 3) for x in t],
                            "speed_vs_full": round(statistics.median([f / x for f, x in zip(full, t)]), 3),
                            "bytes_written": sizes[v]}
                        for v, t in res.items()},
           "command": " ".join(sys.argv)}
    Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    for v, d in out["variants"].items():
        print(f"{v:12s} {d['median_s']:7.3f} s  {d['speed_vs_full']:.3f}x")


if __name__ == "__main__":
    main()
