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


def test_tiny_classifier_training_and_split(tmp_path):
    rng = np.random.default_rng(0)
    for ci, name in enumerate(CIFAR10_CLASSES):
        (tmp_path / name).mkdir()
        for k in range(10):
            a = np.full((32, 32, 3), ci * 25, np.uint8) + rng.integers(0, 10, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(a).save(tmp_path / name / f"{k:04d}.jpg")
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
