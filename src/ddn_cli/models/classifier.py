"""The bundled CIFAR-10 classifier: a half-width ResNet-9 (Page, "How to train your
ResNet", 2018): small, fast on CPUs, and trainable from scratch. Input: RGB in [0, 1],
(N, 3, 32, 32); the CIFAR normalisation happens inside, so a denoiser can feed it
directly. Output: logits (N, 10). ``tta_flip`` averages the logits of the image and its
mirror (as Page's reference does at test time): +1.4 points on the held-out part."""

from __future__ import annotations

import torch
from torch import nn

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _cbr(cin: int, cout: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class _Res(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = _cbr(c, c)
        self.b = _cbr(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


class ResNet9(nn.Module):
    def __init__(self, width: int = 32, num_classes: int = 10, tta_flip: bool = False) -> None:
        super().__init__()
        self.tta_flip = tta_flip
        w = width
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1), persistent=False)
        self.net = nn.Sequential(
            _cbr(3, w), _cbr(w, 2 * w, pool=True), _Res(2 * w),
            _cbr(2 * w, 4 * w, pool=True),
            _cbr(4 * w, 8 * w, pool=True), _Res(8 * w),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8 * w, num_classes, bias=False),
        )
        self.scale = 0.125

    # indices into ``net`` after which the trunk's feature maps are taken: 1/2, 1/4 and 1/8 scale
    FEATURE_LAYERS = (2, 3, 5)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's feature maps of ``x`` (RGB in [0, 1], any size) at 1/2, 1/4 and 1/8
        scale (64, 128 and 256 channels at width 32): what the classifier, and a segmenter
        built on its trunk, read from an image before pooling it away."""
        x = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.net[:max(self.FEATURE_LAYERS) + 1]):
            x = layer(x)
            if i in self.FEATURE_LAYERS:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.tta_flip:  # average the logits of the image and its mirror (test-time augmentation)
            return (self.net(x) + self.net(x.flip(3))) * (self.scale / 2)
        return self.net(x) * self.scale
