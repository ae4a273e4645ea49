"""Small images of varied sizes reuse the shapes already run (shapes.py): the choice, the
padding, and a folder run through the real model."""

import numpy as np
import pytest
import torch
from conftest import noisy, smooth_image
from PIL import Image

import ddn_cli.pipeline as pl
from ddn_cli.descriptor import Denoiser
from ddn_cli.io import ImageData, Job
from ddn_cli.registry import resolve_weights
from ddn_cli.shapes import ShapeMemo, own_shape, pick_shape


def test_own_shape_rounds_up_to_the_alignment():
    assert own_shape(37, 40, 4) == (40, 40)
    assert own_shape(33, 65, 32) == (64, 96)


def test_pick_shape_reuses_the_smallest_shape_that_holds_the_image_within_the_budget():
    seen = [(300, 400), (260, 340), (100, 100)]
    assert pick_shape(250, 330, seen) == (260, 340)  # both hold it: the smaller one
    assert pick_shape(250, 350, seen) == (300, 400)  # (260, 340) is too narrow
    assert pick_shape(260, 340, seen) == (260, 340)  # its own shape, already run
    # (300, 400) would add 50% to a 240 x 340 image: over the 40% budget, so its own shape
    assert pick_shape(240, 340, [(300, 400)]) == (240, 340)
    assert pick_shape(240, 340, [(300, 400)], max_extra=0.5) == (300, 400)
    assert pick_shape(101, 90, seen) == (104, 92)  # taller than (100, 100)
    assert pick_shape(50, 50, []) == (52, 52)
    assert pick_shape(50, 50, [], align=2) == (50, 50)
    assert pick_shape(50, 50, [(52, 52)], align=2) == (52, 52)


def test_memo_records_in_order_and_repeats_itself():
    sizes = [(250, 330), (240, 320), (300, 390), (255, 335), (201, 301), (299, 399)]
    m1, m2 = ShapeMemo(), ShapeMemo()
    picks = [m1.choose(h, w) for h, w in sizes]
    assert picks == [m2.choose(h, w) for h, w in sizes]
    # (201, 301) fits in (252, 332) with 35% more pixels; (299, 399) in neither
    assert picks == [(252, 332), (252, 332), (300, 392), (300, 392), (252, 332), (300, 400)]
    assert m1.shapes == [(252, 332), (300, 392), (300, 400)]


def test_pad_reflect_mirrors_without_repeating_the_edge_and_falls_back_to_edge_rows():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    p = pl.pad_reflect(a, (5, 6))
    assert p.shape == (5, 6, 1) and p.dtype == np.uint8
    assert (p[:3, :4] == a).all()
    assert (p[3, :4, 0] == a[1, :, 0]).all() and (p[:3, 4, 0] == a[:, 2, 0]).all()
    wide = pl.pad_reflect(a, (3, 9))  # 5 more columns than a 4-wide image can mirror
    assert (wide[:, 4:, 0] == a[:, 3:4, 0]).all()


@pytest.fixture(scope="module")
def den():
    return Denoiser.load(resolve_weights(None), device="cpu", precision="fp32")


