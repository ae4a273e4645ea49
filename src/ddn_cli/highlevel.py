"""Loading the high-level networks (segmenter, classifier): a bundled/registered name,
a ``.safetensors`` path, or ``torchvision:<model>`` (torchvision's published weights,
downloaded and cached by torchvision itself, classes from the weights' metadata).

A loaded network is a ``HighLevelNet``: the module (frozen, eval mode), its classes,
palette (segmenters), the input size it was trained at, and whether it expects the
normalisation to be applied outside (torchvision models) or does it inside (bundled).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import UnsafeWeights, UsageError, WeightsNotFound

KINDS = ("segmenter", "classifier")


@dataclass
class HighLevelNet:
    module: torch.nn.Module
    kind: str
    name: str
    classes: list[str]
    input_size: tuple[int, int] | None
    mean: tuple[float, float, float] | None = None  # set: normalise outside the module
    std: tuple[float, float, float] | None = None
    palette: list[tuple[int, int, int]] = field(default_factory=list)
    ignore_index: int | None = None
    resize_short: int | None = None  # torchvision: resize the short side to this ...
    crop: int | None = None  # ... then centre-crop (classifiers)

    def work_scale(self, h: int, w: int) -> float:
        """Segmenters: the factor (<= 1) that brings an image to the scale the network was
        trained at (short side = its training short side); large photos are segmented at
        that scale and the labels resized back."""
        short = self.resize_short or (min(self.input_size) if self.input_size else None)
        return 1.0 if not short or min(h, w) <= short else short / min(h, w)

    def prepare(self, rgb01):
        """Classifiers: (H, W, 3) float32 in [0, 1] -> (1, 3, h, w) tensor at the input size."""
        import cv2
        import numpy as np

        a = rgb01
        if self.resize_short:
            h, w = a.shape[:2]
            f = self.resize_short / min(h, w)
            a = cv2.resize(a, (max(1, round(w * f)), max(1, round(h * f))),
                           interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
            if self.crop:
                h, w = a.shape[:2]
                y0, x0 = max(0, (h - self.crop) // 2), max(0, (w - self.crop) // 2)
                a = a[y0:y0 + self.crop, x0:x0 + self.crop]
        elif self.input_size and a.shape[:2] != tuple(self.input_size):
            h, w = self.input_size
            a = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA if a.shape[0] > h else cv2.INTER_LINEAR)
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        """x01: (N, 3, H, W) float in [0, 1]. Returns logits ((N, C) or (N, C, H, W))."""
        if self.mean is not None:
            m = torch.tensor(self.mean, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
            s = torch.tensor(self.std, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
            x01 = (x01 - m) / s
        y = self.module(x01)
        if isinstance(y, dict):  # torchvision segmentation models return {"out": ...}
            y = y["out"]
        return y


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """PASCAL VOC-style distinct colours for n classes."""
    pal = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal.append((r, g, b))
    return pal


def load_highlevel(spec: str | None, kind: str, device: torch.device, classes: int | None = None) -> HighLevelNet:
    """``classes``: the number of classes the caller needs; a ``torchvision:`` network with
    another number is refused from its metadata, before its weights are downloaded."""
    if kind not in KINDS:
        raise ValueError(kind)
    if spec and spec.startswith("torchvision:"):
        return _load_torchvision(spec.split(":", 1)[1], kind, device, classes)
    from .models import ARCHS
    from .registry import resolve_weights
    from .weightfile import build_model, load_weights

    path = resolve_weights(spec, kind)
    sd, meta = load_weights(path)
    if meta.get("task") != kind or meta.get("arch") not in ARCHS:
        raise UnsafeWeights(f"{path}: not a {kind} weight file (task {meta.get('task')!r})",
                            f"pass --{kind} NAME|PATH with a {kind} (ddn models list)")
    net = build_model(sd, meta, path)  # UnsafeWeights for a bad config or mismatched tensors
    net.eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    classes = list(meta.get("classes") or [])
    pal = [tuple(c) for c in meta.get("palette", [])] or default_palette(len(classes))
    size = tuple(meta["input_size"]) if meta.get("input_size") else None
    return HighLevelNet(net, kind, spec or Path(path).stem, classes, size, palette=pal,
                        ignore_index=meta.get("ignore_index"))


def _load_torchvision(model: str, kind: str, device: torch.device, n_classes: int | None = None) -> HighLevelNet:
    import os

    import torchvision

    try:
        weights = torchvision.models.get_model_weights(model).DEFAULT
    except (ValueError, KeyError):
        raise UsageError(f"torchvision:{model}: torchvision has no such model",
                         "see torchvision.models.list_models() for names") from None
    family = torchvision.models.segmentation if kind == "segmenter" else torchvision.models
    if model not in torchvision.models.list_models(module=family):
        what = next((w for w, m in (("a segmenter", torchvision.models.segmentation),
                                    ("a classifier", torchvision.models)) if model in torchvision.models.list_models(module=m)),
                    "neither a classifier nor a segmenter")
        raise UsageError(f"torchvision:{model}: {what}, not {'a segmenter' if kind == 'segmenter' else 'a classifier'}",
                         f"pick one from torchvision.models.list_models(module=torchvision.models"
                         f"{'.segmentation' if kind == 'segmenter' else ''})")
    categories = list(weights.meta.get("categories") or [])
    if n_classes is not None and categories and len(categories) != n_classes:
        raise UsageError(f"torchvision:{model}: {len(categories)} classes, but {n_classes} are needed here",
                         f"pick a {kind} trained on the data set's classes")
    if os.environ.get("DDN_OFFLINE") == "1":
        from torch.hub import get_dir

        cached = Path(get_dir()) / "checkpoints" / Path(weights.url).name
        if not cached.is_file():
            raise WeightsNotFound(f"torchvision:{model}: not in torchvision's cache ({cached}) and DDN_OFFLINE=1",
                                  "fetch it once on a connected machine (TORCH_HOME) or unset DDN_OFFLINE")
    try:
        # torch.hub writes "Downloading: ..." to stdout itself, which would break `--json -`; its
        # progress bar (stderr) stays, so that a long download is seen to move
        with contextlib.redirect_stdout(io.StringIO()):
            net = torchvision.models.get_model(model, weights=weights)
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        raise WeightsNotFound(f"torchvision:{model}: could not load torchvision's weights ({str(e)[:160]})",
                              "check the network or pre-fill TORCH_HOME") from None
    net.eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    classes = list(weights.meta.get("categories") or [])
    tf = weights.transforms()
    mean, std = tuple(getattr(tf, "mean", (0.485, 0.456, 0.406))), tuple(getattr(tf, "std", (0.229, 0.224, 0.225)))
    resize = getattr(tf, "resize_size", None)
    crop = getattr(tf, "crop_size", None)
    return HighLevelNet(net, kind, f"torchvision:{model}", classes, None, mean=mean, std=std,
                        palette=default_palette(len(classes)), resize_short=int(resize[0]) if resize else None,
                        crop=int(crop[0]) if crop and kind == "classifier" else None)
