"""Fold BatchNorm into the preceding convolution for inference (eval mode only)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def _fuse(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.data = conv.weight.data * scale.view(-1, 1, 1, 1)
    b = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.data = (b - bn.running_mean) * scale + bn.bias
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` where every Conv2d directly followed by a BatchNorm2d inside
    an nn.Sequential becomes one Conv2d with bias (the BN replaced by Identity)."""
    m = copy.deepcopy(model).eval()
    for seq in [mod for mod in m.modules() if isinstance(mod, nn.Sequential)]:
        names = list(seq._modules.keys())
        for a, b in zip(names, names[1:]):
            ca, cb = seq._modules[a], seq._modules[b]
            if isinstance(ca, nn.Conv2d) and isinstance(cb, nn.BatchNorm2d):
                seq._modules[a] = _fuse(ca, cb)
                seq._modules[b] = nn.Identity()
    return m
