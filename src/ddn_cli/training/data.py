"""Training data: clean images decoded once into RAM (or onto the training device),
random crops with the 8 dihedral augmentations, and fresh Gaussian noise per step.

Sampling is vectorised in-process and driven by explicit ``torch.Generator`` objects,
so a resumed run draws exactly the same batches as an uninterrupted one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def list_training_images(sources: Sequence[str | Path], list_root: str | Path | None = None) -> list[Path]:
    """Resolve ``--data`` sources: folders (recursive) or list files (one relative or
    absolute path per line; relative entries resolve against ``list_root`` or, by
    default, the list file's folder). Returns sorted unique paths."""
    found: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found.extend(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
                         and not any(part.startswith(".") for part in q.relative_to(p).parts))  # as ddn denoise's walk
        elif p.is_file() and p.suffix.lower() in {".txt", ".lst", ".list"}:
            root = Path(list_root) if list_root else p.parent
            for line in read_list_file(p):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                q = Path(line)
                q = q if q.is_absolute() else root / q
                if not q.is_file():
                    raise UsageError(f"{p}: listed image {line!r} not found under {root}", "pass --data-root DIR")
                found.append(q)
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            found.append(p)
        else:
            raise UsageError(f"{p}: not a folder, image or list file", "check the --data path")
    uniq = sorted(set(found))
    if not uniq:
        raise UsageError(f"no training images found in {', '.join(map(str, sources))}", "check the --data path")
    return uniq


# C0 control characters (and DEL) that no list of paths holds; tab and the line breaks excepted
_BINARY = re.compile("[\x00-\x08\x0e-\x1f\x7f]")


def read_list_file(path: Path) -> list[str]:
    """The lines of a list file of image paths: UTF-8, a byte-order mark (Windows Notepad's
    "UTF-8 with BOM") dropped; bytes that are not UTF-8 (names in Latin-1 and the like) are
    kept as the file system's own bytes (``surrogateescape``, as Python decodes Linux file
    names), so such a name still finds its file. A file with control characters (a binary
    file, a UTF-16 list) or that cannot be read raises ``UsageError``."""
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    except OSError as e:
        raise UsageError(f"{path}: cannot read the list file ({e.strerror or e})", "check the path and its permissions") from None
    if _BINARY.search(text):
        raise UsageError(f"{path}: not a text file list of image paths (UTF-8)",
                         "give a folder of images, or a text file with one image path per line")
    return text.splitlines()


def decode_rgb8(path: Path) -> np.ndarray:
    """Decode to an (H, W, 3) uint8 array through ddn's own reader (EXIF orientation applied;
    16-bit images rounded to 8 bits, grey replicated, alpha dropped). A file that cannot be
    read raises ``UnsupportedImage`` naming it. (Pillow's plain RGB conversion turned a 16-bit
    grey PNG white and let decoding errors through as tracebacks.)"""
    from ..io import read_image

    img = read_image(Path(path))
    c = img.color
    if c.dtype == np.uint16:
        c = ((c.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257)
    if c.shape[2] == 1:
        c = np.repeat(c, 3, axis=2)
    return np.ascontiguousarray(c)


class ImageBank:
    """Clean uint8 images held as (3, H, W) tensors on ``device``; images smaller than
    the patch are reflect-padded up to it."""

    def __init__(self, paths: Iterable[Path], patch: int, device: torch.device | str = "cpu") -> None:
        self.paths = list(paths)
        self.patch = patch
        self.images: list[torch.Tensor] = []
        for p in self.paths:
            arr = decode_rgb8(p)
            t = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
            h, w = t.shape[1:]
            if h < patch or w < patch:
                t = torch.nn.functional.pad(
                    t[None].float(), (0, max(0, patch - w), 0, max(0, patch - h)), mode="replicate"
                )[0].to(torch.uint8)
            self.images.append(t.to(device))
        self.device = torch.device(device)
        # weight images by area so every pixel is equally likely
        areas = torch.tensor([float(t.shape[1] * t.shape[2]) for t in self.images])
        self.weights = areas / areas.sum()

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """Random (batch, 3, patch, patch) uint8 crops with random flips/rot90.
        ``gen`` is a CPU generator (indices and offsets are drawn on the CPU)."""
        p = self.patch
        idx = torch.multinomial(self.weights, batch, replacement=True, generator=gen)
        u = torch.rand(batch, 2, generator=gen)
        aug = torch.randint(0, 8, (batch,), generator=gen)
        out = []
        for i in range(batch):
            im = self.images[int(idx[i])]
            h, w = im.shape[1:]
            y = int(u[i, 0] * (h - p + 1))
            x = int(u[i, 1] * (w - p + 1))
            crop = im[:, y : y + p, x : x + p]
            a = int(aug[i])
            if a & 1:
                crop = crop.flip(-1)
            if a & 6:
                crop = torch.rot90(crop, a >> 1, dims=(-2, -1))
            out.append(crop)
        return torch.stack(out)


@dataclass(frozen=True)
class NoiseSpec:
    """Per-sample noise: sigma (0-255 scale) uniform in [lo, hi] or drawn from
    ``values``; a fraction ``clip_fraction`` of samples is clipped to [0, 1] and
    quantised to 8 bits, as real files are."""

    lo: float = 0.0
    hi: float = 75.0
    values: tuple[float, ...] = ()
    clip_fraction: float = 0.5

    def draw_sigma(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        if self.values:
            v = torch.tensor(self.values, dtype=torch.float32)
            return v[torch.randint(0, len(v), (batch,), generator=gen)]
        return self.lo + (self.hi - self.lo) * torch.rand(batch, generator=gen)


def parse_sigma(text: str) -> NoiseSpec:
    """``"0-75"`` -> uniform range; ``"15,25,50"`` or ``"25"`` -> fixed values."""
    text = text.strip()
    try:
        if "-" in text and "," not in text:
            lo, hi = (float(v) for v in text.split("-", 1))
            if not 0 <= lo <= hi <= 255:
                raise ValueError
            return NoiseSpec(lo=lo, hi=hi)
        vals = tuple(float(v) for v in text.split(","))
        if any(not 0 <= v <= 255 for v in vals):
            raise ValueError
        return NoiseSpec(lo=min(vals), hi=max(vals), values=vals)
    except ValueError:
        raise UsageError(f"--sigma {text!r}: expected a range like 0-75 or values like 15,25,50 (0..255)") from None


def make_noisy(
    clean: torch.Tensor, sigma255: torch.Tensor, clip: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """clean: float (B,3,H,W) in [0,1] on any device; sigma255, clip: (B,) CPU tensors;
    ``gen`` lives on clean's device. Returns the noisy batch."""
    noise = torch.randn(clean.shape, generator=gen, device=clean.device, dtype=clean.dtype)
    s = (sigma255 / 255.0).to(clean.device, clean.dtype).view(-1, 1, 1, 1)
    noisy = clean + noise * s
    if bool(clip.any()):
        c = clip.to(clean.device).view(-1, 1, 1, 1)
        q = torch.round(noisy.clamp(0, 1) * 255.0) / 255.0
        noisy = torch.where(c, q, noisy)
    return noisy
