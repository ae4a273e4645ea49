"""Storage that refuses every write (a full disk, a quota, a read-only file system) stops a
denoise run at the first refused output: the images after it are not denoised only to fail,
the outputs already written stay, no partial file is left, and the rerun finishes the rest."""

import errno
import json
import os

import pytest
import torch
from conftest import no_partial_files, noisy, smooth_image
from PIL import Image
from typer.testing import CliRunner

import ddn_cli.io as dio
import ddn_cli.pipeline as pl
from ddn_cli.cli.app import app
from ddn_cli.errors import RunStopped

runner = CliRunner()
REAL_FSYNC = os.fsync


def make_folder(root, n, size=(40, 48)):
    root.mkdir()
    for i in range(n):
        Image.fromarray(noisy(smooth_image(*size, seed=i), 25, seed=i)).save(root / f"{i:02d}.png")


def refuse_after(monkeypatch, n_ok: int, err: int):
    """Let ``n_ok`` outputs be fsynced, then refuse every later one with ``err``."""
    real = REAL_FSYNC
    count = {"n": 0}

    def fsync(fd):
        count["n"] += 1
        if count["n"] > n_ok:
            raise OSError(err, os.strerror(err))
        return real(fd)

    monkeypatch.setattr(dio.os, "fsync", fsync)


def count_denoises(monkeypatch):
    calls = []
    real = pl.denoise_image

    def spy(*a, **k):
        calls.append(a[0].shape)
        return real(*a, **k)

    monkeypatch.setattr(pl, "denoise_image", spy)
    return calls


@pytest.mark.parametrize("err,hint", [(errno.ENOSPC, "free some disk space"),
                                      (errno.EROFS, "writable disk"),
                                      (errno.EDQUOT, "quota")])
def test_folder_run_stops_at_refusing_storage(tmp_path, monkeypatch, err, hint):
    make_folder(tmp_path / "in", 16)
    out = tmp_path / "out"
    calls = count_denoises(monkeypatch)
    refuse_after(monkeypatch, 2, err)
    before = torch.get_num_threads()
    rep = tmp_path / "rep.json"
    r = runner.invoke(app, ["denoise", str(tmp_path / "in"), str(out), "--sigma", "25", "--json", "-"])
    assert r.exit_code == 1, r.output
    assert torch.get_num_threads() == before
    msg = r.stderr.replace("\n", " ")
    assert "stopped with" in msg and "not denoised" in msg and hint in msg and "Traceback" not in msg
    # at most the images already in flight beyond the refused one were denoised: not all 16
    assert len(calls) <= 2 + 1 + pl.MAX_IMAGE_WORKERS + 1, len(calls)
    written = sorted(p.name for p in out.rglob("*.png"))
    assert written == ["00.png", "01.png"] and no_partial_files(out)
    doc = json.loads(r.stdout)
    assert doc["stopped"] and "not denoised" in doc["stopped"]
    assert doc["summary"]["ok"] == 2 and doc["summary"]["failed"] == 1
    # the storage has room again: the rerun skips what is there and does the rest
    monkeypatch.setattr(dio.os, "fsync", REAL_FSYNC)
    r = runner.invoke(app, ["denoise", str(tmp_path / "in"), str(out), "--sigma", "25", "--json", str(rep)])
    assert r.exit_code == 0, r.output
    doc = json.loads(rep.read_text())
    assert doc["stopped"] is None and doc["summary"] == {**doc["summary"], "ok": 14, "skipped": 2, "failed": 0}
    assert len(list(out.rglob("*.png"))) == 16


def test_stop_is_said_when_the_report_cannot_be_written_either(tmp_path, monkeypatch):
    make_folder(tmp_path / "in", 4)
    refuse_after(monkeypatch, 1, errno.ENOSPC)  # the report's own write is refused as well
    rep = tmp_path / "rep.json"
    r = runner.invoke(app, ["denoise", str(tmp_path / "in"), str(tmp_path / "out"), "--sigma", "25",
                            "--json", str(rep)])
    msg = r.output.replace("\n", " ")
    assert r.exit_code == 1 and "stopped with" in msg and "rep.json: cannot write" in msg
    assert not rep.exists() and no_partial_files(tmp_path)


def test_other_write_errors_do_not_stop_the_run(tmp_path, monkeypatch):
    # a refusal that is about one file (here EIO on the third) fails that file only
    make_folder(tmp_path / "in", 5)
    real = REAL_FSYNC
    count = {"n": 0}

    def fsync(fd):
        count["n"] += 1
        if count["n"] == 3:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd)

    monkeypatch.setattr(dio.os, "fsync", fsync)
    out = tmp_path / "out"
    r = runner.invoke(app, ["denoise", str(tmp_path / "in"), str(out), "--sigma", "25"])
    assert r.exit_code == 1 and "stopped" not in r.output
    assert len(list(out.rglob("*.png"))) == 4 and no_partial_files(out)


def test_pipeline_raises_run_stopped_with_the_count_left(tmp_path, monkeypatch):
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.io import Job
    from ddn_cli.registry import resolve_weights

    make_folder(tmp_path / "in", 6, size=(32, 32))
    jobs = [Job(p, tmp_path / "out" / p.name) for p in sorted((tmp_path / "in").iterdir())]
    den = Denoiser.load(resolve_weights(None), device="cpu", precision="fp32")
    refuse_after(monkeypatch, 1, errno.ENOSPC)
    sink = []
    with pytest.raises(RunStopped, match=r"stopped with 4 image\(s\) not denoised"):
        for _ in pl.process(jobs, den, pl.DenoiseOptions(sigma=25), sink=sink):
            pass
    assert [r.status for r in sink] == ["ok", "failed"]
    assert "No space left" in sink[1].error


