"""Training the bundled CIFAR-10 classifier (the frozen high-level network of the
classification cascade). Library code: progress goes to ``on_event``.

Data: ``<root>/<class>/*.jpg`` decoded once into a uint8 tensor; a fixed held-out split
(the last ``holdout`` fraction of each class's sorted files) for validation. Training:
random crop (4 px reflect padding) + horizontal flip, label smoothing, SGD with
Nesterov momentum, linear warmup then linear decay, bf16 autocast + channels_last,
atomic checkpoints and ``resume``; the best held-out accuracy is written as safetensors.
``noise_max`` > 0 adds Gaussian noise of a per-image std drawn from U(0, noise_max) (8-bit
levels, clipped to [0, 1]) to every training image (a noise-robust classifier, whose input
gradients are smoother); ``init`` starts from a classifier's weights (name or path) instead
of from scratch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..devices import resolve_device, resolve_precision
from ..errors import UsageError
from ..io import IMAGE_SUFFIXES as _IMAGE_SUFFIXES
from ..models.classifier import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, ResNet9
from ..weightfile import save_weights
from .checkpoint import load_checkpoint, save_checkpoint


@dataclass(frozen=True)
class ClassifierConfig:
    data: str
    out: str = "runs/cls.safetensors"
    holdout: float = 0.1
    epochs: int = 20
    batch_size: int = 256
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    warmup_frac: float = 0.15
    width: int = 32
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"
    ckpt_minutes: float = 5.0
    time_budget: float = 0.0
    resume: bool = False
    noise_max: float = 0.0  # 8-bit levels; 0 = clean training images
    init: str | None = None  # a resnet9 classifier (name or path) to fine-tune

    def __post_init__(self) -> None:
        if not self.noise_max >= 0:
            raise UsageError(f"noise_max {self.noise_max}: must be >= 0 (8-bit levels)", "use e.g. 50, or 0 for none")


def load_resnet9_weights(spec: str, role: str) -> tuple[dict, int]:
    """(state dict, width) of a resnet9 classifier weight file (name or path), for the training
    that starts from it; ``role`` names the setting that chose it, for the error's fix."""
    from ..registry import resolve_weights
    from ..weightfile import load_weights

    sd, meta = load_weights(resolve_weights(spec, "classifier"))
    if meta.get("arch") != "resnet9":
        raise UsageError(f"{spec}: not a resnet9 classifier (arch {meta.get('arch')!r})",
                         f"pass a resnet9 classifier weight file as {role}")
    return sd, int(meta.get("config", {}).get("width", 32))


def add_noise(x01: torch.Tensor, noise_max: float, gen: torch.Generator) -> torch.Tensor:
    """``x01`` (N, 3, H, W) in [0, 1] plus Gaussian noise of std U(0, noise_max)/255 per image,
    clipped to [0, 1]; drawn from ``gen`` (a resumed run draws alike)."""
    n = x01.shape[0]
    std = torch.rand(n, generator=gen) * (noise_max / 255.0)
    noise = torch.randn(x01.shape, generator=gen) * std.view(n, 1, 1, 1)
    return (x01 + noise.to(x01.device)).clamp_(0.0, 1.0)


def load_split(root: str | Path, holdout: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x uint8 N,3,32,32, train_y, val_x, val_y) from class folders (CIFAR-10's ten
    classes, each a folder of 32 x 32 images). Raises ``UsageError`` for a missing or empty
    class folder or an image of another size, ``UnsupportedImage`` for an unreadable one."""
    from .data import decode_rgb8

    root = Path(root)
    tx, ty, vx, vy = [], [], [], []
    for ci, name in enumerate(CIFAR10_CLASSES):
        files = sorted(f for f in (root / name).glob("*") if f.suffix.lower() in _IMAGE_SUFFIXES
                       and not f.name.startswith("."))  # no hidden files (macOS's ._name companions)
        if not files:
            raise UsageError(f"{root / name}: no images", "pass a CIFAR-10 folder with one sub-folder of 32 x 32 "
                             f"images per class ({', '.join(CIFAR10_CLASSES)})")
        n_val = int(round(len(files) * holdout))
        for k, f in enumerate(files):
            a = decode_rgb8(f)
            if a.shape != (32, 32, 3):
                raise UsageError(f"{f}: {a.shape[1]}x{a.shape[0]} image, but CIFAR-10 images are 32x32",
                                 "resize it to 32 x 32 or remove it")
            (vx if k >= len(files) - n_val else tx).append(a)
            (vy if k >= len(files) - n_val else ty).append(ci)

    def t(xs):
        return torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()

    return t(tx), torch.tensor(ty), t(vx) if vx else torch.zeros(0, 3, 32, 32, dtype=torch.uint8), torch.tensor(vy)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 32x32 crops of the 4-px reflect-padded batch and random horizontal flips."""
    n = x.shape[0]
    p = F.pad(x, (4, 4, 4, 4), mode="reflect")
    oy = torch.randint(0, 9, (n,), generator=gen)
    ox = torch.randint(0, 9, (n,), generator=gen)
    idx = torch.arange(32)
    rows = (oy[:, None] + idx[None]).view(n, 1, 32, 1).expand(n, 3, 32, 40)
    p = torch.gather(p, 2, rows)
    cols = (ox[:, None] + idx[None]).view(n, 1, 1, 32).expand(n, 3, 32, 32)
    p = torch.gather(p, 3, cols)
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip.view(n, 1, 1, 1), p.flip(3), p)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision, device, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        xb = (x[i:i + batch].float() / 255).to(device).contiguous(memory_format=torch.channels_last)
        with precision.autocast(device):
            correct += int((model(xb).argmax(1).cpu() == y[i:i + batch]).sum())
    model.train()
    return correct / max(1, len(x))