def test_run_shape_pads_and_crops_back(den):
    img = noisy(smooth_image(50, 70, seed=3), 25, seed=3)
    alpha = np.full((50, 70), 200, np.uint8)
    data = ImageData(color=img, alpha=alpha, bits=8, format="png")
    seen = []
    real = den.model.forward

    def spy(x, *a, **k):
        seen.append(tuple(x.shape[-2:]))
        return real(x, *a, **k)

    den.model.forward = spy
    try:
        own, _ = pl.denoise_image(data, den, sigma=25, tile=512, overlap=48, batch_size=1)
        padded, _ = pl.denoise_image(data, den, sigma=25, tile=512, overlap=48, batch_size=1, run_shape=(64, 96))
        tiled, _ = pl.denoise_image(data, den, sigma=25, tile=60, overlap=16, batch_size=1, run_shape=(64, 96))
    finally:
        del den.model.forward
    assert seen[:2] == [(50, 70), (64, 96)]  # the second ran at the shape asked for
    assert (64, 96) not in seen[2:] and tiled.color.shape == img.shape  # larger than the tile: ignored
    assert padded.color.shape == img.shape and padded.color.flags.c_contiguous
    assert padded.alpha is alpha
    a, b = own.color.astype(int), padded.color.astype(int)
    # only what lies near the bottom and right edges can change
    assert np.abs(a[:30, :50] - b[:30, :50]).max() <= 1
    assert not np.array_equal(a, b)
    mse = np.mean((a - b) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 35


@pytest.mark.parametrize("size", [(10, 10), (9, 14), (50, 70), (61, 81)])
def test_an_image_at_its_own_shape_is_left_to_the_network(den, size):
    # the network pads to its multiple itself (and tiny images further, to 16 px): asked to
    # run at that rounded-up shape, denoise_image gives exactly what it gives unasked
    h, w = size
    data = ImageData(color=noisy(smooth_image(h, w, seed=5), 25, seed=5), alpha=None, bits=8, format="png")
    plain, _ = pl.denoise_image(data, den, sigma=25, tile=512, overlap=48, batch_size=1)
    own, _ = pl.denoise_image(data, den, sigma=25, tile=512, overlap=48, batch_size=1,
                              run_shape=own_shape(h, w, den.size_multiple))
    assert np.array_equal(plain.color, own.color)


def test_folder_of_varied_sizes_reuses_shapes_and_outputs_match(tmp_path, den, monkeypatch):
    sizes = [(60, 80), (56, 76), (64, 84), (58, 70), (61, 81), (40, 40)]
    root = tmp_path / "in"
    root.mkdir()
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(noisy(smooth_image(h, w, seed=i), 25, seed=i)).save(root / f"{i}.png")
    shapes_run = []
    real = pl.denoise_image

    def spy(img, *a, run_shape=None, **k):
        shapes_run.append(run_shape)
        return real(img, *a, run_shape=run_shape, **k)

    monkeypatch.setattr(pl, "denoise_image", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        outs = {}
        for reuse in (True, False):
            jobs = [Job(p, tmp_path / f"out_{reuse}" / p.name) for p in sorted(root.glob("*.png"))]
            res = list(pl.process(jobs, den, pl.DenoiseOptions(sigma=25, reuse_shapes=reuse)))
            assert [r.status for r in res] == ["ok"] * len(sizes)
            outs[reuse] = [np.asarray(Image.open(j.dst)).astype(int) for j in jobs]
    finally:
        torch.set_num_threads(before)
    assert shapes_run[:6] == [(60, 80), (60, 80), (64, 84), (60, 80), (64, 84), (40, 40)]
    assert shapes_run[6:] == [None] * 6  # --no-reuse-shapes: every image at its own shape
    for (h, w), a, b in zip(sizes, outs[True], outs[False]):
        assert a.shape == b.shape == (h, w, 3)
        assert np.abs(a[: h - 24, : w - 24] - b[: h - 24, : w - 24]).max() <= 1


def test_cli_reuse_shapes_flag(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ddn_cli.cli.app import app

    root = tmp_path / "in"
    root.mkdir()
    for i, (h, w) in enumerate([(40, 56), (38, 52)]):
        Image.fromarray(noisy(smooth_image(h, w, seed=i), 25, seed=i)).save(root / f"{i}.png")
    got = []
    real = pl.process

    def spy(jobs, den, opts, *a, **k):
        got.append(opts.reuse_shapes)
        return real(jobs, den, opts, *a, **k)

    monkeypatch.setattr(pl, "process", spy)
    for flag, want in (([], True), (["--no-reuse-shapes"], False)):
        r = CliRunner().invoke(app, ["denoise", str(root), str(tmp_path / f"out{want}"), "--sigma", "25", "-q", *flag])
        assert r.exit_code == 0, r.output
        assert got[-1] is want
        assert len(list((tmp_path / f"out{want}").glob("*.png"))) == 2


def test_shapes_are_not_reused_on_a_gpu(tmp_path, den, monkeypatch):
    # on a GPU each shape costs no kernel build worth avoiding, and tiles are blended on the
    # device: every image runs at its own shape. A CPU denoiser dressed as a CUDA one.
    class OnCuda:
        device = torch.device("cuda")

        def __getattr__(self, name):
            return getattr(den, name)

    shapes_run = []
    real = pl.denoise_image

    def spy(img, _den, *a, run_shape=None, device_blend=None, **k):
        shapes_run.append(run_shape)
        return real(img, den, *a, run_shape=run_shape, device_blend=False, **k)

    monkeypatch.setattr(pl, "denoise_image", spy)
    root = tmp_path / "in"
    root.mkdir()
    for i, (h, w) in enumerate([(60, 80), (56, 76), (58, 70)]):
        Image.fromarray(noisy(smooth_image(h, w, seed=i), 25, seed=i)).save(root / f"{i}.png")
    jobs = [Job(p, tmp_path / "out" / p.name) for p in sorted(root.glob("*.png"))]
    res = list(pl.process(jobs, OnCuda(), pl.DenoiseOptions(sigma=25)))
    assert [r.status for r in res] == ["ok"] * 3
    assert shapes_run == [None, None, None]
