"""Atomic training checkpoints (torch.save to a temp file, fsync, rename) loaded with
``weights_only=True``: our own files, but still never arbitrary unpickling."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from ..atomic import write_bytes as atomic_write_bytes
from ..errors import OutputError, UsageError

# what every denoiser-training checkpoint holds (the loop's do_checkpoint writes more: among
# them world_size, the number of processes whose generator states "gens" holds, and
# val_pending, a validation an interrupt cut short); the segmenter's and classifier's
# trainers keep their own keys
REQUIRED_KEYS = ("model", "opt", "step", "total", "elapsed", "best", "gens", "config")


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically. Raises ``OutputError`` when it cannot be written
    (the previous checkpoint, if any, is then still there)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise OutputError(f"{path}: cannot write the checkpoint ({e.strerror or e})",
                          "free some space or choose another --out") from None


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ()) -> dict:
    """The checkpoint at ``path``, a dict holding at least the ``required`` keys. Raises
    ``UsageError`` for a file that is not one (damaged, truncated, or some other file under
    the name)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, OSError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise UsageError(f"{path}: damaged or not a training checkpoint ({why})",
                         "delete it to start afresh, or run without --resume") from None
    if not isinstance(state, dict) or any(k not in state for k in required):
        raise UsageError(f"{path}: not a training checkpoint of ddn train (keys missing)",
                         "delete it to start afresh, or run without --resume")
    return state


def checkpoint_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_suffix(".ckpt")
