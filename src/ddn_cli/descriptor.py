"""A loaded denoiser plus its contract: channels, size multiple, noise-level input,
precision support and tiling advice. ``__call__`` validates, moves tiles to the
device, runs under the chosen precision, and returns clamped float32 on the CPU."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .devices import Precision, resolve_device, resolve_precision
from .errors import DdnError, UnsafeWeights
from .models.denoiser import SIZE_MULTIPLE
from .models.fast import FastDenoiser
from .weightfile import build_model, load_weights

# Smallest tile side given to the network. oneDNN's bf16 stride-2 convolution (torch 2.14.1,
# this project's CPU) returns garbage, even NaN, for inputs 1-2 px wide, which images up to
# 4 px wide reach at the 1/4 scale; smaller tiles are edge-padded to this and cropped back.
MIN_SIDE = 16


class OutOfMemory(DdnError):
    pass


def is_oom(e: BaseException) -> bool:
    """Whether ``e`` is running out of memory: Python's MemoryError (numpy), torch's
    OutOfMemoryError (GPUs), or the plain RuntimeError of torch's CPU allocator."""
    if isinstance(e, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(e, RuntimeError) and ("can't allocate memory" in str(e) or "DefaultCPUAllocator" in str(e))


@dataclass
class Denoiser:
    model: torch.nn.Module
    name: str
    device: torch.device
    precision: Precision
    noise_level: bool
    size_multiple: int = SIZE_MULTIPLE
    overlap: int = 48  # measured: keeps tiled output within 1/255 of untiled for tiles >= 128
    channels: int = 3

    @classmethod
    def load(cls, weights: str | Path, *, name: str | None = None, device: str = "auto",
             precision: str = "auto", fast: bool = True, fuse: bool = True) -> Denoiser:
        """``fast``: the composed inference form (models/fast.py); ``fuse``: on the CPU, with
        its ReLUs and residual adds fused into oneDNN convolutions (models/onednn.py)."""
        sd, meta = load_weights(weights)
        arch = meta.get("arch")
        if arch != "ddn" or meta.get("task", "denoise") not in ("denoise", "seg", "cls"):
            raise UnsafeWeights(f"{weights}: not a ddn denoiser (arch {arch!r})", "pass a denoiser weight file")
        model = build_model(sd, meta, weights)  # UnsafeWeights for a bad config or mismatched tensors
        model.eval()
        if fast:
            model = FastDenoiser(model).eval()
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        model.to(dev)
        if fast and fuse and dev.type == "cpu" and prec.dtype in (None, torch.bfloat16):
            from .models import onednn

            dtype = prec.dtype or torch.float32
            if onednn.available(dtype):
                model = onednn.onednn_form(model, dtype)
        if prec.channels_last:
            model = model.to(memory_format=torch.channels_last)
        for p in model.parameters():
            p.requires_grad_(False)
        return cls(model=model, name=name or Path(weights).stem, device=dev, precision=prec,
                   noise_level=bool(model.config.noise_level))

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray, sigma255: float,
                 exact: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> np.ndarray:
        """batch: (N, h, w, 3) float32 in [0,1]; returns the same shape, clamped. ``exact``
        (top, bottom, left, right): the sides on which the output must equal the trained
        model's to the last pixel (``tiling.exact_sides``: the image's edges, thin overlaps); on
        the others the outermost pixels may differ (the blend all but ignores them)."""
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"expected (N, h, w, 3), got {batch.shape}")
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        else:
            x = x.to(self.device)
        y = self.run_tensor(x, sigma255, exact)
        return y.permute(0, 2, 3, 1).cpu().numpy()

    @torch.inference_mode()
    def run_tensor(self, x: torch.Tensor, sigma255: float,
                   exact: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> torch.Tensor:
        """x: (N, 3, h, w) float32 in [0,1] on this denoiser's device; returns the same
        shape, float32, clamped, on the device (the entry point of device-side tiling)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, h, w), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        try:
            if h < MIN_SIDE or w < MIN_SIDE:
                x = torch.nn.functional.pad(x, (0, max(0, MIN_SIDE - w), 0, max(0, MIN_SIDE - h)), mode="replicate")
            if self.precision.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.precision.autocast(self.device):
                # (a torch.compile'd FastDenoiser keeps the original as _orig_mod and takes the same arguments)
                fast = isinstance(getattr(self.model, "_orig_mod", self.model), FastDenoiser)
                kw = {"exact": tuple(exact)} if fast and not all(exact) else {}
                y = self.model(x, sigma255 / 255.0, **kw) if self.noise_level else self.model(x, **kw)
            return y[:, :, :h, :w].float().clamp_(0, 1)
        except Exception as e:
            if not is_oom(e):
                raise
            raise OutOfMemory(f"out of memory on {self.device} with {tuple(x.shape)} tiles",
                              "use a smaller --tile or --batch-size") from None
