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
alpha, RGB or RGBA, not interlaced, with no palette, transparency key, EXIF (eXIf), text
other than plain tEXt (Pillow reads some keywords as metadata: "exif", "icc_profile", ...)
or animation, at most ``FAST_MAX_PIXELS`` and ``MAX_SIDE``, and no larger on disk than
such an image can be. Everything else - and any file whose data does not check out - gets
``None`` here and is decoded by ``io.read_image``'s Pillow path, which reports errors in
its words. The pixels are the same either way (tests/test_pngread.py).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# above this the extra copies made here (file, inflated rows, stored re-wrap: about three
# times the image's bytes) would add to a large photo's peak memory; such images take
# seconds to denoise, so the decode's share of the time is small anyway
FAST_MAX_PIXELS = 16_000_000
# ancillary chunks that change neither the pixels nor how they are decoded, with the
# shortest length Pillow accepts (shorter ones it refuses as truncated)
_IGNORED = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9, b"tIME": 0, b"bKGD": 0, b"sBIT": 0}
COLOUR_CHUNKS = (b"gAMA", b"cHRM", b"sRGB")  # kept whole, written back into PNG outputs
# tEXt keywords passed over: the PNG specification's own and ImageMagick's dates. Pillow files
# any keyword under its name among the image's metadata, where "exif", "icc_profile", "xmp",
# "Raw profile type exif" and others would change what ddn reads, so the rest go to Pillow, as
# do zTXt and iTXt (compressed, or XMP)
_PLAIN_KEYWORDS = {b"Title", b"Author", b"Description", b"Copyright", b"Creation Time", b"Software",
                   b"Disclaimer", b"Warning", b"Source", b"Comment", b"date:create", b"date:modify",
                   b"date:timestamp"}
_MAX_TEXT = 1 << 20  # all tEXt together; beyond, Pillow's own limits decide
MAX_SIDE = 1_000_000  # libpng's default limit on width and height: longer sides go to Pillow
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


@dataclass
class DecodedPNG:
    color: np.ndarray  # (H, W, 1 | 3) uint8 | uint16
    alpha: np.ndarray | None  # (H, W) of the same dtype
    icc: bytes | None
    colour_chunks: bytes = b""  # the file's gAMA, cHRM and sRGB chunks, whole (``pngwrite.colour_chunks``)
    dpi: tuple[float, float] | None = None  # from pHYs, when its unit is the metre
    text_chunks: bytes = b""  # its tEXt chunks, whole (written back into PNG outputs)


def _isal():
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; without it nothing is gained
        return None
    return isal_zlib


def _plain_header(ihdr: bytes | memoryview, max_pixels: int) -> tuple[int, int, int, int] | None:
    """(height, bytes per row with its filter byte, colour type, bit depth) from an IHDR
    chunk's 13 data bytes, if the fast path takes such an image; else None."""
    w, h, depth, colour, method, filt, interlace = struct.unpack_from(">IIBBBBB", ihdr)
    if (depth not in (8, 16) or colour not in _CHANNELS or (method, filt, interlace) != (0, 0, 0)
            or not 0 < w * h <= min(max_pixels, FAST_MAX_PIXELS) or max(w, h) > MAX_SIDE):
        return None
    return h, 1 + w * _CHANNELS[colour] * depth // 8, colour, depth


def worth_trying(head: bytes, max_pixels: int) -> bool:
    """Whether a file starting with ``head`` (its first 33 bytes or more) may take the fast
    path: read the whole file then, and call ``decode_png``."""
    if len(head) < 33 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
        return False
    return _plain_header(head[16:29], max_pixels) is not None


def decode_png(data: bytes | memoryview, max_pixels: int) -> DecodedPNG | None:
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


