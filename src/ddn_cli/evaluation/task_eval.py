"""``ddn eval seg|cls``: how much recognition survives noise, with and without each
denoiser in front of the (frozen) high-level network.

For every sigma: the high-level metric (mIoU for segmentation, top-1 for
classification) on the clean images; on the noisy images; and on the output of each
denoiser; plus each denoiser's PSNR. Noise follows the denoising protocol (seeded per
image and sigma, unclipped unless ``clip``); whatever the high-level network sees is
an 8-bit image (clipped, rounded), as a file would be.

Data: ``seg`` - a CamVid folder and split (default val); ``cls`` - CIFAR-10 class
folders, the held-out part (the last 10% of each class, the classifier's validation
split).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .protocol import make_noisy, to_uint8


@dataclass
class TaskData:
    kind: str  # seg | cls
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N, H, W) uint8 masks or (N,) class ids
    names: list[str]
    classes: list[str]
    ignore_index: int | None = None


def load_task_data(kind: str, root: str, split: str = "val", limit: int = 0) -> TaskData:
    if kind == "seg":
        from ..models.segmenter import CAMVID_CLASSES, CAMVID_IGNORE
        from ..training.camvid import load_camvid

        x, y, names = load_camvid(root, split, limit)
        return TaskData("seg", x.permute(0, 2, 3, 1).numpy(), y.numpy(), names, list(CAMVID_CLASSES), CAMVID_IGNORE)
    from ..errors import UsageError
    from ..models.classifier import CIFAR10_CLASSES
    from ..training.classifier import load_split

    _, _, vx, vy = load_split(root, 0.1)
    missing = [c for i, c in enumerate(CIFAR10_CLASSES) if not (vy == i).any()]
    if missing:  # a class with no held-out image dropped out of the top-1 silently
        raise UsageError(f"{root}: the held-out part (the last 10% of each class folder) has no image of "
                         f"{', '.join(missing)}", "give each class folder at least 6 images")
    if limit and limit < len(vx):
        keep = balanced_subset(vy.numpy(), limit)
        vx, vy = vx[keep], vy[keep]
    return TaskData("cls", vx.permute(0, 2, 3, 1).numpy(), vy.numpy(), [f"cifar_{i}" for i in range(len(vx))],
                    list(CIFAR10_CLASSES))


def balanced_subset(labels: np.ndarray, limit: int) -> np.ndarray:
    """Indices of about ``limit`` items with the classes as evenly represented as they allow
    (shares differ by at most one), spread evenly through each class, in their order.
    ("Every k-th image" of the class-sorted list left out the last classes altogether once
    ``limit`` passed half the list.)"""
    classes = np.unique(labels)
    keep: list[int] = []
    for i, c in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        n = min(len(idx), limit // len(classes) + (i < limit % len(classes)))
        if n:
            keep += idx[np.linspace(0, len(idx) - 1, n).round().astype(int)].tolist()
    return np.array(sorted(keep), dtype=np.int64)


@dataclass
class Variant:
    label: str
    role: str  # clean | noisy | reconstruction | guided | cross-task
    metric: dict[str, float] = field(default_factory=dict)  # sigma -> mIoU / top-1
    psnr: dict[str, float | None] = field(default_factory=dict)
    seconds: float = 0.0
    per_class: dict[str, list[float]] = field(default_factory=dict)  # seg: sigma -> IoU of each class


def _predict(net, batch_u8: np.ndarray, device, precision) -> np.ndarray:
    x = torch.from_numpy(batch_u8).permute(0, 3, 1, 2).float().div_(255).to(device)
    if precision.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), precision.autocast(device):
        return net(x).float().argmax(1).cpu().numpy()


def _metric(data: TaskData, preds: np.ndarray) -> tuple[float, list[float] | None]:
    """(top-1 or mIoU, the per-class IoU for segmentation / None)."""
    if data.kind == "cls":
        return float((preds == data.labels).mean()), None
    from ..training.camvid import confusion, miou

    conf = confusion(torch.from_numpy(preds.astype(np.int64)), torch.from_numpy(data.labels.astype(np.int64)),
                     len(data.classes))
    m, per, _ = miou(conf)
    return m, per


def _record(v: Variant, key: str, scored: tuple[float, list[float] | None]) -> None:
    v.metric[key] = scored[0]
    if scored[1] is not None:
        v.per_class[key] = scored[1]


def evaluate_task(data: TaskData, net, denoisers: list[tuple[str, str, object]], sigmas: list[float], *,
                  device, precision, clip: bool = False, on_event: Callable[[str], None] | None = None) -> dict:
    """denoisers: (label, role, Denoiser). Returns {"variants": [...], "sigmas": [...]}."""
    from .metrics import psnr

    say = on_event or (lambda s: None)
    bs = 500 if data.kind == "cls" else 4
    n = len(data.images)

    def run_net(images_u8: np.ndarray) -> np.ndarray:
        return np.concatenate([_predict(net, images_u8[i:i + bs], device, precision) for i in range(0, n, bs)])

    clean = Variant("clean input", "clean")
    scored_clean = _metric(data, run_net(data.images))
    noisy_v = Variant("noisy input", "noisy")
    dvs = [Variant(lbl, role) for lbl, role, _ in denoisers]
    for s in sigmas:
        key = f"{s:g}"
        _record(clean, key, scored_clean)
        noisy = np.stack([make_noisy(im, s, nm, clip=clip) for im, nm in zip(data.images, data.names)])
        noisy_u8 = to_uint8(noisy)
        _record(noisy_v, key, _metric(data, run_net(noisy_u8)))
        noisy_v.psnr[key] = float(np.mean([psnr(a, b) for a, b in zip(noisy_u8, data.images)])) if s > 0 else None
        for v, (_, _, den) in zip(dvs, denoisers):
            t0 = time.perf_counter()
            outs = []
            for i in range(0, n, bs):
                outs.append(to_uint8(den(np.clip(noisy[i:i + bs], -1, 2), s)))
            out = np.concatenate(outs)
            v.seconds += time.perf_counter() - t0
            _record(v, key, _metric(data, run_net(out)))
            ps = [psnr(a, b) for a, b in zip(out, data.images)]
            finite = [p for p in ps if np.isfinite(p)]
            v.psnr[key] = float(np.mean(finite)) if finite else None
        say(f"sigma {s:g}: noisy {noisy_v.metric[key]:.4f}  " +
            "  ".join(f"{v.label} {v.metric[key]:.4f}" for v in dvs))
    return {"kind": data.kind, "images": n, "sigmas": [f"{s:g}" for s in sigmas], "clip": clip,
            "metric": "mIoU" if data.kind == "seg" else "top-1",
            **({"classes": list(data.classes)} if data.kind == "seg" else {}),
            "variants": [{k: x for k, x in v.__dict__.items() if k != "per_class" or x}
                         for v in [clean, noisy_v, *dvs]]}


def plot_png(result: dict, title: str, size: tuple[int, int] = (900, 560)) -> bytes:
    """A metric-vs-sigma line plot drawn with Pillow (no plotting dependency)."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    W, H = size
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    left, right, top, bottom = 70, 270, 40, 60
    sig = [float(s) for s in result["sigmas"]]
    vals = [v for var in result["variants"] for v in var["metric"].values()]
    lo, hi = max(0.0, min(vals) - 0.05), min(1.0, max(vals) + 0.05)
    xmin, xmax = min(sig), max(sig) if max(sig) > min(sig) else min(sig) + 1

    def px(s: float, v: float) -> tuple[float, float]:
        return (left + (s - xmin) / (xmax - xmin) * (W - left - right),
                top + (1 - (v - lo) / (hi - lo)) * (H - top - bottom))

    d.rectangle([left, top, W - right, H - bottom], outline="black")
    for k in range(6):
        v = lo + (hi - lo) * k / 5
        x, y = px(xmin, v)
        d.line([x - 4, y, x, y], fill="black")
        d.text((8, y - 6), f"{v:.2f}", fill="black", font=font)
    for s in sig:
        x, y = px(s, lo)
        d.line([x, y, x, y + 4], fill="black")
        d.text((x - 8, y + 8), f"{s:g}", fill="black", font=font)
    d.text((left + (W - left - right) // 2 - 20, H - 28), "sigma (0-255)", fill="black", font=font)
    d.text((8, 12), f"{title}: {result['metric']} vs noise level", fill="black", font=font)
    colours = [(0, 0, 0), (150, 150, 150), (31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189),
               (255, 127, 14), (140, 86, 75)]
    for i, var in enumerate(result["variants"]):
        c = colours[i % len(colours)]
        pts = [px(float(s), var["metric"][s]) for s in sorted(result["sigmas"], key=float)]  # left to right
        if len(pts) > 1:
            d.line(pts, fill=c, width=3 if var["role"] == "guided" else 2)
        for x, y in pts:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
        ly = top + 10 + 22 * i
        d.line([W - right + 12, ly, W - right + 36, ly], fill=c, width=3)
        d.text((W - right + 42, ly - 6), f"{var['label']} ({var['role']})"[:40], fill="black", font=font)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
