import numpy as np
import pytest
from conftest import noisy, smooth_image
from typer.testing import CliRunner

from ddn_cli.cli.app import app
from ddn_cli.evaluation.metrics import psnr, ssim
from ddn_cli.evaluation.protocol import make_noisy
from ddn_cli.noise import estimate_sigma


def test_psnr_ssim_basics():
    a = smooth_image(32, 32)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert 70 < psnr(a, b) < 100
    n = noisy(a, 25)
    assert ssim(n, a) < 0.9


def test_protocol_is_seeded_and_unclipped():
    a = smooth_image(20, 20)
    n1 = make_noisy(a, 25, "img")
    n2 = make_noisy(a, 25, "img")
    assert np.array_equal(n1, n2)
    assert not np.array_equal(n1, make_noisy(a, 25, "other"))
    assert n1.min() < 0 or n1.max() > 1  # not clipped
    c = make_noisy(a, 25, "img", clip=True)
    assert c.min() >= 0 and c.max() <= 1


@pytest.mark.parametrize("sigma", [5, 15, 25, 50])
def test_sigma_estimate_within_2(sigma):
    a = smooth_image(256, 256, seed=7)
    est = estimate_sigma(make_noisy(a, sigma, "x"))
    assert abs(est - sigma) < 2.0


def test_sigma_estimate_small_and_16bit():
    assert estimate_sigma(np.zeros((4, 4, 3), np.uint8)) == 0.0
    a16 = smooth_image(128, 128).astype(np.uint16) * 257
    assert abs(estimate_sigma(noisy(a16, 20)) - 20) < 2.5


