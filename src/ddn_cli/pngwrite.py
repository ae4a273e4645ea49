"""A streaming PNG writer for 8- and 16-bit grey, grey+alpha, RGB and RGBA.

Rows are filtered with numpy's uint8 arithmetic on whole strips (each row Sub, Up or
Average, whichever leaves the smallest residuals) and deflated by Intel's ISA-L (the
``isal`` package) at its level 3, falling back to zlib's level 1 with the run-length
strategy where ``isal`` is not installed. Measured by ``python benchmarks/png_encode.py``
(see benchmarks/results/png_encode.json): much faster than OpenCV's PNG encoder with the
Paeth filter and zlib level 1, which ddn used before, for files a few percent larger.
PNG encoding runs beside the model on the same cores, so its CPU time is taken from
denoising.

Memory: one strip of rows (64 kB of pixels) at a time, streamed into the file.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

STRIP_BYTES = 1 << 16  # raw bytes per strip of rows: 64 kB keeps the filters in cache (1.5x faster than 1 MB)
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels (alpha included) -> PNG colour type


def text_chunk(keyword: str, text: str) -> bytes | None:
    """A tEXt chunk (Latin-1), or an iTXt one (UTF-8) for text Latin-1 cannot hold; None for a
    keyword the PNG specification does not allow (1-79 Latin-1 characters)."""
    try:
        key = keyword.encode("latin-1")
    except UnicodeEncodeError:
        return None
    if not 1 <= len(key) <= 79 or b"\0" in key:
        return None
    try:
        return chunk(b"tEXt", key + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        return chunk(b"iTXt", key + b"\0\0\0\0\0" + text.encode("utf-8", "replace"))


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def metadata_chunks(icc: bytes | None, exif: bytes | None, colour: bytes = b"",
                    dpi: tuple[float, float] | None = None, xmp: bytes | None = None, text: bytes = b"") -> bytes:
    """The chunks that go after IHDR, before the image data: ``colour`` (a source PNG's gAMA,
    cHRM and sRGB chunks, whole; its sRGB left out beside an ICC profile, which the PNG
    specification does not allow together), iCCP, pHYs for ``dpi``, eXIf, the XMP packet
    (an iTXt chunk, keyword "XML:com.adobe.xmp", uncompressed, as Adobe writes it) and
    ``text``, a source PNG's text chunks, whole."""
    out = b""
    pos = 0
    while pos + 12 <= len(colour):  # whole chunks: length, type, payload, CRC
        n = struct.unpack_from(">I", colour, pos)[0]
        if not (icc and colour[pos + 4:pos + 8] == b"sRGB"):
            out += colour[pos:pos + 12 + n]
        pos += 12 + n
    if icc:
        out += chunk(b"iCCP", b"ICC\x00\x00" + zlib.compress(icc))
    if dpi and all(0 < d < 2**32 / 39.37 for d in dpi):
        out += chunk(b"pHYs", struct.pack(">IIB", round(dpi[0] / 0.0254), round(dpi[1] / 0.0254), 1))
    if exif:
        out += chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    if xmp:
        out += chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp)
    return out + text


def filter_rows(rows: np.ndarray, prev: np.ndarray | None, bpp: int) -> np.ndarray:
    """PNG-filter ``rows`` ((n, row_bytes) uint8; ``prev`` the raw row above the first one,
    None at the top of the image; ``bpp`` bytes per pixel). Each row gets whichever of Sub,
    Up and Average leaves the smallest sum of absolute residuals (libpng's heuristic; Paeth,
    left out, costs more in numpy than the deflate it saves). Returns (n, row_bytes + 1),
    the filter type byte first. All arithmetic is uint8, modulo 256 as PNG defines it."""
    n, width = rows.shape
    up = np.empty_like(rows)
    up[0] = 0 if prev is None else prev
    up[1:] = rows[:-1]
    left = np.zeros_like(rows)
    left[:, bpp:] = rows[:, :-bpp]
    cand = np.empty((3, n, width), np.uint8)
    np.subtract(rows, left, out=cand[0])  # Sub
    np.subtract(rows, up, out=cand[1])  # Up
    # Average: rows - floor((left + up) / 2), the mean without leaving uint8
    mean = np.bitwise_and(left, up)
    mean &= 1
    left >>= 1
    up >>= 1
    mean += left
    mean += up
    np.subtract(rows, mean, out=cand[2])
    # |residual| as a signed byte (abs(-128) wraps to -128, read back as 128)
    score = np.abs(cand.view(np.int8)).view(np.uint8).sum(axis=2, dtype=np.uint32)
    best = score.argmin(axis=0)
    out = np.empty((n, width + 1), np.uint8)
    out[:, 0] = best + 1  # Sub = 1, Up = 2, Average = 3
    out[:, 1:] = cand[best, np.arange(n)]
    return out


def _compressor():
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; kept for odd platforms
        return zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    return isal_zlib.compressobj(3)


def write_png(f: BinaryIO, color: np.ndarray, alpha: np.ndarray | None = None,
              icc: bytes | None = None, exif: bytes | None = None, colour: bytes = b"",
              dpi: tuple[float, float] | None = None, xmp: bytes | None = None, text: bytes = b"") -> None:
    """Write ``color`` ((H, W, 1 | 3) uint8 or uint16) and ``alpha`` ((H, W) of the same
    dtype, or None) as a PNG into the binary file ``f``. Strips of rows are converted,
    filtered and deflated one at a time: no full-size copy of the image is made."""
    if (color.ndim != 3 or color.shape[2] not in (1, 3) or color.dtype not in (np.uint8, np.uint16)
            or 0 in color.shape[:2]):
        raise ValueError(f"cannot write {color.dtype} pixels of shape {color.shape} as PNG")
    if alpha is not None and (alpha.shape != color.shape[:2] or alpha.dtype != color.dtype):
        raise ValueError(f"alpha of {alpha.dtype} {alpha.shape} does not match colour {color.dtype} {color.shape}")
    h, w, c = color.shape
    c += alpha is not None
    depth = color.dtype.itemsize * 8
    bpp = c * depth // 8
    f.write(b"\x89PNG\r\n\x1a\n")
    f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, _COLOR_TYPE[c], 0, 0, 0)))
    f.write(metadata_chunks(icc, exif, colour, dpi, xmp, text))
    comp = _compressor()
    step = max(1, STRIP_BYTES // max(1, w * bpp))
    prev = None
    for y in range(0, h, step):
        px = color[y:y + step] if alpha is None else np.dstack([color[y:y + step], alpha[y:y + step]])
        if depth == 16:  # PNG samples are big-endian
            px = px.astype(">u2")
        raw = np.ascontiguousarray(px).view(np.uint8).reshape(len(px), w * bpp)
        block = comp.compress(filter_rows(raw, prev, bpp))
        if block:
            f.write(chunk(b"IDAT", block))
        prev = raw[-1]
    f.write(chunk(b"IDAT", comp.flush()))
    f.write(chunk(b"IEND", b""))
