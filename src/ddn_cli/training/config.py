"""Typed, validated training configuration."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import UsageError

TASKS = ("denoise", "seg", "cls")
LOSSES = ("l1", "mse", "charbonnier", "mse-sigma")


@dataclass(frozen=True)
class TrainConfig:
    task: str = "denoise"
    data: tuple[str, ...] = ()
    data_root: str | None = None
    val: tuple[str, ...] = ()
    val_limit: int = 0  # 0 = all validation images
    val_sigmas: tuple[float, ...] = (15.0, 25.0, 50.0)
    out: str = "runs/ddn.safetensors"
    init: str | None = None
    resume: bool = False
    steps: int = 20000  # 0 = choose from time_budget
    time_budget: float = 0.0  # seconds; hard cap on the run (0 = none)
    batch_size: int = 16
    patch: int = 96
    lr: float = 1e-3
    min_lr_ratio: float = 0.01
    warmup: int = 500
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    loss: str = "l1"
    sigma: str = "0-75"
    clip_fraction: float = 0.5
    noise_level: bool = True
    ema: float = 0.999  # 0 disables
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    val_every: int = 2000
    ckpt_minutes: float = 5.0
    log: str | None = None
    lam: float | None = None  # cascade tasks: weight of the task loss (None = the task's default)
    task_net: str | None = None  # cascade tasks: the frozen high-level network (None = bundled)
    task_target: str = "labels"  # cascade tasks: labels, or clean = the network's prediction on the clean image
    task_augment: bool = False  # seg cascade: random shift + downscale before the segmenter
    task_class_weights: bool = True  # seg cascade: the segmenter's class-balanced cross entropy (False: plain;
    # `ddn train --task seg` passes False unless told --task-class-weights, the shipped ddn.seg v3's recipe)
    subset: tuple[str, ...] = ()  # seg cascade: only CamVid training images whose names start with these
    # BatchNorm on its running statistics (only its affine weights learn); None = when fine-tuning (init)
    freeze_bn: bool | None = None
    # cascade tasks: clean photos whose reconstruction loss is added each step (rehearsal), so a
    # fine-tune on one domain (CIFAR's 32 px thumbnails) keeps the denoiser good on others
    rehearse: tuple[str, ...] = ()
    rehearse_batch: int = 8
    rehearse_patch: int = 96
    # cascade tasks: weight of L_rec on the task's own images (1 = the paper's L_rec + lambda * L_task;
    # 0 = reconstruction only from --rehearse photos, e.g. when the task's clean images are JPEG
    # thumbnails, as CIFAR-10's are, and not a target a photo denoiser should learn)
    task_rec_weight: float = 1.0
    # cascade tasks: > 0 blurs the task loss's gradient (Gaussian, this std in px) on its way
    # into the denoiser; the network still sees the denoised image itself
    task_grad_blur: float = 0.0
    # cascade tasks: > 0 also removes from that gradient what a Gaussian of this std (px) keeps,
    # so the task loss cannot push large areas' colour and brightness (with the blur: a band-pass)
    task_grad_highpass: float = 0.0
    # cascade tasks: > 0 adds fresh Gaussian noise of this std (8-bit levels, as --sigma) to the
    # denoised batch before the task network, so the task loss is that of the network smoothed
    # over the noise: its gradient loses the network-specific, pixel-exact directions
    task_noise: float = 0.0
    # cls cascade: > 1 upscales each CIFAR-10 image by this integer factor (bicubic) before the
    # noise, the denoiser sees it at that size and its output is area-downscaled back before the
    # classifier: the classifier's guidance reaches the denoiser at the scale of objects in photos
    # (tens of px), never on single pixels. 1 = the images as they are (the paper)
    task_scale: int = 1
    # cascade tasks: where the task loss's gradient (lambda * L_task) points against
    # the reconstruction loss's (L_rec on the task images and the rehearsal photos), remove that
    # component before the step (PCGrad, Yu et al., NeurIPS 2020), so that the gradient handed to the
    # optimiser has no part against reconstruction (AdamW's per-parameter scaling and momentum still
    # shape the step itself). Single process only
    task_pcgrad: bool = False
    # cascade tasks with --rehearse: > 0 adds this weight x the frozen network's trunk-feature
    # error (denoised vs clean rehearsal photo, relative to the clean features' mean square) to
    # the photos' loss: a perceptual loss through the task network on real photos
    rehearse_features: float = 0.0
    # fine-tuning: only these top-level layers of the denoiser learn (names as in its state_dict,
    # e.g. down2,res2,up1); the others keep their initial weights. Empty = all layers learn
    train_only: tuple[str, ...] = ()
    # denoise: the reconstruction target is this trained denoiser's output on the same noisy
    # input (knowledge distillation, e.g. to recover a narrowed copy of it), not the clean image
    distill: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.freeze_bn is None:  # resolved here, so a checkpoint records what the run did
            object.__setattr__(self, "freeze_bn", self.init is not None)
        for f in fields(self):  # NaN passes every range check (all comparisons are false)
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                option = {"lam": "lambda"}.get(f.name, f.name).replace("_", "-")
                raise UsageError(f"--{option} {v}: must be a finite number")
        bad = [s for s in self.val_sigmas if not (math.isfinite(s) and 0 <= s <= 255)]
        if bad or not self.val_sigmas:
            raise UsageError(f"--val-sigma {f'{bad[0]:g}' if bad else '(none)'}: validation noise levels are 0-255 "
                             "(the 8-bit scale)", "e.g. --val-sigma 15,25,50")
        if self.time_budget < 0 or self.ckpt_minutes < 0:
            raise UsageError("--time-budget and --ckpt-minutes must be >= 0")
        if self.task not in TASKS:
            raise UsageError(f"--task {self.task!r} is unknown", f"use one of {', '.join(TASKS)}")
        if self.loss not in LOSSES:
            raise UsageError(f"--loss {self.loss!r} is unknown", f"use one of {', '.join(LOSSES)}")
        if not self.data:
            raise UsageError("no --data given", "pass one or more folders or list files of clean images")
        if self.steps < 0 or (self.steps == 0 and self.time_budget <= 0):
            raise UsageError("--steps must be > 0, or 0 together with --time-budget SECONDS")
        if self.batch_size < 1 or self.patch < 16 or self.patch % 4:
            raise UsageError("--batch-size must be >= 1 and --patch a multiple of 4, >= 16")
        if not (0 < self.lr < 1):
            raise UsageError(f"--lr {self.lr} is out of range (0, 1)")
        if not (0 <= self.clip_fraction <= 1):
            raise UsageError("--clip-fraction must be in [0, 1]")
        if self.lam is not None and not (math.isfinite(self.lam) and self.lam >= 0):
            raise UsageError(f"--lambda {self.lam}: must be a finite number >= 0", "e.g. --lambda 0.01; 0 turns the task loss off")
        if Path(self.out).suffix.lower() != ".safetensors":
            if str(self.out).endswith(("/", "\\")) or Path(self.out).is_dir():
                raise UsageError(f"--out {self.out}: is a folder, --out names the weight file",
                                 f"e.g. --out {Path(self.out) / 'mine.safetensors'}")
            raise UsageError(f"--out {self.out}: must be a .safetensors file name; OUT.json, OUT.ckpt and OUT.log go "
                             "beside it", "e.g. --out runs/mine.safetensors")
        if self.task != "denoise" and len(self.data) != 1:
            raise UsageError(f"--task {self.task}: pass exactly one --data folder",
                             "the CamVid folder for seg, the CIFAR-10 class folders for cls")
        if (self.val or self.val_limit) and self.task != "denoise":
            raise UsageError(f"--val{'' if self.val else '-limit'} applies to --task denoise only: --task {self.task} "
                             "validates on a held-out slice of its --data", f"drop --val{'' if self.val else '-limit'}")
        for given, option in ((self.lam is not None, "--lambda"), (self.task_net is not None, "--task-net"),
                              (self.task_target != "labels", "--task-target")):
            if given and self.task == "denoise":
                raise UsageError(f"{option} applies to the cascade tasks (seg, cls) only", f"drop {option}")
        if self.rehearse and self.task == "denoise":
            raise UsageError("--rehearse applies to the cascade tasks (seg, cls) only", "drop --rehearse")
        if self.rehearse_batch < 1 or self.rehearse_patch < 16 or self.rehearse_patch % 4:
            raise UsageError("--rehearse-batch must be >= 1 and --rehearse-patch a multiple of 4, >= 16")
        for name in ("task_rec_weight", "task_grad_blur", "task_grad_highpass", "task_noise"):
            if not math.isfinite(getattr(self, name)):
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be a finite number")
        if self.task_rec_weight < 0:
            raise UsageError(f"--task-rec-weight {self.task_rec_weight}: must be >= 0")
        if self.task_rec_weight != 1.0 and self.task == "denoise":
            raise UsageError("--task-rec-weight applies to the cascade tasks (seg, cls) only", "drop --task-rec-weight")
        if self.task_rec_weight == 0 and not self.rehearse:
            raise UsageError("--task-rec-weight 0 leaves the denoiser without a reconstruction loss",
                             "add --rehearse PHOTOS, or use a weight > 0")
        if self.task_grad_blur < 0:
            raise UsageError(f"--task-grad-blur {self.task_grad_blur}: must be >= 0 (0 = off)")
        if self.task_grad_blur > 0 and self.task == "denoise":
            raise UsageError("--task-grad-blur applies to the cascade tasks (seg, cls) only", "drop --task-grad-blur")
        if self.task_grad_highpass < 0:
            raise UsageError(f"--task-grad-highpass {self.task_grad_highpass}: must be >= 0 (0 = off)")
        if self.task_grad_highpass > 0 and self.task == "denoise":
            raise UsageError("--task-grad-highpass applies to the cascade tasks (seg, cls) only", "drop --task-grad-highpass")
        if 0 < self.task_grad_highpass <= self.task_grad_blur:
            raise UsageError(f"--task-grad-highpass {self.task_grad_highpass} must be larger than --task-grad-blur "
                             f"{self.task_grad_blur}", "the high-pass removes what a wider Gaussian keeps")
        if self.task_noise < 0:
            raise UsageError(f"--task-noise {self.task_noise}: must be >= 0 (0 = off)")
        if self.task_noise > 0 and self.task == "denoise":
            raise UsageError("--task-noise applies to the cascade tasks (seg, cls) only", "drop --task-noise")
        if self.task_scale < 1 or self.task_scale > 8:
            raise UsageError(f"--task-scale {self.task_scale}: must be an integer from 1 to 8 (1 = off)")
        if self.task_scale != 1 and self.task != "cls":
            raise UsageError("--task-scale applies to --task cls only", "drop --task-scale")
        if not (math.isfinite(self.rehearse_features) and self.rehearse_features >= 0):
            raise UsageError(f"--rehearse-features {self.rehearse_features}: must be a finite number >= 0 (0 = off)")
        if self.rehearse_features > 0 and not self.rehearse:
            raise UsageError("--rehearse-features compares the task network's features on the --rehearse photos",
                             "add --rehearse PHOTOS, or drop --rehearse-features")
        if self.task_pcgrad and self.task == "denoise":
            raise UsageError("--task-pcgrad applies to the cascade tasks (seg, cls) only", "drop --task-pcgrad")
        if self.task_augment and self.task != "seg":
            raise UsageError("--task-augment applies to --task seg only", "drop --task-augment")
        if not self.task_class_weights and self.task != "seg":
            raise UsageError("--no-task-class-weights applies to --task seg only", "drop --no-task-class-weights")
        if self.subset and self.task != "seg":
            raise UsageError("--subset applies to --task seg only", "drop --subset")
        if not (0 <= self.ema < 1):
            raise UsageError("--ema must be in [0, 1)")
        if self.distill is not None and self.task != "denoise":
            raise UsageError("--distill applies to --task denoise only", "drop --distill")
        if self.train_only and self.init is None and not self.resume:
            raise UsageError("--train-only freezes layers of the model given by --init",
                             "add --init MODEL, or drop --train-only")
        if len(set(self.train_only)) != len(self.train_only) or any(not n for n in self.train_only):
            raise UsageError(f"--train-only {','.join(self.train_only)}: names must be distinct and non-empty",
                             "list each layer once, comma-separated, e.g. --train-only down2,res2,up1")
        if self.train_only and self.freeze_bn is False:
            raise UsageError("--train-only with --train-bn would still move the other layers' BatchNorm statistics",
                             "drop --train-bn (fine-tuning keeps BatchNorm on its running statistics by default)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["data"] = list(self.data)
        d["val"] = list(self.val)
        d["val_sigmas"] = list(self.val_sigmas)
        d["subset"] = list(self.subset)
        d["rehearse"] = list(self.rehearse)
        d["train_only"] = list(self.train_only)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        for k in ("data", "val", "val_sigmas", "subset", "rehearse", "train_only"):
            if k in d:
                d[k] = tuple(d[k])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})