def train_classifier(cfg: ClassifierConfig, on_event: Callable[[dict], None] | None = None) -> dict:
    emit = on_event or (lambda e: None)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device, training=True)
    torch.manual_seed(cfg.seed)
    x_tr, y_tr, x_va, y_va = load_split(cfg.data, cfg.holdout)
    emit({"event": "data", "train": len(x_tr), "val": len(x_va), "precision": precision.name})
    model = ResNet9(cfg.width)
    if cfg.init:
        sd, width = load_resnet9_weights(cfg.init, "init")
        if width != cfg.width:
            raise UsageError(f"{cfg.init}: a width-{width} resnet9 classifier, not width {cfg.width}",
                             "pass a classifier of the configured width as init, or set width to match")
        model.load_state_dict(sd)
    model = model.to(device).to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    steps_per_epoch = len(x_tr) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(total * cfg.warmup_frac))
    gen = torch.Generator().manual_seed(cfg.seed)
    out = Path(cfg.out)
    ckpt = out.with_suffix(".ckpt")
    step, best, elapsed0, history = 0, -1.0, 0.0, []
    if cfg.resume and ckpt.is_file():
        st = load_checkpoint(ckpt)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        step, best, elapsed0, history = st["step"], st["best"], st["elapsed"], st["history"]
        emit({"event": "resumed", "step": step})
    t0 = time.perf_counter()
    last_ck = t0
    perm = None

    def lr_at(s: int) -> float:
        return cfg.lr * (s + 1) / warm if s < warm else cfg.lr * max(0.0, (total - s) / (total - warm))

    def checkpoint() -> None:
        save_checkpoint(ckpt, {"model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                               "opt": opt.state_dict(), "gen": gen.get_state(), "step": step, "best": best,
                               "elapsed": elapsed0 + time.perf_counter() - t0, "history": history})

    model.train()
    while step < total:
        epoch, k = divmod(step, steps_per_epoch)
        if perm is None or k == 0:
            g_epoch = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
            perm = torch.randperm(len(x_tr), generator=g_epoch)
        idx = perm[k * cfg.batch_size:(k + 1) * cfg.batch_size]
        xb = augment(x_tr[idx], gen).float().div_(255)
        if cfg.noise_max > 0:
            xb = add_noise(xb, cfg.noise_max, gen)
        xb = xb.to(device).contiguous(memory_format=torch.channels_last)
        yb = y_tr[idx].to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with precision.autocast(device):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            rate = 50 * cfg.batch_size / max(1e-9, time.perf_counter() - getattr(train_classifier, "_t", t0))
            train_classifier._t = time.perf_counter()
            emit({"event": "step", "step": step, "total": total, "loss": float(loss), "img_per_s": rate})
        over = cfg.time_budget > 0 and elapsed0 + time.perf_counter() - t0 > cfg.time_budget
        if step % steps_per_epoch == 0 or step == total or over:
            acc = accuracy(model, x_va, y_va, precision, device)
            history.append({"step": step, "epoch": step / steps_per_epoch, "val_acc": acc})
            emit({"event": "val", "step": step, "epoch": round(step / steps_per_epoch, 2), "val_acc": acc})
            if acc > best:
                best = acc
                meta = {"arch": "resnet9", "task": "classifier",
                        "config": {"width": cfg.width, "num_classes": 10},
                        "classes": list(CIFAR10_CLASSES), "input_size": [32, 32],
                        "normalisation": {"mean": CIFAR10_MEAN, "std": CIFAR10_STD, "inside_model": True},
                        "training": {k_: v for k_, v in asdict(cfg).items()}, "val_acc": acc, "step": step,
                        "elapsed_s": elapsed0 + time.perf_counter() - t0}
                save_weights(model.state_dict(), out, meta)
        if (time.perf_counter() - last_ck) > cfg.ckpt_minutes * 60 or step == total or over:
            checkpoint()
            last_ck = time.perf_counter()
        if over:
            emit({"event": "time_budget", "step": step})
            break
    res = {"best_val_acc": best, "steps": step, "total": total, "elapsed_s": elapsed0 + time.perf_counter() - t0,
           "history": history, "out": str(out)}
    emit({"event": "done", **{k: v for k, v in res.items() if k != "history"}})
    return res


__all__ = ["ClassifierConfig", "accuracy", "add_noise", "augment", "load_resnet9_weights", "load_split", "math", "train_classifier"]
