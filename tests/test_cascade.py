"""The cascade: denoiser -> frozen segmenter / classifier, only the denoiser learns."""

import json

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image
from typer.testing import CliRunner

from ddn_cli.cli.app import app
from ddn_cli.errors import UsageError
from ddn_cli.models.classifier import CIFAR10_CLASSES, CIFAR10_MEAN, ResNet9
from ddn_cli.models.segmenter import ResNet9UNet, ResUNetS
from ddn_cli.registry import bundled_manifest
from ddn_cli.training.camvid import SegBank, confusion, load_camvid, miou
from ddn_cli.training.cascade import build_cascade, state_hash
from ddn_cli.training.checkpoint import load_checkpoint
from ddn_cli.training.config import TrainConfig
from ddn_cli.training.loop import train_denoiser
from ddn_cli.weightfile import load_weights, save_weights

runner = CliRunner()


def tiny_camvid(root, n=10, h=40, w=56):
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n if split == "train" else 3):
            img = smooth_image(h, w, seed=i)
            Image.fromarray(img).save(root / split / f"f{i:03d}.png")
            mask = (img[..., 0] // 24).clip(0, 11).astype(np.uint8)
            Image.fromarray(mask).save(root / f"{split}annot" / f"f{i:03d}.png")
    return root


def two_sequences(root):
    """Rename a tiny CamVid's training files into two "sequences", A... and B..., alternately."""
    for i, f in enumerate(sorted((root / "train").glob("*.png"))):
        for d in ("train", "trainannot"):
            (root / d / f.name).rename(root / d / f"{'AB'[i % 2]}{f.name}")
    return root


def tiny_cifar(root, per_class=12):
    for ci, name in enumerate(CIFAR10_CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(smooth_image(32, 32, seed=ci * 100 + i)).save(root / name / f"{i}.jpg")
    return root


def tiny_segmenter(path):
    torch.manual_seed(0)
    net = ResUNetS(width=4)
    net.train()
    with torch.no_grad():  # non-trivial BN statistics, so an accidental update would show
        for _ in range(2):
            net(torch.rand(2, 3, 32, 32))
    save_weights(net.state_dict(), path, {"arch": "resunet_s", "task": "segmenter",
                                          "config": {"width": 4, "num_classes": 11}})
    return path


def tiny_classifier(path):
    torch.manual_seed(0)
    net = ResNet9(width=4)
    net.train()
    with torch.no_grad():
        net(torch.rand(8, 3, 32, 32))
    save_weights(net.state_dict(), path, {"arch": "resnet9", "task": "classifier", "config": {"width": 4},
                                          "classes": list(CIFAR10_CLASSES)})
    return path


def run_cascade(task, data, net, out, **kw):
    base = dict(task=task, data=(str(data),), out=str(out), steps=4, batch_size=2, patch=32, warmup=1,
                precision="fp32", device="cpu", ema=0.0, ckpt_minutes=0.0, val_every=2, loss="mse",
                val_sigmas=(30.0,), init="ddn.color-sigma", task_net=str(net), lam=0.5, lr=1e-3)
    base.update(kw)
    return train_denoiser(TrainConfig(**base))


@pytest.mark.parametrize("task", ["seg", "cls"])
def test_only_the_denoiser_learns(tmp_path, task, default_weights):
    if task == "seg":
        data, net = tiny_camvid(tmp_path / "camvid"), tiny_segmenter(tmp_path / "seg.safetensors")
    else:
        data, net = tiny_cifar(tmp_path / "cifar"), tiny_classifier(tmp_path / "cls.safetensors")
    net_bytes = net.read_bytes()
    before_sd, _ = load_weights(net)
    res = run_cascade(task, data, net, tmp_path / "out.safetensors")
    # the frozen network's in-memory state was hashed before and after training
    assert res["task_net_sha_before"] == res["task_net_sha_after"]
    ref = ResUNetS(width=4) if task == "seg" else ResNet9(width=4)
    ref.load_state_dict(before_sd)
    assert res["task_net_sha_before"] == state_hash(ref)
    assert net.read_bytes() == net_bytes
    # ... and the denoiser did change
    sd, meta = load_weights(tmp_path / "out.safetensors")
    init_sd, _ = load_weights(default_weights)
    assert any(not torch.equal(sd[k], init_sd[k]) for k in init_sd)
    assert meta["task"] == task and meta["cascade"]["lambda"] == 0.5
    assert meta["cascade"]["task_net_sha"] == res["task_net_sha_before"]
    assert set(meta["best"]["metric"]) == {"30.0"}


def test_task_loss_reaches_the_denoiser_only(tmp_path):
    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    c = build_cascade("cls", str(data), str(net), 1.0, torch.device("cpu"), val_count=4)
    from ddn_cli.devices import resolve_precision
    from ddn_cli.models import build_denoiser

    den = build_denoiser({"noise_level": True, "width": 8, "mid": 16, "up_mid": 8, "fuse": 16})
    x, y = c.sample(4, torch.Generator().manual_seed(0))
    loss = c.task_loss(den(x.float() / 255, torch.full((4,), 0.1)), y, resolve_precision("fp32", torch.device("cpu")),
                       torch.device("cpu"))
    loss.backward()
    assert all(p.grad is None for p in c.net.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in den.parameters())
    assert not c.net.training


def test_cascade_resume_and_wrong_task_net(tmp_path):
    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    with pytest.raises(UsageError, match="not a segmenter"):
        build_cascade("seg", str(data), str(net), None, torch.device("cpu"))
    full = run_cascade("cls", data, net, tmp_path / "a.safetensors", steps=4)
    run_cascade("cls", data, net, tmp_path / "b.safetensors", steps=4, time_budget=1e-6)
    run_cascade("cls", data, net, tmp_path / "b.safetensors", steps=4, resume=True)
    a, _ = load_weights(tmp_path / "a.safetensors")
    b, _ = load_weights(tmp_path / "b.safetensors")
    assert full["steps_done"] == 4
    # the resumed run follows the same schedule and batches: same final weights
    ca, cb = load_checkpoint(tmp_path / "a.ckpt"), load_checkpoint(tmp_path / "b.ckpt")
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    assert a.keys() == b.keys()


def test_cli_train_cls(tmp_path):
    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    out = tmp_path / "cls-guided.safetensors"
    r = runner.invoke(app, ["train", "--task", "cls", "--data", str(data), "--task-net", str(net), "--out", str(out),
                            "--steps", "2", "--batch-size", "2", "--patch", "32", "--warmup", "1", "--val-every", "2",
                            "--precision", "fp32", "--device", "cpu", "--lambda", "0.05", "--quiet",
                            "--task-grad-blur", "1", "--task-grad-highpass", "3", "--task-rec-weight", "0.5",
                            "--task-noise", "8"])
    assert r.exit_code == 0, r.output
    cfg = load_checkpoint(out.with_suffix(".ckpt"))["config"]
    assert (cfg["task_grad_blur"], cfg["task_grad_highpass"], cfg["task_rec_weight"], cfg["task_noise"]) == (1.0, 3.0, 0.5, 8.0)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["task"] == "cls" and meta["training"]["loss"] == "mse" and meta["cascade"]["lambda"] == 0.05
    assert meta["training"]["init"] == "ddn.color-sigma"
    r = runner.invoke(app, ["train", "--task", "seg", "--data", str(data), "--task-net", str(net), "--out",
                            str(tmp_path / "x.safetensors"), "--steps", "2", "--quiet"])
    assert r.exit_code != 0 and "Traceback" not in r.output


def test_cli_train_seg_defaults_to_the_shipped_recipe(tmp_path):
    """`ddn train --task seg` uses the plain cross entropy and lambda 3e-4 unless told otherwise;
    --task-class-weights brings the class weighting back."""
    data, net = tiny_camvid(tmp_path / "camvid", 4), tiny_segmenter(tmp_path / "seg.safetensors")
    for extra, want in (([], False), (["--task-class-weights"], True)):
        out = tmp_path / f"seg{len(extra)}.safetensors"
        r = runner.invoke(app, ["train", "--task", "seg", "--data", str(data), "--task-net", str(net), "--out", str(out),
                                "--steps", "2", "--batch-size", "2", "--patch", "32", "--warmup", "1", "--val-every", "2",
                                "--precision", "fp32", "--device", "cpu", "--quiet", *extra])
        assert r.exit_code == 0, r.output
        cfg = load_checkpoint(out.with_suffix(".ckpt"))["config"]
        assert cfg["task_class_weights"] is want
        assert cfg["lam"] == 3e-4  # the resolved default is recorded: a resume keeps it if the default moves
        assert json.loads(out.with_suffix(".json").read_text())["cascade"]["lambda"] == 3e-4
    r = runner.invoke(app, ["train", "--task", "cls", "--data", str(tiny_cifar(tmp_path / "cifar", 4)),
                            "--out", str(tmp_path / "c.safetensors"), "--no-task-class-weights", "--steps", "1"])
    assert r.exit_code != 0 and "--no-task-class-weights applies to --task seg only" in r.output
    out = tmp_path / "c2.safetensors"  # no --task-net: the bundled default's name is recorded
    r = runner.invoke(app, ["train", "--task", "cls", "--data", str(tmp_path / "cifar"), "--out", str(out),
                            "--steps", "1", "--batch-size", "2", "--warmup", "1", "--val-every", "1",
                            "--precision", "fp32", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    cfg = load_checkpoint(out.with_suffix(".ckpt"))["config"]
    assert (cfg["task_net"], cfg["lam"]) == (bundled_manifest().defaults["classifier"], 0.01)


def test_camvid_subset_keeps_only_the_named_sequences(tmp_path):
    data = two_sequences(tiny_camvid(tmp_path / "camvid", n=6))
    x, y, names = load_camvid(data, "train", subset=("A",))
    assert len(names) == 3 and all(n.startswith("A") for n in names) and x.shape[0] == y.shape[0] == 3
    assert len(load_camvid(data, "train")[2]) == 6
    with pytest.raises(UsageError, match="no image names start with Z"):
        load_camvid(data, "train", subset=("Z",))
    net = tiny_segmenter(tmp_path / "seg.safetensors")
    c = build_cascade("seg", str(data), str(net), 0.01, torch.device("cpu"), crop=32, subset=("B",), val_count=1)
    assert len(c) == 2 and len(c.val_x) == 1  # 3 B images: 2 to train on, 1 held out
    with pytest.raises(UsageError, match="--subset applies to --task seg only"):
        TrainConfig(task="cls", data=("x",), subset=("A",))


def test_segbank_and_miou():
    imgs = torch.randint(0, 255, (3, 3, 40, 56), dtype=torch.uint8)
    masks = torch.randint(0, 12, (3, 40, 56), dtype=torch.uint8)
    x, y = SegBank(imgs, masks, (32, 40)).sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 3, 32, 40) and x.dtype == torch.uint8 and y.shape == (5, 32, 40)
    assert int(y.max()) <= 11
    t = torch.tensor([[0, 1, 11], [1, 1, 0]])
    p = torch.tensor([[0, 1, 0], [0, 1, 0]])
    m, per, acc = miou(confusion(p, t, 11))
    # class 0: inter 2 (two correct), union 3; class 1: inter 2, union 3
    assert per[0] == pytest.approx(2 / 3) and per[1] == pytest.approx(2 / 3) and m == pytest.approx(2 / 3)
    assert per[2:] == [None] * 9  # absent from both: no IoU (it was reported as 0.0), not in the mean
    assert acc == pytest.approx(4 / 5)


@pytest.mark.slow
def test_cascade_ddp_two_cpu_processes(tmp_path):
    import os
    import subprocess
    import sys

    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ddn_cli",
           "train", "--task", "cls", "--data", str(data), "--task-net", str(net), "--out", str(out), "--steps", "3",
           "--batch-size", "2", "--val-every", "3", "--precision", "fp32", "--device", "cpu", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = load_checkpoint(out.with_suffix(".ckpt"))
    assert ck["step"] == 3 and len(ck["gens"]) == 2
    events = [json.loads(line) for line in out.with_suffix(".log").read_text().splitlines()]
    done = [e for e in events if e["event"] == "done"][0]
    assert done["task_net_sha_before"] == done["task_net_sha_after"]
    assert any(e["event"] == "data" and e["world_size"] == 2 for e in events)


def test_clean_target_fits_the_networks_own_clean_prediction(tmp_path):
    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    from ddn_cli.devices import resolve_precision

    prec, cpu = resolve_precision("fp32", torch.device("cpu")), torch.device("cpu")
    c = build_cascade("cls", str(data), str(net), 1.0, cpu, val_count=4, target="clean")
    x, y = c.sample(6, torch.Generator().manual_seed(0))
    clean = x.float() / 255
    own = c.net(clean).argmax(1)
    wrong = (own + 1) % 10  # labels the network never predicts on these images
    assert torch.allclose(c.task_loss(clean, wrong, prec, cpu, clean),
                          torch.nn.functional.cross_entropy(c.net(clean), own))
    with pytest.raises(ValueError):
        c.task_loss(clean, wrong, prec, cpu)
    with pytest.raises(UsageError, match="task-target"):
        build_cascade("cls", str(data), str(net), 1.0, cpu, val_count=4, target="nope")
    res = run_cascade("cls", data, net, tmp_path / "o.safetensors", task_target="clean", steps=2)
    assert res["task_net_sha_before"] == res["task_net_sha_after"]
    assert load_weights(tmp_path / "o.safetensors")[1]["cascade"]["target"] == "clean"


def test_soft_target_is_the_kl_to_the_clean_prediction_and_zero_when_perfect(tmp_path):
    data, net = tiny_camvid(tmp_path / "camvid", 6), tiny_segmenter(tmp_path / "seg.safetensors")
    from ddn_cli.devices import resolve_precision

    prec, cpu = resolve_precision("fp32", torch.device("cpu")), torch.device("cpu")
    c = build_cascade("seg", str(data), str(net), 1.0, cpu, crop=32, val_count=1, target="soft")
    x, y = c.sample(3, torch.Generator().manual_seed(0))
    clean = x.float() / 255
    assert float(c.task_loss(clean, y, prec, cpu, clean)) == pytest.approx(0.0, abs=1e-6)
    den = (clean + 0.2 * torch.randn_like(clean)).requires_grad_(True)
    loss = c.task_loss(den, y, prec, cpu, clean)
    p, q = torch.softmax(c.net(den), 1), torch.softmax(c.net(clean), 1)
    assert float(loss.detach()) > 0 and torch.allclose(loss, (q * (q.log() - p.log())).sum(1).mean(), atol=1e-5)
    loss.backward()
    assert den.grad is not None and float(den.grad.abs().sum()) > 0
    assert all(p.grad is None for p in c.net.parameters())  # the network itself gets no gradient
    res = run_cascade("seg", data, net, tmp_path / "o.safetensors", task_target="soft", steps=2)
    assert res["task_net_sha_before"] == res["task_net_sha_after"]


def test_segmenter_training_on_a_sequence_subset_and_resume(tmp_path):
    from ddn_cli.training.segmenter import SegmenterConfig, train_segmenter

    data = two_sequences(tiny_camvid(tmp_path / "camvid", n=6))
    out = tmp_path / "seg.safetensors"
    events = []
    cfg = SegmenterConfig(data=str(data), out=str(out), steps=2, batch_size=2, crop=(32, 40), width=4,
                          warmup=1, val_every=2, precision="fp32", subset=("A",))
    train_segmenter(cfg, events.append)
    assert events[0]["event"] == "data" and events[0]["train"] == 3
    sd, meta = load_weights(out)
    assert meta["task"] == "segmenter" and meta["training"]["subset"] == ["A"] and meta["step"] == 2
    first = {k: v.clone() for k, v in sd.items()}
    # resuming a finished run with more steps continues from its checkpoint, not from scratch
    events.clear()
    train_segmenter(SegmenterConfig(**{**cfg.__dict__, "steps": 3, "resume": True}), events.append)
    assert any(e["event"] == "resumed" and e["step"] == 2 for e in events)
    sd2, meta2 = load_weights(out)
    assert meta2["step"] == 3 and any(not torch.equal(first[k], sd2[k]) for k in first)


def test_rehearsal_adds_a_photo_reconstruction_term_and_resumes_exactly(tmp_path):
    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(40, 52, seed=50 + i)).save(photos / f"p{i}.png")
    kw = dict(rehearse=(str(photos),), rehearse_batch=2, rehearse_patch=32)
    plain = run_cascade("cls", data, net, tmp_path / "plain.safetensors", steps=4)
    full = run_cascade("cls", data, net, tmp_path / "a.safetensors", steps=4, **kw)
    run_cascade("cls", data, net, tmp_path / "b.safetensors", steps=4, time_budget=1e-6, **kw)
    run_cascade("cls", data, net, tmp_path / "b.safetensors", steps=4, resume=True, **kw)
    assert full["steps_done"] == plain["steps_done"] == 4
    ca, cb = load_checkpoint(tmp_path / "a.ckpt"), load_checkpoint(tmp_path / "b.ckpt")
    cp = load_checkpoint(tmp_path / "plain.ckpt")
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])  # resume: same batches
    assert any(not torch.equal(ca["model"][k], cp["model"][k]) for k in ca["model"])  # the term did something
    assert ca["config"]["rehearse"] == [str(photos)]
    with pytest.raises(UsageError, match="--rehearse"):
        TrainConfig(task="denoise", data=(str(photos),), rehearse=(str(photos),))
    # the gradient filter and the task images' L_rec weight come back from the checkpoint on
    # resume: resumed without them, the run still matches an uninterrupted one that had them
    extra = {"task_rec_weight": 0.5, "task_grad_blur": 1.0, "task_grad_highpass": 3.0, "task_noise": 10.0}
    run_cascade("cls", data, net, tmp_path / "c.safetensors", steps=4, **kw, **extra)
    run_cascade("cls", data, net, tmp_path / "d.safetensors", steps=4, time_budget=1e-6, **kw, **extra)
    run_cascade("cls", data, net, tmp_path / "d.safetensors", steps=4, resume=True, **kw)
    cc, cd = load_checkpoint(tmp_path / "c.ckpt"), load_checkpoint(tmp_path / "d.ckpt")
    assert all(torch.equal(cc["model"][k], cd["model"][k]) for k in cc["model"])
    assert any(not torch.equal(cc["model"][k], ca["model"][k]) for k in cc["model"])
    assert {k: cd["config"][k] for k in extra} == extra


