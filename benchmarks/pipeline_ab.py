"""Whole-image speed, ddn against FFDNet, interleaved in one process: the same 12 MP photo
(benchmarks/suite.py's) through the same tiled pipeline (512 px tiles, overlap 32, the
suite's settings), the methods taking turns round after round, so this noisy 2-core
machine's drift (1.5x between minutes here) falls on all of them alike. Quotes each
method's median megapixels/s and the median of the per-round ratios to FFDNet at the same
precision.

    python benchmarks/pipeline_ab.py [--rounds 5] [--precisions bf16,fp32] [--json PATH]
                                     [--candidate WEIGHTS] [--with-exact]

``--candidate``: another denoiser weight file (e.g. a narrower model from prune_width.py), timed
as "ddn-candidate" at the auto precision in the same rounds. ``--with-exact``: also "ddn-exact",
the default at the auto precision with every tile's border ring recomputed as before 2026-12-02
(the tiler not telling the model on which tile sides it must be exact).

ddn is timed as `ddn denoise` runs it (the default model's inference form; "ddn-auto" is
the CPU's auto precision, bf16 on this CPU); FFDNet from ../shared/anchors.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
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
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--precisions", default="bf16,fp32")
    ap.add_argument("--json")
    ap.add_argument("--candidate", help="another denoiser weight file, timed at the auto precision")
    ap.add_argument("--with-exact", action="store_true",
                    help="also time the default with every tile's border ring recomputed (the path before 2026-12-02)")
    a = ap.parse_args()
    import cv2
    import torch
    from suite import SIGMA, ddn_method, denoise_tiled, make_photo, method_fn

    if not (ROOT.parent / "shared" / "anchors").is_dir():
        raise SystemExit("../shared/anchors is absent: nothing to compare with")
    with tempfile.TemporaryDirectory() as td:
        photo = Path(td) / "photo12mp.png"
        make_photo(photo)
        big = cv2.imread(str(photo))[..., ::-1]
    mp = big.shape[0] * big.shape[1] / 1e6
    names = []
    for p in a.precisions.split(","):
        names += ["ddn-auto" if p == "bf16" else "ddn-fp32", f"ffdnet-{p}"]
    fns = {n: method_fn(n)[0] for n in names}
    if a.candidate:
        from ddn_cli.descriptor import Denoiser

        cand = Denoiser.load(a.candidate, precision="auto")
        if f"ffdnet-{cand.precision.name}" not in fns:
            raise SystemExit(f"--candidate runs in {cand.precision.name} here: add it to --precisions")
        names.insert(1, "ddn-candidate")
        fns = {n: fns.get(n, ddn_method(cand)) for n in names}
    if a.with_exact:
        auto = fns.get("ddn-auto")
        if auto is None:
            raise SystemExit("--with-exact compares with ddn-auto: add bf16 to --precisions")
        names.insert(names.index("ddn-auto") + 1, "ddn-exact")
        fns = {n: fns.get(n, lambda b, s: auto(b, s)) for n in names}  # no .sides: every ring exact
    faults: dict = {}

    def run(fn) -> float:
        flt = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        denoise_tiled(big, fn)
        dt = time.perf_counter() - t
        faults.setdefault(fn, []).append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt) / mp)
        return mp / dt

    for fn in fns.values():  # warm-up: one 512 px tile (other tile shapes' set-up lands in round 0)
        fn(big[None, :512, :512].astype(np.float32) / 255, SIGMA)
    speeds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(a.rounds):
        # odd rounds run the methods in reverse order, so neither always goes first (a 2-core machine's
        # clock and caches can favour whichever runs first or second in a round)
        for n, fn in (list(fns.items())[::-1] if r % 2 else fns.items()):
            speeds[n].append(run(fn))
        print(json.dumps({"round": r, **{n: round(v[-1], 3) for n, v in speeds.items()}}), flush=True)
    rows = []
    for n in names:
        ref = f"ffdnet-{'bf16' if n in ('ddn-auto', 'ddn-exact', 'ffdnet-bf16') else 'fp32'}"
        if n == "ddn-candidate":
            ref = f"ffdnet-{cand.precision.name}"
        ratios = [x / y for x, y in zip(speeds[n], speeds[ref])]
        rows.append({"method": n, "mp_per_s_median": round(statistics.median(speeds[n]), 3),
                     "mp_per_s_min": round(min(speeds[n]), 3), "mp_per_s_max": round(max(speeds[n]), 3),
                     "x_ffdnet_same_precision_median": round(statistics.median(ratios), 3),
                     "x_ffdnet_median_ci95": [round(v, 3) for v in median_ci(ratios)],
                     "rounds_at_or_above_ffdnet": sum(x >= 1 for x in ratios),
                     "x_ffdnet_per_round": [round(x, 3) for x in ratios],
                     "page_faults_per_mp_median": round(statistics.median(faults[fns[n]]))})
    print(f"{'method':12s} {'MP/s med':>8s} {'min':>6s} {'max':>6s} {'x FFDNet (median of rounds)':>28s} "
          f"{'95% CI':>13s} {'faults/MP':>9s}")
    for r in rows:
        lo, hi = r["x_ffdnet_median_ci95"]
        print(f"{r['method']:12s} {r['mp_per_s_median']:8.3f} {r['mp_per_s_min']:6.3f} {r['mp_per_s_max']:6.3f} "
              f"{r['x_ffdnet_same_precision_median']:28.3f} {f'{lo:.3f}-{hi:.3f}':>13s} {r['page_faults_per_mp_median']:9d}")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "command": "python benchmarks/pipeline_ab.py " + " ".join(sys.argv[1:]),
            "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
            "candidate": a.candidate, "photo": f"{big.shape[1]}x{big.shape[0]}", "tile": 512, "overlap": 32, "rounds": a.rounds,
            "order": "alternating (odd rounds reversed)",
            "rows": rows}, indent=2) + "\n")


def median_ci(xs: list[float], conf: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median of ``xs`` (order statistics,
    binomial tails): the rounds' ratios need not be normal, only independent. With fewer than
    6 values no interval reaches 95%: the whole range is returned."""
    v, n = sorted(xs), len(xs)
    k = 0  # the largest k with P(Binomial(n, 1/2) < k) <= (1 - conf) / 2
    while k < n // 2 and sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n <= (1 - conf) / 2:
        k += 1
    return (v[k - 1], v[n - k]) if k else (v[0], v[-1])


if __name__ == "__main__":
    main()
