import numpy as np
import torch
from PIL import Image

from ddn_cli.models.classifier import CIFAR10_CLASSES, ResNet9
from ddn_cli.training.classifier import ClassifierConfig, augment, load_split, train_classifier
from ddn_cli.weightfile import load_weights


def test_augment_keeps_shape_and_content():
    x = torch.randint(0, 255, (5, 3, 32, 32), dtype=torch.uint8)
    y = augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.uint8


def test_resnet9_shapes():
    m = ResNet9().eval()
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def fake_cifar(root, per_class: int) -> None:
    """CIFAR-10's folder layout: per class, ``per_class`` 32 px JPEGs of a class-specific grey level."""
    rng = np.random.default_rng(0)
    for ci, name in enumerate(CIFAR10_CLASSES):
        (root / name).mkdir()
        for k in range(per_class):
            a = np.full((32, 32, 3), ci * 25, np.uint8) + rng.integers(0, 10, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / name / f"{k:04d}.jpg")


def test_tiny_classifier_training_and_split(tmp_path):
    fake_cifar(tmp_path, 10)
    tx, ty, vx, vy = load_split(tmp_path, 0.2)
    assert len(tx) == 80 and len(vx) == 20 and set(vy.tolist()) == set(range(10))
    out = tmp_path / "c.safetensors"
    res = train_classifier(ClassifierConfig(data=str(tmp_path), out=str(out), epochs=3, batch_size=16, lr=0.05,
                                            precision="fp32"))
    assert out.is_file() and res["steps"] == 15
    sd, meta = load_weights(out)
    assert meta["classes"] == list(CIFAR10_CLASSES) and meta["normalisation"]["inside_model"]
    m = ResNet9()
    m.load_state_dict(sd)


def test_add_noise_is_seeded_clipped_and_per_image():
    from ddn_cli.training.classifier import add_noise

    x = torch.full((64, 3, 16, 16), 0.5)
    a = add_noise(x, 50.0, torch.Generator().manual_seed(1))
    b = add_noise(x, 50.0, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, add_noise(x, 50.0, torch.Generator().manual_seed(2)))
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0 and torch.equal(x, torch.full_like(x, 0.5))
    std = (a - 0.5).flatten(1).std(1) * 255
    # per-image std drawn from U(0, 50): spread over the range, none above it
    assert float(std.max()) < 50 * 1.1 and float(std.min()) < 10 and float(std.max()) > 35
    assert torch.equal(add_noise(x, 0.0, torch.Generator()), x)


def test_classifier_fine_tune_starts_from_init(tmp_path):
    import pytest

    from ddn_cli.errors import UsageError

    fake_cifar(tmp_path, 5)
    first = tmp_path / "first.safetensors"
    train_classifier(ClassifierConfig(data=str(tmp_path), out=str(first), epochs=2, batch_size=8, lr=0.05,
                                      precision="fp32", holdout=0.2))
    sd0, _ = load_weights(first)
    # lr 0: the fine-tune keeps init's weights (only BatchNorm statistics move), noise or not
    again = tmp_path / "again.safetensors"
    train_classifier(ClassifierConfig(data=str(tmp_path), out=str(again), epochs=1, batch_size=8, lr=0.0,
                                      precision="fp32", holdout=0.2, init=str(first), noise_max=30.0))
    sd1, meta = load_weights(again)
    assert meta["training"]["init"] == str(first) and meta["training"]["noise_max"] == 30.0
    convs = [k for k, v in sd0.items() if v.ndim == 4]
    assert convs and all(torch.equal(sd0[k], sd1[k]) for k in convs)
    # from scratch with lr 0: not init's weights
    scratch = tmp_path / "scratch.safetensors"
    train_classifier(ClassifierConfig(data=str(tmp_path), out=str(scratch), epochs=1, batch_size=8, lr=0.0,
                                      precision="fp32", holdout=0.2, seed=5))
    sd2, _ = load_weights(scratch)
    assert not all(torch.equal(sd0[k], sd2[k]) for k in convs)
    with pytest.raises(UsageError, match="noise_max"):
        ClassifierConfig(data=str(tmp_path), noise_max=-1.0)
    with pytest.raises(UsageError, match="resnet9"):
        train_classifier(ClassifierConfig(data=str(tmp_path), out=str(tmp_path / "x.safetensors"), epochs=1,
                                          batch_size=8, precision="fp32", holdout=0.2, init=str(first), width=16))
