"""CamVid data for the segmenter and the segmentation cascade: images and masks decoded
once into uint8 tensors, scale/crop/flip/colour augmentation drawn from explicit
generators (so a resumed run draws the same batches), and the mIoU metric.

Layout (SegNet tutorial copy): ``<root>/{train,val}/*.jpg`` and ``<root>/{train,val}annot/*.png``
with class ids 0..10 and 11 = void (ignored).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError
from ..models.segmenter import CAMVID_IGNORE


def load_camvid(root: str | Path, split: str, limit: int = 0,
                subset: tuple[str, ...] = ()) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images uint8 (N,3,H,W), masks uint8 (N,H,W), names). ``subset``: keep only the
    files whose names start with one of these prefixes (CamVid's sequence ids, e.g.
    ``0016E5``), so two models can be trained on disjoint sequences."""
    root = Path(root)
    # any case of .jpg / .jpeg / .png (".JPG" files were skipped without a word), no hidden files
    folder = root / split
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png")
                   and not f.name.startswith(".") and f.is_file()) if folder.is_dir() else []
    if subset and files:
        files = [f for f in files if f.name.startswith(tuple(subset))]
        if not files:
            raise UsageError(f"{root / split}: no image names start with {', '.join(subset)}",
                             "pass CamVid sequence ids such as 0001TP, 0006R0, 0016E5")
    if limit:
        files = files[:limit]
    if not files:
        raise UsageError(f"{root / split}: no CamVid images", f"pass the CamVid folder (with {split}/ and {split}annot/)")
    from .data import decode_rgb8

    xs, ys = [], []
    for f in files:
        m = root / f"{split}annot" / (f.stem + ".png")
        if not m.is_file():
            raise UsageError(f"{m}: mask missing for {f.name}", "check the CamVid folder")
        xs.append(decode_rgb8(f))
        ys.append(_read_mask(m))
        if xs[-1].shape[:2] != ys[-1].shape:
            raise UsageError(f"{m}: mask size differs from its image", "check the CamVid folder")
        if xs[-1].shape != xs[0].shape:
            raise UsageError(f"{f}: {xs[-1].shape[1]}x{xs[-1].shape[0]}, but {files[0].name} is "
                             f"{xs[0].shape[1]}x{xs[0].shape[0]}", "give every image of a split the same size")
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.stack(ys))
    if not bool((y < CAMVID_IGNORE).any()):  # every pixel void: an mIoU of nothing (nan), not an error before
        raise UsageError(f"{root / f'{split}annot'}: no labelled pixel (every mask is void, ids 11 and above)",
                         "masks hold class ids 0-10; check that they are CamVid's 11-class labels")
    return x, y, [f.name for f in files]


def _read_mask(path: Path) -> np.ndarray:
    """A label mask (H, W) uint8 of class ids; ids past the last class (e.g. 255, which some
    CamVid copies use for void) count as void."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P"):
                raise UsageError(f"{path}: a {im.mode} image, not a label mask (one class id per pixel)",
                                 "masks are 8-bit single-channel PNGs with ids 0-10 (11 = void)")
            m = np.asarray(im, dtype=np.uint8).copy()
    except UsageError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise UsageError(f"{path}: cannot read the mask ({e})", "re-export it or remove the image") from None
    m[m > CAMVID_IGNORE] = CAMVID_IGNORE
    return m


def class_weights(masks: torch.Tensor, num_classes: int, c: float = 1.10) -> torch.Tensor:
    """ENet-style weights 1/ln(c + p_class) (c=1.10: a softer version of ENet's 1.02,
    weights between about 2 and 10), so rare thin classes count in the loss."""
    valid = masks[masks != CAMVID_IGNORE].long()
    p = torch.bincount(valid, minlength=num_classes).double()
    p = p / p.sum()
    return (1.0 / torch.log(c + p)).float()


class SegBank:
    """Random training crops: scale in ``scale``, crop ``crop`` (h, w), horizontal flip,
    mild brightness/contrast jitter. Crops past the (scaled) image are padded with
    zeros / the ignore label."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, crop: tuple[int, int],
                 scale: tuple[float, float] = (0.75, 1.5), jitter: float = 0.2) -> None:
        self.images, self.masks = images, masks
        self.crop, self.scale, self.jitter = crop, scale, jitter

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 (B,3,h,w), int64 (B,h,w))."""
        ch, cw = self.crop
        n, _, H, W = self.images.shape
        idx = torch.randint(0, n, (batch,), generator=gen)
        u = torch.rand(batch, 6, generator=gen)
        xs, ys = [], []
        for i in range(batch):
            s = self.scale[0] + (self.scale[1] - self.scale[0]) * float(u[i, 0])
            wh, ww = min(H, round(ch / s)), min(W, round(cw / s))
            y0 = int(u[i, 1] * (H - wh + 1))
            x0 = int(u[i, 2] * (W - ww + 1))
            img = self.images[int(idx[i]), :, y0:y0 + wh, x0:x0 + ww].float()[None]
            msk = self.masks[int(idx[i]), y0:y0 + wh, x0:x0 + ww][None, None].float()
            oh, ow = min(ch, round(wh * s)), min(cw, round(ww * s))
            img = F.interpolate(img, size=(oh, ow), mode="bilinear", align_corners=False, antialias=s < 1)
            msk = F.interpolate(msk, size=(oh, ow), mode="nearest")
            img = F.pad(img, (0, cw - ow, 0, ch - oh))
            msk = F.pad(msk, (0, cw - ow, 0, ch - oh), value=CAMVID_IGNORE)
            if u[i, 3] < 0.5:
                img, msk = img.flip(-1), msk.flip(-1)
            if self.jitter:
                a = 1 + self.jitter * (2 * float(u[i, 4]) - 1)
                b = 255 * self.jitter * 0.5 * (2 * float(u[i, 5]) - 1)
                mean = img.mean()
                img = (img - mean) * a + mean + b
            xs.append(img.clamp_(0, 255).round_().to(torch.uint8)[0])
            ys.append(msk[0, 0].long())
        return torch.stack(xs), torch.stack(ys)


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    keep = target != CAMVID_IGNORE
    k = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(k, minlength=num_classes * num_classes).view(num_classes, num_classes)


def miou(conf: torch.Tensor) -> tuple[float, list[float | None], float]:
    """(mean IoU, per-class IoU, global pixel accuracy) from a confusion matrix. A class
    neither in the ground truth nor predicted has no IoU (None), and is left out of the mean."""
    c = conf.double()
    inter = c.diag()
    union = c.sum(0) + c.sum(1) - inter
    present = union > 0
    iou = inter / union.clamp(min=1)
    return (float(iou[present].mean()), [float(v) if p else None for v, p in zip(iou, present, strict=True)],
            float(inter.sum() / c.sum().clamp(min=1)))


@torch.no_grad()
def segment_batches(net: torch.nn.Module, images01: Callable[[int, int], torch.Tensor], n: int, device, precision,
                    batch: int = 4) -> torch.Tensor:
    """argmax labels (N,H,W) for images given by ``images01(i, j)`` -> float (B,3,H,W) in [0,1]."""
    out = []
    for i in range(0, n, batch):
        x = images01(i, min(n, i + batch)).to(device)
        if precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision.autocast(device):
            out.append(net(x).float().argmax(1).cpu())
    return torch.cat(out)
