"""The standard synthetic-noise protocol used by the denoising papers:
clean uint8 image -> float, add N(0, sigma/255) noise drawn from a fixed seed per
(image, sigma), no clipping (``clip=False``), denoise, round to uint8, PSNR over all
RGB values. ``clip=True`` gives the real-file variant (clipped to [0,1], quantised)."""

from __future__ import annotations

import zlib

import numpy as np


def noise_seed(name: str, sigma: float, base_seed: int = 0) -> int:
    return (zlib.crc32(f"{name}|{sigma:g}".encode()) + base_seed) & 0xFFFFFFFF


def make_noisy(clean_u8: np.ndarray, sigma: float, name: str, clip: bool = False, base_seed: int = 0) -> np.ndarray:
    """Float32 noisy image in [0,1] scale (unclipped unless ``clip``), shape as input."""
    rng = np.random.default_rng(noise_seed(name, sigma, base_seed))
    clean = clean_u8.astype(np.float32) / 255.0
    noisy = clean + rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(sigma / 255.0)
    if clip:
        noisy = np.round(np.clip(noisy, 0.0, 1.0) * 255.0) / 255.0
    return noisy.astype(np.float32)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
