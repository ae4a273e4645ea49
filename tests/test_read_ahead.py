"""The first input read while the model loads (``read_ahead``): used by ``process`` only
for the job it was started for, with the same pixel limit; its errors fail that file."""

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
from conftest import noisy, smooth_image
from PIL import Image

import ddn_cli.pipeline as pl
from ddn_cli.descriptor import Denoiser
from ddn_cli.io import Job
from ddn_cli.registry import resolve_weights


@pytest.fixture(scope="module")
def den():
    return Denoiser.load(resolve_weights(None), device="cpu", precision="fp32")


def folder(root, n, broken=()):
    root.mkdir()
    jobs = []
    for i in range(n):
        p = root / f"{i}.png"
        if i in broken:
            p.write_bytes(b"\x89PNG\r\n\x1a\n broken")
        else:
            Image.fromarray(noisy(smooth_image(40, 48, seed=i), 25, seed=i)).save(p)
        jobs.append(Job(p, root.parent / "out" / p.name))
    return jobs


def counting_reads(monkeypatch):
    seen = []
    real = pl.read_image
    monkeypatch.setattr(pl, "read_image", lambda src, *a, **k: (seen.append(src.name), real(src, *a, **k))[1])
    return seen


def test_first_to_do_skips_existing_outputs(tmp_path):
    jobs = folder(tmp_path / "in", 3)
    jobs[0].dst.parent.mkdir()
    jobs[0].dst.write_bytes(b"done")
    assert pl.first_to_do(jobs, overwrite=False) is jobs[1]
    assert pl.first_to_do(jobs, overwrite=True) is jobs[0]
    for j in jobs:
        j.dst.write_bytes(b"done")
    assert pl.first_to_do(jobs, overwrite=False) is None


def test_the_read_ahead_replaces_the_first_read(tmp_path, den, monkeypatch):
    jobs = folder(tmp_path / "in", 3)
    seen = counting_reads(monkeypatch)
    ahead = pl.read_ahead(jobs[0])
    ahead.future.result(timeout=30)
    assert seen == ["0.png"]
    res = list(pl.process(jobs, den, pl.DenoiseOptions(sigma=25), ahead=ahead))
    assert [r.status for r in res] == ["ok"] * 3
    assert seen == ["0.png", "1.png", "2.png"]  # the first file was read once
    plain = tmp_path / "plain"
    again = [Job(j.src, plain / j.src.name) for j in jobs]
    list(pl.process(again, den, pl.DenoiseOptions(sigma=25)))
    for j, k in zip(jobs, again):
        assert np.array_equal(np.asarray(Image.open(j.dst)), np.asarray(Image.open(k.dst)))


@pytest.mark.parametrize("mismatch", ["other job", "other limit"])
def test_a_read_ahead_that_does_not_match_is_ignored(tmp_path, den, monkeypatch, mismatch):
    jobs = folder(tmp_path / "in", 2)
    seen = counting_reads(monkeypatch)
    if mismatch == "other job":
        ahead = pl.read_ahead(jobs[1])
    else:
        ahead = pl.read_ahead(jobs[0], max_pixels=10)  # would fail: over the limit
    ahead.future.exception(timeout=30)
    res = list(pl.process(jobs, den, pl.DenoiseOptions(sigma=25), ahead=ahead))
    assert [r.status for r in res] == ["ok", "ok"]
    assert seen.count("0.png") == (1 if mismatch == "other job" else 2)


def test_a_failed_read_ahead_fails_that_file_only(tmp_path, den):
    jobs = folder(tmp_path / "in", 2, broken={0})
    ahead = pl.read_ahead(jobs[0])
    res = list(pl.process(jobs, den, pl.DenoiseOptions(sigma=25), ahead=ahead))
    assert [r.status for r in res] == ["failed", "ok"]
    assert "0.png" in res[0].error
    assert not jobs[0].dst.exists() and jobs[1].dst.exists()


