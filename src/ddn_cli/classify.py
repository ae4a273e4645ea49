"""Classification of (noisy) images: denoise first with a ddn denoiser, then run a
classifier (the bundled CIFAR-10 one, any registered one, or ``torchvision:<model>``).
Library code: returns records, never prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .highlevel import HighLevelNet


@dataclass
class Classification:
    input: str
    status: str  # ok | failed
    top: list[tuple[str, float]] = field(default_factory=list)
    sigma: float | None = None
    denoiser: str | None = None
    classifier: str | None = None
    error: str | None = None


@torch.inference_mode()
def top_k(net: HighLevelNet, rgb01: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
    """rgb01: (H, W, 3) float32 in [0, 1], any size."""
    dev = next(net.module.parameters()).device
    p = torch.softmax(net(net.prepare(rgb01).to(dev)).float(), dim=1)[0].cpu()
    vals, idx = p.topk(min(k, p.numel()))
    names = net.classes or [str(i) for i in range(p.numel())]
    return [(names[int(i)], float(v)) for v, i in zip(vals, idx)]


def to_rgb01(color: np.ndarray) -> np.ndarray:
    c = color.astype(np.float32) / (65535.0 if color.dtype == np.uint16 else 255.0)
    return np.repeat(c, 3, axis=2) if c.shape[2] == 1 else c


def classify_files(paths: list[Path], *, denoiser=None, classifier: HighLevelNet, sigma: float | None = None,
                   k: int = 5, max_pixels: int = 200_000_000) -> list[Classification]:
    from .errors import DdnError
    from .pipeline import read_denoised

    out = []
    for p in paths:
        try:
            img, used = read_denoised(p, denoiser, sigma=sigma, max_pixels=max_pixels)
            out.append(Classification(str(p), "ok", top_k(classifier, to_rgb01(img.color), k),
                                      None if used is None else round(used, 3), getattr(denoiser, "name", None),
                                      classifier.name))
        except DdnError as e:
            out.append(Classification(str(p), "failed", error=str(e)))
    return out
