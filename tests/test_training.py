import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import smooth_image
from PIL import Image
from typer.testing import CliRunner

from ddn_cli.cli.app import app
from ddn_cli.errors import UsageError
from ddn_cli.training.checkpoint import load_checkpoint
from ddn_cli.training.config import TrainConfig
from ddn_cli.training.data import ImageBank, NoiseSpec, make_noisy, parse_sigma
from ddn_cli.training.loop import train_denoiser
from ddn_cli.training.schedule import lr_at
from ddn_cli.weightfile import load_weights


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "clean"
    d.mkdir()
    for i in range(4):
        Image.fromarray(smooth_image(40 + 4 * i, 52, seed=i)).save(d / f"{i}.png")
    return d


def cfg(data_dir, out, **kw):
    base = dict(data=(str(data_dir),), out=str(out), steps=6, batch_size=2, patch=32, warmup=2,
                precision="fp32", device="cpu", ema=0.9, ckpt_minutes=0.0)
    base.update(kw)
    return TrainConfig(**base)


def test_schedule_warmup_then_cosine():
    assert lr_at(0, 100, 1.0, 10, 0.01) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10, 0.01) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10, 0.01) == pytest.approx(0.01)
    vals = [lr_at(s, 100, 1.0, 10, 0.01) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_sigma_parsing_and_noise():
    assert parse_sigma("0-75") == NoiseSpec(0, 75)
    assert parse_sigma("15,25").values == (15.0, 25.0)
    with pytest.raises(UsageError):
        parse_sigma("a-b")
    g = torch.Generator().manual_seed(0)
    clean = torch.full((4, 3, 16, 16), 0.5)
    n = make_noisy(clean, torch.tensor([0.0, 25.0, 25.0, 50.0]), torch.tensor([False, False, True, False]), g)
    assert torch.equal(n[0], clean[0])
    assert abs(float((n[1] - clean[1]).std()) - 25 / 255) < 0.02
    assert torch.allclose(n[2] * 255, torch.round(n[2] * 255), atol=1e-4)  # clipped = quantised
    assert n[2].min() >= 0 and n[2].max() <= 1


def test_image_bank_crops_and_augments(data_dir):
    bank = ImageBank(sorted(data_dir.iterdir()), patch=32)
    b = bank.sample(5, torch.Generator().manual_seed(1))
    assert b.shape == (5, 3, 32, 32) and b.dtype == torch.uint8


def test_training_writes_weights_and_learns(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    s = train_denoiser(cfg(data_dir, out, steps=40, val=(str(data_dir),), val_every=20, val_sigmas=(25.0,),
                           lr=2e-3, warmup=5))
    assert out.is_file() and out.with_suffix(".json").is_file() and out.with_suffix(".ckpt").is_file()
    sd, meta = load_weights(out)
    assert meta["arch"] == "ddn" and meta["config"]["noise_level"] is True
    hist = json.loads(out.with_suffix(".json").read_text())["history"]
    assert [h["step"] for h in hist] == [20, 40]
    assert s["best"]["score"] > 20  # denoises (noisy input is ~20.2 dB at sigma 25)


def test_resume_is_bit_exact(data_dir, tmp_path):
    a = tmp_path / "a.safetensors"
    train_denoiser(cfg(data_dir, a))
    b = tmp_path / "b.safetensors"
    first = train_denoiser(cfg(data_dir, b, time_budget=1e-6))  # stops after the first step
    assert first["stopped_early"] and first["steps_done"] < 6
    train_denoiser(cfg(data_dir, b, resume=True))
    assert_same_checkpoints(a, b, step=6)


def assert_same_checkpoints(a, b, step):
    """The checkpoints beside weight files ``a`` and ``b`` are at ``step``, their model and EMA
    weights bit for bit equal (a resumed run against an uninterrupted one)."""
    ca, cb = load_checkpoint(a.with_suffix(".ckpt")), load_checkpoint(b.with_suffix(".ckpt"))
    assert ca["step"] == cb["step"] == step
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    for k in ca["ema"]:
        assert torch.equal(ca["ema"][k], cb["ema"][k]), k


def test_resume_without_checkpoint_is_a_usage_error(data_dir, tmp_path):
    with pytest.raises(UsageError):
        train_denoiser(cfg(data_dir, tmp_path / "none.safetensors", resume=True))


def test_fine_tune_from_init(data_dir, tmp_path, default_weights):
    out = tmp_path / "ft.safetensors"
    train_denoiser(cfg(data_dir, out, init=str(default_weights), steps=2))
    sd, meta = load_weights(out)
    base, _ = load_weights(default_weights)
    assert set(sd) == set(base)
    assert any(not torch.equal(sd[k], base[k]) for k in sd if sd[k].is_floating_point())


def test_fine_tuning_keeps_batchnorm_statistics_unless_told(data_dir, tmp_path, default_weights):
    base, _ = load_weights(default_weights)
    stats = [k for k in base if "running_" in k]
    assert stats
    out = tmp_path / "frozen.safetensors"
    res = train_denoiser(cfg(data_dir, out, init=str(default_weights), steps=3, ema=0.0, val=(str(data_dir),),
                             val_every=2))  # validation flips train/eval: BN must stay frozen after it
    assert TrainConfig(data=("x",), init="a").freeze_bn and not TrainConfig(data=("x",)).freeze_bn
    sd, meta = load_weights(out)
    assert all(torch.equal(sd[k], base[k]) for k in stats)
    assert any(not torch.equal(sd[k], base[k]) for k in sd if k.endswith(".weight"))  # it still learned
    assert meta["training"]["freeze_bn"] is True and res["steps_done"] == 3
    out2 = tmp_path / "trained_bn.safetensors"
    train_denoiser(cfg(data_dir, out2, init=str(default_weights), steps=3, ema=0.0, freeze_bn=False))
    sd2, _ = load_weights(out2)
    assert any(not torch.equal(sd2[k], base[k]) for k in stats if k.endswith("running_var"))


def test_cli_train_and_log(data_dir, tmp_path):
    out = tmp_path / "cli.safetensors"
    r = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(out), "--steps", "3", "--batch-size",
                                 "2", "--patch", "32", "--precision", "fp32", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert out.is_file()
    events = [json.loads(line)["event"] for line in out.with_suffix(".log").read_text().splitlines()]
    assert events[0] == "data" and events[-1] == "done"
    r = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "nope"), "--out", str(out)])
    assert r.exit_code == 2 and "nope" in r.output


