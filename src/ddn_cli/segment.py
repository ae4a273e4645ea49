"""Semantic segmentation of (noisy) images: denoise first with a ddn denoiser, then
segment with the bundled CamVid segmenter (or a registered one, or
``torchvision:<model>``). Writes a palette PNG mask and a colour overlay per input.
Library code: returns records, never prints.

Large photos are segmented at the scale the network was trained at (short side 360 for
the bundled CamVid model), in overlapping tiles whose class probabilities are blended,
and the label map is resized back to the input's size (nearest neighbour).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .highlevel import HighLevelNet

SEG_TILE = 512
SEG_OVERLAP = 64


@dataclass
class Segmentation:
    input: str
    status: str  # ok | skipped | failed
    mask: str | None = None
    overlay: str | None = None
    coverage: dict[str, float] = field(default_factory=dict)  # class -> fraction of pixels
    sigma: float | None = None
    denoiser: str | None = None
    segmenter: str | None = None
    seconds: float = 0.0
    error: str | None = None


def segment_array(net: HighLevelNet, rgb01: np.ndarray, *, tile: int = SEG_TILE, overlap: int = SEG_OVERLAP,
                  precision=None) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] -> (H, W) uint8 class ids."""
    import cv2

    from .tiling import run_tiled

    h, w = rgb01.shape[:2]
    f = net.work_scale(h, w)
    a = rgb01
    if f < 1:
        a = cv2.resize(rgb01, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    dev = next(net.module.parameters()).device
    nc = len(net.classes) or None

    @torch.inference_mode()
    def fn(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).to(dev)
        if precision is not None and precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if precision is not None:
            with precision.autocast(dev):
                y = net(x)
        else:
            y = net(x)
        return torch.softmax(y.float(), dim=1).permute(0, 2, 3, 1).cpu().numpy()

    if nc is None:  # unknown class count: probe once
        nc = fn(a[None, :16, :16]).shape[-1]
    labels = np.empty(a.shape[:2] + (1,), np.uint8)
    run_tiled(a, fn, tile=tile, overlap=min(overlap, tile - 1), batch_size=1, align=16, out=labels,
              from_float=lambda p: p.argmax(-1)[..., None].astype(np.uint8), work_channels=nc)
    labels = labels[..., 0]
    if f < 1:
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    return labels


def mask_png(labels: np.ndarray, palette: list[tuple[int, int, int]]) -> bytes:
    """A palette ('P' mode) PNG whose pixel values are the class ids."""
    import io

    from PIL import Image

    im = Image.fromarray(labels, mode="L").convert("P")
    flat = [v for c in palette for v in c]
    im.putpalette(flat + [0] * (768 - len(flat)))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# the mask's value for fully transparent pixels: nothing there to label (CamVid's own void, 11,
# is a class id for networks with more classes)
TRANSPARENT = 255


def overlay_png(rgb8: np.ndarray, labels: np.ndarray, palette: list[tuple[int, int, int]], alpha: float = 0.5,
                opacity: np.ndarray | None = None, icc: bytes | None = None) -> bytes:
    """The image with the classes' colours blended in (``alpha`` of the colour). ``opacity``:
    the image's own alpha (8-bit, (H, W)), kept, so that what was transparent stays so.
    ``icc``: the image's ICC profile, kept if it describes RGB (the overlay is in the image's
    own colours: untagged, a wide-gamut image's overlay was shown as sRGB)."""
    import io

    from PIL import Image

    pal = np.array(list(palette) + [(0, 0, 0)] * max(0, 256 - len(palette)), np.float32)[:256]
    mix = np.clip(np.rint((1 - alpha) * rgb8.astype(np.float32) + alpha * pal[labels]), 0, 255).astype(np.uint8)
    if opacity is not None:
        mix = np.dstack([mix, opacity])
    buf = io.BytesIO()
    Image.fromarray(mix).save(buf, format="PNG", **({"icc_profile": icc} if icc and icc[16:20] == b"RGB " else {}))
    return buf.getvalue()


def coverage(labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Each class's share of the visible pixels (transparent ones, ``TRANSPARENT``, left out)."""
    counts = np.bincount(labels.ravel(), minlength=len(classes))
    total = max(1, labels.size - int(counts[TRANSPARENT]) if len(counts) > TRANSPARENT else labels.size)
    names = classes or [str(i) for i in range(len(counts))]
    return {names[i]: round(float(c) / total, 5) for i, c in enumerate(counts) if c and i < len(names)}


def output_paths(src: Path, root_in: Path | None, out_dir: Path) -> tuple[Path, Path]:
    rel = src.relative_to(root_in) if root_in is not None else Path(src.name)
    base = out_dir / rel.parent / rel.stem
    return base.with_name(base.name + ".mask.png"), base.with_name(base.name + ".overlay.png")


def check_outputs(jobs: list[tuple[Path, Path, Path]], taken: Iterable[Path] = ()) -> None:
    """Refuse two inputs that would write the same mask (``x.png`` and ``x.jpg`` in one folder,
    or ``a/x.png`` and ``b/x.png`` into one output folder): the second was silently skipped,
    or with --overwrite replaced the first's. Refuse as well a mask or overlay that would be
    one of ``taken`` (the images of a ``denoise --then segment`` run)."""
    from .errors import UsageError
    from .io import first_collision

    busy = {p.resolve() for p in taken}
    for src, mask, overlay in jobs:
        for out in (mask, overlay):
            if out.resolve() in busy:
                raise UsageError(f"{src}: its {'mask' if out == mask else 'overlay'} {out} would replace one of "
                                 "this run's images", "rename that image, or segment in a separate run")
    clash = first_collision((src, mask) for src, mask, _ in jobs)
    if clash:
        src, earlier, mask = clash
        raise UsageError(f"{src} and {earlier} would both write {mask}",
                         "rename one of them, or segment them in separate runs into different output folders")


def segment_files(items: list[tuple[Path, Path, Path]], *, segmenter: HighLevelNet, denoiser=None,
                  sigma: float | None = None, overwrite: bool = False, precision=None,
                  max_pixels: int = 200_000_000) -> list[Segmentation]:
    """items: (input, mask path, overlay path). Outputs are written atomically; inputs
    are never written; existing outputs are skipped unless ``overwrite``."""
    import time

    from .classify import to_rgb01
    from .errors import DdnError, OutputExists, OutputStorageFull, RunStopped
    from .io import write_atomic
    from .pipeline import read_denoised

    res = []
    resolved_inputs = {p.resolve() for p, _, _ in items}
    for n, (src, mpath, opath) in enumerate(items):
        t0 = time.perf_counter()
        if mpath.resolve() in resolved_inputs or opath.resolve() in resolved_inputs:
            res.append(Segmentation(str(src), "failed", error=f"{src}: an output would overwrite an input"))
            continue
        if not overwrite and mpath.exists() and opath.exists():
            res.append(Segmentation(str(src), "skipped", str(mpath), str(opath)))
            continue
        try:
            img, used = read_denoised(src, denoiser, sigma=sigma, max_pixels=max_pixels)
            rgb = to_rgb01(img.color, img.alpha)  # what the image shows: over white where transparent
            labels = segment_array(segmenter, rgb, precision=precision)
            rgb8 = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
            opacity = None
            if img.alpha is not None:
                labels[img.alpha.reshape(labels.shape) == 0] = TRANSPARENT  # nothing there to label
                a = img.alpha.reshape(labels.shape)
                opacity = (a >> 8).astype(np.uint8) if a.dtype == np.uint16 else a.astype(np.uint8)
            # without --overwrite a mask another run wrote meanwhile is kept (OutputExists: skipped);
            # once this run's mask is in place, its overlay goes beside it whatever is there, so
            # that a pair never mixes two runs
            write_atomic(mpath, mask_png(labels, segmenter.palette), replace=overwrite)
            write_atomic(opath, overlay_png(rgb8, labels, segmenter.palette, opacity=opacity, icc=img.icc))
            res.append(Segmentation(str(src), "ok", str(mpath), str(opath), coverage(labels, segmenter.classes),
                                    None if used is None else round(used, 3), getattr(denoiser, "name", None),
                                    segmenter.name, round(time.perf_counter() - t0, 3)))
        except OutputExists as e:
            res.append(Segmentation(str(src), "skipped", str(mpath), str(opath), error=str(e),
                                    seconds=round(time.perf_counter() - t0, 3)))
        except DdnError as e:
            res.append(Segmentation(str(src), "failed", error=str(e), seconds=round(time.perf_counter() - t0, 3)))
            left = sum(overwrite or not (os.path.exists(m) and os.path.exists(o)) for _, m, o in items[n + 1:])
            if isinstance(e, OutputStorageFull) and left:  # every later image would be segmented only to fail
                raise RunStopped(f"stopped with {left} image(s) not segmented: {e.message}",
                                 f"{e.hint}, then rerun: the outputs already written are kept and skipped",
                                 results=res) from None
    return res
