"""Model speed per tile, in one process, the methods interleaved: the fairest comparison
this noisy 2-core machine allows (whole-process runs of the same thing here vary by 20-40%
from one minute to the next; interleaving puts every method under the same drift).

    python benchmarks/tile_speed.py [--tile 512 | --shape 456x476] [--reps 25] [--precisions bf16,fp32] [--json PATH]

Methods: ddn's default model in its inference form (what `ddn denoise` runs: composed
layers, oneDNN-fused convolutions), the same on an inner tile (no side on the image's edge,
so no border ring recomputed, as `ddn denoise` runs most tiles), the same without the oneDNN fusion, and in its
training form (BatchNorm unfolded, no composed layers), and FFDNet and CDnCNN-B from
../shared/anchors when present. Each timed on one random tile, channels_last, after two
warm-up passes; the median of ``reps`` interleaved passes is quoted, with megapixels/s
and the ratio to FFDNet's speed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def models() -> dict[str, torch.nn.Module]:
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.registry import resolve_weights

    w = resolve_weights(None)
    out = {"ddn (inference form)": None,  # per precision: its oneDNN-fused convolutions compute in that dtype
           "ddn (inner tile)": None,  # the same, on a tile with no side on the image's edge (no border ring)
           "ddn (not fused)": Denoiser.load(w, device="cpu", precision="fp32", fuse=False).model,
           "ddn (training form)": Denoiser.load(w, device="cpu", precision="fp32", fast=False).model}
    if (ROOT.parent / "shared" / "anchors").is_dir():
        from anchors import load_anchor

        out["ffdnet"] = load_anchor("ffdnet")
        out["cdncnn-b"] = load_anchor("cdncnn-b")
    return {k: m.eval().to(memory_format=torch.channels_last) if m is not None else None for k, m in out.items()}


def main() -> None:
    from machine import cpu_name

    ap = argparse.ArgumentParser()
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--shape", default="", help="HxW instead of a square --tile (the 12 MP photo's tiles are 456x476)")
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--precisions", default="bf16,fp32")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.manual_seed(0)
    ms = models()
    th, tw = (int(v) for v in a.shape.lower().split("x")) if a.shape else (a.tile, a.tile)
    x = torch.rand(1, 3, th, tw).contiguous(memory_format=torch.channels_last)
    mp = th * tw / 1e6
    rows = []
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.registry import resolve_weights

    for prec in a.precisions.split(","):
        fast = Denoiser.load(resolve_weights(None), device="cpu", precision=prec).model
        ms["ddn (inference form)"] = fast
        ms["ddn (inner tile)"] = lambda t, s, fast=fast: fast(t, s, exact=(False,) * 4)
        reps = a.reps if prec == "bf16" else max(3, a.reps // 4)
        times: dict[str, list[float]] = {k: [] for k in ms}
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
            for m in ms.values():
                m(x, 25 / 255)
                m(x, 25 / 255)
            for _ in range(reps):
                for k, m in ms.items():
                    t = time.perf_counter()
                    m(x, 25 / 255)
                    times[k].append(time.perf_counter() - t)
        ref = statistics.median(times["ffdnet"]) if "ffdnet" in times else None
        for k, v in times.items():
            med = statistics.median(v)
            rows.append({"precision": prec, "method": k, "ms_median": round(1000 * med, 1), "ms_min": round(1000 * min(v), 1),
                         "ms_max": round(1000 * max(v), 1), "reps": reps, "mp_per_s": round(mp / med, 3),
                         "x_ffdnet": round(ref / med, 2) if ref else None})
    print(f"{'precision':9s} {'method':22s} {'median ms':>9s} {'min':>7s} {'max':>7s} {'MP/s':>6s} {'x ffdnet':>8s}")
    for r in rows:
        print(f"{r['precision']:9s} {r['method']:22s} {r['ms_median']:9.1f} {r['ms_min']:7.1f} {r['ms_max']:7.1f} "
              f"{r['mp_per_s']:6.3f} {r['x_ffdnet'] if r['x_ffdnet'] is not None else '-':>8}")
    if a.json:
        Path(a.json).write_text(json.dumps({"command": "python benchmarks/tile_speed.py " + " ".join(sys.argv[1:]),
                                            "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, "
                                                       f"torch {torch.__version__}",
                                            "tile": f"{th}x{tw}", "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