def _decode(data: bytes | memoryview, max_pixels: int, isal_zlib) -> DecodedPNG | None:
    view = memoryview(data)
    pos, end = 8, len(data)
    ihdr: memoryview | None = None
    idat: list[memoryview] = []
    icc = None
    colour, dpi, texts = b"", None, b""
    prev = b""
    text = 0
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
        elif kind == b"tEXt":
            text += length
            if bytes(body[:80]).split(b"\0", 1)[0] not in _PLAIN_KEYWORDS or text > _MAX_TEXT:
                return None
            texts += bytes(view[pos:pos + 12 + length])
        elif kind in _IGNORED:
            if length < _IGNORED[kind]:
                return None
            if kind in COLOUR_CHUNKS and length == _IGNORED[kind] and not idat:
                colour += bytes(view[pos:pos + 12 + length])
            elif kind == b"pHYs" and length == 9 and body[8] == 1:
                dpi = physical_dpi(bytes(body))
        elif kind == b"iCCP":
            if icc is not None or idat:
                return None
            name_end = bytes(body[:80]).find(b"\0")
            if name_end < 1 or name_end + 2 > length or body[name_end + 1] != 0:
                return None
            from PIL.PngImagePlugin import MAX_TEXT_CHUNK  # Pillow's limit for the profile

            inflater = zlib.decompressobj()
            icc = inflater.decompress(body[name_end + 2:], MAX_TEXT_CHUNK)
            if not inflater.eof or not icc:
                return None
        else:
            return None  # PLTE, tRNS, eXIf, acTL (animation), sPLT, anything unknown
        prev = kind
        pos += 12 + length
    if ihdr is None or not idat:
        return None
    plain = _plain_header(ihdr[8:21], max_pixels)
    if plain is None:
        return None
    h, stride, colour_type, depth = plain
    w = struct.unpack_from(">I", ihdr, 8)[0]
    pieces = _inflate(idat, h * stride, stride, isal_zlib)
    del idat, view
    if pieces is None:
        return None
    arr = _unfilter(bytes(ihdr), pieces, isal_zlib)
    del pieces
    if arr is None or arr.shape[:2] != (h, w):
        return None
    out = _split(arr, colour_type, depth)
    if out is not None:
        out.icc, out.colour_chunks, out.dpi, out.text_chunks = icc, colour, dpi, texts
    return out


def physical_dpi(phys: bytes) -> tuple[float, float] | None:
    """Dots per inch from a pHYs chunk's 9 bytes (pixels per metre, unit 1); None for an
    aspect ratio alone (unit 0) or zero."""
    x, y, unit = struct.unpack(">IIB", phys[:9])
    return (x * 0.0254, y * 0.0254) if unit == 1 and x and y else None


def _inflate(idat: list[memoryview], rows: int, stride: int, isal_zlib) -> list[bytes] | None:
    """The image data inflated, in pieces of at most 65535 bytes (one stored block each,
    and small enough for the allocator to reuse: see ``_Buffers``); None unless it is
    exactly ``rows`` bytes, the stream complete and every row's filter type valid (0-4;
    libpng would print its complaint). Never inflates more than ``rows`` + 64 kB, and hands
    the inflater at most 64 kB at a time (its unconsumed tail is copied on every call)."""
    first = idat[0]
    if len(first) < 2 or first[0] & 0x0F != 8 or first[0] >> 4 > 7 or first[1] & 0x20 or (first[0] << 8 | first[1]) % 31:
        return None  # not a zlib header zlib itself would accept (ISA-L is laxer)
    inflater = isal_zlib.decompressobj()
    pieces: list[bytes] = []
    total = 0

    def take(piece: bytes) -> bool:
        nonlocal total
        # the filter type bytes that fall in this piece: offsets total, total + stride, ...
        types = np.frombuffer(piece, np.uint8)[(-total) % stride::stride]
        pieces.append(piece)
        total += len(piece)
        return total <= rows and not (types.size and types.max() > 4)

    for chunk in idat:
        for at in range(0, len(chunk), 0x10000):
            data = chunk[at:at + 0x10000]
            while data and not inflater.eof:
                piece = inflater.decompress(data, 0xFFFF)
                data = inflater.unconsumed_tail
                if piece:
                    if not take(piece):
                        return None
                elif data:
                    return None  # no progress
    while not inflater.eof:  # output held back by the 64 kB cap
        piece = inflater.decompress(b"", 0xFFFF)
        if not piece:
            break
        if not take(piece):
            return None
    return pieces if total == rows and inflater.eof else None


