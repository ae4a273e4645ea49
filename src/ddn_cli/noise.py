"""Blind noise-level estimation for ``--sigma auto``.

Method: Chen, Zhu & Heng, "An Efficient Statistical Method for Image Noise Level
Estimation" (ICCV 2015). Overlapping 8x8 colour patches form a 192-dim sample; the
eigenvalues of its covariance that belong to the noise subspace are the smallest
ones whose mean equals their median; sigma^2 is that mean. Patches touching
saturated pixels (0 or 255) are dropped, since clipping hides noise there. Large
images are sampled (a fixed-seed subset of patches) to keep it fast.

Limitation (measured, see README): it measures white noise. In chroma-subsampled
(4:2:0) JPEGs the colour noise is gone and JPEG removes much of the rest, so the
estimate is low (about 1 for sigma 25 at quality 90); pass ``--sigma N`` for those.
"""

from __future__ import annotations

import numpy as np


def _patches(img: np.ndarray, p: int, stride: int, max_patches: int, rng: np.random.Generator) -> np.ndarray:
    h, w, c = img.shape
    ny, nx = (h - p) // stride + 1, (w - p) // stride + 1
    if ny * nx > max_patches:  # sample grid positions (with replacement: cheap for huge images)
        yy = rng.integers(0, ny, max_patches) * stride
        xx = rng.integers(0, nx, max_patches) * stride
    else:
        yy, xx = np.meshgrid(np.arange(ny) * stride, np.arange(nx) * stride, indexing="ij")
        yy, xx = yy.ravel(), xx.ravel()
    oy, ox = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    rows = yy[:, None, None] + oy[None]
    cols = xx[:, None, None] + ox[None]
    return img[rows, cols]  # (n, p, p, c)


def estimate_sigma(img: np.ndarray, *, patch: int = 8, stride: int = 3, max_patches: int = 60000,
                   saturated: bool = True) -> float:
    """Noise standard deviation of ``img`` on the 0-255 scale.

    ``img``: (H, W, C) float in [0, 1] (may exceed it) or uint8/uint16. Returns 0.0 for
    images too small to measure (smaller than 8x8)."""
    if img.dtype == np.uint8:
        x = img.astype(np.float64)
    elif img.dtype == np.uint16:
        x = img.astype(np.float64) / 257.0
    else:
        x = img.astype(np.float64) * 255.0
    if x.ndim == 2:
        x = x[..., None]
    h, w = x.shape[:2]
    if h < patch or w < patch:
        return 0.0
    rng = np.random.default_rng(0)
    c = x.shape[2]

    def count(p: int, st: int) -> int:
        return max(0, (h - p) // st + 1) * max(0, (w - p) // st + 1)

    # small images: denser sampling, then smaller patches, so patches >> dimensions
    if count(patch, stride) < 20 * c * patch * patch:
        stride = 1
    while patch > 4 and count(patch, stride) < 8 * c * patch * patch:
        patch -= 2
    if count(patch, stride) < 2 * c * patch * patch:
        return 0.0  # too few pixels to tell noise from content
    pt = _patches(x, patch, stride, max_patches, rng)
    if saturated:
        ok = ~((pt <= 0.5) | (pt >= 254.5)).any(axis=(1, 2, 3))
        if ok.sum() >= max(200, 0.05 * len(pt)):
            pt = pt[ok]
    return _pca_sigma(pt.reshape(len(pt), -1))


def _pca_sigma(X: np.ndarray) -> float:
    X = X - X.mean(axis=0, keepdims=True)
    cov = X.T @ X / len(X)
    ev = np.sort(np.linalg.eigvalsh(cov))  # ascending
    for k in range(ev.size, 0, -1):
        tail = ev[:k]
        tau = tail.mean()
        if np.sum(tail > tau) == np.sum(tail < tau):
            return float(np.sqrt(max(tau, 0.0)))
    return float(np.sqrt(max(ev[0], 0.0)))
