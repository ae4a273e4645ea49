"""Image input/output: discovery, decoding (8/16-bit, grey, alpha, palette, EXIF
orientation, ICC/EXIF metadata) and atomic writing.

Pixels travel as numpy arrays (H, W, C) in their native dtype (uint8 or uint16);
``ImageData.color`` always has 1 or 3 channels and ``ImageData.alpha`` is separate.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import tiffmeta
from .atomic import NAME_MAX, temp_file
from .bmpwrite import write_bmp_with_alpha
from .errors import (
    DdnError,
    ImageTooLarge,
    OutputError,
    OutputExists,
    OutputStorageFull,
    UnsupportedImage,
    UsageError,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
FORMATS = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "webp": ".webp", "bmp": ".bmp"}
# image formats ddn does not write: an output named so is refused, rather than taken for a
# folder to make (``ddn denoise a.png a.gif`` made the folder a.gif/ and wrote a.gif/a.png)
OTHER_IMAGE_SUFFIXES = {".gif", ".heic", ".heif", ".avif", ".jxl", ".jp2", ".j2k", ".jfif", ".ico", ".ppm", ".pgm",
                        ".pnm", ".pbm", ".exr", ".hdr", ".dng", ".svg", ".pdf", ".psd", ".raw", ".cr2", ".nef", ".arw"}
SUFFIX_FORMAT = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
                 ".webp": "webp", ".bmp": "bmp"}
DEFAULT_MAX_PIXELS = 200_000_000  # 200 MP; configurable with --max-pixels / DDN_MAX_PIXELS


@dataclass
class ImageData:
    """A decoded image. ``color``: (H, W, 1|3) uint8/uint16 (orientation applied);
    ``alpha``: (H, W) of the same dtype or None; ``bits``: 8 or 16."""

    color: np.ndarray
    alpha: np.ndarray | None
    bits: int
    format: str  # png | jpeg | tiff | webp | bmp
    icc: bytes | None = None
    exif: bytes | None = None
    notes: list[str] = field(default_factory=list)
    # a JPEG with subsampled chroma (4:2:0, 4:2:2, ...) or a lossy WebP (always 4:2:0): its
    # colour noise is averaged away, so ``--sigma auto`` measures the noise in its luma
    chroma_subsampled: bool = False
    # a lossless WebP (VP8L): written back losslessly when the output is WebP too
    lossless_webp: bool = False
    # the resolution (dots per inch, x and y), where the file says it
    dpi: tuple[float, float] | None = None
    # a PNG's gAMA, cHRM and sRGB chunks, whole: how its colours are to be shown where it has
    # no ICC profile; written back into PNG outputs (``pngwrite.metadata_chunks``)
    png_colour: bytes = b""
    # the XMP packet (ratings, keywords, captions, edit history), its orientation set to 1
    xmp: bytes | None = None
    # a PNG's text chunks (Title, Author, Copyright, Comment, ...), whole: into PNG outputs
    png_text: bytes = b""

    @property
    def grey(self) -> bool:
        return self.color.shape[2] == 1

    @property
    def shape(self) -> tuple[int, int]:
        return self.color.shape[0], self.color.shape[1]


# ---------------------------------------------------------------- discovery


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


def is_image_name(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
          (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"), (b"BM", "bmp"))


def sniff_format(path: Path) -> str | None:
    """The image format a file's first bytes announce (png, jpeg, tiff, webp, bmp), or None
    (not one of them, or unreadable: reading it later says why)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)


def _named_suffix(p: Path) -> str:
    """The suffix an explicitly named input's outputs get when no --format is given: its own
    if it names an image format, else that of the format its content announces (a photo
    saved without an extension), else its own (it will fail to read, saying why)."""
    if is_image_name(p):
        return p.suffix
    fmt = sniff_format(p)
    return FORMATS[fmt] if fmt else p.suffix


def _beside(folder: Path) -> Path:
    """``NAME_denoised``, beside a folder argument (``.`` and ``..`` stand for the folders
    they name)."""
    if folder.name in ("", ".", ".."):
        folder = folder.resolve()
    if not folder.name:
        raise UsageError(f"{folder}: ddn cannot write a folder beside the root folder", "give an output folder")
    return folder.with_name(folder.name + "_denoised")