def test_task_rec_weight_zero_takes_reconstruction_only_from_the_rehearsal_photos(tmp_path):
    """--task-rec-weight 0 with lambda 0: what the task's clean images look like no longer
    matters (their L_rec is weighted out), while with the default weight 1 it does."""
    data = tiny_cifar(tmp_path / "cifar", 4)
    other = tmp_path / "cifar_inverted"  # same names and sizes, other pixels
    for f in sorted(data.rglob("*.jpg")):
        dst = other / f.relative_to(data)
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - np.asarray(Image.open(f))).save(dst)
    net = tiny_classifier(tmp_path / "cls.safetensors")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(smooth_image(40, 52, seed=70 + i)).save(photos / f"p{i}.png")
    kw = {"rehearse": (str(photos),), "rehearse_batch": 2, "rehearse_patch": 32, "lam": 0.0}
    runs = {}
    for w in (0.0, 1.0):
        for name, d in (("a", data), ("b", other)):
            run_cascade("cls", d, net, tmp_path / f"{name}{w}.safetensors", task_rec_weight=w, **kw)
            runs[name, w] = load_checkpoint(tmp_path / f"{name}{w}.ckpt")["model"]
    same = lambda x, y: all(torch.equal(x[k], y[k]) for k in x)
    assert same(runs["a", 0.0], runs["b", 0.0])
    assert not same(runs["a", 1.0], runs["b", 1.0])
    assert not same(runs["a", 0.0], runs["a", 1.0])
    assert load_checkpoint(tmp_path / "a0.0.ckpt")["config"]["task_rec_weight"] == 0.0
    with pytest.raises(UsageError, match="without a reconstruction loss"):
        TrainConfig(task="cls", data=(str(data),), task_rec_weight=0.0)
    with pytest.raises(UsageError, match="cascade tasks"):
        TrainConfig(task="denoise", data=(str(photos),), task_rec_weight=0.5)
    with pytest.raises(UsageError, match=">= 0"):
        TrainConfig(task="cls", data=(str(data),), task_rec_weight=-1.0)


