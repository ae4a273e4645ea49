"""A BMP writer for images with alpha: Pillow writes RGBA as a 32-bit BMP whose fourth byte
readers (Pillow's included) ignore, so ddn writes the alpha bit mask into a V4 header."""

from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np


def write_bmp_with_alpha(f: BinaryIO, color: np.ndarray, alpha: np.ndarray) -> None:
    """A 32-bit BMP with a BITMAPV4HEADER whose bit masks name the alpha byte (BI_BITFIELDS),
    which Pillow, browsers and Windows read as RGBA. Grey + alpha is written as RGBA (BMP has
    no grey + alpha)."""
    h, w = alpha.shape
    bgra = np.empty((h, w, 4), np.uint8)
    bgra[..., :3] = color[..., ::-1] if color.shape[2] == 3 else color  # grey broadcasts to B, G, R
    bgra[..., 3] = alpha
    size = w * h * 4
    f.write(struct.pack("<2sIHHI", b"BM", 14 + 108 + size, 0, 0, 14 + 108))
    f.write(struct.pack("<IiiHHIIiiII", 108, w, h, 1, 32, 3, size, 2835, 2835, 0, 0))  # 72 dpi
    f.write(struct.pack("<IIII", 0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000))  # R, G, B, A masks
    f.write(struct.pack("<I", 0x73524742) + bytes(36) + bytes(12))  # 'sRGB', no endpoints or gamma
    f.write(np.ascontiguousarray(bgra[::-1]).tobytes())  # bottom-up rows
