"""Blind noise-level estimation for ``--sigma auto``.

Method: Chen, Zhu & Heng, "An Efficient Statistical Method for Image Noise Level
Estimation" (ICCV 2015). Overlapping 8x8 colour patches form a 192-dim sample; the
eigenvalues of its covariance that belong to the noise subspace are the smallest
ones whose mean equals their median; sigma^2 is that mean. Patches touching
saturated pixels (0 or 255) are dropped, since clipping hides noise there. Large
images are sampled (a fixed-seed subset of patches) to keep it fast.

Chroma-subsampled files (4:2:0 or 4:2:2 JPEGs, lossy WebP: ``luma=True``): their colour
noise is averaged away, so the colour patches above have noise-free directions and the
estimate comes out near 0 (0.5 for sigma 25). For those the noise is measured in the luma
(BT.601, as JPEG stores it) on 8x8 patches, keeping only weakly textured ones (Liu, Tanaka &
Okutomi, "Single-image noise level estimation for blind denoising", IEEE TIP 2013: a patch
is kept if its gradient energy is what noise of the current estimate alone would give, and
the estimate is iterated), and reported as the sigma of white RGB noise with that much luma
noise. Measured in benchmarks/jpeg_sigma.py (see README). Grey images are measured the same
way, on their one channel (benchmarks/grey_sigma.py).
"""

from __future__ import annotations

import numpy as np


def _patches(img: np.ndarray, p: int, stride: int, max_patches: int, rng: np.random.Generator) -> np.ndarray:
    h, w, c = img.shape
    ny, nx = (h - p) // stride + 1, (w - p) // stride + 1
    win = np.lib.stride_tricks.sliding_window_view(img, (p, p), axis=(0, 1))[::stride, ::stride]  # (ny, nx, c, p, p)
    if ny * nx <= max_patches:  # every grid position, row by row: a strided view, copied once
        return np.moveaxis(win, 2, -1).reshape(ny * nx, p, p, c)  # (n, p, p, c)
    # sample grid positions (with replacement: cheap for huge images); whole windows are
    # gathered, which is 5x faster than gathering each pixel by its own index
    yy = rng.integers(0, ny, max_patches)
    xx = rng.integers(0, nx, max_patches)
    return np.moveaxis(win[yy, xx], 1, -1)  # (n, p, p, c)


# luma of BT.601 (JPEG's YCbCr); white RGB noise of sigma s has luma noise LUMA_GAIN * s
LUMA = np.array([0.299, 0.587, 0.114])
LUMA_GAIN = float(np.sqrt(np.sum(LUMA ** 2)))


