"""Whole-image speed, ddn against FFDNet, interleaved in one process: the same 12 MP photo
(benchmarks/suite.py's) through the same tiled pipeline (512 px tiles, overlap 32, the
suite's settings), the methods taking turns round after round, so this noisy 2-core
machine's drift (1.5x between minutes here) falls on all of them alike. Quotes each
method's median megapixels/s and the median of the per-round ratios to FFDNet at the same
precision.

    python benchmarks/pipeline_ab.py [--rounds 5] [--precisions bf16,fp32] [--json PATH]
                                     [--candidate WEIGHTS]

``--candidate``: another denoiser weight file (e.g. a narrower model from prune_width.py), timed
as "ddn-candidate" at the auto precision in the same rounds.

ddn is timed as `ddn denoise` runs it (the default model's inference form; "ddn-auto" is
the CPU's auto precision, bf16 on this CPU); FFDNet from ../shared/anchors.
"""

from __future__ import annotations

import argparse
import json
import platform
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
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--precisions", default="bf16,fp32")
    ap.add_argument("--json")
    ap.add_argument("--candidate", help="another denoiser weight file, timed at the auto precision")
    a = ap.parse_args()
    import cv2
    import torch

    from suite import SIGMA, denoise_tiled, make_photo, method_fn

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
        fns = {n: fns[n] if n in fns else (lambda b, s: cand(b, s)) for n in names}
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
        for n, fn in fns.items():
            speeds[n].append(run(fn))
        print(json.dumps({"round": r, **{n: round(v[-1], 3) for n, v in speeds.items()}}), flush=True)
    rows = []
    for n in names:
        ref = f"ffdnet-{'bf16' if n in ('ddn-auto', 'ffdnet-bf16') else 'fp32'}"
        if n == "ddn-candidate":
            ref = f"ffdnet-{cand.precision.name}"
        ratios = [x / y for x, y in zip(speeds[n], speeds[ref])]
        rows.append({"method": n, "mp_per_s_median": round(statistics.median(speeds[n]), 3),
                     "mp_per_s_min": round(min(speeds[n]), 3), "mp_per_s_max": round(max(speeds[n]), 3),
                     "x_ffdnet_same_precision_median": round(statistics.median(ratios), 3),
                     "x_ffdnet_per_round": [round(x, 3) for x in ratios],
                     "page_faults_per_mp_median": round(statistics.median(faults[fns[n]]))})
    print(f"{'method':12s} {'MP/s med':>8s} {'min':>6s} {'max':>6s} {'x FFDNet (median of rounds)':>28s} {'faults/MP':>9s}")
    for r in rows:
        print(f"{r['method']:12s} {r['mp_per_s_median']:8.3f} {r['mp_per_s_min']:6.3f} {r['mp_per_s_max']:6.3f} "
              f"{r['x_ffdnet_same_precision_median']:28.3f} {r['page_faults_per_mp_median']:9d}")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "command": "python benchmarks/pipeline_ab.py " + " ".join(sys.argv[1:]),
            "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
            "candidate": a.candidate, "photo": f"{big.shape[1]}x{big.shape[0]}", "tile": 512, "overlap": 32, "rounds": a.rounds,
            "rows": rows}, indent=2) + "\n")


def cpu_name() -> str:
    """The CPU's model name and whether it runs bf16 natively (AMX / AVX512-BF16, as
    ``--precision auto`` decides): the bf16 figures depend on it."""
    from ddn_cli.devices import cpu_has_fast_bf16

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
                platform.machine())
    return f"{name} ({'native bf16' if cpu_has_fast_bf16() else 'no native bf16'})"


if __name__ == "__main__":
    main()
