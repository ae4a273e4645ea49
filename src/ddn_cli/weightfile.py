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
        # the metadata from the header in ``data`` (safe_open(path) refuses a path that is not UTF-8)
        raw = json.loads(data[8:8 + int.from_bytes(data[:8], "little")]).get("__metadata__") or {}
    except (SafetensorError, ValueError, OSError, AttributeError) as e:
        raise UnsafeWeights(f"{path}: not a valid safetensors file ({e})", "re-download or re-export it") from None
    meta: dict = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            meta[k] = v
    return sd, meta


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:120] if lines else type(e).__name__


def _count(keys: list[str], what: str) -> str:
    return f"{what} {keys[0]}" + (f" (+{len(keys) - 1} more)" if len(keys) > 1 else "")


def build_model(sd: dict, meta: dict, where: str | Path):
    """The network that a weight file's metadata describes (``arch`` and ``config``), with the
    file's tensors ``sd`` loaded. The network is first built on torch's meta device (no
    memory), so that a bad config (an unknown key, a negative width, a config that is not a
    JSON object, one far larger than the file) is one ``UnsafeWeights`` naming ``where``,
    not a traceback nor a huge allocation."""
    import warnings

    import torch

    from .models import ARCHS

    arch, config = meta.get("arch"), meta.get("config", {})
    if not isinstance(arch, str) or arch not in ARCHS:
        raise UnsafeWeights(f"{where}: its metadata names arch {arch!r}, which ddn does not know "
                            f"(known: {', '.join(ARCHS)})", "pass a weight file saved by ddn")
    if not isinstance(config, dict):
        raise UnsafeWeights(f"{where}: the config in its metadata is not a JSON object", "re-export the weights with ddn")
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zero-size tensors of a width 0
            probe = ARCHS[arch](config)
    except Exception as e:  # noqa: BLE001 - any config the network refuses (TypeError, ValueError, RuntimeError...)
        raise UnsafeWeights(f"{where}: invalid {arch} config in its metadata ({_first_line(e)})",
                            "re-export the weights with ddn") from None
    want = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    problems = []
    if missing := [k for k in want if k not in sd]:
        problems.append(_count(missing, "missing key"))
    if unexpected := [k for k in sd if k not in want]:
        problems.append(_count(unexpected, "unexpected key"))
    if wrong := [k for k in want if k in sd and tuple(sd[k].shape) != want[k]]:
        problems.append(_count(wrong, "size mismatch for") + f": {tuple(sd[wrong[0]].shape)} in the file, "
                        f"{want[wrong[0]]} for its config")
    if problems:
        raise UnsafeWeights(f"{where}: weights do not match the {arch} architecture ({'; '.join(problems)})")
    try:
        model = ARCHS[arch](config)
    except Exception as e:  # noqa: BLE001 - as above (the meta device let it through)
        raise UnsafeWeights(f"{where}: invalid {arch} config in its metadata ({_first_line(e)})",
                            "re-export the weights with ddn") from None
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise UnsafeWeights(f"{where}: weights do not match the {arch} architecture ({_first_line(e)})") from None
    return model
