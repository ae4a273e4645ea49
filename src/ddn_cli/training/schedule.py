"""Learning-rate schedule: linear warmup then cosine decay; a pure function of the
step, so a resumed run follows exactly the same schedule."""

from __future__ import annotations

import math


def lr_at(step: int, total: int, base: float, warmup: int, min_ratio: float) -> float:
    if total <= 0:
        return base
    warmup = min(warmup, max(1, total // 10))
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    t = min(1.0, t)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
