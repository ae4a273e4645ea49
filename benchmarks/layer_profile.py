"""Where a tile's time goes: per-layer wall time and multiply-accumulates of the shipped
denoiser's inference form on one tile (bf16 autocast + channels_last on the CPU by default).

    python benchmarks/layer_profile.py [--tile 512] [--precision bf16] [--reps 5]

Run it on a quiet machine: it times with forward hooks, so other load shows up as noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ddn_cli.descriptor import Denoiser
from ddn_cli.registry import resolve_weights


def conv_macs(mod: torch.nn.Module, out: torch.Tensor, inp: torch.Tensor) -> int:
    if isinstance(mod, torch.nn.Conv2d):
        return out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
    if isinstance(mod, torch.nn.ConvTranspose2d):  # every input pixel scatters a k x k x cout block
        return inp.numel() * mod.out_channels * mod.kernel_size[0] * mod.kernel_size[1]
    if type(mod).__name__ == "FusedConv":  # models/onednn.py
        return out.numel() * mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
    if type(mod).__name__ == "FusedBottleneck":  # its last 1x1 convolution runs inside forward
        return out.numel() * mod.c3.weight.shape[1]
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ddn.color-sigma")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    den = Denoiser.load(resolve_weights(a.model), device="cpu", precision=a.precision)
    m = den.model
    times: dict[str, list[float]] = {}
    macs: dict[str, int] = {}
    for name, child in m.named_children():
        child.register_forward_pre_hook(lambda mod, i, n=name: times.setdefault(n, []).append(-time.perf_counter()))

        def post(mod, i, o, n=name):
            times[n][-1] += time.perf_counter()

        child.register_forward_hook(post)
        for sub in child.modules():
            def count(mod, i, o, n=name):
                macs[n] = macs.get(n, 0) + conv_macs(mod, o, i[0])

            sub.register_forward_hook(count)
    x = torch.rand(1, 3, a.tile, a.tile)
    if den.precision.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), den.precision.autocast(den.device):
        m(x, 25 / 255)
        m(x, 25 / 255)
        per_pass = {k: v // 2 for k, v in macs.items()}
        for v in times.values():
            v.clear()
        t0 = time.perf_counter()
        for _ in range(a.reps):
            m(x, 25 / 255)
        total = (time.perf_counter() - t0) / a.reps
    px = a.tile * a.tile
    rows = []
    for k, v in times.items():
        ms = 1000 * sum(v) / len(v)
        g = per_pass.get(k, 0) / 1e9
        rows.append({"layer": k, "ms": round(ms, 1), "share": round(ms / 1000 / total, 3),
                     "gmac": round(g, 2), "gmac_per_s": round(g / (ms / 1000), 1) if ms else None})
    all_macs = sum(per_pass.values())
    print(f"{'layer':10s} {'ms':>7s} {'share':>6s} {'GMAC':>6s} {'GMAC/s':>7s}")
    for r in rows:
        print(f"{r['layer']:10s} {r['ms']:7.1f} {100 * r['share']:5.1f}% {r['gmac']:6.2f} {r['gmac_per_s'] or 0:7.1f}")
    print(json.dumps({"tile": a.tile, "precision": den.precision.name, "ms_per_tile": round(1000 * total, 1),
                      "mac_per_pixel": round(all_macs / px), "gmac_per_s": round(all_macs / 1e9 / total, 1)}))


if __name__ == "__main__":
    main()
