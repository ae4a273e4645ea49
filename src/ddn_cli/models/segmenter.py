"""The bundled CamVid segmenter: a compact residual U-Net ("ResUNet-S").

Why this design: no pretrained backbone can be downloaded here, so the network must train
from scratch on 367 images on a 2-core CPU. Plain 3x3 convolutions in BasicBlocks are what
oneDNN/AMX run fastest (no depthwise or asymmetric convs, which are slow on CPUs per FLOP);
an encoder to 1/16 with a global-context branch sees whole road scenes, and U-Net skips at
1/8, 1/4 and 1/2 keep thin classes (poles, signs, pedestrians) that a 1/8-output head loses.
About 3 M parameters and 7 GMACs for a 360x480 image.

Input: RGB in [0, 1], (N, 3, H, W), any size (reflect-padded to a multiple of 16 inside);
the normalisation happens inside, so a denoiser can feed it directly. Output: logits
(N, num_classes, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .classifier import CIFAR10_MEAN, CIFAR10_STD
from .classifier import _cbr as _cls_cbr
from .classifier import _Res as _ClsRes

CAMVID_CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist")
CAMVID_IGNORE = 11
# colours of the usual CamVid palette (SegNet tutorial), for overlays
CAMVID_COLOURS = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
                  (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Block(nn.Module):
    """ResNet BasicBlock."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.c1 = _cbr(cin, cout, stride)
        self.c2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x if self.skip is None else self.skip(x)
        return F.relu(self.c2(self.c1(x)) + s)


def _normalise_pad16(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std``, padded at the bottom and right to a multiple of 16 (reflected where
    the image is large enough, else replicated); the caller crops the output back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % 16, (-w) % 16
    x = (x - mean) / std
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return x


class _Up(nn.Module):
    """Bilinear x2, add the projected skip, 3x3 conv."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(cskip, cin, 1, bias=False), nn.BatchNorm2d(cin))
        self.conv = _cbr(cin, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(F.relu(x + self.proj(skip)))


class ResUNetS(nn.Module):
    def __init__(self, width: int = 32, num_classes: int = 11) -> None:
        super().__init__()
        w = width
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(_cbr(3, w, 2), _cbr(w, w))  # 1/2
        self.enc1 = nn.Sequential(_Block(w, 2 * w, 2), _Block(2 * w, 2 * w))  # 1/4
        self.enc2 = nn.Sequential(_Block(2 * w, 4 * w, 2), _Block(4 * w, 4 * w))  # 1/8
        self.enc3 = nn.Sequential(_Block(4 * w, 8 * w, 2), _Block(8 * w, 8 * w))  # 1/16
        self.ctx = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8 * w, 8 * w, 1, bias=False), nn.ReLU(inplace=True))
        self.up2 = _Up(8 * w, 4 * w, 4 * w)
        self.up1 = _Up(4 * w, 2 * w, 2 * w)
        self.up0 = _Up(2 * w, w, w)
        self.drop = nn.Dropout2d(0.1)
        self.head = nn.Conv2d(w, num_classes, 1)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = _normalise_pad16(x, self.mean, self.std)
        s0 = self.stem(x)
        s1 = self.enc1(s0)
        s2 = self.enc2(s1)
        s3 = self.enc3(s2)
        s3 = s3 + self.ctx(s3)
        y = self.up0(self.up1(self.up2(s3, s2), s1), s0)
        y = self.head(self.drop(y))
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        return y[..., :h, :w]


class ResNet9UNet(nn.Module):
    """A CamVid segmenter that reads the image through the bundled CIFAR-10 classifier's
    convolutional trunk (``ResNet9``'s layers up to its last residual block, at 1/2, 1/4
    and 1/8 resolution), with a trainable context block at 1/16 and ResUNet-S's decoder.

    Why: in Liu et al. (2020) the classification- and segmentation-guided denoisers transfer
    to each other's task between networks that share ImageNet-pretrained VGG features; the
    bundled ResUNet-S and ResNet-9 share nothing. With ``frozen_trunk`` (the default) this
    segmenter's features are exactly the classifier's, so it measures whether the
    classification-guided denoiser helps a segmenter that sees through the classifier's
    eyes. The trunk's parameter names follow ``ResNet9.net`` (``trunk.i`` = ``net.i``), so
    ``load_trunk`` takes them from a classifier weight file. Input: RGB in [0, 1], any size
    (padded to a multiple of 16 inside); the CIFAR normalisation happens inside."""

    def __init__(self, width: int = 32, num_classes: int = 11, frozen_trunk: bool = True) -> None:
        super().__init__()
        w = width
        self.frozen_trunk = frozen_trunk
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1), persistent=False)
        self.trunk = nn.Sequential(  # ResNet9.net[0:6]: 1/2 after [2], 1/4 after [3], 1/8 after [5]
            _cls_cbr(3, w), _cls_cbr(w, 2 * w, pool=True), _ClsRes(2 * w),
            _cls_cbr(2 * w, 4 * w, pool=True), _cls_cbr(4 * w, 8 * w, pool=True), _ClsRes(8 * w))
        self.enc4 = nn.Sequential(_Block(8 * w, 8 * w, 2), _Block(8 * w, 8 * w))  # 1/16, trainable
        self.ctx = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8 * w, 8 * w, 1, bias=False), nn.ReLU(inplace=True))
        self.up3 = _Up(8 * w, 8 * w, 4 * w)
        self.up2 = _Up(4 * w, 4 * w, 2 * w)
        self.up1 = _Up(2 * w, 2 * w, w)
        self.drop = nn.Dropout2d(0.1)
        self.head = nn.Conv2d(w, num_classes, 1)
        self.num_classes = num_classes
        if frozen_trunk:
            for p in self.trunk.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet9UNet:
        super().train(mode)
        if self.frozen_trunk:  # its BatchNorm statistics are the classifier's: never updated
            self.trunk.eval()
        return self

    def load_trunk(self, classifier_state: dict[str, torch.Tensor]) -> None:
        """Copy ``ResNet9.net[0:6]``'s weights (a classifier state dict) into the trunk."""
        n = len(self.trunk)
        sd = {k[len("net."):]: v for k, v in classifier_state.items()
              if k.startswith("net.") and int(k.split(".")[1]) < n}
        self.trunk.load_state_dict(sd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = _normalise_pad16(x, self.mean, self.std)
        t = self.trunk
        s1 = t[2](t[1](t[0](x)))  # 1/2
        s2 = t[3](s1)  # 1/4
        s3 = t[5](t[4](s2))  # 1/8
        s4 = self.enc4(s3)
        s4 = s4 + self.ctx(s4)
        y = self.up1(self.up2(self.up3(s4, s3), s2), s1)
        y = self.head(self.drop(y))
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        return y[..., :h, :w]
