"""Evaluate a denoiser with the standard synthetic-noise protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..training.data import decode_rgb8, list_training_images
from .metrics import psnr, ssim
from .protocol import make_noisy, to_uint8

DenoiseFn = Callable[[np.ndarray, float], np.ndarray]  # (H,W,3) float32 noisy, sigma255 -> float32


def load_eval_images(sources: Sequence[str | Path], limit: int = 0, data_root: str | None = None) -> list[tuple[str, np.ndarray]]:
    paths = list_training_images(sources, data_root)
    if limit:
        paths = paths[:limit]
    return [(p.stem, decode_rgb8(p)) for p in paths]


def evaluate(
    fn: DenoiseFn,
    images: Sequence[tuple[str, np.ndarray]],
    sigmas: Sequence[float],
    *,
    clip: bool = False,
    with_ssim: bool = False,
    sigma_for_model: Callable[[np.ndarray, float], float] | None = None,
) -> dict[float, dict]:
    """For each sigma: mean PSNR (and SSIM) of ``fn`` and of the noisy input.
    ``sigma_for_model(noisy, true_sigma)`` lets callers pass an estimate instead."""
    out: dict[float, dict] = {}
    for s in sigmas:
        ps, ss, pn = [], [], []
        for name, clean in images:
            noisy = make_noisy(clean, s, name, clip=clip)
            given = sigma_for_model(noisy, s) if sigma_for_model else s
            den = to_uint8(fn(noisy, given))
            ps.append(psnr(den, clean))
            pn.append(psnr(to_uint8(noisy), clean))
            if with_ssim:
                ss.append(ssim(den, clean))
        rec = {"psnr": float(np.mean(ps)), "noisy_psnr": float(np.mean(pn)), "n": len(ps)}
        if with_ssim:
            rec["ssim"] = float(np.mean(ss))
        out[float(s)] = rec
    return out