def test_blur_gradient_keeps_the_forward_value_and_blurs_only_the_gradient():
    from ddn_cli.training.cascade import filter_gradient, gaussian_blur

    torch.manual_seed(0)
    x = torch.rand(2, 3, 24, 30, requires_grad=True)
    y = filter_gradient(x, blur=2.0)
    assert torch.allclose(y, x, atol=1e-6)  # the network sees the denoised image itself
    ys, xs = torch.meshgrid(torch.arange(24), torch.arange(30), indexing="ij")
    checker = ((ys + xs) % 2 * 2 - 1).float().expand(2, 3, 24, 30)  # the finest pattern there is
    smooth = torch.cos(xs / 30 * torch.pi).float().expand(2, 3, 24, 30)
    for upstream in (checker, smooth):
        (g,) = torch.autograd.grad(y, x, upstream, retain_graph=True)
        (want,) = torch.autograd.grad(gaussian_blur(x, 2.0), x, upstream)
        assert torch.allclose(g, want, atol=1e-6)  # the gradient is the blur's transpose applied
    (g_checker,) = torch.autograd.grad(y, x, checker, retain_graph=True)
    (g_smooth,) = torch.autograd.grad(y, x, smooth)
    assert g_checker[..., 6:-6, 6:-6].abs().max() < 1e-3 and g_checker.abs().max() < 0.05  # the ring: reflect padding
    assert g_smooth.abs().max() > 0.5


