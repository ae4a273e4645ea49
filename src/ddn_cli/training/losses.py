"""Reconstruction losses and the cascade loss L = L_rec + lambda * L_task."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SIGMA_REF, SIGMA_FLOOR = 25.0, 5.0  # mse-sigma: weight 1 at sigma 25; below 5, weighted as 5


def reconstruction_loss(kind: str, pred: torch.Tensor, target: torch.Tensor,
                        sigma: torch.Tensor | None = None) -> torch.Tensor:
    """``sigma`` (per sample, 0-255 scale) is needed by ``mse-sigma`` only: the MSE of each sample
    weighted by (25 / sigma)^2, so every noise level counts alike in PSNR terms. Plain MSE is
    dominated by the high-noise samples, whose errors are largest, and lets a model buy a little
    at sigma 50 with a lot at sigma 15."""
    if kind == "mse-sigma":
        if sigma is None:
            raise ValueError("mse-sigma needs the noise level of each sample")
        per = (pred - target).pow(2).flatten(1).mean(dim=1)
        w = (SIGMA_REF / sigma.to(per.device, per.dtype).clamp(min=SIGMA_FLOOR)).pow(2)
        return (per * w).mean()
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "charbonnier":
        return torch.sqrt((pred - target) ** 2 + 1e-6).mean()
    raise ValueError(kind)


def pcgrad_combine(task: list[torch.Tensor | None], ref: list[torch.Tensor | None]) -> tuple[list[torch.Tensor | None], bool]:
    """Gradient surgery (PCGrad, Yu et al., NeurIPS 2020) for one protected loss: ``task`` and
    ``ref`` are per-parameter gradients of two losses (None = the loss does not reach that
    parameter). Where their dot product is negative, the component of ``task`` along ``ref`` is
    removed, so that the sum no longer works against ``ref`` to first order. Returns the
    per-parameter ``task' + ref`` and whether they conflicted."""
    dot = sum((a.float() * b.float()).sum() for a, b in zip(task, ref) if a is not None and b is not None)
    norm2 = sum((b.float() ** 2).sum() for b in ref if b is not None)
    conflict = bool(torch.is_tensor(dot) and dot < 0 and norm2 > 0)
    coef = dot / norm2 if conflict else 0.0
    out: list[torch.Tensor | None] = []
    for a, b in zip(task, ref):
        if a is None and b is None:
            out.append(None)
        elif b is None:
            out.append(a.clone())
        else:  # a None counts as zeros: the projection still reaches that parameter
            out.append((1 - coef) * b + (a if a is not None else 0))
    return out, conflict
