"""Training the bundled CamVid segmenter (the frozen high-level network of the
segmentation cascade), from scratch, on clean images. Library code: progress goes to
``on_event``.

Recipe: random scale 0.75-1.5 + crop + flip + mild colour jitter; class-weighted cross
entropy (void ignored); AdamW with warmup + cosine; bf16 autocast + channels_last; atomic
checkpoints and ``resume``. ``arch``: ``resunet_s`` (bundled as resunet_s.camvid) or ``resnet9_unet`` (the
classifier's trunk, from ``backbone``, frozen unless ``frozen_trunk`` is off; bundled, trunk
fine-tuned, as resnet9_unet.camvid, the default segmenter). The output is the final weights (the schedule's end), not a
pick of the best validation score, so the reported val mIoU is not selected on val.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..devices import resolve_device, resolve_precision
from ..errors import UsageError
from ..models.classifier import CIFAR10_MEAN, CIFAR10_STD
from ..models.segmenter import (
    CAMVID_CLASSES,
    CAMVID_COLOURS,
    CAMVID_IGNORE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ResNet9UNet,
    ResUNetS,
)
from ..weightfile import save_weights
from .camvid import SegBank, class_weights, confusion, load_camvid, miou, segment_batches
from .checkpoint import load_checkpoint, save_checkpoint


@dataclass(frozen=True)
class SegmenterConfig:
    data: str
    out: str = "runs/seg/resunet.safetensors"
    steps: int = 6000
    batch_size: int = 8
    crop: tuple[int, int] = (256, 320)
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup: int = 200
    width: int = 32  # resunet_s; resnet9_unet takes its backbone's width (recorded in the file's config)
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"
    val_every: int = 500
    ckpt_minutes: float = 3.0
    resume: bool = False
    subset: tuple[str, ...] = ()  # training images: only these CamVid sequences (name prefixes)
    arch: str = "resunet_s"  # or "resnet9_unet": the CIFAR-10 classifier's trunk + a U-Net decoder
    backbone: str | None = None  # resnet9_unet: the classifier weights (name or path) its trunk starts from
    frozen_trunk: bool = True  # resnet9_unet: keep the trunk exactly the classifier's
    trunk_lr_scale: float = 1.0  # resnet9_unet with the trunk trained: its learning rate relative to lr

    def __post_init__(self) -> None:
        if self.arch not in ("resunet_s", "resnet9_unet"):
            raise UsageError(f"unknown segmenter arch {self.arch!r}", "use resunet_s or resnet9_unet")
        if self.arch == "resnet9_unet" and not self.backbone:
            raise UsageError("resnet9_unet needs the classifier whose trunk it uses",
                             "pass backbone (e.g. resnet9.cifar10)")
        if self.arch == "resunet_s" and self.backbone:
            raise UsageError("resunet_s trains from scratch and takes no backbone", "drop backbone")
        if self.trunk_lr_scale != 1.0 and (self.arch != "resnet9_unet" or self.frozen_trunk):
            raise UsageError("trunk_lr_scale applies to resnet9_unet with its trunk trained",
                             "train the trunk (--train-trunk) or drop trunk_lr_scale")
        if not self.trunk_lr_scale > 0:
            raise UsageError(f"trunk_lr_scale {self.trunk_lr_scale}: must be > 0", "use e.g. 0.1")


def build_segmenter(cfg: SegmenterConfig, num_classes: int) -> tuple[torch.nn.Module, dict, dict]:
    """The model, its architecture config and its normalisation (for the weight file's metadata)."""
    if cfg.arch == "resunet_s":
        return ResUNetS(cfg.width, num_classes), {"width": cfg.width, "num_classes": num_classes}, \
            {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "inside_model": True}
    from .classifier import load_resnet9_weights

    sd, width = load_resnet9_weights(cfg.backbone, "backbone")
    model = ResNet9UNet(width, num_classes, cfg.frozen_trunk)
    model.load_trunk(sd)
    return model, {"width": width, "num_classes": num_classes, "frozen_trunk": cfg.frozen_trunk}, \
        {"mean": CIFAR10_MEAN, "std": CIFAR10_STD, "inside_model": True}


def evaluate_segmenter(net, x: torch.Tensor, y: torch.Tensor, device, precision, batch: int = 4) -> dict:
    was = net.training
    net.eval()
    pred = segment_batches(net, lambda i, j: x[i:j].float() / 255, len(x), device, precision, batch)
    net.train(was)
    m, per, acc = miou(confusion(pred, y, len(CAMVID_CLASSES)))
    return {"miou": m, "per_class": per, "pixel_acc": acc}


def train_segmenter(cfg: SegmenterConfig, on_event: Callable[[dict], None] | None = None) -> dict:
    emit = on_event or (lambda e: None)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device, training=True)
    torch.manual_seed(cfg.seed)
    x_tr, y_tr, _ = load_camvid(cfg.data, "train", subset=tuple(cfg.subset))
    x_va, y_va, _ = load_camvid(cfg.data, "val")
    nc = len(CAMVID_CLASSES)
    cw = class_weights(y_tr, nc).to(device)
    bank = SegBank(x_tr, y_tr, tuple(cfg.crop))
    emit({"event": "data", "train": len(x_tr), "val": len(x_va), "precision": precision.name,
          "class_weights": [round(float(v), 3) for v in cw]})
    model, arch_cfg, norm = build_segmenter(cfg, nc)
    # torch 2.14.1's oneDNN kernels for AVX2-only CPUs corrupt the heap (abort, segfault or hang) when
    # they compute the weight gradient of a 1x1 stride-2 convolution with fewer than 8 input channels in
    # channels_last, as in a test-size ResUNet-S's first downsampling block: such narrow models train in NCHW
    cl = arch_cfg["width"] >= 8
    model = model.to(device).to(memory_format=torch.channels_last if cl else torch.contiguous_format)
    trainable = [p for p in model.parameters() if p.requires_grad]
    trunk_ids = {id(p) for p in model.trunk.parameters()} if cfg.arch == "resnet9_unet" else set()
    groups = []
    for scale, pick in ((1.0, lambda p: id(p) not in trunk_ids), (cfg.trunk_lr_scale, lambda p: id(p) in trunk_ids)):
        ps = [p for p in trainable if pick(p)]
        groups += [{"params": [p for p in ps if p.ndim > 1], "weight_decay": cfg.weight_decay, "lr_scale": scale},
                   {"params": [p for p in ps if p.ndim <= 1], "weight_decay": 0.0, "lr_scale": scale}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    out = Path(cfg.out)
    ckpt = out.with_suffix(".ckpt")
    step, elapsed0, history = 0, 0.0, []
    if cfg.resume and ckpt.is_file():
        st = load_checkpoint(ckpt)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        step, elapsed0, history = st["step"], st["elapsed"], st["history"]
        emit({"event": "resumed", "step": step})
    t0 = time.perf_counter()
    last_ck, t_rate, s_rate = t0, t0, step

    def lr_at(s: int) -> float:
        if s < cfg.warmup:
            return cfg.lr * (s + 1) / cfg.warmup
        p = (s - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p)))

    def save(final_metrics: dict | None) -> None:
        meta = {"arch": cfg.arch, "task": "segmenter", "config": arch_cfg,
                "classes": list(CAMVID_CLASSES), "ignore_index": CAMVID_IGNORE, "palette": [list(c) for c in CAMVID_COLOURS],
                "input_size": [360, 480],
                "normalisation": norm,
                "training": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
                "step": step, "elapsed_s": elapsed0 + time.perf_counter() - t0}
        if final_metrics:
            meta["val"] = final_metrics
        save_weights({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, out, meta)

    model.train()
    while step < cfg.steps:
        xb, yb = bank.sample(cfg.batch_size, gen)
        xb = xb.float().div_(255).to(device).contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        yb = yb.to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step) * g.get("lr_scale", 1.0)  # checkpoints before trunk_lr_scale have none
        with precision.autocast(device):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb, weight=cw, ignore_index=CAMVID_IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 5.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            now = time.perf_counter()
            emit({"event": "step", "step": step, "total": cfg.steps, "loss": float(loss.detach()),
                  "img_per_s": (step - s_rate) * cfg.batch_size / max(1e-9, now - t_rate)})
            t_rate, s_rate = now, step
        last = step == cfg.steps
        if step % cfg.val_every == 0 or last:
            r = evaluate_segmenter(model, x_va, y_va, device, precision)
            history.append({"step": step, "miou": r["miou"], "pixel_acc": r["pixel_acc"]})
            emit({"event": "val", "step": step, "miou": r["miou"], "pixel_acc": r["pixel_acc"],
                  "per_class": [None if v is None else round(v, 3) for v in r["per_class"]]})
            save({**r, "history": history} if last else None)
        if (time.perf_counter() - last_ck) > cfg.ckpt_minutes * 60 or last:
            save_checkpoint(ckpt, {"model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                                   "opt": opt.state_dict(), "gen": gen.get_state(), "step": step,
                                   "elapsed": elapsed0 + time.perf_counter() - t0, "history": history})
            last_ck = time.perf_counter()
    res = {"steps": step, "elapsed_s": elapsed0 + time.perf_counter() - t0, "history": history, "out": str(out)}
    emit({"event": "done", **{k: v for k, v in res.items() if k != "history"}})
    return res
