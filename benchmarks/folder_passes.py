"""Where a folder run's time goes: the fresh-process start against the steady state.

Loads the default denoiser once, then runs ``ddn_cli.pipeline.process`` (what `ddn denoise
DIR OUT` runs after loading the model) over the same folder of small crops ``--passes``
times, and over the pre-decoded images with no I/O (the pure-compute rate, the folder run's
own two-at-a-time scheme, as in folder_throughput.py). Per pass: the time to the first few
results (the pipeline filling up; the first pass also builds oneDNN's kernels), the time per
image from the 10th result on (the steady state), and the whole pass.

    python benchmarks/folder_passes.py [--n 120] [--size 256x320] [--passes 3] [--json PATH]
Writes benchmarks/results/folder_passes.json by default. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from folder_throughput import add_crop_args, make_crops


def main() -> None:
    ap = argparse.ArgumentParser()
    add_crop_args(ap)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/folder_passes.json"))
    a = ap.parse_args()
    H, W = (int(v) for v in a.size.split("x"))
    import torch
    from machine import cpu_name

    import ddn_cli.pipeline as pl
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.io import Job, read_image
    from ddn_cli.registry import resolve_weights

    den = Denoiser.load(resolve_weights(None), name="default")
    tile, batch = pl.auto_tile(den.device.type)
    threads = torch.get_num_threads()
    workers = pl.image_workers(den)
    passes = []
    with tempfile.TemporaryDirectory() as td:
        src = Path(td) / "in"
        src.mkdir()
        make_crops(src, a.n, H, W, a.sigma)
        files = sorted(src.glob("*.png"))
        for p in range(a.passes):
            out = Path(td) / f"out{p}"
            jobs = [Job(f, out / f.name) for f in files]
            t0 = time.perf_counter()
            ts = [time.perf_counter() - t0 for r in pl.process(jobs, den, pl.DenoiseOptions(sigma=a.sigma))]
            shutil.rmtree(out)
            passes.append({"first_results_s": [round(t, 4) for t in ts[:6]],
                           "steady_ms_per_image": round(1e3 * (ts[-1] - ts[9]) / (len(ts) - 10), 2),
                           "pass_s": round(ts[-1], 3)})
        images = [read_image(f) for f in files]

    def one(img):
        return pl.denoise_image(img, den, sigma=a.sigma, tile=tile, overlap=den.overlap, batch_size=batch)

    pure = []
    torch.set_num_threads(max(1, threads // workers))
    try:
        with ThreadPoolExecutor(workers) as pool:
            for _ in range(a.passes):
                t0 = time.perf_counter()
                list(pool.map(one, images))
                pure.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    pure_s = statistics.median(pure)
    res = {"machine": cpu_name(), "images": a.n, "size": [H, W], "sigma": a.sigma, "precision": getattr(den.precision, "name", str(den.precision)),
           "threads": threads, "image_workers": workers, "passes": passes,
           "pure_pass_s": [round(t, 3) for t in pure],
           "pure_ms_per_image": round(1e3 * pure_s / a.n, 2),
           "ratio_per_pass": [round(pure_s / p["pass_s"], 3) for p in passes],
           "command": " ".join(sys.argv)}
    Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