@pytest.mark.slow
def test_ddp_two_cpu_processes(data_dir, tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "ddn_cli", "train", "--data", str(data_dir), "--out", str(out), "--steps", "4", "--batch-size", "2",
           "--patch", "32", "--precision", "fp32", "--device", "cpu", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = load_checkpoint(out.with_suffix(".ckpt"))
    assert ck["step"] == 4 and len(ck["gens"]) == 2  # both ranks' RNG states saved
    events = [json.loads(line) for line in out.with_suffix(".log").read_text().splitlines()]
    assert any(e["event"] == "data" and e["world_size"] == 2 for e in events)


def test_distill_targets_the_teachers_output(data_dir, tmp_path, default_weights):
    def first_loss(**kw) -> float:
        events = []
        train_denoiser(cfg(data_dir, tmp_path / "d.safetensors", init=str(default_weights), steps=1, loss="mse",
                           ema=0.0, **kw), events.append)
        return next(e["loss"] for e in events if e["event"] == "step")

    # a student identical to its teacher starts at zero loss (the teacher runs in its inference
    # form: the same function up to float rounding); against the clean image it does not
    assert first_loss(distill=str(default_weights)) < 1e-9
    assert first_loss() > 1e-5
    meta = json.loads((tmp_path / "d.json").read_text())
    assert meta["training"]["distill"] is None
    # kept through --resume without the flag
    out = tmp_path / "r.safetensors"
    train_denoiser(cfg(data_dir, out, init=str(default_weights), steps=3, time_budget=1e-6, distill=str(default_weights)))
    train_denoiser(cfg(data_dir, out, steps=3, resume=True))
    assert load_checkpoint(out.with_suffix(".ckpt"))["config"]["distill"] == str(default_weights)
    with pytest.raises(UsageError, match="--distill"):
        TrainConfig(task="cls", data=("d",), distill="ddn.color-sigma")


def test_cli_distill(data_dir, tmp_path, default_weights):
    out = tmp_path / "c.safetensors"
    r = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(out), "--steps", "1", "--batch-size", "2",
                            "--patch", "32", "--warmup", "1", "--precision", "fp32", "--device", "cpu", "--quiet",
                            "--init", str(default_weights), "--distill", str(default_weights)])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out.with_suffix(".ckpt"))["config"]["distill"] == str(default_weights)