def plan_jobs(
    inputs: Sequence[Path],
    output: Path | None,
    *,
    recursive: bool = True,
    out_format: str | None = None,
) -> tuple[list[Job], list[Path]]:
    """Map inputs to outputs. Returns (jobs, skipped non-image files found in folders).

    - one file + an output with an image suffix (not an existing folder): file -> file;
    - otherwise the output is a folder; folder inputs mirror their tree under it;
    - no output: ``NAME_denoised.EXT`` beside a file, ``DIR_denoised/`` beside a folder.
    A file named explicitly is an input whatever its suffix (reading it says if it is no image
    ddn reads); in folders only image suffixes count, and hidden files and folders (names
    starting with a dot), ``ddn segment``'s own outputs (NAME.mask.png, NAME.overlay.png) and the
    output folder, when it lies inside an input folder, are left out.
    Raises ``UsageError`` for missing inputs, an output that would overwrite an input, or an
    output file name whose suffix contradicts ``out_format``.
    """
    if not inputs:
        raise UsageError("no inputs given", "pass image files or folders")
    for p in inputs:
        if not p.exists():
            raise UsageError(f"{p}: no such file or folder", "check the path")
    jobs: list[Job] = []
    skipped: list[Path] = []

    def fmt_suffix(p: Path, named: bool = False) -> str:
        return FORMATS[out_format] if out_format else _named_suffix(p) if named else p.suffix

    if output is not None and not output.exists() and output.suffix.lower() in OTHER_IMAGE_SUFFIXES:
        raise UsageError(f"{output}: ddn cannot write {output.suffix.lstrip('.').upper()} files",
                         "name the output .png, .jpg, .tif, .webp or .bmp, or give a folder")
    single_file = len(inputs) == 1 and inputs[0].is_file()
    if single_file and output is not None and not output.is_dir() and is_image_name(output):
        src = inputs[0]
        named = SUFFIX_FORMAT[output.suffix.lower()]
        if out_format and named != out_format:
            raise UsageError(f"{output}: a {named.upper()} name, but --format {out_format}",
                             f"name the output *{FORMATS[out_format]}, or leave out --format")
        jobs.append(Job(src, output))
    else:
        if output is not None and output.exists() and not output.is_dir():
            if any(p.is_dir() for p in inputs) or len(inputs) > 1:
                raise UsageError(f"{output}: is a file, but " + ("a folder input needs" if any(p.is_dir() for p in inputs)
                                                                  else "several inputs need") + " an output folder",
                                 "give a folder as the last argument")
            raise UsageError(f"{output}: exists and has no image suffix, so it cannot be the output file",
                             "give an output name ending in .png, .jpg, .tif, .webp or .bmp, or an output folder")
        for src in inputs:
            if src.is_dir():
                base = output if output is not None else _beside(src)
                for f in _walk(src, recursive, exclude=base):
                    if f.name.lower().endswith(SEGMENT_OUTPUTS):  # `ddn segment`'s masks and overlays
                        continue
                    if is_image_name(f):
                        rel = f.relative_to(src)
                        jobs.append(Job(f, (base / rel).with_suffix(fmt_suffix(f))))
                    else:
                        skipped.append(f)
            else:
                if output is None:
                    dst = src.with_name(f"{src.stem}_denoised{fmt_suffix(src, named=True)}")
                else:
                    dst = output / (src.stem + fmt_suffix(src, named=True))
                jobs.append(Job(src, dst))
    unique: dict[Path, Job] = {}
    for j in jobs:  # a file named twice (or also found in a folder given) is denoised once
        unique.setdefault(j.src.resolve(), j)
    jobs = list(unique.values())
    inputs_resolved = set(unique)
    for j in jobs:
        if j.dst.resolve() in inputs_resolved:
            raise UsageError(f"{j.src}: output {j.dst} would overwrite an input", "choose another output folder")
    clash = first_collision((j.src, j.dst) for j in jobs)
    if clash:
        src, earlier, dst = clash
        same_folder = earlier.parent.resolve() == src.parent.resolve()
        raise UsageError(f"{src} and {earlier} would both write {dst}",
                         "rename one of them, or leave out --format" if same_folder and out_format
                         else "rename one of them" if same_folder else "use separate output folders")
    return jobs, skipped


def first_collision(pairs: Iterable[tuple[Path, Path]]) -> tuple[Path, Path, Path] | None:
    """In (input, output) pairs, the first input whose output resolves to the same file as an
    earlier input's: (that input, the earlier input, its output); None if every output differs."""
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        r = dst.resolve()
        if r in seen:
            return src, seen[r], dst
        seen[r] = src
    return None


SEGMENT_OUTPUTS = (".mask.png", ".overlay.png")  # what `ddn segment` writes beside NAME


def discover(inputs: Sequence[Path], recursive: bool = True, exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(image files, skipped other files) under the given files/folders: a file named
    explicitly counts as an image whatever its suffix (reading it tells); in folders only
    image suffixes count, and hidden files and folders, ``exclude`` (an output folder inside
    an input folder) and ddn segment's own outputs (NAME.mask.png, NAME.overlay.png) are left
    out, so that a rerun does not take the first run's outputs for inputs."""
    images: list[Path] = []
    other: list[Path] = []
    for p in inputs:
        if not p.exists():
            raise UsageError(f"{p}: no such file or folder", "check the path")
        if not p.is_dir():
            images.append(p)
            continue
        for f in _walk(p, recursive, exclude):
            if not f.name.lower().endswith(SEGMENT_OUTPUTS):
                (images if is_image_name(f) else other).append(f)
    return images, other


def _walk(root: Path, recursive: bool, exclude: Path | None = None) -> Iterable[Path]:
    """Files under root, sorted, following no symlinked folders (no loops). Hidden files and
    folders (a dot first: ``.git``, macOS's ``._name`` companions, ddn's own temp files) are
    left out, and so is ``exclude`` (an output folder inside the input folder: a rerun must
    not take the outputs of the first run for inputs)."""
    skip = exclude.resolve() if exclude is not None else None
    if not recursive:
        yield from sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.is_file())
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=None):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (skip is None or (Path(dirpath) / d).resolve() != skip))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not name.startswith(".") and p.is_file():
                yield p


# ---------------------------------------------------------------- reading


def _png_bit_depth(head: bytes) -> int | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 25:
        return head[24]
    return None


