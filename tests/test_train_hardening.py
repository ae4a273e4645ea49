"""`ddn train` refusing bad --out / --init / --lambda / checkpoints up front, with one line,
and Ctrl-C / SIGTERM saving a checkpoint that --resume continues bit for bit."""

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import smooth_image
from PIL import Image
from test_training import assert_same_checkpoints
from typer.testing import CliRunner

from ddn_cli.cli.app import app
from ddn_cli.errors import UsageError
from ddn_cli.training import loop
from ddn_cli.training.checkpoint import load_checkpoint, save_checkpoint
from ddn_cli.training.config import TrainConfig
from ddn_cli.training.loop import train_denoiser
from ddn_cli.weightfile import save_weights

TINY = ["--steps", "3", "--batch-size", "2", "--patch", "32", "--warmup", "1", "--precision", "fp32",
        "--device", "cpu", "--quiet"]


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "clean"
    d.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(40, 48, seed=i)).save(d / f"g{i}.png")
    return d


@pytest.fixture
def signals():
    """Python's own handlers for the test, the previous ones back after it (the CLI leaves
    SIGINT / SIGTERM ignored after an interrupt; a background test run may start with SIGINT
    ignored)."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for s, h in old.items():
        signal.signal(s, h)


def cfg(data_dir, out, **kw):
    base = {"data": (str(data_dir),), "out": str(out), "steps": 6, "batch_size": 2, "patch": 32, "warmup": 2,
            "precision": "fp32", "device": "cpu", "ema": 0.9, "ckpt_minutes": 60.0}
    base.update(kw)
    return TrainConfig(**base)


def run(*args):
    return CliRunner().invoke(app, ["train", *map(str, args)])


def one_line_error(r, code):
    assert r.exit_code == code, r.output
    assert isinstance(r.exception, SystemExit), r.exception  # handled, no traceback
    assert "ddn: error:" in r.output


def interrupt_at(monkeypatch, at_step, sig=signal.SIGINT):
    """Send ``sig`` to this process while step ``at_step + 1`` runs (from the loop's lr_at)."""
    real = loop.lr_at

    def lr_at(step, *a):
        if step == at_step:
            os.kill(os.getpid(), sig)
        return real(step, *a)

    monkeypatch.setattr(loop, "lr_at", lr_at)


# --out --------------------------------------------------------------------------------------

def test_out_is_checked_before_training(data_dir, tmp_path):
    folder = tmp_path / "outdir"
    folder.mkdir()
    r = run("--data", data_dir, "--out", folder, *TINY)
    one_line_error(r, 2)
    assert "is a folder" in r.output
    assert not (tmp_path / "outdir.log").exists() and not any(folder.iterdir())

    for bad in (tmp_path / "runs" / "m.json", tmp_path / "runs" / "m.ckpt"):
        r = run("--data", data_dir, "--out", bad, *TINY)
        one_line_error(r, 2)
        assert ".safetensors" in r.output
        assert not (tmp_path / "runs").exists()

    image = data_dir / "g0.png"
    before = image.read_bytes()
    r = run("--data", data_dir, "--out", image, *TINY)
    one_line_error(r, 2)
    assert image.read_bytes() == before

    (tmp_path / "m.ckpt").mkdir()  # a side file's name taken by a folder
    r = run("--data", data_dir, "--out", tmp_path / "m.safetensors", *TINY)
    one_line_error(r, 2)
    assert "m.ckpt is a folder" in r.output and not (tmp_path / "m.log").exists()


def test_out_may_not_overwrite_the_init_model(data_dir, tmp_path, default_weights):
    init = tmp_path / "init.safetensors"
    init.write_bytes(default_weights.read_bytes())
    r = run("--data", data_dir, "--out", init, "--init", init, *TINY)
    one_line_error(r, 2)
    assert "--init" in r.output and init.read_bytes() == default_weights.read_bytes()


def test_unwritable_out_is_one_line_before_training(data_dir, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")  # --out's folder cannot be made: a file has its name
    r = run("--data", data_dir, "--out", blocker / "m.safetensors", *TINY)
    one_line_error(r, 1)
    assert "cannot write" in r.output and "afile" in r.output

    out = tmp_path / "m.safetensors"
    out.with_suffix(".log").symlink_to(tmp_path / "missing" / "m.log")  # the log cannot be opened
    r = run("--data", data_dir, "--out", out, *TINY)
    one_line_error(r, 1)
    assert "m.log: cannot write the log" in r.output
    assert not out.exists() and not out.with_suffix(".ckpt").exists()


def test_a_failed_save_is_one_line(data_dir, tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(loop, "save_weights", full)
    r = run("--data", data_dir, "--out", tmp_path / "m.safetensors", *TINY)
    one_line_error(r, 1)
    assert "m.safetensors: cannot write (No space left on device)" in r.output


def test_failed_validation_leaves_no_files(data_dir, tmp_path):
    out = tmp_path / "runs" / "m.safetensors"
    r = run("--data", tmp_path / "nope", "--out", out, *TINY)
    one_line_error(r, 2)
    assert not (tmp_path / "runs").exists()


# --init, --lambda, --val, a damaged checkpoint ---------------------------------------------

def test_init_that_is_not_a_denoiser_is_refused(data_dir, tmp_path, default_weights):
    plain = tmp_path / "x.safetensors"
    save_weights({"x": torch.zeros(3)}, plain, {})
    cls = tmp_path / "cls.safetensors"
    save_weights({"w": torch.zeros(3)}, cls, {"arch": "resnet9", "task": "classifier", "config": {"num_classes": 10}})
    wrong = tmp_path / "wrong.safetensors"
    save_weights({"x": torch.zeros(3)}, wrong, {"arch": "ddn", "task": "denoise", "config": {}})
    for init, says in ((plain, "not a ddn denoiser"), (cls, "not a ddn denoiser"), (wrong, "do not match")):
        r = run("--data", data_dir, "--out", tmp_path / "m.safetensors", "--init", init, *TINY)
        one_line_error(r, 2)
        assert says in r.output
        assert not (tmp_path / "m.log").exists()


def test_lambda_must_be_finite_and_not_negative(tmp_path):
    for lam in ("nan", "inf", "-1"):
        with pytest.raises(UsageError, match="--lambda"):
            TrainConfig(task="cls", data=("d",), lam=float(lam))
        r = run("--task", "cls", "--data", tmp_path, "--out", tmp_path / "m.safetensors", "--lambda", lam, *TINY)
        one_line_error(r, 2)
        assert "--lambda" in r.output


def test_empty_val_folder_names_val(data_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("--data", data_dir, "--val", tmp_path / "empty", "--out", tmp_path / "m.safetensors", *TINY)
    one_line_error(r, 2)
    assert "--val" in r.output and "--data" not in r.output


def test_damaged_checkpoint_is_one_line(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    out.with_suffix(".ckpt").write_bytes(b"not a checkpoint" * 8)
    r = run("--data", data_dir, "--out", out, "--resume", *TINY)
    one_line_error(r, 2)
    assert "m.ckpt" in r.output and "without --resume" in r.output


# interrupts and --resume --------------------------------------------------------------------

def test_interrupt_saves_a_checkpoint_that_resumes_bit_exactly(data_dir, tmp_path, monkeypatch, signals):
    a = tmp_path / "a.safetensors"
    train_denoiser(cfg(data_dir, a))
    b = tmp_path / "b.safetensors"
    interrupt_at(monkeypatch, 2)
    events = []
    with pytest.raises(KeyboardInterrupt):
        train_denoiser(cfg(data_dir, b), events.append)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler given back
    cb = load_checkpoint(b.with_suffix(".ckpt"))
    assert cb["step"] == 3  # the step in progress finished, then the checkpoint
    assert {"event": "checkpoint", "step": 3, "path": str(b.with_suffix(".ckpt")), "interrupted": True} in events
    assert b.is_file()  # no validation data: the newest weights are the output, kept too
    monkeypatch.undo()
    train_denoiser(cfg(data_dir, b, resume=True))
    assert_same_checkpoints(a, b, step=6)


def test_cli_sigterm_saves_a_checkpoint_and_exits_130(data_dir, tmp_path, monkeypatch, signals):
    out = tmp_path / "m.safetensors"
    interrupt_at(monkeypatch, 1, signal.SIGTERM)
    r = run("--data", data_dir, "--out", out, *TINY)
    assert r.exit_code == 130, r.output
    assert "interrupted at step 2" in r.output and "--resume" in r.output
    assert load_checkpoint(out.with_suffix(".ckpt"))["step"] == 2
    monkeypatch.undo()
    r = run("--data", data_dir, "--out", out, "--resume", *TINY)
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out.with_suffix(".ckpt"))["step"] == 3


def test_real_ctrl_c_mid_run(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    cmd = [sys.executable, "-m", "ddn_cli", "train", "--data", str(data_dir), "--out", str(out),
           *TINY[2:], "--steps", "100000"]
    # (the CLI installs its own SIGINT handler, even where the test run started with SIGINT ignored)
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = out.with_suffix(".log")
    t = time.time()
    while not (log.is_file() and '"data"' in log.read_text()) and time.time() - t < 120 and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # some steps in
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err.decode()[-2000:]
    assert b"Traceback" not in err and b"interrupted at step" in err
    ck = load_checkpoint(out.with_suffix(".ckpt"))
    assert ck["step"] >= 1 and ck["total"] == 100000
    assert not list(tmp_path.glob(".*ddn-part"))


def test_fresh_run_replaces_an_earlier_runs_checkpoint(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "m.safetensors"
    train_denoiser(cfg(data_dir, out))  # an earlier run, finished: its checkpoint stays
    assert out.with_suffix(".ckpt").is_file()

    def crash(*a):
        raise RuntimeError("crash before the first checkpoint")

    monkeypatch.setattr(loop, "lr_at", crash)
    events = []
    with pytest.raises(RuntimeError):
        train_denoiser(cfg(data_dir, out, seed=1), events.append)
    assert not out.with_suffix(".ckpt").exists()  # never to be resumed as this run
    assert events[0] == {"event": "replaced_checkpoint", "path": str(out.with_suffix(".ckpt"))}
    with pytest.raises(UsageError, match="no checkpoint"):
        train_denoiser(cfg(data_dir, out, resume=True))


def test_a_fresh_run_does_not_replace_an_unfinished_runs_checkpoint(data_dir, tmp_path):
    """Rerunning an interrupted command without --resume deleted the checkpoint the interrupt
    had just saved (and a Ctrl-C then overwrote the weights): refused, the checkpoint kept."""
    out = tmp_path / "m.safetensors"
    save_checkpoint(out.with_suffix(".ckpt"), {"model": {}, "opt": {}, "step": 5, "total": 100, "elapsed": 1.0,
                                               "best": 0.0, "gens": {}, "config": {}})
    before = out.with_suffix(".ckpt").read_bytes()
    with pytest.raises(UsageError, match="unfinished run's checkpoint .step 5 of 100"):
        train_denoiser(cfg(data_dir, out))
    assert out.with_suffix(".ckpt").read_bytes() == before and not out.exists()
    r = run("--data", data_dir, "--out", out, *TINY)
    assert r.exit_code == 2 and "--resume" in r.output


def test_resume_names_the_options_the_checkpoint_overrides(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    r = run("--data", data_dir, "--out", out, "--steps", "2", *TINY[2:])
    assert r.exit_code == 0, r.output
    r = run("--data", data_dir, "--out", out, "--resume", *TINY, "--lr", "0.002")
    assert r.exit_code == 0, r.output
    assert "ignored: --steps 3 (checkpoint: 2), --lr 0.002 (checkpoint: 0.001)" in r.output
    assert "--patch" not in r.output  # the same as the checkpoint's
    resumed = [json.loads(x) for x in out.with_suffix(".log").read_text().splitlines() if '"resumed"' in x]
    assert resumed[-1]["overridden"]["lr"] == {"given": 0.002, "checkpoint": 0.001}
    assert math.isclose(load_checkpoint(out.with_suffix(".ckpt"))["config"]["lr"], 0.001)


@pytest.mark.parametrize("opt", [("--time-budget", "nan"), ("--time-budget", "-1"), ("--ckpt-minutes", "nan"), ("--ckpt-minutes", "-1"),
                                 ("--lr", "nan"), ("--ema", "inf")])
def test_float_options_must_be_finite(data_dir, tmp_path, opt):
    """NaN passed Typer's min= checks and every range check (its comparisons are all false)."""
    r = run("--data", data_dir, "--out", tmp_path / "m.safetensors", *TINY, *opt)
    assert r.exit_code == 2 and opt[0] in r.output, r.output
    assert not (tmp_path / "m.log").exists()


def test_a_fresh_run_starts_its_own_log_and_a_resumed_one_continues_it(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"

    def runs_in_log():
        return sum('"event": "data"' in x for x in out.with_suffix(".log").read_text().splitlines())

    assert run("--data", data_dir, "--out", out, *TINY).exit_code == 0
    assert run("--data", data_dir, "--out", out, *TINY).exit_code == 0  # finished before: a fresh run
    assert runs_in_log() == 1
    assert run("--data", data_dir, "--out", out, "--resume", *TINY).exit_code == 0
    assert runs_in_log() == 2


# resuming in another number of processes ----------------------------------------------------

def test_resume_in_another_number_of_processes_is_refused(data_dir, tmp_path, monkeypatch):
    """A checkpoint holds one random-generator state per process: resumed under torchrun with
    more processes, rank 1 died of an IndexError (and rank 0 of a gloo traceback); resumed with
    fewer, the others' states were dropped and the batch shrank, silently. Refused, in one line
    naming the command that continues the run, on every rank and before any collective."""
    out = tmp_path / "m.safetensors"
    train_denoiser(cfg(data_dir, out, steps=2))
    ckpt = out.with_suffix(".ckpt")
    state = load_checkpoint(ckpt)
    before = ckpt.read_bytes()
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):  # refused before the process group is made: no rendezvous needed here
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", rank)
        with pytest.raises(UsageError, match="1 process, resumed in 2 processes") as e:
            train_denoiser(cfg(data_dir, out, steps=2, resume=True))
        assert e.value.hint == "resume without torchrun"
    for v in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(v)
    assert state["world_size"] == 1 and len(state["gens"]) == 1 and ckpt.read_bytes() == before

    # a checkpoint of a 2-process run from before world_size was recorded: counted by its generators
    del state["world_size"]
    state["gens"] = [state["gens"][0], state["gens"][0]]
    save_checkpoint(ckpt, state)
    r = run("--data", data_dir, "--out", out, "--resume", *TINY)
    one_line_error(r, 2)
    assert "resume with torchrun --nproc_per_node=2" in r.output
    save_checkpoint(ckpt, {**state, "world_size": 2})
    with pytest.raises(UsageError, match="torchrun --nproc_per_node=2"):
        train_denoiser(cfg(data_dir, out, steps=2, resume=True))
    ckpt.write_bytes(before)
    train_denoiser(cfg(data_dir, out, steps=2, resume=True))  # the same count: resumed


def _torchrun(tmp_path, *args, fault=None, timeout=120):
    """``torchrun --standalone --nproc_per_node=2`` running ``ddn train ARGS`` (the CLI, through a
    small script that can first plant ``fault`` in rank 0); returns the CompletedProcess."""
    script = tmp_path / "ddn_under_torchrun.py"
    script.write_text(_TORCHRUN_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DDN_TEST_FAULT": fault or ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), "train", *map(str, args)]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=timeout)


_TORCHRUN_SCRIPT = '''
import errno, os, signal, sys, time

fault = os.environ.get("DDN_TEST_FAULT")
if fault == "sigterm_in_validation" and os.environ.get("RANK") == "0":
    from ddn_cli.evaluation import denoise_eval

    real = denoise_eval.make_noisy

    def make_noisy(*a, **k):  # the first image of the first validation: SIGTERM to torchrun, as a user would
        if not make_noisy.sent:
            make_noisy.sent = True
            os.kill(os.getppid(), signal.SIGTERM)
            t = time.time()  # until torchrun has passed it on to this process
            while getattr(getattr(signal.getsignal(signal.SIGTERM), "__self__", None), "pending", None) is None:
                time.sleep(0.02)
                assert time.time() - t < 20, "no SIGTERM came from torchrun"
        make_noisy.calls += 1
        return real(*a, **k)

    make_noisy.sent, make_noisy.calls = False, 0
    denoise_eval.make_noisy = make_noisy
if fault == "disk_full" and os.environ.get("RANK") == "0":
    from ddn_cli.training import loop

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    loop.save_weights = full

from ddn_cli.cli import main

sys.argv[0] = "ddn"
main()
'''


def _torchrun_available():
    import shutil

    if shutil.which("torchrun") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "torchrun")):
        pytest.skip("torchrun is missing")


def _no_rank_crash(err: str) -> None:
    """No process died in a collective or of an uncaught exception (torchrun's own report of a
    failed or signalled child is its business)."""
    assert "Connection closed" not in err and "distributed_c10d" not in err, err[-3000:]
    assert "IndexError" not in err and "forcefully exiting via 9" not in err, err[-3000:]


@pytest.mark.slow
def test_torchrun_resume_of_a_single_process_checkpoint_is_one_line_on_each_rank(data_dir, tmp_path):
    _torchrun_available()
    out = tmp_path / "m.safetensors"
    train_denoiser(cfg(data_dir, out, steps=2))
    r = _torchrun(tmp_path, "--data", data_dir, "--out", out, "--resume", *TINY)
    assert r.returncode != 0
    _no_rank_crash(r.stderr)
    assert r.stderr.count("resumed in 2 processes; --resume continues a run in as many processes as it had "
                          "(resume without torchrun)") == 1, r.stderr[-3000:]
    assert load_checkpoint(out.with_suffix(".ckpt"))["step"] == 2  # left as it was


# an interrupt during validation -------------------------------------------------------------

def test_interrupt_during_validation_abandons_it_and_resume_redoes_it(data_dir, tmp_path, monkeypatch, signals):
    """Ctrl-C / SIGTERM while rank 0 validated waited for the whole pass (under torchrun longer
    than its grace period: killed, no checkpoint). Now the pass stops at the next image, the
    checkpoint is written at once, and --resume does that validation again: the resumed run
    ends as the uninterrupted one, its validation history and best model included."""
    from ddn_cli.evaluation import denoise_eval

    kw = {"val": (str(data_dir),), "val_every": 3, "val_sigmas": (15.0, 25.0)}
    a = tmp_path / "a.safetensors"
    train_denoiser(cfg(data_dir, a, **kw))
    b = tmp_path / "b.safetensors"
    real, calls = denoise_eval.make_noisy, []

    def make_noisy(*args, **k):  # each image of each noise level of a validation pass
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **k)

    monkeypatch.setattr(denoise_eval, "make_noisy", make_noisy)
    events = []
    with pytest.raises(KeyboardInterrupt):
        train_denoiser(cfg(data_dir, b, **kw), events.append)
    assert len(calls) == 1  # not 3 images x 2 sigmas x raw and EMA
    ck = load_checkpoint(b.with_suffix(".ckpt"))
    assert ck["step"] == 3 and ck["val_pending"] and ck["history"] == []
    assert not any(e["event"] == "val" for e in events)
    assert {"event": "checkpoint", "step": 3, "path": str(b.with_suffix(".ckpt")), "interrupted": True} in events
    monkeypatch.undo()
    events = []
    train_denoiser(cfg(data_dir, b, resume=True, **kw), events.append)
    assert [e["step"] for e in events if e["event"] == "val"] == [3, 6]
    assert_same_checkpoints(a, b, step=6)
    ca, cb = load_checkpoint(a.with_suffix(".ckpt")), load_checkpoint(b.with_suffix(".ckpt"))
    assert ca["history"] == cb["history"] and ca["best"] == cb["best"] and not cb["val_pending"]


@pytest.mark.slow
def test_torchrun_sigterm_during_validation_checkpoints_at_once(data_dir, tmp_path):
    """SIGTERM to torchrun (passed on to both processes) while rank 0 validates: rank 0 leaves
    the validation at the next image, rank 1 (waiting for it in the step's all_reduce) stops with
    it, the checkpoint is written, and both exit as interrupted."""
    _torchrun_available()
    out = tmp_path / "m.safetensors"
    r = _torchrun(tmp_path, "--data", data_dir, "--val", data_dir, "--val-every", "2", "--out", out, *TINY,
                  "--steps", "50", "--ckpt-minutes", "60", fault="sigterm_in_validation")
    _no_rank_crash(r.stderr)
    assert "interrupted at step 2: checkpoint" in r.stderr, r.stderr[-3000:]
    assert r.stderr.count("ddn: interrupted") == 1, r.stderr[-3000:]
    events = [json.loads(x) for x in out.with_suffix(".log").read_text().splitlines()]
    assert not any(e["event"] == "val" for e in events)  # abandoned, not finished first
    ck = load_checkpoint(out.with_suffix(".ckpt"))
    assert ck["step"] == 2 and ck["val_pending"] and ck["world_size"] == 2


# errors that one process alone meets ---------------------------------------------------------

@pytest.mark.slow
def test_torchrun_error_on_rank_0_alone_is_one_line_on_each_rank(data_dir, tmp_path):
    """Rank 0 alone reads --val, prepares --out, opens the log and writes the weights: its error
    left rank 1 to die in its next collective with a gloo "Connection closed by peer"
    traceback. Now every rank stops with rank 0's one-line error."""
    _torchrun_available()
    out = tmp_path / "m.safetensors"
    r = _torchrun(tmp_path, "--data", data_dir, "--val", tmp_path / "nonexist", "--out", out, *TINY)
    _no_rank_crash(r.stderr)
    assert r.stderr.count("nonexist: not a folder, image or list file (check the --val path)") == 1, r.stderr[-3000:]
    assert not out.with_suffix(".log").exists()

    out.with_suffix(".log").symlink_to(tmp_path / "missing" / "m.log")  # the log cannot be opened
    r = _torchrun(tmp_path, "--data", data_dir, "--out", out, *TINY)
    _no_rank_crash(r.stderr)
    assert r.stderr.count("m.log: cannot write the log") == 1, r.stderr[-3000:]
    out.with_suffix(".log").unlink()

    r = _torchrun(tmp_path, "--data", data_dir, "--out", out, *TINY, fault="disk_full")  # at the weights' first save
    _no_rank_crash(r.stderr)
    assert r.stderr.count("m.safetensors: cannot write (No space left on device)") == 1, r.stderr[-3000:]


# list files -------------------------------------------------------------------------------------

def test_list_files_with_a_bom_other_encodings_or_binary(data_dir, tmp_path, default_weights):
    """A list saved as "UTF-8 with BOM" made its first entry "not found"; one with a Latin-1
    name crashed with a UnicodeDecodeError traceback. Now the BOM is dropped, a name in another
    encoding finds its file as Linux names it (bytes), and a binary file is one line."""
    from ddn_cli.training.data import list_training_images

    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffclean/g0.png\r\nclean/g1.png\r\n".encode())
    assert list_training_images([bom]) == [data_dir / "g0.png", data_dir / "g1.png"]

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("# caf\xe9\nclean/g2.png\n".encode("latin-1"))  # a comment in Latin-1
    assert list_training_images([latin1]) == [data_dir / "g2.png"]
    name = tmp_path / os.fsdecode(b"caf\xe9.png")  # the file's name is these bytes, not UTF-8
    try:
        name.write_bytes((data_dir / "g0.png").read_bytes())
    except (OSError, UnicodeEncodeError):
        pass  # a file system that takes UTF-8 names only: nothing more to try
    else:
        latin1.write_bytes("caf\xe9.png\n".encode("latin-1"))
        assert list_training_images([latin1]) == [name]
        r = run("--data", latin1, "--out", tmp_path / "m.safetensors", *TINY)
        assert r.exit_code == 0, r.output

    for binary in (bytes(range(256)) * 4, "clean/g0.png\n".encode("utf-16")):
        bad = tmp_path / "bad.txt"
        bad.write_bytes(binary)
        with pytest.raises(UsageError, match="bad.txt: not a text file list of image paths .UTF-8."):
            list_training_images([bad])
        r = run("--data", bad, "--out", tmp_path / "m2.safetensors", *TINY)
        one_line_error(r, 2)
        assert "not a text file list" in r.output
        r = CliRunner().invoke(app, ["eval", "denoise", str(bad), "-m", str(default_weights), "--sigma", "25"])
        one_line_error(r, 2)
        assert "not a text file list" in r.output


def test_rank_variable_alone_does_not_silence_errors(tmp_path):
    """Only torchrun's other processes on one machine are quiet: RANK=1 left over in an
    environment (no WORLD_SIZE) silenced a plain run's errors."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "LOCAL_WORLD_SIZE")} | {"RANK": "1"}
    r = subprocess.run([sys.executable, "-m", "ddn_cli", "train", "--data", str(tmp_path / "nope"), "--out",
                        str(tmp_path / "m.safetensors")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "nope" in r.stderr, r.stderr
