"""The multi-scale denoiser of Liu et al., "Connecting Image Denoising and High-Level
Vision Tasks via Deep Learning" (IEEE TIP 29, 2020), Fig. 2.

Three scales (full, 1/2, 1/4), strided convolutions down, transposed convolutions up,
bottleneck residual blocks and U-Net-style skips; the network predicts the noise
residual and returns ``input + residual``. About 1.03M parameters.

Optional noise-level input: with ``noise_level=True`` a constant ``sigma/255`` map is
concatenated to the input (as FFDNet and DRUNet do), so one model serves every sigma.
With ``noise_level=False`` it is the paper's per-sigma form.

``sigma_gain``: an optional calibration of that input, knots ``(sigma, gain)`` on the
0-255 scale: the map receives ``sigma * gain(sigma)`` (gain interpolated linearly between
knots, constant beyond them). Fitted after training on validation photos
(``benchmarks/sigma_calibration.py``); it is part of the model, so every path that runs
it (denoise, eval, cascade training) sees the same calibrated map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

SIZE_MULTIPLE = 4  # two stride-2 stages


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture hyper-parameters (defaults are the paper's)."""

    in_channels: int = 3
    width: int = 64  # full-resolution features
    mid: int = 128  # 1/2 and 1/4 scale features
    up_mid: int = 32  # transposed conv 1/4 -> 1/2 output channels
    fuse: int = 256  # 1/2 scale after the skip
    noise_level: bool = True
    sigma_gain: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        knots = tuple((float(a), float(b)) for a, b in self.sigma_gain)  # JSON gives lists
        if any(b <= 0 for _, b in knots) or any(x1[0] <= x0[0] for x0, x1 in pairwise(knots)):
            raise ValueError(f"sigma_gain {knots}: gains must be > 0 and sigmas increasing")
        object.__setattr__(self, "sigma_gain", knots)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sigma_gain"] = [list(k) for k in self.sigma_gain]
        return d


def calibrated_sigma(s: torch.Tensor, knots: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """``s * gain(s)`` for sigmas ``s`` on the 0-1 scale (see ``sigma_gain``)."""
    if not knots:
        return s
    gs = torch.tensor([g for _, g in knots], dtype=s.dtype, device=s.device)
    if len(knots) == 1:
        return s * gs[0]
    xs = torch.tensor([a / 255.0 for a, _ in knots], dtype=s.dtype, device=s.device)
    sc = s.clamp(xs[0], xs[-1])
    i = torch.searchsorted(xs, sc.contiguous()).clamp(1, len(xs) - 1)
    t = (sc - xs[i - 1]) / (xs[i] - xs[i - 1])
    return s * (gs[i - 1] + t * (gs[i] - gs[i - 1]))


def with_noise_map(xp: torch.Tensor, sigma: float | torch.Tensor | None, config: DenoiserConfig) -> torch.Tensor:
    """The network's input: the padded image, plus the (calibrated) constant sigma map
    when the model takes a noise level."""
    if not config.noise_level:
        return xp
    if sigma is None:
        raise ValueError("this denoiser needs a noise level (sigma on the 0-1 scale)")
    n = xp.shape[0]
    s = torch.as_tensor(sigma, dtype=xp.dtype, device=xp.device).reshape(-1)
    s = calibrated_sigma(s, config.sigma_gain).reshape(-1, 1, 1, 1)
    s = s.expand(n, 1, xp.shape[2], xp.shape[3])
    return torch.cat([xp, s.to(memory_format=torch.contiguous_format)], dim=1)


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 (c->c/4) BN ReLU, 3x3 BN ReLU, 1x1 (->c) BN, + x, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = channels // 4
        self.body = nn.Sequential(
            nn.Conv2d(channels, inner, 1, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, inner, 3, padding=1, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DDNDenoiser(nn.Module):
    """Input ``x``: float tensor (N, 3, H, W) in [0, 1] (noisy). ``sigma``: noise level on
    the 0-1 scale, a float or a (N,) tensor; required when ``config.noise_level``.
    Returns a tensor of the same shape (the denoised image, not clamped).

    Any H x W works: the input is reflect-padded to a multiple of 4 and cropped back.
    """

    def __init__(self, config: DenoiserConfig | None = None) -> None:
        super().__init__()
        c = config or DenoiserConfig()
        self.config = c
        cin = c.in_channels + (1 if c.noise_level else 0)
        self.head = nn.Conv2d(cin, c.width, 5, padding=2)  # linear
        self.down1 = _conv_bn_relu(c.width, c.mid, 2)
        self.res1 = Bottleneck(c.mid)
        self.down2 = _conv_bn_relu(c.mid, c.mid, 2)
        self.res2 = Bottleneck(c.mid)
        self.up1 = nn.ConvTranspose2d(c.mid, c.up_mid, 4, stride=2, padding=1)
        self.fuse1 = _conv_bn_relu(c.mid + c.up_mid, c.fuse, 1)
        self.res3 = Bottleneck(c.fuse)
        self.up2 = nn.ConvTranspose2d(c.fuse, c.width, 4, stride=2, padding=1)
        self.tail = nn.Conv2d(2 * c.width, c.in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, SIZE_MULTIPLE)
        f1 = self.head(with_noise_map(xp, sigma, self.config))
        f2 = self.res1(self.down1(f1))
        f3 = self.res2(self.down2(f2))
        u1 = torch.cat([self.up1(f3), f2], dim=1)
        u1 = self.res3(self.fuse1(u1))
        u2 = torch.cat([self.up2(u1), f1], dim=1)
        residual = self.tail(u2)
        out = xp + residual.to(xp.dtype)
        return out[:, :, :h, :w]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right of (N, C, H, W) to a multiple; reflect where the image is large
    enough, replicate otherwise (reflect needs pad < size)."""
    h, w = x.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def build_denoiser(config: dict | DenoiserConfig | None = None) -> DDNDenoiser:
    if isinstance(config, dict):
        config = DenoiserConfig(**config)
    return DDNDenoiser(config)