def test_filter_gradient_band_pass_removes_coarse_and_fine_pushes_and_keeps_the_middle():
    from ddn_cli.training.cascade import filter_gradient

    torch.manual_seed(0)
    x = torch.rand(1, 3, 96, 128, requires_grad=True)
    y = filter_gradient(x, blur=1.0, highpass=6.0)
    assert torch.allclose(y, x, atol=1e-6)
    ys, xs = torch.meshgrid(torch.arange(96), torch.arange(128), indexing="ij")
    inner = (..., slice(24, -24), slice(24, -24))  # away from the padded border
    flat = torch.ones(1, 3, 96, 128)  # "make the whole frame brighter": the coarsest push
    checker = ((ys + xs) % 2 * 2 - 1).float().expand(1, 3, 96, 128)
    middle = torch.cos(2 * torch.pi * xs / 12).float().expand(1, 3, 96, 128)  # a 12 px period
    got = {}
    for name, up in (("flat", flat), ("checker", checker), ("middle", middle)):
        (got[name],) = torch.autograd.grad(y, x, up, retain_graph=True)
    assert got["flat"][inner].abs().max() < 0.01
    assert got["checker"][inner].abs().max() < 0.01
    assert got["middle"][inner].abs().max() > 0.5  # exp(-2 pi^2 / 144) = 0.87 of it passes
    with pytest.raises(UsageError, match="larger than"):
        TrainConfig(task="seg", data=("d",), task_grad_blur=2.0, task_grad_highpass=2.0)
    with pytest.raises(UsageError, match="cascade tasks"):
        TrainConfig(task="denoise", data=("d",), task_grad_highpass=4.0)
    assert TrainConfig(task="seg", data=("d",), task_grad_highpass=4.0).task_grad_highpass == 4.0
    with pytest.raises(UsageError, match="finite"):
        TrainConfig(task="seg", data=("d",), task_grad_blur=float("nan"))


def test_task_noise_shows_the_network_the_denoised_image_plus_fresh_seeded_noise():
    """--task-noise S: the task network sees denoised + N(0, S/255), drawn from the loop's
    generator (so a run and its resume draw alike), and the loss still reaches the denoiser."""
    from ddn_cli.devices import resolve_precision
    from ddn_cli.training.cascade import Cascade

    class Spy(torch.nn.Module):
        def forward(self, x):
            self.seen = x.detach().clone()
            return x.mean((2, 3))[:, :2] * 10

    cpu, spy = torch.device("cpu"), Spy()
    prec = resolve_precision("fp32", cpu, training=True)
    labels = torch.zeros(64, dtype=torch.long)
    den = torch.full((64, 3, 16, 16), 0.5, requires_grad=True)
    plain = Cascade("cls", spy, {}, "spy", None, None, None, 1.0, "")
    plain.task_loss(den, labels, prec, cpu)
    assert torch.equal(spy.seen, den.detach())  # off by default: the denoised image itself
    noisy = Cascade("cls", spy, {}, "spy", None, None, None, 1.0, "", noise=25.0)
    loss = noisy.task_loss(den, labels, prec, cpu, gen=torch.Generator().manual_seed(3))
    d = spy.seen - 0.5
    assert abs(float(d.std()) - 25 / 255) < 0.003 and abs(float(d.mean())) < 0.002
    first = spy.seen
    noisy.task_loss(den, labels, prec, cpu, gen=torch.Generator().manual_seed(3))
    assert torch.equal(spy.seen, first)  # the same generator state, the same draw
    noisy.task_loss(den, labels, prec, cpu, gen=torch.Generator().manual_seed(4))
    assert not torch.equal(spy.seen, first)
    (g,) = torch.autograd.grad(loss, den)
    assert g.abs().sum() > 0
    with pytest.raises(ValueError, match="generator"):
        noisy.task_loss(den, labels, prec, cpu)
    with pytest.raises(UsageError, match="cascade tasks"):
        TrainConfig(task="denoise", data=("d",), task_noise=5.0)
    with pytest.raises(UsageError, match="must be >= 0"):
        TrainConfig(task="cls", data=("d",), task_noise=-1.0)
    with pytest.raises(UsageError, match="finite"):
        TrainConfig(task="cls", data=("d",), task_noise=float("inf"))


def test_task_grad_blur_changes_training_and_is_recorded(tmp_path):
    data, net = tiny_camvid(tmp_path / "camvid", 6), tiny_segmenter(tmp_path / "seg.safetensors")
    plain = run_cascade("seg", data, net, tmp_path / "p.safetensors", steps=2)
    blurred = run_cascade("seg", data, net, tmp_path / "b.safetensors", steps=2, task_grad_blur=1.5)
    band = run_cascade("seg", data, net, tmp_path / "h.safetensors", steps=2, task_grad_blur=1.5, task_grad_highpass=4.0)
    assert band["steps_done"] == 2
    ch = load_checkpoint(tmp_path / "h.ckpt")
    assert ch["config"]["task_grad_highpass"] == 4.0
    assert any(not torch.equal(ch["model"][k], load_checkpoint(tmp_path / "b.ckpt")["model"][k]) for k in ch["model"])
    assert plain["steps_done"] == blurred["steps_done"] == 2
    cp, cb = load_checkpoint(tmp_path / "p.ckpt"), load_checkpoint(tmp_path / "b.ckpt")
    assert any(not torch.equal(cp["model"][k], cb["model"][k]) for k in cp["model"])
    assert cb["config"]["task_grad_blur"] == 1.5 and cp["config"]["task_grad_blur"] == 0.0
    with pytest.raises(UsageError, match="must be >= 0"):
        TrainConfig(task="seg", data=(str(data),), task_grad_blur=-1.0)
    with pytest.raises(UsageError, match="cascade tasks"):
        TrainConfig(task="denoise", data=(str(data),), task_grad_blur=1.0)


