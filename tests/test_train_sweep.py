"""`ddn train` problems a sweep found: a task network of the wrong classes, --out over a model
given by name, a cut final validation, --val-sigma, non-standard JSON, --time-budget on resume,
options accepted and ignored, the --init record after --resume."""

import json
import math
import time

import pytest
import torch
from conftest import smooth_image
from PIL import Image
from test_cascade import tiny_camvid, tiny_cifar
from test_train_hardening import cfg, one_line_error, run

from ddn_cli.errors import RunStopped, UsageError
from ddn_cli.models.classifier import ResNet9
from ddn_cli.models.denoiser import build_denoiser
from ddn_cli.models.segmenter import ResUNetS
from ddn_cli.registry import bundled_manifest
from ddn_cli.training import loop
from ddn_cli.training.checkpoint import load_checkpoint, save_checkpoint
from ddn_cli.training.config import TrainConfig
from ddn_cli.training.loop import train_denoiser
from ddn_cli.weightfile import load_weights, save_weights

TINY = ["--steps", "2", "--batch-size", "2", "--patch", "32", "--warmup", "1", "--precision", "fp32",
        "--device", "cpu", "--quiet"]


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "clean"
    d.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(40, 48, seed=i)).save(d / f"g{i}.png")
    return d


def strict_json(text: str):
    """``json.loads`` refusing what JSON has not: Infinity, -Infinity, NaN."""
    def refuse(c):
        raise ValueError(f"non-standard JSON constant {c}")

    return json.loads(text, parse_constant=refuse)


# a task network of the wrong classes -----------------------------------------------------------

@pytest.mark.parametrize("task", ["cls", "seg"])
def test_task_net_of_the_wrong_classes_is_refused_up_front(tmp_path, task):
    """A 5-class classifier for CIFAR-10 (a 4-class segmenter for CamVid) failed with an
    IndexError traceback at the first step; refused with one line, as ddn eval refuses it."""
    torch.manual_seed(0)
    net = ResNet9(width=4, num_classes=5) if task == "cls" else ResUNetS(width=4, num_classes=4)
    path = tmp_path / "net.safetensors"
    save_weights(net.state_dict(), path, {"arch": "resnet9" if task == "cls" else "resunet_s",
                                          "task": "classifier" if task == "cls" else "segmenter",
                                          "config": {"width": 4, "num_classes": 5 if task == "cls" else 4}})
    data = tiny_cifar(tmp_path / "cifar", per_class=2) if task == "cls" else tiny_camvid(tmp_path / "camvid", n=4)
    out = tmp_path / "runs" / "g.safetensors"
    r = run("--task", task, "--data", data, "--task-net", path, "--out", out, *TINY)
    one_line_error(r, 2)
    assert ("5 classes, but CIFAR-10 has 10" if task == "cls" else "4 classes, but CamVid has 11") in r.output
    assert not (tmp_path / "runs").exists()


def test_task_net_with_a_bad_config_is_one_line(tmp_path):
    """The task network was built from its file's config unguarded: an unknown key was a
    TypeError traceback (weightfile.build_model now builds every network from a file)."""
    torch.manual_seed(0)
    net = ResNet9(width=4)
    path = tmp_path / "net.safetensors"
    save_weights(net.state_dict(), path, {"arch": "resnet9", "task": "classifier",
                                          "config": {"width": 4, "bogus": True}})
    data = tiny_cifar(tmp_path / "cifar", per_class=2)
    r = run("--task", "cls", "--data", data, "--task-net", path, "--out", tmp_path / "runs" / "g.safetensors", *TINY)
    assert r.exit_code != 0 and "Traceback" not in r.output and "net.safetensors" in r.output, r.output
    assert "invalid resnet9 config" in r.output


# --out over a model given by name ---------------------------------------------------------------

def test_out_may_not_overwrite_a_model_given_by_name(data_dir, tmp_path, default_weights):
    """--init NAME --out $DDN_HOME/weights/NAME's file overwrote the cached copy (the check
    compared --out with --init only when --init was a file path); likewise the cascade's
    implicit --init and default --task-net, and --distill NAME."""
    from ddn_cli.hub import weights_dir

    man = bundled_manifest()
    name = man.default("denoise").name
    cached = weights_dir() / man.get(name).file
    cached.parent.mkdir(parents=True)
    cached.write_bytes(default_weights.read_bytes())
    for extra in (["--init", name], ["--distill", name]):
        r = run("--data", data_dir, "--out", cached, *extra, *TINY)
        one_line_error(r, 2)
        assert f"is the {extra[0]} model {name}" in r.output
    assert cached.read_bytes() == default_weights.read_bytes()
    # the cascade: its implicit --init, then its default task network (its cache path: not there yet)
    r = run("--task", "cls", "--data", tmp_path / "cifar", "--out", cached, *TINY)
    one_line_error(r, 2)
    assert "--init model" in r.output
    net_file = weights_dir() / man.get(man.defaults["classifier"]).file
    r = run("--task", "cls", "--data", tmp_path / "cifar", "--out", net_file, *TINY)
    one_line_error(r, 2)
    assert "is the --task-net model" in r.output and not net_file.exists()
    assert cached.read_bytes() == default_weights.read_bytes()


