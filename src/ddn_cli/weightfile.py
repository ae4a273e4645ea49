"""Reading and writing weight files: safetensors only (never unpickled), written
atomically, self-describing (arch + config in the safetensors metadata)."""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import write_bytes
from .errors import UnsafeWeights, WeightsNotFound

PICKLE_SUFFIXES = {".pth", ".pt", ".pkl", ".ckpt", ".bin"}


def save_weights(state_dict: dict, path: str | Path, metadata: dict[str, str | dict]) -> None:
    """Save tensors as safetensors with string metadata (dicts are JSON-encoded)."""
    from safetensors.torch import save

    meta = {k: (v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for k, v in metadata.items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    write_bytes(path, save(tensors, metadata=meta))


def _looks_like_safetensors(data: bytes) -> bool:
    """A safetensors file starts with its JSON header's length (u64, little-endian) and
    then ``{``. That length's first byte can be 0x80 (pickle's opening byte) or the
    bytes can spell ``PK``, so the pickle sniffing must not run on such files."""
    if len(data) < 10:
        return False
    n = int.from_bytes(data[:8], "little")
    return 8 + n <= len(data) and data[8:9] == b"{"


def load_weights(path: str | Path) -> tuple[dict, dict]:
    """Load a safetensors file -> (state_dict, metadata with JSON values decoded).
    Raises ``UnsafeWeights`` for pickle-based files and ``WeightsNotFound`` if missing."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFound(f"{path}: weight file not found")
    data = path.read_bytes()
    if path.suffix.lower() in PICKLE_SUFFIXES or (not _looks_like_safetensors(data)
                                                   and (data[:2] == b"PK" or data[:1] == b"\x80")):
        raise UnsafeWeights(
            f"{path}: pickle-based weights are refused (they can run code when loaded)",
            "convert trusted weights with `ddn models import-pth FILE OUT.safetensors`",
        )
    try:
        sd = load(data)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, ValueError, OSError) as e:
        raise UnsafeWeights(f"{path}: not a valid safetensors file ({e})", "re-download or re-export it") from None
    meta: dict = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            meta[k] = v
    return sd, meta
