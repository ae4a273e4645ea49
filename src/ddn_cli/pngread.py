"""A fast path for decoding plain PNG files, the counterpart of ``pngwrite``.

Inflating the image data is most of a PNG decode: for a noisy 256 x 320 RGB crop, 1.3 of
the 1.8 ms Pillow takes. Pillow and OpenCV both inflate with the system's zlib; Intel's
ISA-L (the ``isal`` package, already ddn's deflater) inflates the same stream in half the
time. So this module walks the chunks itself (checking every CRC, as Pillow's ``verify``
does), inflates the image data with ISA-L, and hands the filtered rows to OpenCV's libpng
re-wrapped as *stored* (uncompressed) deflate blocks, which libpng copies instead of
inflating; libpng then undoes the row filters. Measured by
``python benchmarks/png_decode.py`` (benchmarks/results/png_decode.json).

Only files whose every chunk is understood take this path: 8- or 16-bit grey, grey +
alpha, RGB or RGBA, not interlaced, with no palette, transparency key, EXIF (eXIf, or a
text chunk that may carry EXIF or XMP orientation) or animation, at most
``FAST_MAX_PIXELS``. Everything else - and any file whose data does not check out - gets
``None`` here and is decoded by ``io.read_image``'s Pillow path, which reports errors in
its words. The pixels are the same either way (tests/test_pngread.py).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# above this the extra copies made here (file, inflated rows, stored re-wrap: about three
# times the image's bytes) would add to a large photo's peak memory; such images take
# seconds to denoise, so the decode's share of the time is small anyway
FAST_MAX_PIXELS = 16_000_000
# ancillary chunks that change neither the pixels nor the metadata ddn keeps
_IGNORED = {b"gAMA", b"cHRM", b"sRGB", b"pHYs", b"tIME", b"bKGD", b"sBIT"}
_TEXT = {b"tEXt", b"zTXt", b"iTXt"}
# text keywords Pillow reads EXIF or an XMP orientation from (Image.getexif)
_METADATA_KEYWORDS = (b"Raw profile type", b"XML:com.adobe.xmp")
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_MAX_ICC = 1 << 26  # 64 MB: a larger embedded profile goes to Pillow's checks


@dataclass
class DecodedPNG:
    color: np.ndarray  # (H, W, 1 | 3) uint8 | uint16
    alpha: np.ndarray | None  # (H, W) of the same dtype
    icc: bytes | None


def _isal():
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; without it nothing is gained
        return None
    return isal_zlib


def worth_trying(head: bytes, max_pixels: int) -> bool:
    """Whether a file starting with ``head`` (its first 33 bytes or more) may take the fast
    path: read the whole file then, and call ``decode_png``."""
    if len(head) < 33 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
        return False
    w, h, depth, colour, method, filt, interlace = struct.unpack_from(">IIBBBBB", head, 16)
    return (depth in (8, 16) and colour in _CHANNELS and (method, filt, interlace) == (0, 0, 0)
            and 0 < w * h <= min(max_pixels, FAST_MAX_PIXELS))


def decode_png(data: bytes, max_pixels: int) -> DecodedPNG | None:
    """Decode the PNG file ``data`` if it is a plain one (see the module's docstring);
    ``None`` if it is not, or if anything in it does not check out (the caller then
    decodes it the general way, which also reports what is wrong)."""
    isal_zlib = _isal()
    if isal_zlib is None or data[:8] != SIGNATURE:
        return None
    try:
        return _decode(data, max_pixels, isal_zlib)
    except Exception:  # noqa: BLE001 - bad data (zlib, ISA-L, OpenCV errors), MemoryError, or a bug here:
        return None  # the general path then decodes the file, or says what is wrong with it


def _decode(data: bytes, max_pixels: int, isal_zlib) -> DecodedPNG | None:
    view = memoryview(data)
    pos, end = 8, len(data)
    ihdr: memoryview | None = None
    idat: list[memoryview] = []
    icc = None
    prev = b""
    while True:
        if pos + 12 > end:
            return None  # no IEND: truncated
        (length,) = struct.unpack_from(">I", data, pos)
        kind = bytes(view[pos + 4:pos + 8])
        body = view[pos + 8:pos + 8 + length]
        if length > 0x7FFFFFFF or pos + 12 + length > end:
            return None
        if isal_zlib.crc32(body, isal_zlib.crc32(kind)) != struct.unpack_from(">I", data, pos + 8 + length)[0]:
            return None
        if ihdr is None and kind != b"IHDR":
            return None
        if kind == b"IHDR":
            if ihdr is not None or length != 13:
                return None
            ihdr = view[pos:pos + 12 + length]
        elif kind == b"IDAT":
            if idat and prev != b"IDAT":  # image data must be consecutive chunks
                return None
            idat.append(body)
        elif kind == b"IEND":
            break
        elif kind in _TEXT:
            if bytes(body[:80]).startswith(_METADATA_KEYWORDS):
                return None
        elif kind in _IGNORED:
            pass
        elif kind == b"iCCP":
            if icc is not None or idat:
                return None
            name_end = bytes(body[:80]).find(b"\0")
            if name_end < 1 or name_end + 2 > length or body[name_end + 1] != 0:
                return None
            inflater = zlib.decompressobj()
            icc = inflater.decompress(body[name_end + 2:], _MAX_ICC)
            if not inflater.eof or not icc:
                return None
        else:
            return None  # PLTE, tRNS, eXIf, acTL (animation), sPLT, anything unknown
        prev = kind
        pos += 12 + length
    if ihdr is None or not idat:
        return None
    w, h, depth, colour, method, filt, interlace = struct.unpack_from(">IIBBBBB", ihdr, 8)
    if (depth not in (8, 16) or colour not in _CHANNELS or (method, filt, interlace) != (0, 0, 0)
            or w == 0 or h == 0 or w * h > min(max_pixels, FAST_MAX_PIXELS)):
        return None
    rows = h * (1 + w * _CHANNELS[colour] * depth // 8)
    inflater = isal_zlib.decompressobj()
    raw = inflater.decompress(b"".join(idat) if len(idat) > 1 else idat[0], rows + 1)
    if len(raw) != rows or not inflater.eof:
        return None
    del idat
    arr = _unfilter(bytes(ihdr), raw, isal_zlib)
    del raw
    if arr is None or arr.shape[:2] != (h, w):
        return None
    out = _split(arr, colour, depth)
    if out is not None:
        out.icc = icc
    return out


def _unfilter(ihdr_chunk: bytes, raw: bytes, isal_zlib) -> np.ndarray | None:
    """The filtered rows ``raw`` decoded by OpenCV's libpng, as a minimal PNG (IHDR, one
    IDAT of stored deflate blocks, IEND): (H, W) or (H, W, C) in OpenCV's channel order
    (BGR / BGRA)."""
    import cv2

    view = memoryview(raw)
    stream = [b"\x78\x01"]  # a zlib header, then blocks of at most 65535 bytes, then Adler-32
    for i in range(0, len(raw), 0xFFFF):
        block = view[i:i + 0xFFFF]
        stream.append(struct.pack("<BHH", i + 0xFFFF >= len(raw), len(block), len(block) ^ 0xFFFF))
        stream.append(block)
    stream.append(struct.pack(">I", isal_zlib.adler32(raw)))
    crc = isal_zlib.crc32(b"IDAT")
    for part in stream:
        crc = isal_zlib.crc32(part, crc)
    size = sum(len(part) for part in stream)
    png = b"".join([SIGNATURE, ihdr_chunk, struct.pack(">I", size), b"IDAT", *stream, struct.pack(">I", crc),
                    b"\x00\x00\x00\x00IEND\xaeB`\x82"])
    del stream, view
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)


def _split(arr: np.ndarray, colour: int, depth: int) -> DecodedPNG | None:
    """OpenCV's array as ddn's (colour RGB or grey, alpha apart)."""
    import cv2

    want = np.uint16 if depth == 16 else np.uint8
    if arr.dtype != want:
        return None
    if colour == 0:
        return DecodedPNG(arr[..., None], None, None) if arr.ndim == 2 else None
    if arr.ndim != 3:
        return None
    c = arr.shape[2]
    if colour == 2 and c == 3:
        return DecodedPNG(cv2.cvtColor(arr, cv2.COLOR_BGR2RGB), None, None)
    if colour == 6 and c == 4:
        return DecodedPNG(cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB), arr[..., 3].copy(), None)
    if colour == 4 and c == 4:  # grey + alpha, which OpenCV expands to BGRA: it stays grey
        return DecodedPNG(arr[..., :1].copy(), arr[..., 3].copy(), None)
    if colour == 4 and c == 2:
        return DecodedPNG(arr[..., :1].copy(), arr[..., 1].copy(), None)
    return None