def test_task_augment_shifts_and_scales_image_and_labels_alike_and_resumes_exactly(tmp_path):
    """--task-augment: one random shift + downscale applied to the denoised crop, the clean
    crop and the labels alike (a label map moved with its image stays aligned); drawn from
    the loop's generator, so a resumed run matches an uninterrupted one; seg only."""
    data, net = tiny_camvid(tmp_path / "camvid", 6), tiny_segmenter(tmp_path / "seg.safetensors")
    cpu = torch.device("cpu")
    c = build_cascade("seg", str(data), str(net), 1.0, cpu, crop=32, val_count=1, augment=True)
    ys, xs = torch.meshgrid(torch.arange(32), torch.arange(40), indexing="ij")
    seen = set()
    for seed in range(6):
        for ramp in (ys, xs):  # an image whose pixels are their own row (column) index, and the same as labels
            a, b = c.jitter(torch.Generator().manual_seed(seed), ramp[None, None].float(), ramp[None])
            assert a.shape[-2:] == b.shape[-2:] and a.shape[-1] % 8 == 0 and a.shape[-2] <= 24
            # the same crop and scale: image and labels agree to within the resampling (< 1 px);
            # a shift applied to one only would be off by up to 7
            assert float((a[0, 0] - b[0]).abs()[1:-1, 1:-1].max()) <= 1.0
            seen.add(int(b[0, 0, 0]))
    assert len(seen) > 2  # the shift is random
    kw = dict(task_augment=True)
    full = run_cascade("seg", data, net, tmp_path / "a.safetensors", steps=4, **kw)
    run_cascade("seg", data, net, tmp_path / "b.safetensors", steps=4, time_budget=1e-6, **kw)
    run_cascade("seg", data, net, tmp_path / "b.safetensors", steps=4, resume=True, **kw)
    plain = run_cascade("seg", data, net, tmp_path / "p.safetensors", steps=4)
    ca, cb, cp = (load_checkpoint(tmp_path / f"{n}.ckpt") for n in "abp")
    assert full["task_net_sha_before"] == full["task_net_sha_after"]
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    assert any(not torch.equal(ca["model"][k], cp["model"][k]) for k in ca["model"])
    with pytest.raises(UsageError, match="--task-augment"):
        TrainConfig(task="cls", data=(str(data),), task_augment=True)


def test_unweighted_task_cross_entropy_is_the_plain_per_pixel_mean(tmp_path):
    """--no-task-class-weights (seg): the label cross entropy without the segmenter's class
    weights, i.e. the mean over labelled pixels; the default keeps the weights (which change
    the loss); cls rejects the option; a training run records it and resumes with it."""
    from ddn_cli.devices import resolve_precision

    data, net = tiny_camvid(tmp_path / "camvid", 6), tiny_segmenter(tmp_path / "seg.safetensors")
    prec, cpu = resolve_precision("fp32", torch.device("cpu")), torch.device("cpu")
    plain = build_cascade("seg", str(data), str(net), 1.0, cpu, crop=32, val_count=1, class_weighted=False)
    weighted = build_cascade("seg", str(data), str(net), 1.0, cpu, crop=32, val_count=1)
    assert plain.class_weights is None and weighted.class_weights is not None
    x, y = plain.sample(3, torch.Generator().manual_seed(0))
    den = x.float() / 255 + 0.1
    with torch.no_grad():
        logp = torch.log_softmax(plain.net(den), 1)
    keep = y != 11  # CamVid's void label is ignored
    nll = -logp.gather(1, y.clamp(max=10)[:, None])[:, 0]
    expected = nll[keep].mean()
    assert float(plain.task_loss(den, y, prec, cpu)) == pytest.approx(float(expected), rel=1e-5)
    assert abs(float(weighted.task_loss(den, y, prec, cpu)) - float(expected)) > 1e-4
    res = run_cascade("seg", data, net, tmp_path / "u.safetensors", steps=2, task_class_weights=False)
    assert res["task_net_sha_before"] == res["task_net_sha_after"]
    assert load_checkpoint(tmp_path / "u.ckpt")["config"]["task_class_weights"] is False
    with pytest.raises(UsageError, match="--no-task-class-weights"):
        TrainConfig(task="cls", data=(str(data),), task_class_weights=False)


def test_seg_default_lambda_is_the_shipped_seg_denoisers(tmp_path):
    """`ddn train --task seg` without --lambda trains the recipe `ddn.seg` was shipped with."""
    from ddn_cli.registry import bundled_manifest

    data, net = tiny_camvid(tmp_path / "camvid", 4), tiny_segmenter(tmp_path / "seg.safetensors")
    c = build_cascade("seg", str(data), str(net), None, torch.device("cpu"), crop=32, val_count=1)
    man = bundled_manifest()
    if "ddn.seg" in man.names():
        assert c.lam == man.get("ddn.seg").training["lambda"]
        assert man.get("ddn.seg").training["task_loss"] == "cross entropy, unweighted"
    assert c.lam == 3e-4


def test_train_only_fine_tunes_just_the_named_layers(tmp_path, default_weights):
    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    init_sd, _ = load_weights(default_weights)
    only = ("down2", "res2", "up1")
    run_cascade("cls", data, net, tmp_path / "a.safetensors", steps=3, train_only=only)
    sd, meta = load_weights(tmp_path / "a.safetensors")
    changed = {k.split(".")[0] for k in sd if not torch.equal(sd[k], init_sd[k])}
    assert changed and changed <= set(only)  # every other layer bit-identical to --init
    assert meta["training"]["train_only"] == list(only)
    # resumed without the option, the run keeps it (it comes back from the checkpoint)
    run_cascade("cls", data, net, tmp_path / "b.safetensors", steps=3, time_budget=1e-6, train_only=only)
    run_cascade("cls", data, net, tmp_path / "b.safetensors", steps=3, resume=True)
    ca, cb = load_checkpoint(tmp_path / "a.ckpt"), load_checkpoint(tmp_path / "b.ckpt")
    assert cb["config"]["train_only"] == list(only)
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    with pytest.raises(UsageError, match="fuse9"):
        run_cascade("cls", data, net, tmp_path / "c.safetensors", steps=1, train_only=("res2", "fuse9"))
    with pytest.raises(UsageError, match="--init"):
        TrainConfig(task="denoise", data=("d",), train_only=("res2",))
    with pytest.raises(UsageError, match="distinct"):
        TrainConfig(task="cls", data=("d",), init="ddn.color-sigma", train_only=("res2", "res2"))
    with pytest.raises(UsageError, match="--train-bn"):
        TrainConfig(task="cls", data=("d",), init="ddn.color-sigma", train_only=("res2",), freeze_bn=False)


