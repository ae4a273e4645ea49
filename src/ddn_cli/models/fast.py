"""An inference-only form of the trained denoiser, numerically equivalent to it
(same function up to float rounding), measured faster on CPUs:

- BatchNorm folded into the preceding convolutions;
- (the transposed convolutions stay: their exact sub-pixel rewrite, a 3x3 convolution to
  4x the channels + pixel_shuffle, ``subpixel_from_transposed``, measured 1.9x slower for
  the full-resolution one in bf16 on this CPU: 102 vs 54 ms per 512x512 tile);
- the final 3x3 convolution over cat(up, skip) split into two convolutions whose
  outputs are added (no full-resolution 128-channel concatenation);
- residual add + ReLU in place.
"""

from __future__ import annotations

import torch
from torch import nn

from .denoiser import SIZE_MULTIPLE, DDNDenoiser, pad_to_multiple, with_noise_map
from .fold import fold_batchnorm


def subpixel_from_transposed(t: nn.ConvTranspose2d) -> nn.Conv2d:
    """Conv2d(cin, 4*cout, 3, padding=1) + pixel_shuffle(2) == ConvTranspose2d(cin, cout, 4, 2, 1)."""
    assert t.kernel_size == (4, 4) and t.stride == (2, 2) and t.padding == (1, 1)
    w = t.weight.data  # (cin, cout, 4, 4)
    cin, cout = w.shape[:2]
    k = torch.zeros(cout, 2, 2, cin, 3, 3, dtype=w.dtype)
    taps = {0: {0: 1, -1: 3}, 1: {1: 0, 0: 2}}  # phase -> {input offset: kernel index}
    for a in (0, 1):
        for b in (0, 1):
            for di, ky in taps[a].items():
                for dj, kx in taps[b].items():
                    k[:, a, b, :, di + 1, dj + 1] = w[:, :, ky, kx].t()
    conv = nn.Conv2d(cin, 4 * cout, 3, padding=1, bias=True)
    conv.weight.data = k.reshape(4 * cout, cin, 3, 3).contiguous()
    b = t.bias.data if t.bias is not None else torch.zeros(cout, dtype=w.dtype)
    conv.bias.data = b.repeat_interleave(4).contiguous()
    return conv


class _FastBottleneck(nn.Module):
    def __init__(self, body: nn.Sequential) -> None:
        super().__init__()
        self.body = nn.Sequential(*[m for m in body if not isinstance(m, nn.Identity)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).add_(x).relu_()


class FastDenoiser(nn.Module):
    """Inference form of a trained ``DDNDenoiser`` (eval mode, no gradients)."""

    def __init__(self, model: DDNDenoiser) -> None:
        super().__init__()
        m = fold_batchnorm(model).eval()
        self.config = m.config
        self.head = m.head
        self.down1 = nn.Sequential(*[x for x in m.down1 if not isinstance(x, nn.Identity)])
        self.res1 = _FastBottleneck(m.res1.body)
        self.down2 = nn.Sequential(*[x for x in m.down2 if not isinstance(x, nn.Identity)])
        self.res2 = _FastBottleneck(m.res2.body)
        self.up1 = m.up1
        self.fuse1 = nn.Sequential(*[x for x in m.fuse1 if not isinstance(x, nn.Identity)])
        self.res3 = _FastBottleneck(m.res3.body)
        self.up2 = m.up2
        w = m.tail.weight.data
        c_up = m.up2.out_channels
        self.tail_up = nn.Conv2d(c_up, w.shape[0], 3, padding=1, bias=True)
        self.tail_skip = nn.Conv2d(w.shape[1] - c_up, w.shape[0], 3, padding=1, bias=False)
        self.tail_up.weight.data = w[:, :c_up].contiguous()
        self.tail_up.bias.data = m.tail.bias.data.clone()
        self.tail_skip.weight.data = w[:, c_up:].contiguous()

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, SIZE_MULTIPLE)
        f1 = self.head(with_noise_map(xp, sigma, self.config))
        f2 = self.res1(self.down1(f1))
        f3 = self.res2(self.down2(f2))
        u1 = torch.cat([self.up1(f3), f2], dim=1)
        u1 = self.res3(self.fuse1(u1))
        up = self.up2(u1)
        residual = self.tail_up(up) + self.tail_skip(f1)
        out = xp + residual.to(xp.dtype)
        return out[:, :, :h, :w]