# a run interrupted in its final validation ----------------------------------------------------

def test_a_fresh_run_does_not_replace_a_checkpoint_whose_final_validation_was_cut(data_dir, tmp_path):
    """An interrupt during the final validation leaves a checkpoint at step == total with the
    validation pending (and no weight file yet): a rerun without --resume discarded it."""
    out = tmp_path / "m.safetensors"
    save_checkpoint(out.with_suffix(".ckpt"), {"model": {}, "opt": {}, "step": 100, "total": 100, "elapsed": 1.0,
                                               "best": {}, "gens": {}, "config": {}, "val_pending": True})
    before = out.with_suffix(".ckpt").read_bytes()
    with pytest.raises(UsageError, match="unfinished run's checkpoint .step 100 of 100, its validation"):
        train_denoiser(cfg(data_dir, out))
    assert out.with_suffix(".ckpt").read_bytes() == before and not out.exists()


# --val-sigma -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "-5", "1e9", "inf", "256"])
def test_val_sigma_must_be_a_noise_level_0_to_255(data_dir, tmp_path, value):
    r = run("--data", data_dir, "--val", data_dir, "--val-sigma", f"15,{value}", "--out", tmp_path / "m.safetensors", *TINY)
    one_line_error(r, 2)
    assert "--val-sigma" in r.output and "0-255" in r.output
    assert not (tmp_path / "m.log").exists()
    with pytest.raises(UsageError, match="--val-sigma"):
        TrainConfig(task="cls", data=("d",), val_sigmas=(float(value),))


# JSON outputs -------------------------------------------------------------------------------------

def test_json_outputs_are_standard_json_without_infinity(data_dir, tmp_path):
    """Without --val the best score stays -inf: OUT.json, OUT.log and the weight file's
    metadata said -Infinity, which strict JSON parsers refuse. Now null."""
    out = tmp_path / "m.safetensors"
    r = run("--data", data_dir, "--out", out, *TINY)
    assert r.exit_code == 0, r.output
    doc = strict_json(out.with_suffix(".json").read_text())
    assert doc["best"]["score"] is None and doc["best"]["step"] == 2
    for line in out.with_suffix(".log").read_text().splitlines():
        strict_json(line)
    data = out.read_bytes()
    header = strict_json(data[8:8 + int.from_bytes(data[:8], "little")])
    for v in header["__metadata__"].values():
        if v[:1] in "{[":
            strict_json(v)
    assert load_weights(out)[1]["best"]["score"] is None
    assert math.isinf(load_checkpoint(out.with_suffix(".ckpt"))["best"]["score"])  # the loop's own value


# --time-budget on --resume ----------------------------------------------------------------------

def test_time_budget_counts_this_runs_time_only(data_dir, tmp_path):
    """The budget counted the earlier runs' time too: each --resume with the same budget did
    one step. Now it is this run's; the summary's elapsed time still adds the earlier runs'."""
    out = tmp_path / "m.safetensors"
    first = train_denoiser(cfg(data_dir, out, time_budget=1e-6))
    assert first["stopped_early"] and first["steps_done"] == 1
    ck = load_checkpoint(out.with_suffix(".ckpt"))
    save_checkpoint(out.with_suffix(".ckpt"), {**ck, "elapsed": 5000.0})  # long earlier runs
    s = train_denoiser(cfg(data_dir, out, time_budget=1000.0, resume=True))
    assert s["steps_done"] == 6 and not s["stopped_early"] and s["elapsed_s"] > 5000

    # --steps 0: the first run plans the step count from its budget, --resume continues to it
    out = tmp_path / "b.safetensors"
    first = train_denoiser(cfg(data_dir, out, steps=0, time_budget=0.05))
    assert first["stopped_early"] and first["steps_done"] < first["total"]
    s = train_denoiser(cfg(data_dir, out, steps=0, time_budget=600.0, resume=True))
    assert s["total"] == first["total"] == s["steps_done"] and not s["stopped_early"]


# options accepted and ignored -------------------------------------------------------------------

def test_options_the_task_ignores_are_refused(data_dir, tmp_path):
    for kw, option in (({"lam": 0.1}, "--lambda"), ({"task_net": "resnet9.cifar10"}, "--task-net"),
                       ({"task_target": "clean"}, "--task-target")):
        with pytest.raises(UsageError, match=f"{option} applies to the cascade"):
            TrainConfig(data=("d",), **kw)
    for task in ("seg", "cls"):
        with pytest.raises(UsageError, match="--val applies to --task denoise only"):
            TrainConfig(task=task, data=("d",), val=("v",))
        with pytest.raises(UsageError, match="--val-limit applies"):
            TrainConfig(task=task, data=("d",), val_limit=3)
    for args in (["--task-net", "resnet9.cifar10"], ["--task-class-weights"], ["--lambda", "5"],
                 ["--task", "cls", "--task-class-weights"], ["--task", "cls", "--val", data_dir]):
        r = run("--data", data_dir, "--out", tmp_path / "m.safetensors", *args, *TINY)
        one_line_error(r, 2)
        assert next(a for a in reversed(args) if str(a).startswith("--")) in r.output
        assert not (tmp_path / "m.log").exists()