def test_segment_stops_at_refusing_storage(tmp_path, monkeypatch):
    make_folder(tmp_path / "in", 5, size=(48, 64))
    refuse_after(monkeypatch, 2, errno.ENOSPC)  # the first image's mask and overlay
    out = tmp_path / "out"
    r = runner.invoke(app, ["segment", str(tmp_path / "in"), str(out), "--no-denoise", "--json", "-"])
    msg = r.stderr.replace("\n", " ")
    assert r.exit_code == 1 and "stopped with 3 image(s) not segmented" in msg and "free some disk space" in msg
    assert [d["status"] for d in json.loads(r.stdout)] == ["ok", "failed"]
    assert sorted(p.name for p in out.iterdir()) == ["00.mask.png", "00.overlay.png"] and no_partial_files(out)


def test_unwritable_output_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    # as a user without write permission (os.access answers for this user; root passes it)
    make_folder(tmp_path / "in", 3)
    ro = tmp_path / "ro"
    ro.mkdir()
    calls = count_denoises(monkeypatch)
    real = os.access
    monkeypatch.setattr(dio.os, "access", lambda p, mode, **k: False if os.fspath(p) == str(ro) and mode & os.W_OK else real(p, mode, **k))
    for cmd in (["denoise", str(tmp_path / "in"), str(ro / "deeper")], ["denoise", str(tmp_path / "in" / "00.png"),
                                                                          str(ro / "x.png")],
                ["segment", str(tmp_path / "in"), str(ro), "--no-denoise"]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 1 and f"{ro}: the output folder is not writable" in r.output.replace("\n", ""), r.output
    assert calls == [] and list(ro.iterdir()) == []
    # everything already done: nothing to write, so nothing refused
    monkeypatch.setattr(dio.os, "access", real)
    assert runner.invoke(app, ["denoise", str(tmp_path / "in"), str(ro), "--sigma", "25"]).exit_code == 0
    monkeypatch.setattr(dio.os, "access", lambda p, mode, **k: False if os.fspath(p) == str(ro) and mode & os.W_OK else real(p, mode, **k))
    r = runner.invoke(app, ["denoise", str(tmp_path / "in"), str(ro), "--sigma", "25"])
    assert r.exit_code == 0 and "skipped 3" in r.output.replace("\n", " "), r.output


def test_read_only_file_system_is_refused_before_any_work(tmp_path):
    import subprocess
    import sys

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        make_folder(tmp_path / "in", 2)
        r = subprocess.run([sys.executable, "-m", "ddn_cli", "denoise", str(tmp_path / "in"), str(mnt / "out")],
                           capture_output=True, text=True)
        assert r.returncode == 1 and "the output folder is not writable" in r.stderr and "Traceback" not in r.stderr
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_refused_last_write_is_a_failure_not_a_stop(tmp_path, monkeypatch):
    """Nothing is left to stop after the last image: it fails like any other write ("stopped
    with 0 image(s) not denoised" and a "stopped" report for a finished run, before)."""
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.io import Job
    from ddn_cli.registry import resolve_weights

    make_folder(tmp_path / "in", 2, size=(32, 32))
    jobs = [Job(p, tmp_path / "out" / p.name) for p in sorted((tmp_path / "in").iterdir())]
    den = Denoiser.load(resolve_weights(None), device="cpu", precision="fp32")
    refuse_after(monkeypatch, 1, errno.ENOSPC)
    assert [r.status for r in pl.process(jobs, den, pl.DenoiseOptions(sigma=25))] == ["ok", "failed"]
    refuse_after(monkeypatch, 0, errno.ENOSPC)
    r = runner.invoke(app, ["denoise", str(jobs[0].src), str(tmp_path / "one.png"), "--sigma", "25", "--json", "-"])
    assert r.exit_code == 1 and "stopped" not in r.stderr and json.loads(r.stdout)["stopped"] is None, r.output
    # segment: the only image left after the refused one is done already: nothing to stop either
    out = tmp_path / "seg"
    monkeypatch.setattr(dio.os, "fsync", REAL_FSYNC)
    assert runner.invoke(app, ["segment", str(tmp_path / "in" / "01.png"), str(out), "--no-denoise"]).exit_code == 0
    refuse_after(monkeypatch, 0, errno.ENOSPC)
    r = runner.invoke(app, ["segment", str(tmp_path / "in"), str(out), "--no-denoise"])
    assert r.exit_code == 1 and "stopped" not in r.output, r.output


def test_output_names_too_long_fail_per_file_not_the_whole_run(tmp_path):
    """check_writable's Path.exists() raised ENAMETOOLONG for an output folder name over 255
    bytes: the run ended in a raw "[Errno 36]" line instead of the file's own error."""
    src = tmp_path / ("p" * 250)
    src.mkdir()
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(src / "a.png")
    r = runner.invoke(app, ["denoise", str(src), "--sigma", "20"])  # writes p...p_denoised/ beside it: too long
    assert r.exit_code == 1 and "Errno" not in r.output and "a.png" in r.output, r.output


def test_an_interrupt_right_after_the_temp_file_is_made_leaves_nothing(tmp_path, monkeypatch):
    """A Ctrl-C landing between the temp file's creation and the writer's cleanup block left
    the hidden temp file behind (1 in 20 interrupted main-thread writes: masks, reports)."""
    import ddn_cli.atomic as at

    real_open = os.open

    def open_then_interrupt(*a, **k):
        real_open(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(at.os, "open", open_then_interrupt)
    for write in (lambda: dio.write_atomic(tmp_path / "a.json", b"{}"), lambda: at.write_bytes(tmp_path / "b.bin", b"x")):
        with pytest.raises(KeyboardInterrupt):
            write()
    assert list(tmp_path.iterdir()) == []
