from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty weight cache and never touches the network."""
    home = tmp_path_factory.mktemp("ddn_home")
    monkeypatch.setenv("DDN_HOME", str(home))
    monkeypatch.delenv("DDN_MIRROR", raising=False)
    monkeypatch.delenv("DDN_OFFLINE", raising=False)
    yield


@pytest.fixture
def shared() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared is absent")
    return SHARED


def smooth_image(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth, photo-like uint8 test image (gradients + blobs)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = []
    for c in range(channels):
        a, b, p = rng.uniform(0.01, 0.08, 3)
        v = 128 + 60 * np.sin(a * x + p * 6) * np.cos(b * y) + 40 * np.sin((x + y) * a * 0.5)
        chans.append(v)
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


def noisy(img: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    peak = 65535 if img.dtype == np.uint16 else 255
    n = img.astype(np.float64) + rng.normal(0, sigma * peak / 255, img.shape)
    return np.clip(np.round(n), 0, peak).astype(img.dtype)


def file_hash(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): file_hash(p) for p in sorted(root.rglob("*")) if p.is_file()}


def no_partial_files(root: Path) -> bool:
    return not any(".ddn-part" in p.name or p.name.endswith(".part") for p in root.rglob("*"))


@pytest.fixture(scope="session")
def default_weights() -> Path:
    from ddn_cli.registry import bundled_dir, bundled_manifest

    return bundled_dir() / bundled_manifest().default("denoise").file


os.environ.setdefault("OMP_NUM_THREADS", "2")