def _png_color_type(head: bytes) -> int | None:
    """IHDR's colour type (4 = grey + alpha), read like the bit depth beside it."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 26:
        return head[25]
    return None


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, ...) array."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1, :],
    }
    f = ops.get(orientation)
    return np.ascontiguousarray(f(arr)) if f else arr


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Decode ``path``. Raises ``UnsupportedImage`` (or ``ImageTooLarge``) with a
    one-line reason; never returns a partially decoded image. A decoder's own failure on a
    malformed file (Pillow 13 raised IndexError for a PNG without image data) is one
    ``UnsupportedImage`` too, so that one bad file cannot end a folder run."""
    try:
        return _read_image(path, max_pixels)
    except DdnError:
        raise
    except MemoryError:
        raise UnsupportedImage(f"{path}: not enough memory to decode it", "free memory and rerun") from None
    except Exception as e:  # noqa: BLE001 - a decoder's failure (or ddn's): one line, this file only
        raise UnsupportedImage(f"{path}: cannot decode ({type(e).__name__}: {_first_line(e)})",
                               "the file may be malformed: re-saving it with another program may help; if it "
                               "opens elsewhere, please report it") from None


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:120] if lines else "no detail"


def _read_image(path: Path, max_pixels: int) -> ImageData:
    from PIL import Image, UnidentifiedImageError

    from .pngread import decode_png, read_file, worth_trying

    try:
        with open(path, "rb") as f:
            head = f.read(64)
            whole = read_file(f, head) if worth_trying(head, max_pixels) else None
    except PermissionError:
        raise UnsupportedImage(f"{path}: permission denied", "make the file readable") from None
    except IsADirectoryError:
        raise UnsupportedImage(f"{path}: is a folder") from None
    except OSError as e:
        raise UnsupportedImage(f"{path}: cannot read ({e.strerror or e})") from None
    if not head:
        raise UnsupportedImage(f"{path}: empty file (0 bytes)")
    if whole is not None:  # a plain PNG: ISA-L inflates it (pngread); anything odd comes back None
        fast = decode_png(whole, max_pixels)
        del whole
        if fast is not None:
            return ImageData(color=fast.color, alpha=fast.alpha, bits=fast.color.dtype.itemsize * 8, format="png",
                             icc=fast.icc, exif=None, notes=[], dpi=fast.dpi, png_colour=fast.colour_chunks,
                             png_text=fast.text_chunks)
    Image.MAX_IMAGE_PIXELS = None  # we check the size ourselves, with our own limit
    try:
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            with Image.open(path) as probe:  # PNG: check every chunk's CRC (load() skips IDAT's)
                probe.verify()
        im = Image.open(path)
    except UnidentifiedImageError:
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # a TIFF whose samples Pillow cannot take
            raise UnsupportedImage(f"{path}: a TIFF with samples ddn cannot read (e.g. floating-point or 32-bit "
                                   "colour, or 16-bit grey + alpha)", "convert it to 8- or 16-bit RGB, RGBA or grey "
                                   "TIFF, or to PNG") from None
        raise UnsupportedImage(f"{path}: not an image, or a format ddn cannot read",
                               "ddn reads PNG, JPEG, TIFF, WebP and BMP: convert it to one of them") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UnsupportedImage(f"{path}: cannot decode ({e})",
                               "the file is damaged or incomplete: re-export or copy it again") from None
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise ImageTooLarge(
                f"{path}: {w}x{h} = {w * h / 1e6:.1f} MP exceeds the {max_pixels / 1e6:g} MP limit",
                "raise it with --max-pixels if the file is trusted",
            )
        fmt = (im.format or "").lower()
        fmt = {"jpeg": "jpeg", "png": "png", "tiff": "tiff", "webp": "webp", "bmp": "bmp", "mpo": "jpeg"}.get(fmt)
        if fmt is None:
            raise UnsupportedImage(f"{path}: {im.format or 'unknown'} images are not supported",
                                   "convert to PNG, JPEG, TIFF, WebP or BMP")
        try:
            notes = []
            n_frames = getattr(im, "n_frames", 1)
            if n_frames > 1:
                notes.append(f"{n_frames} frames/pages: only the first is denoised")
            icc = im.info.get("icc_profile")
            dpi = _dpi(im.info.get("dpi"))
            xmp = upright_xmp(im.info.get("xmp"))
            subsampled = _jpeg_chroma_subsampled(im) if fmt == "jpeg" else _webp_lossy(path) if fmt == "webp" else False
            exif_obj = im.getexif()
            orientation = int(exif_obj.get(0x0112, 1) or 1)
            bits16 = False
            if fmt == "png":
                bits16 = _png_bit_depth(head) == 16
            elif fmt == "tiff":
                bps = im.tag_v2.get(258) if hasattr(im, "tag_v2") else None
                bps = bps if isinstance(bps, tuple | list) else (bps,)
                fmt_sample = im.tag_v2.get(339) if hasattr(im, "tag_v2") else None  # SampleFormat
                if fmt_sample in (3, (3,), [3]) or im.mode == "F":
                    raise UnsupportedImage(f"{path}: floating-point TIFF is not supported",
                                           "convert it to 8- or 16-bit integer TIFF/PNG")
                bits16 = bool(bps) and bps[0] == 16
                if bps and bps[0] == 32:
                    raise UnsupportedImage(f"{path}: 32-bit integer TIFF is not supported",
                                           "convert it to 8- or 16-bit TIFF/PNG")
                if bits16 and im.tag_v2.get(284) == 2 and len(bps) > 1:  # PlanarConfiguration: separate
                    raise UnsupportedImage(f"{path}: 16-bit TIFF with separate colour planes is not supported",
                                           "re-save it with interleaved (contiguous) samples, or as 16-bit PNG")
            upright = None  # a turned TIFF's bytes with its Orientation set to 1
            if fmt == "tiff" and orientation != 1:  # the decoders get it unturned (tiffmeta.py)
                upright = np.fromfile(path, dtype=np.uint8)
                if not tiffmeta.orientation_to_1(upright):
                    raise UnsupportedImage(f"{path}: cannot read the TIFF's Orientation tag", "re-export the file")
            if bits16:
                color, alpha = _decode_16bit(path, im, grey_alpha=_png_color_type(head) == 4, data=upright)
            elif upright is not None:
                raw, upright = upright.tobytes(), None  # one copy of the file held, not two
                with Image.open(io.BytesIO(raw)) as stored:
                    color, alpha, icc = _decode_8bit(stored, path, icc)
                del raw
            else:
                color, alpha, icc = _decode_8bit(im, path, icc, _png_bit_depth(head))
            # (only now: text and colour chunks after the image data are in ``info`` once it is loaded)
            png_colour = _png_colour_chunks(im.info) if fmt == "png" else b""
            png_text = _png_text_chunks(im.info) if fmt == "png" else b""
            exif = None
            if fmt == "tiff":  # only now: its own tags, which the decoder reads, are its EXIF
                exif_obj = tiffmeta.exif_from_tiff(exif_obj)
            if len(exif_obj):
                exif_obj[0x0112] = 1  # pixels get rotated; the written file is upright
                exif = exif_obj.tobytes()
        except UnsupportedImage:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, TypeError) as e:
            raise UnsupportedImage(f"{path}: corrupt or truncated ({e})", "re-export the file") from None
        except MemoryError:
            raise UnsupportedImage(f"{path}: not enough memory to decode {w}x{h}",
                                   "free memory, or skip it with a lower --max-pixels") from None
        except Exception as e:  # noqa: BLE001 - any other decoder failure fails this file alone
            raise UnsupportedImage(f"{path}: cannot decode ({type(e).__name__}: {e})", "re-export the file") from None
    if orientation != 1:
        color = _orient(color, orientation)
        alpha = _orient(alpha, orientation) if alpha is not None else None
        if dpi and orientation >= 5:  # turned a quarter: the axes swap
            dpi = (dpi[1], dpi[0])
    bits = 16 if color.dtype == np.uint16 else 8
    return ImageData(color=color, alpha=alpha, bits=bits, format=fmt, icc=icc, exif=exif, notes=notes,
                     chroma_subsampled=subsampled, lossless_webp=fmt == "webp" and not subsampled, dpi=dpi,
                     png_colour=png_colour, xmp=xmp, png_text=png_text)