@pytest.mark.parametrize("used", [True, False])
def test_the_run_does_not_keep_the_read_ahead_image(tmp_path, den, used):
    jobs = folder(tmp_path / "in", 3)
    ahead = pl.read_ahead(jobs[0] if used else jobs[1])
    ref = weakref.ref(ahead.future.result(timeout=30))
    res = list(pl.process(jobs, den, pl.DenoiseOptions(sigma=25), ahead=ahead))
    assert [r.status for r in res] == ["ok"] * 3
    gc.collect()
    assert ahead.future is None and ref() is None  # the caller's ReadAhead holds no image


def test_an_unexpected_decoder_failure_fails_that_file_only(tmp_path, den, monkeypatch):
    from ddn_cli import io, pngread

    real = io._decode_8bit
    monkeypatch.setattr(pngread, "worth_trying", lambda head, max_pixels: False)  # Pillow's path (the fast one: test_pngread)

    def flaky(im, path, icc=None, depth=None):
        if path.name == "1.png":
            raise MemoryError
        if path.name == "2.png":
            raise RuntimeError("decoder bug")
        return real(im, path, icc, depth)

    monkeypatch.setattr(io, "_decode_8bit", flaky)
    jobs = folder(tmp_path / "in", 4)
    res = list(pl.process(jobs, den, pl.DenoiseOptions(sigma=25), ahead=pl.read_ahead(jobs[0])))
    assert [r.status for r in res] == ["ok", "failed", "failed", "ok"]
    assert "1.png: not enough memory to decode 48x40" in res[1].error
    assert "2.png: cannot decode (RuntimeError: decoder bug)" in res[2].error
    assert not jobs[1].dst.exists() and not jobs[2].dst.exists() and jobs[3].dst.exists()


@pytest.mark.parametrize("where", ["after the write's record", "before process() keeps it"])
def test_an_interrupt_just_after_a_write_still_records_it(tmp_path, den, monkeypatch, where):
    """A signal can land after an output was renamed into place but before its record reached
    the caller's sink (the CI saw this once: a report one file short). The writer thread lists
    every output it put in place, and an interrupt adds what the sink lacks."""
    real = pl._finish_write
    calls = []

    def finish_then_interrupt(fut, res):
        done = real(fut, res)
        calls.append(done)
        if len(calls) == 2 and where == "after the write's record":
            raise KeyboardInterrupt  # inside _process, before the record is yielded
        return done

    monkeypatch.setattr(pl, "_finish_write", finish_then_interrupt)
    jobs = folder(tmp_path / "in", 5)
    sink: list = []
    gen = pl.process(jobs, den, pl.DenoiseOptions(sigma=25, workers=1), sink=sink)
    with pytest.raises(KeyboardInterrupt):
        for i, r in enumerate(gen):
            if i == 1 and where == "before process() keeps it":
                sink.pop()  # as if the signal fell between receiving it and appending it
                raise KeyboardInterrupt
    gen.close()
    written = sorted(j.dst.name for j in jobs if j.dst.exists())
    assert len(written) >= 2
    assert sorted(Path(r.output).name for r in sink if r.status == "ok") == written


def test_finish_waits_for_the_reading_thread_but_not_for_ever(tmp_path, monkeypatch):
    """An interrupt during the model load ended the process while the daemon read-ahead
    thread was still in OpenCV's C++: std::terminate, exit 134 and a core dump. The CLI now
    waits for it (``finish``), bounded, so that a thread stuck for good cannot hang the exit."""
    import threading
    import time

    Image.fromarray(smooth_image(16, 16)).save(tmp_path / "a.png")
    job = Job(tmp_path / "a.png", tmp_path / "o.png")

    def slow(*a, **k):
        time.sleep(0.4)
        return "decoded"

    monkeypatch.setattr(pl, "read_image", slow)
    ahead = pl.read_ahead(job)
    ahead.finish()
    assert not ahead.thread.is_alive() and ahead.take().result(0) == "decoded"
    stuck = threading.Event()
    monkeypatch.setattr(pl, "read_image", lambda *a, **k: stuck.wait())
    ahead = pl.read_ahead(job)
    t = time.perf_counter()
    ahead.finish(timeout=0.3)
    assert 0.25 < time.perf_counter() - t < 2 and ahead.thread.daemon and ahead.thread.is_alive()
    stuck.set()