def test_cli_train_only(tmp_path):
    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    out = tmp_path / "o.safetensors"
    r = runner.invoke(app, ["train", "--task", "cls", "--data", str(data), "--task-net", str(net), "--out", str(out),
                            "--steps", "1", "--batch-size", "2", "--patch", "32", "--warmup", "1", "--val-every", "1",
                            "--precision", "fp32", "--device", "cpu", "--quiet", "--train-only", "res2, up1"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out.with_suffix(".ckpt"))["config"]["train_only"] == ["res2", "up1"]
    r = runner.invoke(app, ["train", "--task", "cls", "--data", str(data), "--task-net", str(net), "--out",
                            str(tmp_path / "x.safetensors"), "--steps", "1", "--quiet", "--train-only", "nope"])
    assert r.exit_code != 0 and "nope" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["train", "--task", "cls", "--data", str(data), "--task-net", str(net), "--out",
                            str(tmp_path / "y.safetensors"), "--steps", "1", "--quiet", "--train-only", ","])
    assert r.exit_code != 0 and "non-empty" in r.output and "Traceback" not in r.output


def test_resnet9_unet_trains_its_decoder_on_the_classifiers_frozen_trunk(tmp_path):
    """The segmenter built on the classifier's trunk: the trunk (weights and BatchNorm statistics)
    stays bit-identical to the classifier's through training and a resume, the decoder's weights
    learn, and the file loads as a segmenter through the same path as the bundled one."""
    from ddn_cli.highlevel import load_highlevel
    from ddn_cli.training.segmenter import SegmenterConfig, train_segmenter

    data = tiny_camvid(tmp_path / "camvid", n=4)
    cls_path = tiny_classifier(tmp_path / "cls.safetensors")
    cls_sd, _ = load_weights(cls_path)
    out = tmp_path / "seg.safetensors"
    cfg = SegmenterConfig(data=str(data), out=str(out), steps=1, batch_size=2, crop=(32, 48), warmup=1,
                          val_every=1, precision="fp32", arch="resnet9_unet", backbone=str(cls_path), ckpt_minutes=0.0)
    train_segmenter(cfg)
    first, _ = load_weights(out)
    events = []
    train_segmenter(SegmenterConfig(**{**cfg.__dict__, "steps": 3, "resume": True}), events.append)
    assert any(e["event"] == "resumed" and e["step"] == 1 for e in events)
    sd, meta = load_weights(out)
    assert meta["arch"] == "resnet9_unet" and meta["config"] == {"width": 4, "num_classes": 11, "frozen_trunk": True}
    assert meta["normalisation"]["mean"] == list(CIFAR10_MEAN) and meta["step"] == 3
    trunk = {k: v for k, v in sd.items() if k.startswith("trunk.")}
    assert len(trunk) == len([k for k in cls_sd if k.startswith("net.") and int(k.split(".")[1]) < 6]) > 10
    for k, v in trunk.items():
        assert torch.equal(v, cls_sd["net." + k[len("trunk."):]]), k
    # the decoder's convolution weights (not just BatchNorm statistics) moved between steps 1 and 3
    assert not torch.equal(first["up1.conv.0.weight"], sd["up1.conv.0.weight"])
    assert not torch.equal(first["head.weight"], sd["head.weight"])
    net = load_highlevel(str(out), "segmenter", torch.device("cpu"))
    y = net.module(torch.rand(1, 3, 37, 50))
    assert y.shape == (1, 11, 37, 50) and torch.isfinite(y).all()


def test_resnet9_unet_with_train_trunk_fine_tunes_the_trunk_too(tmp_path):
    from ddn_cli.training.segmenter import SegmenterConfig, train_segmenter

    data = tiny_camvid(tmp_path / "camvid", n=4)
    cls_path = tiny_classifier(tmp_path / "cls.safetensors")
    cls_sd, _ = load_weights(cls_path)
    out = tmp_path / "seg.safetensors"
    train_segmenter(SegmenterConfig(data=str(data), out=str(out), steps=2, batch_size=2, crop=(32, 48), warmup=1,
                                    val_every=2, precision="fp32", arch="resnet9_unet", backbone=str(cls_path),
                                    frozen_trunk=False))
    sd, meta = load_weights(out)
    assert meta["config"]["frozen_trunk"] is False
    assert not torch.equal(sd["trunk.0.0.weight"], cls_sd["net.0.0.weight"])
    assert not torch.equal(sd["trunk.0.1.running_mean"], cls_sd["net.0.1.running_mean"])


def test_resnet9_unet_trunk_lr_scale_slows_only_the_trunk(tmp_path):
    from ddn_cli.training.segmenter import SegmenterConfig, train_segmenter

    data = tiny_camvid(tmp_path / "camvid", n=4)
    cls_path = tiny_classifier(tmp_path / "cls.safetensors")
    cls_sd, _ = load_weights(cls_path)
    moved = {}
    for scale in (1.0, 0.01):
        out = tmp_path / f"seg{scale}.safetensors"
        train_segmenter(SegmenterConfig(data=str(data), out=str(out), steps=2, batch_size=2, crop=(32, 48), warmup=1,
                                        val_every=2, precision="fp32", arch="resnet9_unet", backbone=str(cls_path),
                                        frozen_trunk=False, trunk_lr_scale=scale))
        sd, meta = load_weights(out)
        assert meta["training"]["trunk_lr_scale"] == scale
        moved[scale] = (sd["trunk.0.0.weight"] - cls_sd["net.0.0.weight"]).abs().max().item()
        groups = load_checkpoint(out.with_suffix(".ckpt"))["opt"]["param_groups"]
        assert sorted({(g["lr_scale"], round(g["lr"] / groups[0]["lr"], 6)) for g in groups}) == \
            sorted({(1.0, 1.0), (scale, scale)})  # the decoder keeps the full rate, the trunk gets scale x
    assert 0 < moved[0.01] < 0.05 * moved[1.0]  # Adam's step scales with the learning rate
    with pytest.raises(UsageError, match="trunk_lr_scale"):
        SegmenterConfig(data=str(data), arch="resnet9_unet", backbone=str(cls_path), trunk_lr_scale=0.1)


def test_seg_cascade_through_a_resnet9_unet_leaves_it_untouched(tmp_path):
    """The cascade behind the shared-trunk results: a resnet9_unet file as --task-net stays frozen."""
    data = tiny_camvid(tmp_path / "camvid")
    cls_sd, _ = load_weights(tiny_classifier(tmp_path / "cls.safetensors"))
    torch.manual_seed(0)
    seg = ResNet9UNet(width=4)
    seg.load_trunk(cls_sd)
    net = tmp_path / "seg.safetensors"
    save_weights(seg.state_dict(), net, {"arch": "resnet9_unet", "task": "segmenter",
                                         "config": {"width": 4, "num_classes": 11, "frozen_trunk": True}})
    res = run_cascade("seg", data, net, tmp_path / "out.safetensors")
    assert res["task_net_sha_before"] == res["task_net_sha_after"] == state_hash(seg)


def test_resnet9_unet_train_mode_keeps_the_frozen_trunk_in_eval():
    net = ResNet9UNet(width=4)
    net.train()
    assert not net.trunk.training and net.up1.training
    assert not any(p.requires_grad for p in net.trunk.parameters())
    assert all(p.requires_grad for p in net.up1.parameters())
    free = ResNet9UNet(width=4, frozen_trunk=False).train()
    assert free.trunk.training and all(p.requires_grad for p in free.trunk.parameters())