class _Buffers(threading.local):
    """Two byte buffers per thread, reused from file to file: the file read and the
    re-wrapped PNG. Fresh buffers of a few hundred kB each for every small image made glibc
    hand memory back and take it again (some 220 page faults and 0.3-0.8 ms of kernel time per
    256 x 320 crop, more than the decode saved); reused, there are none. Buffers above
    ``REUSE_MAX`` are not kept (large images take seconds anyway)."""

    REUSE_MAX = 4 << 20

    def __init__(self) -> None:
        self.kept: dict[str, bytearray] = {}

    def get(self, slot: str, n: int) -> memoryview:
        buf = self.kept.get(slot)
        if buf is None or len(buf) < n:
            buf = bytearray(max(n, 1 << 16))
            if n <= self.REUSE_MAX:
                self.kept[slot] = buf
        return memoryview(buf)[:n]


_BUFFERS = _Buffers()


def read_file(f: BinaryIO, head: bytes) -> memoryview | None:
    """The whole of the open binary file ``f``, whose first bytes, ``head`` (a header
    ``worth_trying`` accepted), were read already, in this thread's reused read buffer (valid
    until the next call). None for a file much larger than its image data could be (the
    general path then reads no more of it than it needs) or that memory cannot hold."""
    h, stride, _, _ = _plain_header(head[16:29], 1 << 62)
    size = os.fstat(f.fileno()).st_size
    # stored deflate at worst adds 5 bytes per 64 kB; ICC and text add at most a few MB
    if size > h * stride * 1.01 + (8 << 20):
        return None
    try:
        buf = _BUFFERS.get("file", max(size, len(head)) + 1)  # one byte more: a file that grew is noticed
    except MemoryError:
        return None
    buf[:len(head)] = head
    n = len(head)
    while n < len(buf):
        got = f.readinto(buf[n:])
        if not got:
            break
        n += got
    return buf[:n]


def _unfilter(ihdr_chunk: bytes, pieces: list[bytes], isal_zlib) -> np.ndarray | None:
    """The filtered rows (``pieces``, each at most 65535 bytes) decoded by OpenCV's libpng,
    as a minimal PNG (IHDR, one IDAT of stored deflate blocks, IEND) assembled in this
    thread's reused buffer: (H, W) or (H, W, C) in OpenCV's channel order (BGR / BGRA)."""
    import cv2

    n = sum(len(p) for p in pieces)
    size = 2 + 5 * len(pieces) + n + 4  # zlib header, a 5-byte header per block, Adler-32
    buf = _BUFFERS.get("png", 8 + 25 + 8 + size + 4 + 12)
    at = 8 + 25 + 8
    buf[:at] = SIGNATURE + ihdr_chunk + struct.pack(">I", size) + b"IDAT"
    buf[at:at + 2] = b"\x78\x01"
    at += 2
    adler = 1
    for i, p in enumerate(pieces):
        buf[at:at + 5] = struct.pack("<BHH", i == len(pieces) - 1, len(p), len(p) ^ 0xFFFF)
        buf[at + 5:at + 5 + len(p)] = p
        at += 5 + len(p)
        adler = isal_zlib.adler32(p, adler)
    buf[at:at + 4] = struct.pack(">I", adler)
    at += 4
    buf[at:at + 4] = struct.pack(">I", isal_zlib.crc32(buf[8 + 25 + 4:at]))
    buf[at + 4:at + 16] = b"\x00\x00\x00\x00IEND\xaeB`\x82"
    return cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)


def _split(arr: np.ndarray, colour: int, depth: int) -> DecodedPNG | None:
    """OpenCV's array as ddn's (colour RGB or grey, alpha apart), if it is what the header said."""
    from .io import from_opencv

    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if arr.dtype != (np.uint16 if depth == 16 else np.uint8) or channels != {0: 1, 2: 3, 4: 4, 6: 4}[colour]:
        return None  # OpenCV expands grey + alpha (colour type 4) to BGRA
    color, alpha = from_opencv(arr, grey_alpha=colour == 4)
    return DecodedPNG(color, alpha, None)