# what Pillow files in a PNG's ``info`` beside its text chunks, and text it reads as other metadata
_NOT_TEXT = {"XML:com.adobe.xmp", "xmp", "exif", "Raw profile type exif", "Raw profile type APP1", "icc_profile"}


def _png_text_chunks(info: dict) -> bytes:
    """A PNG's text chunks (tEXt, zTXt, iTXt: Pillow files each under its keyword), rebuilt
    uncompressed (``pngwrite.text_chunk``); the ones that hold XMP or EXIF are kept as those."""
    from .pngwrite import text_chunk

    out = [text_chunk(k, v) for k, v in info.items() if isinstance(k, str) and isinstance(v, str) and k not in _NOT_TEXT]
    return b"".join(c for c in out if c)


_XMP_ORIENTATION = (re.compile(rb"(tiff:Orientation\s*=\s*[\"'])\s*\d+\s*([\"'])"),
                    re.compile(rb"(<tiff:Orientation>)\s*\d+\s*(</tiff:Orientation>)"))


def upright_xmp(xmp) -> bytes | None:
    """An XMP packet (bytes or str, as Pillow hands it) as bytes, with its tiff:Orientation
    set to 1: ddn turns the pixels upright (from EXIF, or from this very tag where the EXIF
    has none), so a kept orientation would make viewers turn the output again."""
    if not xmp:
        return None
    b = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
    for pattern in _XMP_ORIENTATION:
        b = pattern.sub(rb"\g<1>1\g<2>", b)
    return b


def _dpi(value) -> tuple[float, float] | None:
    """Pillow's ``info["dpi"]`` as two positive finite numbers, or None (absent, zero, junk)."""
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (x, y) if 0 < x < 1e6 and 0 < y < 1e6 else None


def _png_colour_chunks(info: dict) -> bytes:
    """gAMA, cHRM and sRGB chunks rebuilt from what Pillow read of them (its PNG path keeps
    the values, not the chunks)."""
    from .pngwrite import chunk

    out = b""
    try:
        if info.get("gamma"):
            out += chunk(b"gAMA", struct.pack(">I", round(float(info["gamma"]) * 100000)))
        if info.get("chromaticity") and len(info["chromaticity"]) == 8:
            out += chunk(b"cHRM", struct.pack(">8I", *(round(float(v) * 100000) for v in info["chromaticity"])))
        if info.get("srgb") is not None:
            out += chunk(b"sRGB", struct.pack(">B", int(info["srgb"])))
    except (TypeError, ValueError, OverflowError, struct.error):
        return b""
    return out


def _jpeg_chroma_subsampled(im) -> bool:
    """Whether a JPEG stores its two chroma components at a lower resolution than its luma
    (Pillow's ``layer``: (component, horizontal, vertical sampling factor, table))."""
    layers = getattr(im, "layer", None) or []
    if len(layers) != 3:  # grey, or CMYK / YCCK
        return False
    (_, h0, v0, _), *chroma = layers
    return any(h < h0 or v < v0 for _, h, v, _ in chroma)


