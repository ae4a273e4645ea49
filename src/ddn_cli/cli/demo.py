"""``ddn demo``: the quick start on a sample photo."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from .common import handled, out


def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for noisy.png, denoised.png and comparison.png.")] = Path("ddn-demo"),
    image: Annotated[str, typer.Option(help="astronaut, chelsea, coffee (scikit-image's sample photos) or a path.")] = "astronaut",
    sigma: Annotated[float, typer.Option(min=0, max=100, help="Noise to add (0-255 scale).")] = 25.0,
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
    model: Annotated[str | None, typer.Option("--model", "-m")] = None,
    device: Annotated[str, typer.Option()] = "auto",
    precision: Annotated[str, typer.Option()] = "auto",
) -> None:
    """Add noise to a sample photo, denoise it (sigma estimated), print PSNR before/after."""
    with handled():
        from ..demo import run_demo

        r = run_demo(out_dir, image=image, sigma=sigma, seed=seed, model=model, device=device, precision=precision)
        out.print(f"image      {r.image}")
        out.print(f"noise      sigma {r.sigma:g} added (clipped, 8-bit); estimated {r.sigma_estimated:.2f}")
        gain = r.psnr_denoised - r.psnr_noisy
        out.print(f"PSNR       noisy {r.psnr_noisy:.2f} dB -> denoised {r.psnr_denoised:.2f} dB"
                  + (f" ({gain:+.2f} dB)" if math.isfinite(gain) else "") + f" in {r.seconds:.1f} s")
        out.print(f"written    {r.files['comparison']} (noisy | denoised | clean), {r.files['noisy']}, {r.files['denoised']}")
