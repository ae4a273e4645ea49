"""Where a denoiser's error lies: per spatial-frequency band (radial bands of the 2-D
spectrum of output - clean), per-channel mean bias, and the MSE, for several denoisers on
the same noisy frames (seeded, unclipped noise, bf16 on the CPU: ddn's default path).

    python benchmarks/error_spectrum.py -m ddn.color-sigma -m ddn.cls --sigma 60 \
        --images ../shared/data/camvid/val --every 10 --json benchmarks/results/cascade/error_spectrum.json

Band 0 holds the lowest frequencies (and the mean), band 7 the highest; energies are per
pixel in units of 1e-4 (intensities on [0, 1]). Used to ask whether a task-guided
denoiser's extra error is one artefact (one band, or a colour shift) or spread everywhere.
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

BANDS = 8


def radial_energy(err: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (BANDS,) spectral energy of ``err`` per pixel, summed over channels, in
    radial frequency bands of equal width from 0 to the corner frequency."""
    h, w = err.shape[-2:]
    power = torch.fft.rfft2(err).abs() ** 2
    fy = torch.fft.fftfreq(h).abs()[:, None]
    fx = torch.fft.rfftfreq(w)[None]
    band = (torch.sqrt(fy**2 + fx**2) / (0.5 * 2**0.5) * BANDS).long().clamp(max=BANDS - 1)
    weight = torch.full((w // 2 + 1,), 2.0)  # rfft2 holds each column but the first (and Nyquist) twice
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    e = (power * weight).sum(0)
    return torch.stack([e[band == b].sum() for b in range(BANDS)]) / (h * w) ** 2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", action="append", required=True)
    ap.add_argument("--images", default=str(ROOT.parent / "shared/data/camvid/val"))
    ap.add_argument("--every", type=int, default=10, help="use every N-th image (sorted by name)")
    ap.add_argument("--sigma", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    files = sorted(p for p in Path(a.images).iterdir() if p.suffix.lower() in (".jpg", ".png"))[:: a.every]
    if not files:
        sys.exit(f"{a.images}: no .jpg/.png images; pass --images FOLDER")
    dens = {m: Denoiser.load(resolve_weights(m), device="cpu", precision="auto") for m in a.model}
    acc = {m: {"bands": torch.zeros(BANDS, dtype=torch.float64), "bias": torch.zeros(3, dtype=torch.float64),
               "mse": 0.0} for m in a.model}
    gen = torch.Generator().manual_seed(a.seed)
    for f in files:
        clean = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0
        noisy = clean + torch.randn(clean.shape, generator=gen).numpy() * (a.sigma / 255.0)
        for m, den in dens.items():
            err = torch.from_numpy(den(noisy[None], a.sigma)[0] - clean).permute(2, 0, 1).double()
            acc[m]["bands"] += radial_energy(err) / len(files)
            acc[m]["bias"] += err.mean(dim=(1, 2)) / len(files)
            acc[m]["mse"] += float((err**2).mean()) / len(files)
    rows = [{"model": m, "mse_1e4": 1e4 * v["mse"], "bands_1e4": [1e4 * float(x) for x in v["bands"]],
             "bias_255": [255 * float(x) for x in v["bias"]]} for m, v in acc.items()]
    base = rows[0]
    print(f"{len(files)} images from {a.images}, sigma {a.sigma:g}; energies x1e-4 per pixel, bias in 1/255")
    print(f"{'model':40s} {'MSE':>7s} " + " ".join(f"{'b' + str(b):>7s}" for b in range(BANDS)) + "   bias R/G/B")
    for r in rows:
        print(f"{r['model'][-40:]:40s} {r['mse_1e4']:7.3f} " + " ".join(f"{x:7.3f}" for x in r["bands_1e4"])
              + "   " + " / ".join(f"{x:+.2f}" for x in r["bias_255"]))
        if r is not base:
            rel = [x / y - 1 for x, y in zip(r["bands_1e4"], base["bands_1e4"], strict=True)]
            print(f"{'  vs ' + base['model'][-35:]:40s} {r['mse_1e4'] / base['mse_1e4'] - 1:+7.1%} "
                  + " ".join(f"{x:+7.1%}" for x in rel))
    if a.json:
        Path(a.json).write_text(json.dumps({"images": a.images, "count": len(files), "every": a.every,
                                            "sigma": a.sigma, "seed": a.seed, "rows": rows,
                                            "command": " ".join(sys.argv)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