def _webp_lossy(path: Path) -> bool:
    """Whether a WebP file's (first) image is lossy, i.e. VP8, which stores chroma at half
    resolution, rather than lossless VP8L: its chunks are walked to the first image data."""
    try:
        with open(path, "rb") as f:
            if f.read(12)[8:12] != b"WEBP":
                return False
            for _ in range(64):
                head = f.read(8)
                if len(head) < 8:
                    return False
                kind, size = head[:4], struct.unpack("<I", head[4:])[0]
                if kind in (b"VP8 ", b"VP8L"):
                    return kind == b"VP8 "
                if kind == b"ANMF":  # an animation frame: 16 bytes of header, then its own chunks
                    f.seek(16, os.SEEK_CUR)
                    continue
                f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        pass
    return False


def _cmyk_to_rgb(im, icc: bytes | None):
    """A CMYK image as RGB: through its own CMYK ICC profile to sRGB where it has one (the
    result then carries the sRGB profile), else Pillow's plain conversion, without a profile
    (a CMYK profile would not describe RGB pixels)."""
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if src.profile.xcolor_space.strip() == "CMYK":
                srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
                return ImageCms.profileToProfile(im, src, srgb, outputMode="RGB"), srgb.tobytes()
        except Exception:  # noqa: BLE001 - an unusable profile: the plain conversion below
            pass
    return im.convert("RGB"), None


def _decode_8bit(im, path: Path, icc: bytes | None = None,
                 depth: int | None = None) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    """(colour, alpha, ICC profile): the profile changes only where the pixels change colour
    space (CMYK becomes RGB). ``depth``: a PNG's bit depth (for its transparency key)."""
    mode = im.mode
    im.load()  # raises on truncation / bad CRC
    if mode == "P":
        im = im.convert("RGBA") if ("transparency" in im.info or im.palette.mode == "RGBA") else im.convert("RGB")
        mode = im.mode
    if mode == "1":
        im = im.convert("L")
        mode = "L"
    key = im.info.get("transparency")
    if mode in ("L", "RGB") and key is not None:  # a PNG's tRNS colour key
        if mode == "L" and isinstance(key, int) and depth in (1, 2, 4) and key <= (1 << depth) - 1:
            key = key * (255 // ((1 << depth) - 1))  # Pillow scales 1/2/4-bit pixels to 0-255, not always the key
        px = np.asarray(im)
        hit = (px == key).all(axis=-1) if mode == "RGB" else px == key
        if hit.any():  # else nothing is transparent: no alpha channel is added
            a = np.where(hit, 0, 255).astype(np.uint8)
            if mode == "L":
                return px[..., None].copy(), a, icc
            return px.copy(), a, icc
    if mode == "CMYK":
        im, icc = _cmyk_to_rgb(im, icc)
        mode = "RGB"
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im)
        a = np.clip(a, 0, 65535).astype(np.uint16)
        return a[..., None], None, icc
    if mode == "F":
        raise UnsupportedImage(f"{path}: floating-point images are not supported", "convert to 8 or 16 bit")
    if mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("La", "RGBa"):  # premultiplied (a TIFF's associated alpha): straight, as ddn works
        im = im.convert(mode.upper())
        mode = im.mode
    if mode == "LA":
        a = np.asarray(im)
        return a[..., :1].copy(), a[..., 1].copy(), icc
    if mode == "L":
        return np.asarray(im)[..., None].copy(), None, icc
    if mode == "RGBA":
        a = np.asarray(im)
        return a[..., :3].copy(), a[..., 3].copy(), icc
    if mode != "RGB":  # Lab, YCbCr, HSV, 1-bit, ...: converted; a profile of that colour space
        im = im.convert("RGB")  # would not describe RGB pixels (colour-managed tools refuse it)
        if icc and icc[16:20] != b"RGB ":
            icc = None
    return np.asarray(im).copy(), None, icc