def estimate_sigma(img: np.ndarray, *, patch: int = 8, stride: int = 3, max_patches: int = 60000,
                   saturated: bool = True, luma: bool = False, alpha: np.ndarray | None = None) -> float:
    """Noise standard deviation of ``img`` on the 0-255 scale.

    ``img``: (H, W, C) float in [0, 1] (may exceed it) or uint8/uint16. Returns 0.0 for
    images too small to measure (smaller than 8x8). ``luma``: measure a colour image's
    noise in its luma only (for chroma-subsampled files; see the module's docstring; a grey
    image is measured as it is). ``alpha``: the image's (H, W) alpha; patches touching a fully
    transparent pixel are left out (what lies under them is anything an editor left there:
    random colours under a transparent half read sigma 25.7 for an image of 1.15). Only the
    sampled patches are converted to floating point, never the whole image (a float64 copy of
    a 48 MP photo is 1.15 GB)."""
    if img.ndim == 2:
        img = img[..., None]
    h, w, c = img.shape
    hidden = alpha.reshape(h, w) == 0 if alpha is not None else None
    if hidden is not None and not hidden.any():
        hidden = None
    if h < patch or w < patch:
        return 0.0
    rng = np.random.default_rng(0)
    luma = luma and c == 3
    dims = 1 if luma else c  # channels per patch that the PCA sees

    def count(p: int, st: int) -> int:
        return max(0, (h - p) // st + 1) * max(0, (w - p) // st + 1)

    # small images: denser sampling, then smaller patches, so patches >> dimensions
    if count(patch, stride) < 20 * dims * patch * patch:
        stride = 1
    while patch > 4 and count(patch, stride) < 8 * dims * patch * patch:
        patch -= 2
    if count(patch, stride) < 2 * dims * patch * patch:
        return 0.0  # too few pixels to tell noise from content
    if hidden is not None:  # drawn at the same positions as the image's patches (same generator state)
        seen = ~_patches(hidden[..., None], patch, stride, max_patches, np.random.default_rng(0)).any(axis=(1, 2, 3))
        if seen.sum() < 2 * dims * patch * patch:
            return 0.0  # too little of the image is visible to measure
    pt = _patches(img, patch, stride, max_patches, rng)
    if hidden is not None:
        pt = pt[seen]
    if saturated:
        ok = ~_touches_clipping(pt)
        if ok.sum() >= max(200, 0.05 * len(pt)):
            pt = pt[ok]
    # float32 from here: the covariance's product (nearly all of the estimator's time, 8,700
    # patches x 192 values for a 256 x 320 crop) runs twice as fast as in float64; on
    # Kodak24 at sigma 0-50 (8/16-bit, float, grey, luma, sampled) the estimate moved by at
    # most 0.03 of 255 (benchmarks/sigma_estimator_speed.py)
    if pt.dtype == np.uint8:
        pt = pt.astype(np.float32)
    elif pt.dtype == np.uint16:
        pt = pt.astype(np.float32) / np.float32(257.0)
    else:
        pt = pt.astype(np.float32) * np.float32(255.0)
    if luma:
        return _weak_texture_sigma(pt @ LUMA.astype(np.float32)) / LUMA_GAIN
    if c == 1:
        # grey: 8x8 patches are 64 dimensions, too few for the PCA to find a subspace free of
        # the image's texture, and clean grey photos read sigma 2-9 (Kodak24, CamVid frames;
        # colour: 0.5), which then blurred them: the weakly textured patches instead
        return _weak_texture_sigma(pt[..., 0])
    return _pca_sigma(pt.reshape(len(pt), -1))


def _touches_clipping(pt: np.ndarray) -> np.ndarray:
    """Which of the patches ``pt`` ((n, ...), uint8, uint16 or float on the 0-1 scale) have a
    value within half a step of 0 or 255 on the 0-255 scale, in any channel. Integer patches
    are judged as they are, before anything is converted (x / 257 <= 0.5 is x <= 128)."""
    flat = pt.reshape(len(pt), -1)
    if pt.dtype == np.uint8:
        return (flat.min(axis=1) == 0) | (flat.max(axis=1) == 255)
    if pt.dtype == np.uint16:
        return (flat.min(axis=1) <= 128) | (flat.max(axis=1) >= 65407)
    v = flat.astype(np.float64) * 255.0
    return ((v <= 0.5) | (v >= 254.5)).any(axis=1)


def _weak_texture_sigma(pt: np.ndarray, z: float = 3.0, rounds: int = 8) -> float:
    """Noise sigma of single-channel patches ``pt`` ((n, p, p)) from the weakly textured ones:
    start from all of them, then keep a patch while its gradient energy (squared differences
    of neighbours, across and down) is within ``z`` standard deviations of what white noise
    of the current estimate gives (mean 2 sigma^2 k over its k differences, variance
    8 sigma^4 k), and re-estimate, until the estimate settles."""
    n, p = pt.shape[0], pt.shape[1]
    energy = (np.diff(pt, axis=1) ** 2).sum(axis=(1, 2)) + (np.diff(pt, axis=2) ** 2).sum(axis=(1, 2))
    k = 2 * p * (p - 1)
    flat = pt.reshape(n, -1)
    sigma = _pca_sigma(flat)
    for _ in range(rounds):
        keep = energy <= 2 * sigma ** 2 * k * (1 + z * np.sqrt(2 / k))
        if keep.sum() < 4 * p * p:  # too few to estimate from: keep the last estimate
            break
        new = _pca_sigma(flat[keep])
        if abs(new - sigma) < 1e-3:
            return new
        sigma = new
    return sigma


def _pca_sigma(X: np.ndarray) -> float:
    mean = X.mean(axis=0, keepdims=True, dtype=np.float64)
    Xc = (X - mean.astype(X.dtype)).astype(np.float32, copy=False)
    cov = (Xc.T @ Xc).astype(np.float64) / len(X)
    ev = np.sort(np.linalg.eigvalsh(cov))  # ascending
    for k in range(ev.size, 0, -1):
        tail = ev[:k]
        tau = tail.mean()
        if np.sum(tail > tau) == np.sum(tail < tau):
            return float(np.sqrt(max(tau, 0.0)))
    return float(np.sqrt(max(ev[0], 0.0)))