def test_no_noise_level_with_a_noise_level_init_is_refused_and_noise_level_recorded_truthfully(
        data_dir, tmp_path, default_weights):
    """--no-noise-level with an --init model that takes a noise level trained that model as it
    is (with its noise-level input) and recorded noise_level false: refused. An --init model
    without one is fine-tuned as it is and recorded so."""
    out = tmp_path / "m.safetensors"
    with pytest.raises(UsageError, match="--no-noise-level: the --init model"):
        train_denoiser(cfg(data_dir, out, init=str(default_weights), noise_level=False))
    assert not out.exists() and not out.with_suffix(".ckpt").exists()
    torch.manual_seed(0)
    plain = build_denoiser({"noise_level": False, "width": 8, "mid": 16, "up_mid": 8, "fuse": 16})
    init = tmp_path / "plain.safetensors"
    save_weights(plain.state_dict(), init, {"arch": "ddn", "config": plain.config.to_dict(), "task": "denoise"})
    train_denoiser(cfg(data_dir, out, init=str(init), steps=2))  # --noise-level: the default
    assert load_weights(out)[1]["training"]["noise_level"] is False
    assert load_checkpoint(out.with_suffix(".ckpt"))["config"]["noise_level"] is False


# the --init record after --resume ----------------------------------------------------------------

def test_resume_keeps_the_init_record(data_dir, tmp_path, default_weights):
    """After --resume (without --init, as the hint says) OUT.json said training.init null and
    init_meta {}: the checkpoint now keeps both; an --init given on resume is named as ignored."""
    out = tmp_path / "m.safetensors"
    assert train_denoiser(cfg(data_dir, out, init=str(default_weights), steps=3, time_budget=1e-6))["stopped_early"]
    train_denoiser(cfg(data_dir, out, steps=3, resume=True))
    meta = load_weights(out)[1]
    assert meta["training"]["init"] == str(default_weights)
    assert meta["init_meta"]["arch"] == "ddn" and meta["init_meta"] == json.loads(
        out.with_suffix(".json").read_text())["init_meta"]
    ck = load_checkpoint(out.with_suffix(".ckpt"))
    assert ck["config"]["init"] == str(default_weights) and ck["init_meta"]["arch"] == "ddn"

    other = tmp_path / "other.safetensors"
    other.write_bytes(default_weights.read_bytes())
    b = tmp_path / "b.safetensors"
    r = run("--data", data_dir, "--out", b, "--init", default_weights, *TINY, "--time-budget", "1e-6")
    assert r.exit_code == 0, r.output
    r = run("--data", data_dir, "--out", b, "--init", other, "--resume", *TINY)
    assert r.exit_code == 0, r.output
    assert f"--init {other} (checkpoint: {default_weights})" in r.output
    assert load_weights(b)[1]["training"]["init"] == str(default_weights)


# --steps 0 and validation; a diverged run ---------------------------------------------------------

def test_steps_0_keeps_time_for_validation(data_dir, tmp_path, monkeypatch):
    """--steps 0 sized the schedule as if validation took no time: with a slow validation the
    run met its budget after a fraction of its steps. Now the validations are timed into the plan."""
    real = loop.validate_model

    def slow(*a, **k):
        time.sleep(0.25)
        return real(*a, **k)

    monkeypatch.setattr(loop, "validate_model", slow)
    events = []
    s = train_denoiser(cfg(data_dir, tmp_path / "m.safetensors", steps=0, time_budget=4.0, val=(str(data_dir),),
                           val_every=4, val_sigmas=(25.0,)), events.append)
    cal = next(e for e in events if e["event"] == "calibrated")
    assert cal["val_reserve_s"] > 0 and cal["total"] == s["total"]
    assert s["steps_done"] == s["total"] and not s["stopped_early"], s


def test_a_diverged_run_stops_with_one_line_keeping_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    """A loss gone NaN (e.g. --lambda 1e308) trained on, saved NaN weights and exited 0."""
    real, calls = loop.reconstruction_loss, []

    def blows_up(*a, **k):
        calls.append(1)
        return real(*a, **k) * (float("nan") if len(calls) >= 4 else 1.0)

    monkeypatch.setattr(loop, "reconstruction_loss", blows_up)
    out = tmp_path / "m.safetensors"
    with pytest.raises(RunStopped, match="diverged by step 4") as e:
        train_denoiser(cfg(data_dir, out, ckpt_minutes=0.0))
    assert "(step 3) is kept" in e.value.hint
    ck = load_checkpoint(out.with_suffix(".ckpt"))
    assert ck["step"] == 3 and all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in load_weights(out)[0].values())
    r = run("--data", data_dir, "--out", tmp_path / "b.safetensors", *TINY)
    one_line_error(r, 1)
    assert "diverged" in r.output