def test_cli_eval_denoise(tmp_path):
    from PIL import Image

    for i in range(2):
        Image.fromarray(smooth_image(48, 48, seed=i)).save(tmp_path / f"{i}.png")
    r = CliRunner().invoke(app, ["eval", "denoise", str(tmp_path), "--sigma", "25", "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    import json

    doc = json.loads((tmp_path / "e.json").read_text())
    res = doc["models"][0]["results"]["25"]
    assert res["psnr"] > res["noisy_psnr"] + 5 and 0 < res["ssim"] <= 1


def _jpeg(a: np.ndarray, **kw) -> np.ndarray:
    import io

    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(a).save(b, "JPEG", **kw)
    return np.asarray(Image.open(b).convert("RGB"))


@pytest.mark.parametrize("sigma", [15, 25, 50])
@pytest.mark.parametrize("quality", [95, 90])
def test_luma_estimate_finds_the_noise_of_a_chroma_subsampled_jpeg(sigma, quality):
    """At 4:2:0 the colour patches see almost no noise (their noise-free directions come from
    the averaged chroma); the luma estimate finds the sigma that was added."""
    a = smooth_image(256, 256, seed=7)
    j = _jpeg(noisy(a, sigma), quality=quality, subsampling=2)
    assert estimate_sigma(j) < 3  # why the luma is needed
    assert abs(estimate_sigma(j, luma=True) - sigma) < 0.12 * sigma


def test_luma_estimate_of_clean_and_white_noise_images():
    a = smooth_image(256, 256, seed=7)
    assert estimate_sigma(_jpeg(a, quality=95, subsampling=2), luma=True) < 2.5  # clean: nothing to remove
    assert abs(estimate_sigma(noisy(a, 20), luma=True) - 20) < 2  # white RGB noise: the same answer
    assert abs(estimate_sigma(noisy(a[..., :1], 20), luma=True) - 20) < 2  # grey: its one channel
    assert estimate_sigma(np.zeros((4, 4, 3), np.uint8), luma=True) == 0.0


def test_luma_estimate_skips_clipped_patches():
    """Pixels clipped in any channel hide noise; such patches are left out as for the colour
    estimate (here a third of the image is saturated red)."""
    a = smooth_image(256, 256, seed=7)
    n = noisy(a, 20)
    n[:, :85, 0] = 255
    assert abs(estimate_sigma(_jpeg(n, quality=95, subsampling=2), luma=True) - 20) < 2.5


def test_estimate_converts_only_the_sampled_patches():
    """``--sigma auto`` is the default: a float64 copy of the whole image (288 MB for this
    12 MP one, 1.15 GB for 48 MP) pushed a 48 MP photo's peak RSS to 2.0 GB; the sampled
    patches are all that is converted now (peak about 110 MB here, 422 MB before)."""
    import tracemalloc

    a = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    for luma in (False, True):
        tracemalloc.start()
        try:
            estimate_sigma(a, luma=luma)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 200 * 2**20, (luma, peak)


def test_patches_are_the_grid_windows_row_by_row():
    """The dense sampling (a strided window view) yields each 8x8 window of the stride-3 grid
    with its rows, columns and channels in place, in row-major order of the grid."""
    from ddn_cli.noise import _patches

    img = np.arange(20 * 23 * 3, dtype=np.uint16).reshape(20, 23, 3)
    pt = _patches(img, 8, 3, 10**6, np.random.default_rng(0))
    want = [img[y:y + 8, x:x + 8] for y in range(0, 13, 3) for x in range(0, 16, 3)]
    assert pt.shape == (len(want), 8, 8, 3) and np.array_equal(pt, np.stack(want))


@pytest.mark.parametrize("sigma", [0, 5, 15, 25])
def test_grey_estimate_is_not_thrown_by_texture(sigma):
    """Grey images were measured on 64-dim patches, too few for the PCA to find a subspace
    free of texture: a clean grey photo read sigma 2-9 (Kodak24, CamVid), and was then blurred."""
    data = pytest.importorskip("skimage.data")
    g = data.camera()[..., None].astype(np.float64)  # 512 x 512 grey, textured
    rng = np.random.default_rng(sigma)
    n = np.clip(np.rint(g + rng.normal(0, sigma, g.shape)), 0, 255).astype(np.uint8)
    est = estimate_sigma(n)
    assert abs(est - sigma) < (1.5 if sigma == 0 else 0.1 * sigma + 0.5), est


def test_grey_images_are_denoised_with_noise_independent_per_channel():
    """A grey image replicated to RGB has the same noise in all three channels, which the
    colour model (trained on independent noise) barely removed: Kodak24 grey at sigma 25
    gained 4.7 dB, against 9.8 now that noise is added in the chroma directions."""
    data = pytest.importorskip("skimage.data")
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.evaluation.metrics import psnr
    from ddn_cli.io import ImageData
    from ddn_cli.pipeline import chroma_field, denoise_image
    from ddn_cli.registry import resolve_weights

    den = Denoiser.load(resolve_weights(None), device="cpu", precision="fp32")
    g = data.camera()[128:384, 128:384, None]
    rng = np.random.default_rng(0)
    noisy = np.clip(np.rint(g + rng.normal(0, 25, g.shape)), 0, 255).astype(np.uint8)
    out, used = denoise_image(ImageData(noisy, None, 8, "png"), den, sigma=25, tile=512, overlap=48, batch_size=1)
    # the same image replicated as it was before, the model told sqrt(3) x sigma
    rep = np.repeat(noisy.astype(np.float32) / 255, 3, axis=2)[None]
    old = np.clip(np.rint(den(rep, 25 * 3 ** 0.5)[0].mean(axis=2, keepdims=True) * 255), 0, 255).astype(np.uint8)
    assert psnr(out.color, g) > psnr(old, g) + 2.0 and psnr(out.color, g) > psnr(noisy, g) + 7.0
    again, _ = denoise_image(ImageData(noisy, None, 8, "png"), den, sigma=25, tile=512, overlap=48, batch_size=1)
    assert np.array_equal(again.color, out.color)  # repeatable
    f = chroma_field(64, 80)
    assert np.abs(f.sum(axis=2)).max() < 1e-5 and abs(f.var() * 3 / 2 - 1) < 0.05 and not f.flags.writeable


def test_sampled_patches_are_the_grid_windows_at_the_drawn_positions():
    """Large images are sampled: each patch is the 8x8 window at a grid position drawn by the
    generator (rows first, then columns), gathered whole rather than pixel by pixel."""
    from ddn_cli.noise import _patches

    img = np.random.default_rng(1).integers(0, 65536, (61, 50, 3), dtype=np.uint16)
    pt = _patches(img, 8, 3, 40, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    yy, xx = rng.integers(0, (61 - 8) // 3 + 1, 40), rng.integers(0, (50 - 8) // 3 + 1, 40)
    want = np.stack([img[3 * y:3 * y + 8, 3 * x:3 * x + 8] for y, x in zip(yy, xx)])
    assert pt.shape == (40, 8, 8, 3) and np.array_equal(pt, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_clipping_is_judged_on_the_integers_as_on_the_0_255_scale(dtype):
    """Patches touching clipping (within half a step of 0 or 255 on the 0-255 scale) are
    found before anything is converted: the same patches as converting first, at the edges too."""
    from ddn_cli.noise import _touches_clipping

    top = np.iinfo(dtype).max
    scale = 1.0 if dtype == np.uint8 else 257.0
    edges = [0, 1, 127, 128, 129, 130, top - 129, top - 128, top - 127, top - 1, top]
    rng = np.random.default_rng(0)
    pt = rng.integers(200, 400 if dtype == np.uint16 else 250, (len(edges) * 3, 4, 4, 3)).astype(dtype)
    for i, v in enumerate(edges * 3):
        pt[i, i % 4, (i // 4) % 4, i % 3] = v
    want = ((pt / scale <= 0.5) | (pt / scale >= 254.5)).any(axis=(1, 2, 3))
    got = _touches_clipping(pt)
    assert np.array_equal(got, want) and got.any() and not got.all()
    assert np.array_equal(_touches_clipping(pt.astype(np.float32) / np.float32(top)), want)
