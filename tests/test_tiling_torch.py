"""Device-side tiling (the GPU path) against the host version: same plan, same windows,
so the same output. Run here on the CPU device, where the arithmetic is the same."""

import numpy as np
import pytest
import torch

from ddn_cli.tiling import run_tiled
from ddn_cli.tiling_torch import run_tiled_device


def _smooth(x: torch.Tensor) -> torch.Tensor:
    # position-dependent, so a misplaced tile or a wrong window changes the output
    return torch.sin(3 * x) * 0.5 + 0.25 * x.flip(-1)


def _host(src: np.ndarray, tile: int, overlap: int, batch: int) -> np.ndarray:
    scale = 65535.0 if src.dtype == np.uint16 else 255.0
    grey = src.shape[2] == 1

    def fn(b):
        return _smooth(torch.from_numpy(b).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()

    def to_f(a):
        f = a.astype(np.float32) / scale
        return np.repeat(f, 3, axis=2) if grey else f

    def from_f(f):
        if grey:
            f = f.mean(axis=2, keepdims=True)
        return np.clip(np.rint(f * scale), 0, scale).astype(src.dtype)

    return run_tiled(src, fn, tile=tile, overlap=overlap, batch_size=batch, to_float=to_f, from_float=from_f,
                     work_channels=3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("shape,tile,overlap,batch", [((133, 197), 64, 16, 3), ((40, 300), 32, 8, 1),
                                                      ((7, 9), 64, 16, 2), ((256, 256), 128, 32, 4)])
def test_device_tiling_matches_host(dtype, channels, shape, tile, overlap, batch):
    hi = 65535 if dtype == np.uint16 else 255
    src = np.random.default_rng(1).integers(0, hi + 1, (*shape, channels)).astype(dtype)
    before = src.copy()
    seen = []
    out = run_tiled_device(src, _smooth, device=torch.device("cpu"), tile=tile, overlap=overlap, batch_size=batch,
                           on_tiles=lambda d, t: seen.append((d, t)))
    ref = _host(src, tile, overlap, batch)
    assert out.dtype == src.dtype and out.shape == src.shape
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(src, before)  # input untouched
    assert seen[-1][0] == seen[-1][1]
    if dtype == np.uint16:  # values above 32767 survive the int16 transport
        assert out.max() > 40000


def test_device_tiling_identity_is_lossless():
    src = np.random.default_rng(2).integers(0, 65536, (150, 170, 3)).astype(np.uint16)
    out = run_tiled_device(src, lambda x: x, device=torch.device("cpu"), tile=64, overlap=16, batch_size=2)
    np.testing.assert_array_equal(out, src)


def test_device_tiling_rejects_float_input():
    with pytest.raises(ValueError):
        run_tiled_device(np.zeros((8, 8, 3), np.float32), _smooth, device=torch.device("cpu"), tile=8, overlap=0)


def test_denoiser_device_blend_equals_host_blend():
    """The whole denoise_image with the real model: device-side blending gives the same bytes."""
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.io import ImageData
    from ddn_cli.pipeline import denoise_image
    from ddn_cli.registry import resolve_weights

    den = Denoiser.load(resolve_weights(None), device="cpu", precision="fp32")
    rng = np.random.default_rng(3)
    for color in (rng.integers(0, 256, (150, 170, 3)).astype(np.uint8),
                  rng.integers(0, 65536, (90, 70, 1)).astype(np.uint16)):
        img = ImageData(color, None, 16 if color.dtype == np.uint16 else 8, "png")
        a, sa = denoise_image(img, den, sigma=25, tile=64, overlap=16, batch_size=2, device_blend=True)
        b, sb = denoise_image(img, den, sigma=25, tile=64, overlap=16, batch_size=2, device_blend=False)
        assert sa == sb
        np.testing.assert_array_equal(a.color, b.color)