def test_resume_keeps_a_narrowed_architecture(data_dir, tmp_path):
    # a fine-tune of a model narrower than the default (as benchmarks/prune_width.py makes) must
    # resume into that architecture, which only the checkpoint knows once --init is gone
    from ddn_cli.models.denoiser import build_denoiser
    from ddn_cli.weightfile import save_weights

    narrow = build_denoiser({"width": 8, "mid": 16, "up_mid": 8, "fuse": 28})
    init = tmp_path / "narrow.safetensors"
    save_weights(narrow.state_dict(), init, {"arch": "ddn", "config": narrow.config.to_dict(), "task": "denoise"})
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train_denoiser(cfg(data_dir, a, init=str(init), steps=3))
    train_denoiser(cfg(data_dir, b, init=str(init), steps=3, time_budget=1e-6))
    train_denoiser(cfg(data_dir, b, steps=3, resume=True))
    ca, cb = load_checkpoint(a.with_suffix(".ckpt")), load_checkpoint(b.with_suffix(".ckpt"))
    assert cb["model_config"]["fuse"] == 28
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])


def test_mse_sigma_weights_each_noise_level_alike():
    from ddn_cli.training.losses import reconstruction_loss

    target = torch.zeros(3, 3, 8, 8)
    # the same relative error at sigma 12.5, 25 and 50 (error proportional to sigma) costs the same
    pred = torch.stack([torch.full((3, 8, 8), s / 255 * 0.1) for s in (12.5, 25.0, 50.0)])
    per = [float(reconstruction_loss("mse-sigma", pred[i:i + 1], target[i:i + 1], torch.tensor([s])))
           for i, s in enumerate((12.5, 25.0, 50.0))]
    assert per[0] == pytest.approx(per[1], rel=1e-5) and per[2] == pytest.approx(per[1], rel=1e-5)
    # at sigma 25 it is the plain MSE; the batch loss is the mean of the samples' weighted losses
    assert per[1] == pytest.approx(float(reconstruction_loss("mse", pred[1:2], target[1:2])), rel=1e-6)
    both = reconstruction_loss("mse-sigma", pred, target, torch.tensor([12.5, 25.0, 50.0]))
    assert float(both) == pytest.approx(sum(per) / 3, rel=1e-5)
    # near-clean samples are weighted as sigma 5, not without bound
    tiny = reconstruction_loss("mse-sigma", pred[1:2], target[1:2], torch.tensor([0.0]))
    assert float(tiny) == pytest.approx(per[1] * 25, rel=1e-5)
    with pytest.raises(ValueError, match="noise level"):
        reconstruction_loss("mse-sigma", pred, target)


def test_training_with_mse_sigma_uses_the_drawn_sigmas(data_dir, tmp_path, default_weights, monkeypatch):
    from ddn_cli.training import loop

    seen = []
    real = loop.reconstruction_loss

    def spy(kind, pred, target, sigma=None):
        seen.append((kind, None if sigma is None else sigma.clone()))
        return real(kind, pred, target, sigma)

    monkeypatch.setattr(loop, "reconstruction_loss", spy)
    events = []
    train_denoiser(cfg(data_dir, tmp_path / "s.safetensors", init=str(default_weights), steps=2, loss="mse-sigma",
                       sigma="10-40", distill=str(default_weights)), events.append)
    steps = [k for k, _ in seen]
    assert steps and set(steps) == {"mse-sigma"}
    sig = torch.cat([s for _, s in seen])
    assert sig.numel() == 2 * len(seen) and bool(((sig >= 10) & (sig <= 40)).all())
    assert any(e["event"] == "step" for e in events)
    with pytest.raises(UsageError, match="--loss"):
        TrainConfig(data=("d",), loss="mse_sigma")
