import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddn_cli.tiling import _batches, plan_tiles, run_tiled, weight_sum


@settings(max_examples=int(__import__("os").environ.get("DDN_FUZZ_EXAMPLES", "150")), deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), tile=st.integers(8, 128), data=st.data())
def test_plan_covers_image_and_weights_sum_to_one(h, w, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    rows = plan_tiles(h, w, tile, overlap)
    cover = np.zeros((h, w), int)
    for row in rows:
        for t in row:
            assert 0 <= t.y0 < t.y1 <= h and 0 <= t.x0 < t.x1 <= w
            assert t.h <= tile and t.w <= tile
            assert t.y0 % 4 == 0 and t.x0 % 4 == 0
            cover[t.y0:t.y1, t.x0:t.x1] += 1
    assert cover.min() >= 1
    ws = weight_sum(h, w, tile, overlap)
    assert np.allclose(ws, 1.0, atol=1e-9)
    src = np.random.default_rng(0).random((h, w, 2)).astype(np.float32)
    out = run_tiled(src, lambda b: b * 2.0, tile=tile, overlap=overlap, batch_size=3)
    assert out.shape == src.shape
    assert np.allclose(out, src * 2.0, atol=1e-5)


def test_bad_tiling_rejected():
    with pytest.raises(ValueError):
        plan_tiles(10, 10, 16, 16)
    with pytest.raises(ValueError):
        plan_tiles(0, 10, 16, 4)
    # a tile smaller than the alignment stepped by the alignment and left pixels uncovered
    # (plan_tiles(1, 10, 3, 0, align=8) gave x 0-3 and 8-10): refused
    with pytest.raises(ValueError, match="align"):
        plan_tiles(1, 10, 3, 0, align=8)
    with pytest.raises(ValueError, match="align"):
        plan_tiles(10, 10, 8, 0, align=0)


def test_tiled_equals_untiled_with_the_shipped_model(default_weights):
    """The shipped model, tiled with the default overlap, matches a single pass within 1/255."""
    from conftest import noisy, smooth_image

    from ddn_cli.demo import sample_path
    from ddn_cli.descriptor import Denoiser

    den = Denoiser.load(default_weights, device="cpu", precision="fp32")
    from ddn_cli.pipeline import auto_tile

    try:  # a real photo (scikit-image's sample, a test dependency), else a synthetic one
        photo = np.asarray(__import__("PIL.Image", fromlist=["x"]).open(sample_path("astronaut")))
        clean = np.concatenate([np.concatenate([photo, photo[:, ::-1]], 1)] * 2, 0)[:900, :1000]
    except Exception:
        clean = smooth_image(900, 1000, seed=3)
    img = noisy(clean, 25).astype(np.float32) / 255
    whole = den(img[None], 25.0)[0]
    tile, _ = auto_tile("cpu")  # the defaults: 512 px tiles, 48 px overlap
    tiled = run_tiled(img, lambda b: den(b, 25.0), tile=tile, overlap=den.overlap, batch_size=1)
    diff = np.abs(tiled - whole)
    assert diff.max() <= 1 / 255, diff.max()
    assert diff.mean() < 0.1 / 255  # seams are rare and tiny
    # as `ddn denoise` runs it: the model told on which tile sides it must be exact (the image's
    # edges; here every inner side is overlapped by 48 px, blend weight ~0.0013 at its outermost
    # pixels), skipping the exact border ring on the others: as close to the single pass
    fast = run_tiled(img, lambda b, e: den(b, 25.0, e), tile=tile, overlap=den.overlap, batch_size=1, sides=True)
    d2 = np.abs(fast - whole)
    assert d2.max() <= 1 / 255, d2.max()
    assert d2.mean() < 1.1 * diff.mean() + 1e-6
    assert not np.array_equal(fast, tiled)  # the inner rings were really skipped


def test_run_tiled_tells_fn_which_tile_sides_must_be_exact():
    """sides=True: fn hears, per batch, the sides where some tile lies on the image's edge or is
    overlapped by less than SKIP_OVERLAP px (there its outermost pixels count in the blend)."""
    from ddn_cli.tiling import SKIP_OVERLAP, window_extents

    h, w = 200, 260
    seen = []

    def fn(b, exact):
        seen.append((b.shape[1:3], exact))
        return b

    src = np.random.default_rng(1).random((h, w, 3)).astype(np.float32)
    out = run_tiled(src, fn, tile=96, overlap=SKIP_OVERLAP, batch_size=1, sides=True)
    assert np.allclose(out, src, atol=1e-6)
    rows = plan_tiles(h, w, 96, SKIP_OVERLAP)
    edges = [(t.y0 == 0, t.y1 == h, t.x0 == 0, t.x1 == w) for row in rows for t in row]
    assert [e for _, e in seen] == edges  # overlaps of SKIP_OVERLAP or more: only the image's edges
    assert (False, False, False, False) in edges and all(any(e) for e in edges[:len(rows[0])])
    seen.clear()  # batched: a side must be exact if it must for any tile of the batch
    n = len(rows[0])
    run_tiled(src, fn, tile=96, overlap=SKIP_OVERLAP, batch_size=n, sides=True)
    want = [tuple(any(f) for f in zip(*[(t.y0 == 0, t.y1 == h, t.x0 == 0, t.x1 == w) for t in batch]))
            for row in rows for batch in _batches(row, n)]
    assert [e for _, e in seen] == want and not all(all(e) for e in want)
    for overlap in (0, SKIP_OVERLAP // 2):  # thin or no overlaps: every side exact, seams would show
        seen.clear()
        run_tiled(src, fn, tile=96, overlap=overlap, batch_size=1, sides=True)
        thin = plan_tiles(h, w, 96, overlap)
        assert all(min(window_extents(t, thin)) < SKIP_OVERLAP for row in thin for t in row)
        assert all(all(e) for _, e in seen)


def test_run_tiled_memory_is_strip_bounded():
    """Each call to fn only sees tiles, never the whole image."""
    seen = []
    src = np.zeros((300, 200, 3), np.float32)

    def fn(b):
        seen.append(b.shape)
        return b

    run_tiled(src, fn, tile=64, overlap=16, batch_size=2)
    assert max(s[1] for s in seen) <= 64 and max(s[2] for s in seen) <= 64
    assert max(s[0] for s in seen) <= 2


@pytest.mark.parametrize("shape,tile", [((40, 52, 3), 64), ((150, 170, 3), 64)])  # one tile / many
def test_scratch_reuse_never_touches_the_input_or_the_model_output_it_does_not_own(shape, tile):
    # run_tiled weights fn's results in place and hands from_float rows it may overwrite; a
    # to_float that returns a view of the input and an fn that returns its input (or a
    # read-only array) must still leave the input as it was and give the same output
    src = np.random.default_rng(1).random(shape).astype(np.float32)
    before = src.copy()
    seen = []

    def from_float(f):
        f *= 2.0  # overwrites its scratch rows
        return f

    ident = run_tiled(src, lambda b: b, tile=tile, overlap=16, to_float=lambda a: a, from_float=from_float)

    def frozen(b):
        b = b.copy()
        b.setflags(write=False)
        seen.append(b)
        return b

    ro = run_tiled(src, frozen, tile=tile, overlap=16, to_float=lambda a: a, from_float=from_float)
    assert np.array_equal(src, before)
    assert all(not b.flags.writeable for b in seen) and all(np.isfinite(b).all() for b in seen)
    assert np.allclose(ident, before * 2.0, atol=1e-5) and np.array_equal(ident, ro)


def test_a_lone_tile_is_returned_unblended_to_the_bit():
    src = np.random.default_rng(2).random((48, 60, 3)).astype(np.float32)
    assert np.array_equal(run_tiled(src, lambda b: b * 3.0, tile=64, overlap=16), src * 3.0)
