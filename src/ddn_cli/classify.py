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


def to_rgb01(color: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]; with ``alpha``, composited over white, as the image shows
    and as ddn's JPEG output flattens it (what lies under transparent pixels is anything an
    editor left there, not what the user sees)."""
    c = color.astype(np.float32) / (65535.0 if color.dtype == np.uint16 else 255.0)
    c = np.repeat(c, 3, axis=2) if c.shape[2] == 1 else c
    if alpha is not None:
        a = alpha.astype(np.float32).reshape(c.shape[0], c.shape[1], 1) / (65535.0 if alpha.dtype == np.uint16 else 255.0)
        c = c * a + (1.0 - a)
    return c


# A photo larger than this many times the classifier's own input scale is shrunk to it before
# denoising: the classifier sees it shrunk anyway (32 x 32 for the bundled one, short side 232-256
# for torchvision's), and shrinking averages most of the noise away, so denoising every pixel
# of a 12 MP photo first (20 s on 2 cores) changed nothing the classifier could see.
DENOISE_SCALE = 2


def working_short_side(net: HighLevelNet) -> int | None:
    """The short side of what ``net`` classifies (its resize target or input size)."""
    if net.resize_short:
        return int(net.resize_short)
    return int(min(net.input_size)) if net.input_size else None


def shrink_for(net: HighLevelNet, img, sigma: float | None):
    """(image, sigma, f): the image shrunk by ``f`` (area averaging) to DENOISE_SCALE times
    ``net``'s input scale if it is larger (else f = 1), and the sigma to denoise it with: the
    photo's (given, or estimated on the full image as `ddn denoise` would) divided by f, since
    averaging f x f pixels divides the noise by f. (Estimating on the shrunk image instead
    read its texture as noise.)"""
    import cv2

    from .io import ImageData

    target = working_short_side(net)
    h, w = img.shape
    if not target or min(h, w) <= DENOISE_SCALE * target:
        return img, sigma, 1.0
    f = min(h, w) / (DENOISE_SCALE * target)
    if sigma is None:
        from .noise import estimate_sigma

        sigma = estimate_sigma(img.color, luma=img.chroma_subsampled, alpha=img.alpha)
    size = (max(1, round(w / f)), max(1, round(h / f)))
    color = cv2.resize(img.color, size, interpolation=cv2.INTER_AREA)
    color = color[..., None] if color.ndim == 2 else color
    alpha = cv2.resize(img.alpha, size, interpolation=cv2.INTER_AREA) if img.alpha is not None else None
    small = ImageData(color=color, alpha=alpha, bits=img.bits, format=img.format, notes=list(img.notes),
                      chroma_subsampled=img.chroma_subsampled)
    return small, sigma / f, f


def classify_files(paths: list[Path], *, denoiser=None, classifier: HighLevelNet, sigma: float | None = None,
                   k: int = 5, max_pixels: int = 200_000_000) -> list[Classification]:
    """Top-``k`` labels of each file; with a ``denoiser``, denoised first, at the scale the
    classifier sees (``shrink_for``)."""
    from .errors import DdnError
    from .io import read_image
    from .pipeline import auto_tile, denoise_image

    out = []
    for p in paths:
        try:
            img, used = read_image(p, max_pixels), None
            if denoiser is not None:
                img, s, f = shrink_for(classifier, img, sigma)
                tile, batch = auto_tile(denoiser.device.type)
                img, used = denoise_image(img, denoiser, sigma=s, tile=tile, overlap=denoiser.overlap, batch_size=batch)
                used *= f  # reported on the photo's own scale
            out.append(Classification(str(p), "ok", top_k(classifier, to_rgb01(img.color, img.alpha), k),
                                      None if used is None else round(used, 3), getattr(denoiser, "name", None),
                                      classifier.name))
        except DdnError as e:
            out.append(Classification(str(p), "failed", error=str(e)))
    return out
