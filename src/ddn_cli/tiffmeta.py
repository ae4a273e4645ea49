"""TIFF metadata ddn handles itself: the Orientation tag in a file's bytes, and which of a
TIFF's tags travel on as the image's EXIF.

Pillow 13 turns a TIFF by its Orientation as it loads it (the pixels or only the reported
size, depending on the mode) and OpenCV 5 turns it even when told not to, so ``read_image``
hands both decoders the file with its Orientation set to 1 (``orientation_to_1``) and turns
the pixels itself, as for every other format. A TIFF's first IFD also holds its layout
(size, samples, strips, compression), which Pillow's TIFF writer would take as the new
file's own if it travelled as EXIF (``exif_from_tiff`` keeps the descriptive tags only), and
Pillow's libtiff writer cannot write EXIF sub-IFDs at all (``tiff_output_exif``).
"""

from __future__ import annotations

import struct

import numpy as np

# A TIFF's first IFD holds its layout (size, samples, strips, compression, ...) beside the
# descriptive tags an EXIF block carries; only these go on as the image's EXIF, since a
# writer given the others (Pillow's TIFF writer takes EXIF tags as its own) describes the
# new file with the old layout
EXIF_TAGS = (0x010E, 0x010F, 0x0110, 0x0112, 0x011A, 0x011B, 0x0128, 0x0131, 0x0132, 0x013B, 0x8298)
SUB_IFDS = (0x8769, 0x8825)  # the Exif and GPS IFDs


def exif_from_tiff(tags):
    """A fresh EXIF block with a TIFF's descriptive tags (camera, date, author, resolution,
    orientation) and its Exif and GPS IFDs."""
    from PIL import Image

    out = Image.Exif()
    for tag in EXIF_TAGS:
        if tag in tags:
            out[tag] = tags[tag]
    for tag in SUB_IFDS:
        if tag in tags:
            try:
                sub = dict(tags.get_ifd(tag))
            except Exception:  # noqa: BLE001 - a damaged sub-IFD is left out, the pixels are fine
                continue
            sub.pop(0xA005, None)  # the Interop IFD's offset in the old file: it would point at nothing
            if sub:
                out[tag] = sub
    return out


def tiff_output_exif(exif: bytes) -> bytes:
    """An EXIF block for a TIFF output: only the descriptive tags (``EXIF_TAGS``: camera,
    date, author, resolution, orientation). Pillow's libtiff writer (deflate-compressed TIFF)
    cannot write the Exif and GPS sub-IFDs and fails on them ("Error setting from
    dictionary"), and it takes any layout tag among them (ImageWidth, BitsPerSample,
    PhotometricInterpretation, SamplesPerPixel, ... which phones and Photoshop leave in their
    EXIF) for the new file's own: it then failed, or wrote a TIFF nothing could open or one
    with the wrong colours."""
    from PIL import Image

    e = Image.Exif()
    e.load(exif)
    out = Image.Exif()
    for tag in EXIF_TAGS:
        if tag in e:
            out[tag] = e[tag]
    return out.tobytes()


