"""Interrupts and concurrency, with real processes and real signals."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import no_partial_files, noisy, smooth_image, tree_hashes
from PIL import Image

DDN = [sys.executable, "-m", "ddn_cli"]
N_FILES, SHAPE = 48, (192, 256, 3)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    # enough work (about 2.4 MP in 64-px tiles) that a signal sent after the first output
    # always lands mid-run, even on a fast idle machine
    for i in range(N_FILES):
        Image.fromarray(noisy(smooth_image(SHAPE[0], SHAPE[1], seed=i), 20)).save(root / f"{i:02d}.png")
    return root


def default_sigint() -> None:
    """In the child: SIGINT back to its default disposition, so ddn installs its handler.
    A test run started in the background by a non-interactive shell (``cmd &``) inherits
    SIGINT ignored, and Python then leaves it ignored in every process it starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(pred, timeout=120.0):
    t = time.time()
    while time.time() - t < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_folder_leaves_no_partial_and_rerun_finishes(folder, tmp_path, sig):
    out = tmp_path / "out"
    before = tree_hashes(folder)
    p = subprocess.Popen(DDN + ["denoise", str(folder), str(out), "--sigma", "20", "--tile", "64", "--quiet",
                                "--json", str(tmp_path / "rep.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=default_sigint)
    assert wait_for(lambda: out.is_dir() and any(out.glob("*.png")))
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err.decode()[-1000:]
    assert b"Traceback" not in err
    assert no_partial_files(out)
    done = sorted(x.name for x in out.glob("*.png"))
    assert 0 < len(done) < N_FILES
    for f in done:  # every finished output is whole
        assert np.asarray(Image.open(out / f)).shape == SHAPE
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["interrupted"] and rep["summary"]["ok"] == len(done)
    r = subprocess.run(DDN + ["denoise", str(folder), str(out), "--sigma", "20", "--quiet", "--json", "-"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0
    rep = json.loads(r.stdout)
    assert rep["summary"]["skipped"] == len(done) and rep["summary"]["ok"] == N_FILES - len(done)
    assert tree_hashes(folder) == before


@pytest.mark.parametrize("gap", [0.0, 0.05, 0.3])
def test_a_second_ctrl_c_while_the_first_is_handled_changes_nothing(folder, tmp_path, gap):
    """An impatient second Ctrl-C, during the clean-up after the first or during torch's exit
    handlers, aborted the process ("terminate called without an active exception", exit 134)
    or printed a traceback; it is ignored: exit 130, report written, no partial file."""
    out = tmp_path / "out"
    p = subprocess.Popen(DDN + ["denoise", str(folder), str(out), "--sigma", "20", "--tile", "64", "--quiet",
                                "--json", str(tmp_path / "rep.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=default_sigint)
    assert wait_for(lambda: out.is_dir() and any(out.glob("*.png")))
    p.send_signal(signal.SIGINT)
    time.sleep(gap)
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err.decode()[-1000:]
    assert b"Traceback" not in err and b"terminate called" not in err, err.decode()[-1000:]
    assert json.loads((tmp_path / "rep.json").read_text())["interrupted"]
    assert no_partial_files(out)


def test_an_inherited_ignored_sigint_stays_ignored(folder, tmp_path):
    """A background job of a shell without job control (`ddn ... &` in a script) starts with
    SIGINT ignored, so that a Ctrl-C on the script leaves it alone; ddn keeps it so."""
    out = tmp_path / "out"
    p = subprocess.Popen(DDN + ["denoise", str(folder), str(out), "--sigma", "20", "--tile", "64", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert wait_for(lambda: out.is_dir() and any(out.glob("*.png")))
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-1000:]
    assert len(list(out.glob("*.png"))) == N_FILES


def test_ctrl_c_while_the_command_loads_exits_130_without_a_traceback(tmp_path):
    """The console script's own module loading (typer, rich, the commands) takes a fraction
    of a second; a Ctrl-C then printed a KeyboardInterrupt traceback."""
    r = ddn_version_interrupted_at_typer_import("raise KeyboardInterrupt")
    assert r.returncode == 130 and "Traceback" not in r.stderr and "interrupted" in r.stderr, r.stderr


def ddn_version_interrupted_at_typer_import(action: str) -> subprocess.CompletedProcess:
    """`ddn --version` in a fresh process whose import of typer first runs ``action`` (one
    statement): an interrupt at a known moment of the start-up."""
    code = ("import os, signal, sys\n"
            "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
            "import builtins\n"
            "real = builtins.__import__\n"
            "def imp(name, *a, **k):\n"
            "    if name == 'typer':\n"
            f"        {action}\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = imp\n"
            "from ddn_cli.cli import main\n"
            "sys.argv = ['ddn', '--version']\n"
            "main()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_two_runs_into_one_folder(folder, tmp_path):
    out = tmp_path / "out"
    args = DDN + ["denoise", str(folder), str(out), "--sigma", "20", "--quiet", "--overwrite"]
    ps = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    for p in ps:
        p.wait(timeout=600)
        assert p.returncode == 0, p.stderr.read().decode()[-800:]
    ref = subprocess.run(DDN + ["denoise", str(folder / "03.png"), str(tmp_path / "ref.png"), "--sigma", "20", "-q"])
    assert ref.returncode == 0
    assert no_partial_files(out) and len(list(out.glob("*.png"))) == N_FILES
    for f in out.glob("*.png"):
        assert np.asarray(Image.open(f)).shape == SHAPE
    assert np.array_equal(np.asarray(Image.open(out / "03.png")), np.asarray(Image.open(tmp_path / "ref.png")))


def test_kill_9_during_training_then_resume(tmp_path):
    data = tmp_path / "clean"
    data.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(48, 48, seed=i)).save(data / f"{i}.png")
    out = tmp_path / "m.safetensors"
    ckpt = out.with_suffix(".ckpt")
    args = DDN + ["train", "--data", str(data), "--out", str(out), "--steps", "100000", "--batch-size", "2",
                  "--patch", "32", "--precision", "fp32", "--device", "cpu", "--ckpt-minutes", "0.001", "--quiet"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: ckpt.is_file(), 120)
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    from ddn_cli.training.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt)  # never half-written: it loads
    step = state["step"]
    assert step >= 1
    r = subprocess.run(DDN + ["train", "--data", str(data), "--out", str(out), "--resume", "--time-budget", "3",
                              "--precision", "fp32", "--device", "cpu", "--quiet"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-1000:]
    assert load_checkpoint(ckpt)["step"] > step


def test_sigint_and_sigterm_together_are_one_interrupt(folder, tmp_path):
    """Both signals at once (a terminal's Ctrl-C and a supervisor's SIGTERM): the second was
    found pending with SIG_IGN installed, and CPython printed "OSError: Signal 15 ignored due
    to race condition" with a traceback."""
    out = tmp_path / "out"
    p = subprocess.Popen(DDN + ["denoise", str(folder), str(out), "--sigma", "20", "--tile", "64", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    assert wait_for(lambda: out.is_dir() and any(out.glob("*.png")))
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and b"Traceback" not in err and b"race condition" not in err, err.decode()[-1500:]
    assert no_partial_files(out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_before_the_command_starts_is_one_line_and_130(sig):
    """SIGTERM while the modules loaded killed the process silently with 143; SIGINT while
    typer parsed the options was a KeyboardInterrupt traceback. Sent here from inside the
    process as soon as main() began (deterministic), before typer is even imported."""
    r = ddn_version_interrupted_at_typer_import(f"os.kill(os.getpid(), {int(sig)})")
    assert r.returncode == 130 and "Traceback" not in r.stderr, (r.returncode, r.stderr)
    assert r.stderr.strip() == "ddn: interrupted"
