"""Reconstruction losses and the cascade loss L = L_rec + lambda * L_task."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "charbonnier":
        return torch.sqrt((pred - target) ** 2 + 1e-6).mean()
    raise ValueError(kind)
