"""Folder throughput: does `ddn denoise DIR OUT` keep the model busy on many small images?

Compares (a) the pure compute rate - the same images already decoded in memory, denoised
with the same settings, no decoding or encoding; the faster of one image after another on
every thread and the folder run's own scheme (several small images at once, threads split) -
with (b) a real `ddn denoise` folder run (PNG decode + encode overlapped by the reader/writer threads),
timed by its own JSON report (model loading excluded) and as a whole process.

    python benchmarks/folder_throughput.py --n 120 --size 256x320 [--rounds 3] [--sizes varied] [--no-reuse-shapes]
``--sizes varied``: each image's height and width drawn from 0.78-1.22x of ``--size`` (``--spread
0.22``; ``--spread 0.5``: 0.5-1.5x) (a folder
of mixed sizes, where kernels built per shape matter: shapes.py); the pure passes then run each
image at the shape the folder run picks (``ShapeMemo``, in the same order), or at its own shape
with ``--no-reuse-shapes`` (which is also passed to ``ddn denoise``).
Writes benchmarks/results/folder_throughput.json (or ``--json PATH``). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def make_crops(dst: Path, n: int, H: int, W: int, sigma: float, sizes: str = "fixed", spread: float = 0.22) -> None:
    """``n`` noisy crops (Kodak24 where ../shared has it, else uniform noise) as PNG in
    ``dst``: H x W, or with ``sizes="varied"`` each side drawn from (1 - spread) to (1 + spread) times it."""
    kodak = sorted((ROOT.parent / "shared/data/kodak24").glob("*.png"))
    rng = np.random.default_rng(0)
    h, w = H, W
    for i in range(n):
        if sizes == "varied":
            h, w = (int(rng.integers(round((1 - spread) * v), round((1 + spread) * v) + 1)) for v in (H, W))
        if kodak:
            base = np.asarray(Image.open(kodak[i % len(kodak)]).convert("RGB"))
            y, x = rng.integers(0, base.shape[0] - h), rng.integers(0, base.shape[1] - w)
            img = base[y:y + h, x:x + w].astype(np.float32)
        else:
            img = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
        noisy = np.clip(np.round(img + rng.normal(0, sigma, img.shape)), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(dst / f"{i:04d}.png")


def add_crop_args(ap: argparse.ArgumentParser) -> None:
    """The folder of crops ``make_crops`` builds: ``--n``, ``--size`` (HxW), ``--sigma``."""
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--size", default="256x320")
    ap.add_argument("--sigma", type=float, default=25)


def main() -> None:
    ap = argparse.ArgumentParser()
    add_crop_args(ap)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", choices=("fixed", "varied"), default="fixed")
    ap.add_argument("--spread", type=float, default=0.22, help="with --sizes varied: sides (1 +- spread) x --size")
    ap.add_argument("--no-reuse-shapes", dest="reuse", action="store_false")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/folder_throughput.json"))
    a = ap.parse_args()
    H, W = (int(v) for v in a.size.split("x"))
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.io import read_image
    from ddn_cli.pipeline import auto_tile, denoise_image
    from ddn_cli.registry import resolve_weights

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        make_crops(src, a.n, H, W, a.sigma, a.sizes, a.spread)
        images = [read_image(p) for p in sorted(src.glob("*.png"))]
        mp = sum(im.shape[0] * im.shape[1] for im in images) / 1e6

        den = Denoiser.load(resolve_weights(None), name="default")
        tile, batch = auto_tile(den.device.type)
        from ddn_cli.shapes import ShapeMemo, own_shape

        memo = ShapeMemo(den.size_multiple)  # the folder run's choices, in its order
        shapes = [memo.choose(*im.shape) if a.reuse and max(own_shape(*im.shape, den.size_multiple)) <= tile
                  else None for im in images]
        denoise_image(images[0], den, sigma=a.sigma, tile=tile, overlap=den.overlap, batch_size=batch,
                      run_shape=shapes[0])  # warm-up

        import torch

        from ddn_cli.pipeline import image_workers

        workers = image_workers(den)
        threads = torch.get_num_threads()

        def one(im, shape):
            return denoise_image(im, den, sigma=a.sigma, tile=tile, overlap=den.overlap, batch_size=batch,
                                 run_shape=shape)

        def pure_rate() -> float:
            """One image after another on every thread (the pipeline's way before 2026-11-30)."""
            t0 = time.perf_counter()
            for im, shape in zip(images, shapes):
                one(im, shape)
            return mp / (time.perf_counter() - t0)

        def pure_parallel_rate() -> float:
            """The folder run's own scheme without any I/O: `workers` images at once, the
            threads split between them."""
            from concurrent.futures import ThreadPoolExecutor

            torch.set_num_threads(max(1, threads // workers))
            try:
                with ThreadPoolExecutor(workers) as ex:
                    t0 = time.perf_counter()
                    list(ex.map(one, images, shapes))
                    return mp / (time.perf_counter() - t0)
            finally:
                torch.set_num_threads(threads)

        def pure() -> tuple[float, float]:
            return pure_rate(), pure_parallel_rate()

        # pure, folder, pure, folder, ..., pure: each folder run is compared with the mean of the
        # pure-compute passes just before and after it, so the machine's drift between the two
        # (1.3x within a minute here) largely cancels; the median ratio is quoted. "pure" is
        # the faster of the two compute schemes, so I/O is judged against the best the model does
        pures, folders, walls, rep = [pure()], [], [], {}
        for i in range(a.rounds):
            out_dir = Path(tmp) / f"out{i}"
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "ddn_cli", "denoise", str(src), str(out_dir), "--sigma",
                                f"{a.sigma:g}", "--quiet", "--json", "-"] + ([] if a.reuse else ["--no-reuse-shapes"]),
                               capture_output=True, text=True, check=True)
            walls.append(time.perf_counter() - t0)
            rep = json.loads(r.stdout)
            folders.append(rep["summary"]["megapixels"] / rep["seconds"])
            pures.append(pure())
    best = [max(p) for p in pures]
    ratios = [f / ((p0 + p1) / 2) for f, p0, p1 in zip(folders, best, best[1:])]
    seq = [p[0] for p in pures]
    ratios_seq = [f / ((p0 + p1) / 2) for f, p0, p1 in zip(folders, seq, seq[1:])]
    res = {"images": a.n, "size": [H, W], "sizes": a.sizes, "spread": a.spread if a.sizes == "varied" else None, "reuse_shapes": a.reuse,
           "shapes_run": len({s or own_shape(*im.shape, den.size_multiple) for s, im in zip(shapes, images)}),
           "megapixels": round(mp, 3), "sigma": a.sigma,
           "precision": rep["precision"], "rounds": a.rounds, "threads": threads, "image_workers": workers,
           "pure_compute_mp_s": [round(v, 4) for v in best],
           "pure_one_at_a_time_mp_s": [round(p[0], 4) for p in pures],
           "pure_parallel_mp_s": [round(p[1], 4) for p in pures], "folder_run_mp_s": [round(v, 4) for v in folders],
           "ratio_per_round": [round(v, 4) for v in ratios], "ratio": round(statistics.median(ratios), 4),
           "ratio_vs_one_at_a_time": round(statistics.median(ratios_seq), 4),
           "whole_process_s": [round(v, 2) for v in walls],
           "whole_process_mp_s": round(mp / statistics.median(walls), 4), "command": " ".join(sys.argv)}
    out = Path(a.json)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