def _decode_16bit(path: Path, im, grey_alpha: bool = False,
                  data: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """OpenCV decode; only reached after read_image checked the header's pixel count
    against max_pixels, so OpenCV reads are bounded by the same limit. ``grey_alpha``: a
    grey + alpha PNG, which OpenCV expands to BGRA; it stays grey. ``data``: the file's
    bytes, if already read (a turned TIFF's, with its Orientation set to 1)."""
    import cv2

    im.load() if im.mode in ("I;16", "I;16B", "I;16L", "I") else None
    data = np.fromfile(path, dtype=np.uint8) if data is None else data
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None and bytes(data[:8]) == b"\x89PNG\r\n\x1a\n":  # libpng refuses a malformed ancillary chunk
        # (a bKGD of the wrong length) that Pillow and the fast path pass over: without them
        arr = cv2.imdecode(_png_pixel_chunks(data), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None:
        raise UnsupportedImage(f"{path}: corrupt or truncated 16-bit image", "re-export the file")
    if arr.dtype != np.uint16:
        arr = arr.astype(np.uint16) * 257 if arr.dtype == np.uint8 else arr
        if arr.dtype != np.uint16:
            raise UnsupportedImage(f"{path}: unsupported sample type {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] > 4:
        raise UnsupportedImage(f"{path}: {arr.shape[2]}-channel images are not supported")
    key = im.info.get("transparency")
    if arr.ndim == 2 and isinstance(key, int) and (arr == key).any():  # a 16-bit grey PNG's tRNS key:
        return arr[..., None], np.where(arr == key, 0, 65535).astype(np.uint16)  # OpenCV leaves it out
    color, alpha = from_opencv(arr, grey_alpha)
    if alpha is not None and key is not None and im.format == "PNG" and not (alpha < 65535).any():
        alpha = None  # an RGB PNG's tRNS colour that no pixel has: libpng still adds an opaque channel
    if alpha is not None and _associated_alpha(im):
        color = _unpremultiply(color, alpha)
    return color, alpha


def _png_pixel_chunks(data: np.ndarray) -> np.ndarray:
    """A PNG's bytes with only the chunks that make its pixels (IHDR, PLTE, tRNS, IDAT, IEND);
    the rest (already read through Pillow, where ddn keeps them) left out. Chunk CRCs were
    checked by Pillow before."""
    raw = data.tobytes()
    keep, pos = [raw[:8]], 8
    while pos + 12 <= len(raw):
        length = struct.unpack_from(">I", raw, pos)[0]
        end = pos + 12 + length
        if raw[pos + 4:pos + 8] in (b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"):
            keep.append(raw[pos:end])
        if raw[pos + 4:pos + 8] == b"IEND":
            break
        pos = end
    return np.frombuffer(b"".join(keep), dtype=np.uint8)


def _associated_alpha(im) -> bool:
    """Whether a TIFF's alpha is associated (premultiplied into the colour; ExtraSamples 1)."""
    extra = getattr(im, "tag_v2", {}).get(338)
    return (extra[0] if isinstance(extra, tuple) and extra else extra) == 1


def _unpremultiply(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight colour from premultiplied 16-bit samples (what Pillow does for 8-bit ones):
    colour * 65535 / alpha, rounded and clipped; fully transparent pixels become 0."""
    a = alpha.astype(np.float64).reshape(alpha.shape[:2] + (1,) * (color.ndim - 2))
    out = np.where(a > 0, color * (65535.0 / np.maximum(a, 1.0)), 0.0)
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16)


def from_opencv(arr: np.ndarray, grey_alpha: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """An image OpenCV decoded ((H, W) or (H, W, 1-4), in its BGR / BGRA order; overwritten)
    as ddn's colour (RGB or grey) and alpha. ``grey_alpha``: a grey + alpha image, which
    OpenCV expands to BGRA; it stays grey."""
    import cv2

    if arr.ndim == 2:
        return arr[..., None], None
    c = arr.shape[2]
    if c == 1:
        return arr, None
    if c == 2:
        return arr[..., :1].copy(), arr[..., 1].copy()
    if c == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB, dst=arr), None  # in place
    if grey_alpha:
        return arr[..., :1].copy(), arr[..., 3].copy()
    return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB), arr[..., 3].copy()


# ---------------------------------------------------------------- writing


JPEG_MAX_SIDE = 65500  # libjpeg(-turbo)'s largest width or height
JPEG_MAX_EXIF = 65533  # an APP1 segment's payload, "Exif\0\0" included (as Exif.tobytes() writes it)
JPEG_MAX_XMP = 65504  # the same, less XMP's 29-byte namespace


def encode_image(img: ImageData, fmt: str, quality: int = 95) -> bytes:
    """Encode to bytes in ``fmt`` keeping bit depth, alpha, ICC and EXIF where the
    format allows (PNG: ddn's own writer; 16-bit TIFF: OpenCV; JPEG/WebP/BMP are 8-bit)."""
    import io as _io

    buf = _io.BytesIO()
    encode_to(buf, img, fmt, quality)
    return buf.getvalue()


def _cv2_write_tiff(f: BinaryIO, arr: np.ndarray, icc: bytes | None = None, exif: bytes | None = None,
                    dpi: tuple[float, float] | None = None, xmp: bytes | None = None) -> None:
    """A 16-bit TIFF through OpenCV (Pillow cannot write 16-bit colour), which writes neither
    metadata nor what a fourth sample is: the file's first IFD is given the ICC profile, the
    EXIF's descriptive tags (as Pillow writes them in 8-bit TIFFs) and, with four channels,
    an ExtraSamples tag saying the fourth is unassociated alpha (``tiffmeta.with_tags``)."""
    import cv2

    try:
        ok, buf = cv2.imencode(".tif", np.ascontiguousarray(arr))
    except (cv2.error, MemoryError) as e:
        raise OutputError(f"OpenCV could not encode the tiff ({str(e).strip().splitlines()[-1][:120]})",
                          "try another output format (--format)") from None
    if not ok:
        raise OutputError(f"OpenCV could not encode a {arr.dtype.itemsize * 8}-bit tiff")
    data = memoryview(buf).cast("B")
    e = tiffmeta.byte_order(bytes(data[:2]))
    add = tiffmeta.descriptive_entries(exif, icc, e, dpi)
    if xmp:
        add[700] = (1, len(xmp), xmp)  # XMP: BYTE
    if arr.ndim == 3 and arr.shape[2] == 4:
        add[338] = (3, 1, struct.pack(e + "H", 2))  # SHORT: 2 = unassociated alpha
    patch = tiffmeta.tag_patch(data, add) if add else None
    if patch is None:
        f.write(data)
    else:  # streamed around the pixels: no copy of them is made
        f.write(patch[0])
        f.write(data[8:])
        f.write(patch[1])


def encode_to(f: BinaryIO, img: ImageData, fmt: str, quality: int = 95) -> None:
    """``encode_image`` straight into the binary file ``f``, so no second in-memory copy
    of the encoded file is made (for a 48 MP photo that copy, grown by doubling, reached a
    few hundred MB at the very end of a run, when memory peaks): PNG through
    ``pngwrite`` in strips of rows, the other formats through Pillow, which streams too
    (16-bit TIFF, through OpenCV, is the exception)."""
    from PIL import Image

    color, alpha = img.color, img.alpha
    bits16 = color.dtype == np.uint16
    if fmt == "png":  # 8 and 16 bits, grey/RGB with or without alpha: streamed (pngwrite)
        from .pngwrite import write_png

        write_png(f, color, alpha, img.icc, img.exif, img.png_colour, img.dpi, img.xmp, img.png_text)
        return
    if bits16 and fmt == "tiff":
        bgr = color[..., ::-1] if color.shape[2] == 3 else color[..., 0]
        if alpha is not None:  # OpenCV has no 2-channel TIFF: grey + alpha goes as BGRA
            g = color[..., 0]
            arr = np.dstack([bgr, alpha]) if color.shape[2] == 3 else np.dstack([g, g, g, alpha])
        else:
            arr = bgr
        rgb_grey = alpha is not None and color.shape[2] == 1  # grey + alpha goes as RGBA: a grey profile
        icc = None if rgb_grey and img.icc and img.icc[16:20] == b"GRAY" else img.icc  # would not describe it
        _cv2_write_tiff(f, arr, icc, img.exif, img.dpi, img.xmp)
        return
    if bits16:  # 8-bit-only formats
        color = (color.astype(np.uint32) + 128) // 257
        color = color.astype(np.uint8)
        alpha = ((alpha.astype(np.uint32) + 128) // 257).astype(np.uint8) if alpha is not None else None
    if fmt == "bmp" and img.icc and color.shape[2] == 3:  # BMP here carries no profile: shown as sRGB,
        color = _to_srgb(color, img.icc)  # so the colours are converted to it
    if fmt == "bmp" and alpha is not None:  # Pillow writes 32-bit BMPs whose fourth byte readers ignore
        write_bmp_with_alpha(f, color, alpha)
        return
    if color.shape[2] == 1:
        pil = Image.fromarray(color[..., 0], "L")
        if alpha is not None:
            pil = Image.merge("LA", [pil, Image.fromarray(alpha, "L")])
    else:
        pil = Image.fromarray(color, "RGB")
        if alpha is not None:
            pil = Image.merge("RGBA", [*pil.split(), Image.fromarray(alpha, "L")])
    kwargs: dict = {}
    if img.icc and not (fmt == "webp" and color.shape[2] == 1 and img.icc[16:20] == b"GRAY"):
        # (WebP has no grey: Pillow writes grey as RGB, which a grey profile does not describe)
        kwargs["icc_profile"] = img.icc
    if img.exif and fmt in ("jpeg", "png", "webp", "tiff") and not (fmt == "jpeg" and len(img.exif) > JPEG_MAX_EXIF):
        # a JPEG segment holds 64 kB: a larger EXIF (from a TIFF or PNG) is left out
        kwargs["exif"] = tiffmeta.tiff_output_exif(img.exif) if fmt == "tiff" else img.exif
    if img.xmp and (fmt in ("webp", "tiff") or (fmt == "jpeg" and len(img.xmp) <= JPEG_MAX_XMP)):
        if fmt == "tiff":
            kwargs["tiffinfo"] = {700: img.xmp}
        else:  # (a JPEG segment holds 64 kB: a larger XMP, "extended XMP", is left out)
            kwargs["xmp"] = img.xmp
    if img.dpi and (fmt in ("jpeg", "bmp") or (fmt == "tiff" and not _has_resolution(kwargs.get("exif")))):
        kwargs["dpi"] = img.dpi  # (WebP has no place for it but EXIF; a TIFF's EXIF resolution wins)
    if fmt == "jpeg":
        if max(pil.size) > JPEG_MAX_SIDE:  # libjpeg's limit; its own error is a bare line on stderr
            raise OutputError(f"JPEG cannot hold a {pil.size[0]}x{pil.size[1]} image (at most {JPEG_MAX_SIDE} px a side)",
                              "use --format png or tiff")
        if pil.mode in ("RGBA", "LA"):  # JPEG has no alpha: composited over white, as viewers show it
            white = Image.new(pil.mode[:-1], pil.size, "white")
            white.paste(pil.convert(pil.mode[:-1]), mask=pil.getchannel("A"))
            pil = white
        kwargs.update(quality=quality, subsampling=0)
    elif fmt == "webp" and (img.lossless_webp or quality == 100):  # lossless in, lossless out
        kwargs.update(lossless=True, quality=80, method=4)  # (quality is the effort here)
    elif fmt == "webp":
        kwargs.update(quality=quality, method=4)
    elif fmt == "tiff":
        kwargs.update(compression="tiff_deflate")
    pil.save(f, format={"jpeg": "JPEG", "png": "PNG", "tiff": "TIFF", "webp": "WEBP", "bmp": "BMP"}[fmt], **kwargs)


def _to_srgb(color: np.ndarray, icc: bytes) -> np.ndarray:
    """8-bit RGB pixels described by the RGB profile ``icc``, converted to sRGB (LittleCMS,
    perceptual); unchanged where the profile is not RGB or cannot be used."""
    if icc[16:20] != b"RGB ":
        return color
    from PIL import Image, ImageCms

    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        return np.asarray(ImageCms.profileToProfile(Image.fromarray(color, "RGB"), src, srgb, outputMode="RGB"))
    except Exception:  # noqa: BLE001 - an unusable profile: the pixels as they are
        return color


def _has_resolution(exif: bytes | None) -> bool:
    from PIL import Image

    if not exif:
        return False
    e = Image.Exif()
    try:
        e.load(exif)
    except Exception:  # noqa: BLE001 - unreadable: then it has none that counts
        return False
    return 0x011A in e


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], None], *, replace: bool = True) -> None:
    """Write ``data`` (bytes, or a function that writes into the open binary file) to a
    hidden temp file beside ``path``, fsync, rename. An interrupt or an error while writing
    leaves either no file or the complete old/new one, never a partial file. ``replace``
    False: a file that is at ``path`` by then (made by someone else since the run checked)
    is kept, and ``OutputExists`` raised; the temp file is put in place with a hard link,
    which fails rather than replace, where the file system has them."""
    path = Path(path)
    if len(os.fsencode(path.name)) > NAME_MAX:
        raise OutputError(f"{path}: the output's name is {len(os.fsencode(path.name))} bytes long, more than a "
                          f"file name may have ({NAME_MAX})", "give a shorter output name")
    made = False  # the temp file: a failure before it is "cannot create", after it "cannot write"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temp_file(path) as (fd, tmp):  # removed on any failure or interrupt in the block
            made = True
            with os.fdopen(fd, "wb") as f:
                if callable(data):
                    try:
                        data(f)
                    except OSError as e:
                        if e.errno is not None:  # a real write error: reported below
                            raise
                        raise _encoder_failed(path, e) from None  # Pillow's own failures have no errno
                else:
                    f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if replace:
                os.replace(tmp, path)
            else:
                _put_in_place_unless_taken(tmp, path)
    except OSError as e:
        if made:
            raise _write_failed(path, e, "cannot write the output", "check free disk space and permissions") from None
        raise _write_failed(path, e, "cannot create the output", "check that the output folder is writable") from None


_STORAGE_ERRNOS = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some space within your disk quota",
                   errno.EROFS: "write to a folder on a writable disk"}


def check_writable(outputs: Iterable[Path]) -> None:
    """Refuse, before any work, outputs whose folder (or, for one still to be made, the nearest
    folder that exists above it) this process cannot write: a read-only folder or file system
    failed every image only after denoising it. ``os.access`` answers for this user, root
    included, and for read-only file systems."""
    checked: set[Path] = set()
    for out in outputs:
        folder = Path(out).parent
        # os.path's tests answer False where Path's raise (a name too long, a folder that cannot
        # be searched): such outputs then fail one by one, each with its own reason
        while not os.path.exists(folder) and folder != folder.parent:
            folder = folder.parent
        if folder in checked or not os.path.isdir(folder):  # a file in the way is reported per output
            continue
        checked.add(folder)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"{folder}: the output folder is not writable (read-only, or no permission)",
                              "choose another output folder, or make this one writable")


def _write_failed(path: Path, e: OSError, what: str, hint: str) -> OutputError:
    """The error for a failed write: ``OutputStorageFull`` when the storage refuses every
    write (full, over quota, read-only), which stops a run; else ``OutputError``."""
    if e.errno in _STORAGE_ERRNOS:
        return OutputStorageFull(f"{path}: {what} ({e.strerror or e})", _STORAGE_ERRNOS[e.errno])
    return OutputError(f"{path}: {what} ({e.strerror or e})", hint)


def _put_in_place_unless_taken(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path`` unless ``path`` exists (then ``OutputExists``; ``tmp`` is
    removed by the caller). A hard link does it atomically; without hard links (FAT, some
    network file systems) a check just before the rename narrows the window to microseconds."""
    taken = OutputExists(f"{path}: appeared while this run was going; kept", "use --overwrite to replace outputs")
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise taken from None
    except OSError:  # no hard links here
        if os.path.lexists(path):
            raise taken from None
        os.replace(tmp, path)
        return
    with contextlib.suppress(OSError):  # the output is in place; a temp name left is harmless
        tmp.unlink()


def output_format(path: Path, img: ImageData, fmt: str | None = None) -> str:
    """The format ``path`` gets: ``fmt`` if given, else its suffix's, else the input's."""
    return fmt or SUFFIX_FORMAT.get(Path(path).suffix.lower()) or img.format


def write_image(path: Path, img: ImageData, fmt: str | None = None, quality: int = 95, *,
                replace: bool = True) -> None:
    fmt = output_format(path, img, fmt)

    def encode(f: BinaryIO) -> None:
        with _encoder_errors(path, passing=(OSError,)):  # a real write error is write_atomic's to word
            encode_to(f, img, fmt, quality)

    write_atomic(path, encode, replace=replace)


def encode_output(path: Path, img: ImageData, fmt: str | None = None, quality: int = 95) -> bytes:
    """``img`` encoded as ``write_image(path, ...)`` would write it, in memory, for a
    ``write_atomic`` elsewhere (folder runs encode small images on the denoising thread and
    leave the file system's work - write, fsync, rename - to a writer thread). Encoder
    failures raise ``OutputError`` naming ``path``, as ``write_image``'s do."""
    with _encoder_errors(path):  # in memory no real I/O error can happen, only the encoder's own
        return encode_image(img, output_format(path, img, fmt), quality)


@contextlib.contextmanager
def _encoder_errors(path: Path, passing: tuple[type[BaseException], ...] = ()):
    """Any failure of an image encoder as one ``OutputError`` naming ``path`` (DdnErrors and
    ``passing`` go through as they are): the output fails alone, never the run."""
    try:
        yield
    except DdnError as e:  # the encoders' own refusals, which do not know the path: named here
        if not e.message.startswith(str(path)):
            e.message = f"{path}: {e.message}"
        raise
    except passing:
        raise
    except MemoryError:
        raise OutputError(f"{path}: not enough memory to encode the output", "free memory") from None
    except Exception as e:  # noqa: BLE001 - an encoder's own failure fails this output alone
        raise _encoder_failed(path, e) from None


def _encoder_failed(path: Path, e: Exception) -> OutputError:
    what = str(e).strip().splitlines()[-1][:160] if str(e).strip() else type(e).__name__
    return OutputError(f"{path}: the image encoder failed ({what})", "try another output format (--format)")