def test_segmenter_config_refuses_a_missing_or_misplaced_backbone(tmp_path):
    from ddn_cli.training.segmenter import SegmenterConfig

    with pytest.raises(UsageError, match="backbone"):
        SegmenterConfig(data=str(tmp_path), arch="resnet9_unet")
    with pytest.raises(UsageError, match="no backbone"):
        SegmenterConfig(data=str(tmp_path), backbone="resnet9.cifar10")
    with pytest.raises(UsageError, match="unknown segmenter arch"):
        SegmenterConfig(data=str(tmp_path), arch="unet")


def test_task_scale_upscales_the_training_images_and_downscales_the_denoised_ones_for_the_classifier(tmp_path):
    """--task-scale S (cls): the bank's 32 px images reach the denoiser S times larger (bicubic,
    8-bit), the classifier sees the denoised output area-downscaled back to 32 px, and the task
    loss's gradient reaches the denoiser equal over each S x S block; validation stays at 32 px."""
    from ddn_cli.devices import resolve_precision
    from ddn_cli.training.cascade import Cascade, upscale_u8

    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    c = build_cascade("cls", str(data), str(net), 1.0, torch.device("cpu"), val_count=4, scale=3)
    x, y = c.sample(4, torch.Generator().manual_seed(0))
    plain = build_cascade("cls", str(data), str(net), 1.0, torch.device("cpu"), val_count=4)
    x1, y1 = plain.sample(4, torch.Generator().manual_seed(0))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 96, 96) and torch.equal(y, y1)
    assert torch.equal(x, upscale_u8(x1, 3)) and torch.equal(upscale_u8(x1, 1), x1)
    # bicubic up, area down: close to the original, not a different picture
    back = torch.nn.functional.avg_pool2d(x.float(), 3)
    assert (back - x1.float()).abs().mean() < 2.0
    assert c.val_x.shape[-1] == 32

    class Spy(torch.nn.Module):
        def forward(self, t):
            self.seen = t.detach().clone()
            return t.mean((2, 3))[:, :2] * 10 + t[:, :1, :2, :2].flatten(1)[:, :2]

    cpu, spy = torch.device("cpu"), Spy()
    prec = resolve_precision("fp32", cpu, training=True)
    den = torch.rand(2, 3, 12, 12, requires_grad=True)
    sc = Cascade("cls", spy, {}, "spy", None, None, None, 1.0, "", scale=3)
    loss = sc.task_loss(den, torch.zeros(2, dtype=torch.long), prec, cpu)
    assert spy.seen.shape == (2, 3, 4, 4)
    assert torch.allclose(spy.seen, torch.nn.functional.avg_pool2d(den.detach(), 3))
    (g,) = torch.autograd.grad(loss, den)
    blocks = g.unfold(2, 3, 3).unfold(3, 3, 3)  # (N, C, 4, 4, 3, 3): one value per block
    assert g.abs().sum() > 0 and torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))

    res = run_cascade("cls", data, net, tmp_path / "s.safetensors", steps=2, task_scale=2)
    assert res["steps_done"] == 2
    assert load_checkpoint(tmp_path / "s.ckpt")["config"]["task_scale"] == 2
    with pytest.raises(UsageError, match="cls only"):
        TrainConfig(task="seg", data=("d",), task_scale=2)
    with pytest.raises(UsageError, match="1 to 8"):
        TrainConfig(task="cls", data=("d",), task_scale=0)
    out = tmp_path / "cli.safetensors"
    r = runner.invoke(app, ["train", "--task", "cls", "--data", str(data), "--task-net", str(net), "--out", str(out),
                            "--steps", "1", "--batch-size", "2", "--warmup", "1", "--val-every", "1", "--precision",
                            "fp32", "--device", "cpu", "--quiet", "--task-scale", "2"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out.with_suffix(".ckpt"))["config"]["task_scale"] == 2


def test_pcgrad_combine_removes_only_the_conflicting_component():
    """PCGrad for one protected loss: where the task gradient points against the reference, the
    result minus the reference is orthogonal to it (over all parameters, including one the task
    loss does not reach); where it does not, the plain sum."""
    from ddn_cli.training.losses import pcgrad_combine

    g = torch.Generator().manual_seed(0)
    ref = [torch.randn(5, 3, generator=g), torch.randn(4, generator=g), None]
    task = [-2 * ref[0] + torch.randn(5, 3, generator=g), None, torch.randn(2, generator=g)]
    out, conflict = pcgrad_combine(task, ref)
    assert conflict
    dot = sum(((o - (r if r is not None else 0)) * r).sum() for o, r in zip(out, ref) if r is not None)
    assert abs(float(dot)) < 1e-4
    assert torch.equal(out[2], task[2])  # no reference there: the task gradient as it is
    assert not torch.allclose(out[0], task[0] + ref[0]) and not torch.equal(out[1], ref[1])
    agree = [2 * ref[0], None, None]
    out2, conflict2 = pcgrad_combine(agree, ref)
    assert not conflict2 and torch.equal(out2[0], agree[0] + ref[0]) and torch.equal(out2[1], ref[1]) and out2[2] is None


def test_task_pcgrad_steps_with_the_projected_gradient(tmp_path, monkeypatch):
    """The loop hands pcgrad_combine the task loss's gradient and the reconstruction loss's
    separately (the reconstruction one is what a lambda-0 run steps with, the two add up to what
    the plain run steps with) and steps with exactly what it returns (no gradient clipping here)."""
    import ddn_cli.training.loop as loop_mod

    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    calls, stepped = [], []
    real = loop_mod.pcgrad_combine

    def spy(task, ref):
        out, conflict = real(task, ref)
        calls.append((task, ref, out, conflict))
        return out, conflict

    real_step = torch.optim.AdamW.step

    def step_spy(self, *a, **k):
        stepped.append([p.grad.clone() for g in self.param_groups for p in g["params"] if p.grad is not None])
        return real_step(self, *a, **k)

    monkeypatch.setattr(loop_mod, "pcgrad_combine", spy)
    monkeypatch.setattr(torch.optim.AdamW, "step", step_spy)
    kw = {"steps": 2, "val_every": 2, "grad_clip": 0.0, "rehearse": (str(data),), "rehearse_batch": 2,
          "rehearse_patch": 32}
    run_cascade("cls", data, net, tmp_path / "r.safetensors", lam=0.0, **kw)  # reconstruction only
    run_cascade("cls", data, net, tmp_path / "p.safetensors", lam=5.0, **kw)  # plain sum
    rec_only, plain = stepped[0], stepped[2]
    stepped.clear()
    run_cascade("cls", data, net, tmp_path / "c.safetensors", lam=5.0, task_pcgrad=True, **kw)
    assert len(calls) == 2 and len(stepped) == 2
    for (task, ref, out, _), grads in zip(calls, stepped):
        expect = [o for o in out if o is not None]
        assert len(expect) == len(grads) and all(torch.equal(x, y) for x, y in zip(expect, grads))
    task, ref, _, _ = calls[0]  # the first step: same weights and batches as the other runs' first
    ref = [r for r in ref if r is not None]
    both = [t + r for t, r in zip((t for t in task if t is not None), ref)]
    assert len(ref) == len(rec_only) and all(torch.allclose(r, g, atol=1e-6) for r, g in zip(ref, rec_only))
    assert len(both) == len(plain) and all(torch.allclose(b, g, atol=1e-6) for b, g in zip(both, plain))
    assert any(float(t.abs().sum()) > 0 for t in task if t is not None)


def test_task_pcgrad_counts_conflicts_and_resumes(tmp_path):
    """--task-pcgrad: without a task loss (lambda 0) the run is bit-identical to the plain one;
    with one, the step events count the steps whose gradients conflicted; the frozen network is
    untouched; a run interrupted and resumed without the flag matches an uninterrupted one."""
    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    kw = {"steps": 3, "val_every": 3, "lam": 5.0}
    plain0 = run_cascade("cls", data, net, tmp_path / "p0.safetensors", **{**kw, "lam": 0.0})
    pc0 = run_cascade("cls", data, net, tmp_path / "c0.safetensors", task_pcgrad=True, **{**kw, "lam": 0.0})
    assert plain0["steps_done"] == pc0["steps_done"] == 3
    a0, _ = load_weights(tmp_path / "p0.safetensors")
    b0, _ = load_weights(tmp_path / "c0.safetensors")
    assert all(torch.equal(a0[k], b0[k]) for k in a0)

    events = []
    res = train_denoiser(TrainConfig(task="cls", data=(str(data),), out=str(tmp_path / "c.safetensors"), batch_size=2,
                                     patch=32, warmup=1, precision="fp32", device="cpu", ema=0.0, ckpt_minutes=0.0,
                                     loss="mse", val_sigmas=(30.0,), init="ddn.color-sigma", task_net=str(net),
                                     lr=1e-3, task_pcgrad=True, **kw), events.append)
    assert res["task_net_sha_before"] == res["task_net_sha_after"]
    steps = [e for e in events if e["event"] == "step"]
    assert steps and all("pcgrad_conflicts" in e for e in steps)
    assert 0 < sum(e["pcgrad_conflicts"] for e in steps) <= 3  # this setting (a strong task loss) does conflict
    assert load_checkpoint(tmp_path / "c.ckpt")["config"]["task_pcgrad"] is True
    # interrupted after its first step, resumed without the flag: the same weights as uninterrupted
    run_cascade("cls", data, net, tmp_path / "d.safetensors", task_pcgrad=True, time_budget=1e-6, **kw)
    assert load_checkpoint(tmp_path / "d.ckpt")["step"] < 3
    run_cascade("cls", data, net, tmp_path / "d.safetensors", resume=True, **kw)
    ca, cd = load_checkpoint(tmp_path / "c.ckpt"), load_checkpoint(tmp_path / "d.ckpt")
    assert cd["step"] == 3 and cd["config"]["task_pcgrad"] is True
    assert all(torch.equal(ca["model"][k], cd["model"][k]) for k in ca["model"])

    with pytest.raises(UsageError, match="cascade tasks"):
        TrainConfig(task="denoise", data=("d",), task_pcgrad=True)
    out = tmp_path / "cli.safetensors"
    r = runner.invoke(app, ["train", "--task", "cls", "--data", str(data), "--task-net", str(net), "--out", str(out),
                            "--steps", "1", "--batch-size", "2", "--warmup", "1", "--val-every", "1", "--precision",
                            "fp32", "--device", "cpu", "--quiet", "--task-pcgrad"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out.with_suffix(".ckpt"))["config"]["task_pcgrad"] is True


def test_classifier_features_are_its_trunk():
    """ResNet9.features: the maps at 1/2, 1/4 and 1/8 scale, the last of which the classifier's
    head turns into exactly its logits."""
    torch.manual_seed(0)
    net = ResNet9(width=4).eval()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        f = net.features(x)
        assert [t.shape[1:] for t in f] == [(8, 16, 24), (16, 8, 12), (32, 4, 6)]
        assert torch.allclose(net.net[6:](f[-1]) * net.scale, net(x), atol=1e-6)


def test_feature_loss_through_the_frozen_classifier(tmp_path):
    """Cascade.feature_loss: 0 for the clean photo itself, larger for a noisier one; its gradient
    reaches the denoised image and never the frozen network."""
    from ddn_cli.devices import resolve_precision

    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    c = build_cascade("cls", str(data), str(net), 0.0, torch.device("cpu"))
    prec = resolve_precision("fp32", torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 40, 40, generator=g)
    assert float(c.feature_loss(clean, clean, prec, torch.device("cpu"))) == 0.0
    noise = torch.randn(clean.shape, generator=g)
    small = float(c.feature_loss(clean + 0.02 * noise, clean, prec, torch.device("cpu")))
    den = (clean + 0.1 * noise).requires_grad_(True)
    big = c.feature_loss(den, clean, prec, torch.device("cpu"))
    assert 0 < small < float(big.detach())
    big.backward()
    assert den.grad is not None and float(den.grad.abs().sum()) > 0
    assert all(p.grad is None for p in c.net.parameters())
    c.check_unchanged()


def test_training_with_rehearse_features(tmp_path):
    """--rehearse-features: it changes the step (against the same run without it), leaves the
    frozen classifier bit-identical, is recorded in the checkpoint, and needs --rehearse."""
    data, net = tiny_cifar(tmp_path / "cifar", 4), tiny_classifier(tmp_path / "cls.safetensors")
    kw = {"steps": 2, "val_every": 2, "lam": 0.0, "rehearse": (str(data),), "rehearse_batch": 2, "rehearse_patch": 32}
    run_cascade("cls", data, net, tmp_path / "a.safetensors", **kw)
    res = run_cascade("cls", data, net, tmp_path / "b.safetensors", rehearse_features=1.0, **kw)
    assert res["task_net_sha_before"] == res["task_net_sha_after"]
    a, _ = load_weights(tmp_path / "a.safetensors")
    b, _ = load_weights(tmp_path / "b.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert load_checkpoint(tmp_path / "b.ckpt")["config"]["rehearse_features"] == 1.0
    with pytest.raises(UsageError, match="--rehearse"):
        TrainConfig(task="cls", data=("d",), rehearse_features=0.5)
    with pytest.raises(UsageError, match=">= 0"):
        TrainConfig(task="cls", data=("d",), rehearse=("p",), rehearse_features=-1.0)
    out = tmp_path / "cli.safetensors"
    r = runner.invoke(app, ["train", "--task", "cls", "--data", str(data), "--task-net", str(net), "--out", str(out),
                            "--steps", "1", "--batch-size", "2", "--warmup", "1", "--val-every", "1", "--precision",
                            "fp32", "--device", "cpu", "--quiet", "--rehearse", str(data), "--rehearse-patch", "32",
                            "--rehearse-features", "0.5"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out.with_suffix(".ckpt"))["config"]["rehearse_features"] == 0.5