def orientation_to_1(data: np.ndarray) -> bool:
    """Set the Orientation tag (274) of a TIFF file's first image to 1 (upright), in place
    in ``data`` (the file's bytes), so that a decoder hands back the stored pixels unturned.
    Classic and BigTIFF, either byte order. Returns whether it did; a file that does not
    parse, or has no such tag, is left as it is."""
    b = data[:16].tobytes()
    if len(b) < 8 or b[:2] not in (b"II", b"MM"):
        return False
    e = "<" if b[:2] == b"II" else ">"
    magic = struct.unpack_from(e + "H", b, 2)[0]
    try:
        if magic == 42:
            ifd = struct.unpack_from(e + "I", b, 4)[0]
            n = struct.unpack(e + "H", data[ifd:ifd + 2].tobytes())[0]
            first, size, value_at = ifd + 2, 12, 8
        elif magic == 43 and len(b) >= 16:
            ifd = struct.unpack_from(e + "Q", b, 8)[0]
            n = struct.unpack(e + "Q", data[ifd:ifd + 8].tobytes())[0]
            first, size, value_at = ifd + 8, 20, 12
        else:
            return False
    except struct.error:  # the IFD offset points past the end of the file
        return False
    for k in range(max(0, min(n, (len(data) - first) // size))):
        at = first + k * size
        tag, typ = struct.unpack(e + "HH", data[at:at + 4].tobytes())
        if tag == 274:  # SHORT as TIFF 6.0 has it, or LONG / LONG8 as some writers put it
            fmt = {3: "H", 4: "I", 16: "Q"}.get(typ)
            if fmt is None or (fmt == "Q" and size != 20):
                return False
            one = struct.pack(e + fmt, 1)
            data[at + value_at:at + value_at + len(one)] = np.frombuffer(one, np.uint8)
            return True
    return False


def with_tags(data: bytes, add: dict[int, tuple[int, int, bytes]]) -> bytes:
    """A classic TIFF's bytes with entries added to its first IFD (``tag_patch``); a file
    that does not parse comes back unchanged."""
    patch = tag_patch(data, add)
    return data if patch is None else patch[0] + bytes(data[8:]) + patch[1]


def tag_patch(data, add: dict[int, tuple[int, int, bytes]]) -> tuple[bytes, bytes] | None:
    """How to give a classic TIFF (``data``: its bytes, or a memoryview of them) entries in
    its first IFD, added or replacing its own of the same tag: ``add`` maps a tag to (type,
    count, value bytes in the file's byte order). Returns (the new 8-byte header, what to
    append): the first IFD is copied, its entries in tag order, to the end of the file, values
    longer than 4 bytes after it, and the header points at the copy; everything from byte 8
    on stays as it is, so a writer streams it unchanged (a 24 MP 16-bit TIFF is 144 MB). None
    for a file that does not parse, or a BigTIFF (OpenCV does not write it)."""
    head = bytes(data[:8])
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        return None
    e = "<" if head[:2] == b"II" else ">"
    if struct.unpack_from(e + "H", head, 2)[0] != 42:
        return None
    try:
        ifd = struct.unpack_from(e + "I", head, 4)[0]
        n = struct.unpack_from(e + "H", data, ifd)[0]
        entries = [bytes(data[ifd + 2 + 12 * k: ifd + 14 + 12 * k]) for k in range(n)]
        next_ifd = bytes(data[ifd + 2 + 12 * n: ifd + 6 + 12 * n])
        if len(next_ifd) != 4 or any(len(x) != 12 for x in entries):
            return None
    except struct.error:
        return None
    tags = {struct.unpack_from(e + "H", x)[0]: x for x in entries}
    at = len(data) + (len(data) & 1)  # an IFD starts on a word boundary
    values_at = at + 2 + 12 * len(set(tags) | set(add)) + 4
    values = b""
    for tag, (typ, count, value) in add.items():
        if len(value) <= 4:
            tags[tag] = struct.pack(e + "HHI", tag, typ, count) + value.ljust(4, b"\0")
        else:
            tags[tag] = struct.pack(e + "HHII", tag, typ, count, values_at + len(values))
            values += value + b"\0" * (len(value) & 1)
    new_ifd = struct.pack(e + "H", len(tags)) + b"".join(tags[t] for t in sorted(tags)) + next_ifd
    return head[:4] + struct.pack(e + "I", at), bytes(at - len(data)) + new_ifd + values


def byte_order(data: bytes) -> str:
    """A TIFF's byte order as a ``struct`` prefix."""
    return "<" if data[:2] == b"II" else ">"


_ASCII_TAGS = (0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298)
_SHORT_TAGS = (0x0112, 0x0128)
_RATIONAL_TAGS = (0x011A, 0x011B)


def _rational(v, e: str) -> tuple[int, int, bytes] | None:
    from fractions import Fraction

    f = Fraction(float(v)).limit_denominator(0xFFFFFFFF) if float(v) > 0 else None
    return (5, 1, struct.pack(e + "II", f.numerator, f.denominator)) if f and f.numerator <= 0xFFFFFFFF else None


def descriptive_entries(exif: bytes | None, icc: bytes | None, e: str,
                        dpi: tuple[float, float] | None = None) -> dict[int, tuple[int, int, bytes]]:
    """``with_tags`` entries (byte order ``e``) for an image's ICC profile (tag 34675), the
    descriptive tags of its EXIF (``EXIF_TAGS``: camera, date, author, resolution,
    orientation) and, where the EXIF has no resolution, ``dpi``; for a TIFF written by a
    writer that takes none of them (OpenCV, 16-bit). Values of an unexpected type are left out."""
    from PIL import Image

    out: dict[int, tuple[int, int, bytes]] = {}
    if icc:
        out[34675] = (7, len(icc), bytes(icc))
    if dpi:
        x, y = _rational(dpi[0], e), _rational(dpi[1], e)
        if x and y:
            out.update({0x011A: x, 0x011B: y, 0x0128: (3, 1, struct.pack(e + "H", 2))})  # 2: inches
    if not exif:
        return out
    ex = Image.Exif()
    try:
        ex.load(exif)
    except Exception:  # noqa: BLE001 - a damaged EXIF block is left out, the pixels are fine
        return out
    for tag in EXIF_TAGS:
        v = ex.get(tag)
        if v is None:
            continue
        try:
            if tag in _ASCII_TAGS and isinstance(v, (str, bytes)):
                b = (v.encode("utf-8", "replace") if isinstance(v, str) else bytes(v)).split(b"\0")[0] + b"\0"
                out[tag] = (2, len(b), b)
            elif tag in _SHORT_TAGS:
                out[tag] = (3, 1, struct.pack(e + "H", int(v)))
            elif tag in _RATIONAL_TAGS and _rational(v, e):
                out[tag] = _rational(v, e)
        except (TypeError, ValueError, OverflowError, ZeroDivisionError, struct.error):
            continue
    return out
