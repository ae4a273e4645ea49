"""Reference denoisers from ../shared/anchors (benchmark-only; never shipped):
CDnCNN-B (blind) and FFDNet (colour), loaded from KAIR-layout state_dicts with
``torch.load(weights_only=True)``. Also checks ddn's evaluation protocol against
their published CBSD68 numbers.

    python benchmarks/anchors.py --data ../shared/data/bsds500/CBSD68_ids.txt \
        --data-root ../shared/data/bsds500/images --sigma 15,25 --json benchmarks/results/anchors_cbsd68.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
ANCHORS = ROOT.parent / "shared" / "anchors"


def _convs(sd: dict, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        w, b = sd[f"model.{2 * i}.weight"], sd[f"model.{2 * i}.bias"]
        c = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=w.shape[2] // 2)
        c.weight.data.copy_(w)
        c.bias.data.copy_(b)
        layers.append(c)
        if i < n - 1:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DnCNN(nn.Module):
    def __init__(self, sd: dict) -> None:
        super().__init__()
        self.body = _convs(sd, 20)

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        return x - self.body(x)


class FFDNet(nn.Module):
    def __init__(self, sd: dict) -> None:
        super().__init__()
        self.body = _convs(sd, 12)

    def forward(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
        d = F.pixel_unshuffle(x, 2)
        m = torch.full((d.shape[0], 1, d.shape[2], d.shape[3]), float(sigma), dtype=d.dtype, device=d.device)
        y = F.pixel_shuffle(self.body(torch.cat([d, m], 1)), 2)
        return y[..., :h, :w]


def load_anchor(name: str) -> nn.Module:
    path = ANCHORS / {"cdncnn-b": "dncnn_color_blind.pth", "ffdnet": "ffdnet_color.pth"}[name]
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return (DnCNN(sd) if name == "cdncnn-b" else FFDNet(sd)).eval()


def denoise_fn(model: nn.Module, bf16: bool = False):
    def fn(noisy: np.ndarray, s: float) -> np.ndarray:
        x = torch.from_numpy(noisy).permute(2, 0, 1)[None]
        with torch.inference_mode():
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    y = model(x.contiguous(memory_format=torch.channels_last), s / 255.0)
            else:
                y = model(x, s / 255.0)
        return y.float()[0].permute(1, 2, 0).numpy()

    return fn


def main() -> None:
    from ddn_cli.evaluation.denoise_eval import evaluate, load_eval_images

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/bsds500/CBSD68_ids.txt"))
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared/data/bsds500/images"))
    ap.add_argument("--sigma", default="15,25,50")
    ap.add_argument("--models", default="cdncnn-b,ffdnet")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args()
    if not ANCHORS.is_dir():
        sys.exit("../shared/anchors is absent: nothing to compare")
    torch.set_num_threads(torch.get_num_threads())
    imgs = load_eval_images([a.data], a.limit, a.data_root)
    sigmas = [float(s) for s in a.sigma.split(",")]
    out = {"data": a.data, "images": len(imgs), "sigmas": sigmas, "protocol": "unclipped, seeded per image, rounded",
           "published_CBSD68": {"cdncnn-b": {"15": 33.90, "25": 31.24, "50": 27.95},
                                "ffdnet": {"15": 33.87, "25": 31.21, "50": 27.96}}, "models": {}}
    for name in a.models.split(","):
        m = load_anchor(name)
        t = time.perf_counter()
        res = evaluate(denoise_fn(m), imgs, sigmas)
        out["models"][name] = {f"{k:g}": round(v["psnr"], 3) for k, v in res.items()}
        print(f"{name}: {out['models'][name]}  ({time.perf_counter() - t:.0f} s)", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
