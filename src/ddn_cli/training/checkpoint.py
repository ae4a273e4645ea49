"""Atomic training checkpoints (torch.save to a temp file, fsync, rename) loaded with
``weights_only=True``: our own files, but still never arbitrary unpickling."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ..atomic import write_bytes as atomic_write_bytes


def save_checkpoint(path: str | Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def checkpoint_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_suffix(".ckpt")
