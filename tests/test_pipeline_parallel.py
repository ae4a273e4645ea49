"""Folder runs on a CPU denoise small images several at a time: same outputs, same order,
failures in place, thread count restored."""

import numpy as np
import pytest
import torch
from conftest import noisy, smooth_image
from PIL import Image

import ddn_cli.pipeline as pl
from ddn_cli.descriptor import Denoiser
from ddn_cli.io import Job
from ddn_cli.registry import resolve_weights


@pytest.fixture(scope="module")
def den():
    return Denoiser.load(resolve_weights(None), device="cpu", precision="fp32")


def make_folder(root, sizes):
    root.mkdir()
    jobs = []
    for i, (h, w) in enumerate(sizes):
        p = root / f"{i:02d}.png"
        if (h, w) == (0, 0):
            p.write_bytes(b"\x89PNG\r\n\x1a\n broken")  # unreadable
        else:
            Image.fromarray(noisy(smooth_image(h, w, seed=i), 25, seed=i)).save(p)
        jobs.append(Job(p, root.parent / f"out_{root.name}" / p.name))
    return jobs


def run_on_threads(jobs, den, threads=2, **opts):
    """``pl.process`` over ``jobs`` with torch set to ``threads`` threads (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return list(pl.process(jobs, den, pl.DenoiseOptions(sigma=25, **opts)))
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [2, 3])
def test_parallel_folder_run_matches_one_at_a_time(tmp_path, den, monkeypatch, threads):
    # mixed sizes: small ones run several at a time, "large" ones (over the limit, lowered
    # here) alone on every thread; an unreadable file in the middle fails in its place
    monkeypatch.setattr(pl, "PARALLEL_MAX_PIXELS", 3000)
    sizes = [(40, 56), (36, 44), (64, 80), (30, 30), (0, 0), (48, 40), (70, 70), (20, 24), (44, 52)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        seen_threads = []
        real = pl.denoise_image

        def spy(*a, **k):
            seen_threads.append(torch.get_num_threads())
            by_shape.setdefault(a[0].shape, []).append(torch.get_num_threads())
            return real(*a, **k)

        by_shape = {}

        monkeypatch.setattr(pl, "denoise_image", spy)
        jobs_p = make_folder(tmp_path / "p", sizes)
        res_p = list(pl.process(jobs_p, den, pl.DenoiseOptions(sigma=25)))
        assert torch.get_num_threads() == threads  # restored
        jobs_s = make_folder(tmp_path / "s", sizes)
        res_s = list(pl.process(jobs_s, den, pl.DenoiseOptions(sigma=25, workers=1)))
    finally:
        torch.set_num_threads(before)
    assert [r.input for r in res_p] == [str(j.src) for j in jobs_p]  # input order kept
    assert [r.status for r in res_p] == [r.status for r in res_s] == ["ok"] * 4 + ["failed"] + ["ok"] * 4
    small = [h * w <= 3000 for h, w in sizes if h]
    assert max(seen_threads) == threads and min(seen_threads) == max(1, threads // min(threads, 4))
    assert len(seen_threads) == 2 * len(small)
    # small images with no small neighbour to run beside (next to large or unreadable ones) keep
    # every thread; the pairs at the start and the end share them
    assert by_shape[(30, 30)][0] == threads and by_shape[(48, 40)][0] == threads
    assert by_shape[(40, 56)][0] == by_shape[(44, 52)][0] == 1
    for jp, js, (h, w) in zip(jobs_p, jobs_s, sizes):
        if h == 0:
            assert not jp.dst.exists()
            continue
        a = np.asarray(Image.open(jp.dst)).astype(int)
        b = np.asarray(Image.open(js.dst)).astype(int)
        assert np.abs(a - b).max() <= 1  # thread count may change float rounding, nothing else


def test_image_workers_default(den):
    assert pl.image_workers(den, 3) == 3
    assert pl.image_workers(den) == max(1, min(torch.get_num_threads(), pl.MAX_IMAGE_WORKERS))

    class Gpu:
        device = torch.device("cuda")

    assert pl.image_workers(Gpu()) == 1


def test_interrupt_in_parallel_mode_keeps_finished_writes(tmp_path, den, monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        jobs = make_folder(tmp_path / "p", [(40, 56)] * 6)
        sink = []
        gen = pl.process(jobs, den, pl.DenoiseOptions(sigma=25, workers=2), sink=sink)
        first = next(gen)
        gen.close()  # what the CLI does on Ctrl-C
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert first.status == "ok" and first in sink
    written = sorted(p.name for p in (tmp_path / "out_p").iterdir())
    assert all(not n.startswith(".") for n in written)  # no temp files left
    assert len(written) == len([r for r in sink if r.status == "ok"])  # every file written is recorded


def test_a_single_small_image_keeps_every_thread(tmp_path, den, monkeypatch):
    seen = []
    real = pl.denoise_image
    monkeypatch.setattr(pl, "denoise_image", lambda *a, **k: (seen.append(torch.get_num_threads()), real(*a, **k))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        jobs = make_folder(tmp_path / "one", [(40, 56)])
        (r,) = list(pl.process(jobs, den, pl.DenoiseOptions(sigma=25)))
    finally:
        torch.set_num_threads(before)
    assert r.status == "ok" and seen == [2]


def test_pooled_files_are_written_by_the_writer_thread_in_order(tmp_path, den, monkeypatch):
    # pool threads only denoise and encode; every write (temp file, fsync, rename) happens on
    # the single writer thread, one file at a time in input order, so an fsync never idles a core
    import ddn_cli.io as io_mod

    order, threads_seen = [], set()
    real = io_mod.write_atomic

    def spy(path, data, **kw):
        import threading

        threads_seen.add(threading.current_thread().name.rsplit("_", 1)[0])
        order.append(path.name)
        return real(path, data, **kw)

    monkeypatch.setattr(pl, "write_atomic", spy)
    jobs = make_folder(tmp_path / "p", [(40, 56)] * 7)
    res = run_on_threads(jobs, den, workers=2)
    assert [r.status for r in res] == ["ok"] * 7
    assert threads_seen == {"ddn-write"}
    assert order == [j.dst.name for j in jobs]
    assert all(r.sigma == 25 and r.megapixels > 0 for r in res)


def test_a_pool_thread_takes_the_next_image_while_the_oldest_is_still_running(tmp_path, den, monkeypatch):
    # the oldest image is settled first (to keep the order); one more job than threads is queued,
    # so the thread that finished early starts the third image instead of idling. Here the
    # first image only finishes once the third has started: with no job queued it never would.
    import threading

    third_started = threading.Event()
    calls = []
    lock = threading.Lock()
    real = pl.denoise_image

    def spy(img, *a, **k):
        with lock:
            n = len(calls)
            calls.append(n)
        if n == 2:
            third_started.set()
        if n == 0:
            assert third_started.wait(15), "the third image never started while the first ran"
        return real(img, *a, **k)

    monkeypatch.setattr(pl, "denoise_image", spy)
    jobs = make_folder(tmp_path / "p", [(40, 56)] * 4)
    res = run_on_threads(jobs, den, workers=2)
    assert third_started.is_set() and [r.status for r in res] == ["ok"] * 4


def test_a_pooled_encoder_failure_fails_that_file_in_place(tmp_path, den, monkeypatch):
    from ddn_cli.errors import OutputError

    real = pl.encode_output

    def flaky(dst, *a, **k):
        if dst.name == "02.png":
            raise OutputError(f"{dst}: the image encoder failed (simulated)", "try another output format")
        return real(dst, *a, **k)

    monkeypatch.setattr(pl, "encode_output", flaky)
    jobs = make_folder(tmp_path / "p", [(40, 56)] * 5)
    res = run_on_threads(jobs, den, workers=2)
    assert [r.status for r in res] == ["ok", "ok", "failed", "ok", "ok"]
    assert "02.png" in res[2].error and "encoder failed" in res[2].error
    assert not jobs[2].dst.exists() and all(j.dst.exists() for k, j in enumerate(jobs) if k != 2)
    assert sorted(p.name for p in jobs[0].dst.parent.iterdir()) == ["00.png", "01.png", "03.png", "04.png"]
