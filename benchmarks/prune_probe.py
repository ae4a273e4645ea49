"""Is there an exact or nearly exact way to make the shipped denoiser cheaper? Two probes:

1. dead channels: a ReLU output channel that is never positive on real noisy photos could be
   dropped with its convolution's filters without changing a single output value;
2. low rank: how much of fuse1's weight (the 3x3 160->256 convolution that takes 44% of a
   tile's time, BatchNorm folded in) a rank-r factorisation (3x3 160->r, then 1x1 r->256)
   would lose, as the fraction of squared singular values left out.

    python benchmarks/prune_probe.py [--model ddn.color-sigma] [--json benchmarks/results/prune_probe.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ddn_cli.descriptor import Denoiser
from ddn_cli.registry import resolve_weights
from ddn_cli.weightfile import load_weights


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ddn.color-sigma")
    ap.add_argument("--images", nargs="*", default=[str(ROOT.parent / "shared/data/kodak24"),
                                                    str(ROOT.parent / "shared/data/camvid/val")])
    ap.add_argument("--per-folder", type=int, default=5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    path = resolve_weights(a.model)
    m = Denoiser.load(path, device="cpu", precision="fp32", fast=False).model  # the trained form, in eval
    sd, _ = load_weights(path)
    relus = {"down1": m.down1, "down2": m.down2, "fuse1": m.fuse1, "res1": m.res1, "res2": m.res2, "res3": m.res3}
    for r in ("res1", "res2", "res3"):
        relus[f"{r}.inner1"], relus[f"{r}.inner2"] = getattr(m, r).body[2], getattr(m, r).body[5]
    peak: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def f(_mod, _inp, out):
            mx = out.amax(dim=(0, 2, 3))
            peak[name] = torch.maximum(peak[name], mx) if name in peak else mx
        return f

    for name, mod in relus.items():
        mod.register_forward_hook(hook(name))
    files = [p for d in a.images if Path(d).is_dir()
             for p in sorted(q for q in Path(d).iterdir() if q.suffix.lower() in (".png", ".jpg"))[: a.per_folder]]
    if not files:
        sys.exit("no images found; pass --images FOLDER ...")
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for f in files:
            x = torch.from_numpy(np.array(Image.open(f).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
            for s in (0, 15, 50, 75):
                m(x + torch.randn(x.shape, generator=gen) * (s / 255), s / 255)
    dead = {k: int((v <= 0).sum()) for k, v in peak.items()}
    nearly = {k: int((v < 1e-3).sum()) for k, v in peak.items()}
    chans = {k: int(v.numel()) for k, v in peak.items()}
    w = sd["fuse1.0.weight"].float()
    scale = sd["fuse1.1.weight"] / torch.sqrt(sd["fuse1.1.running_var"] + 1e-5)
    sv = torch.linalg.svdvals((w * scale[:, None, None, None]).reshape(w.shape[0], -1))
    left = 1 - (sv**2).cumsum(0) / (sv**2).sum()
    ranks = {r: float(left[r - 1]) for r in (64, 96, 128, 160, 192, 224) if r <= len(sv)}
    print(f"{len(files)} images x sigma 0/15/50/75, model {a.model}")
    for k in peak:
        print(f"{k:12s} {chans[k]:4d} channels, never positive {dead[k]}, peak < 1e-3 {nearly[k]}")
    print("fuse1 energy left out by rank r: " + ", ".join(f"{r}: {v:.1%}" for r, v in ranks.items()))
    if a.json:
        Path(a.json).write_text(json.dumps({"model": a.model, "images": [str(f) for f in files],
                                            "channels": chans, "never_positive": dead, "peak_below_1e-3": nearly,
                                            "fuse1_rank_energy_left": ranks, "command": " ".join(sys.argv)},
                                           indent=2) + "\n")


if __name__ == "__main__":
    main()
