"""The cascade of Liu et al. (TIP 2020): noisy input -> denoiser (trained) -> frozen
high-level network, with ``L = L_rec(denoised, clean) + lambda * L_task(net(denoised), labels)``.

The high-level network is frozen for real: eval mode (BatchNorm uses its running
statistics and never updates them), ``requires_grad`` off for every parameter, and not in
the optimiser; the gradient of ``L_task`` flows *through* it into the denoiser only. Its
state is hashed before and after training and the run fails loudly if it ever changed.

Each task brings its data (clean crops + labels), its loss and its validation metric.
Validation uses a slice held out from the *training* data (the high-level network saw
those images, the denoiser did not), so the reported sets (CamVid val, the CIFAR-10
held-out part) are never used to pick weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError

# lambda defaults. The reconstruction loss is the MSE on [0, 1] intensities (about 1e-3 at
# sigma 30 after denoising) while the task losses are cross entropies of order 0.1-1, so
# lambda is small. cls: picked by a sweep (benchmarks/results/cascade/) as the largest that
# keeps the guided denoiser's PSNR within 0.5 dB of the MSE denoiser's. seg: 3e-4 with the plain
# cross entropy, the shipped ddn.seg v3's (through resnet9_unet.camvid; above its lambda-0 control
# in two seeds). With the earlier segmenter (resunet_s.camvid) 1e-4 was the best and still no gain.
DEFAULT_LAMBDA = {"seg": 3e-4, "cls": 0.01}
NET_KIND = {"seg": "segmenter", "cls": "classifier"}  # the frozen network each cascade task runs through
CASCADE_SIGMA = "0-75"
# what the task loss fits: labels = cross entropy with the ground truth (the paper); clean =
# cross entropy with the frozen network's argmax on the clean image; soft = KL divergence
# from the network's softmax on the clean image to its softmax on the denoised one
TARGETS = ("labels", "clean", "soft")


def state_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def load_task_net(path: str | Path, kind: str, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """A frozen high-level network from a safetensors file whose ``task`` is ``kind``."""
    from ..models import ARCHS
    from ..weightfile import build_model, load_weights

    sd, meta = load_weights(path)
    if meta.get("task") != kind or meta.get("arch") not in ARCHS:
        raise UsageError(f"{path}: not a {kind} weight file (task {meta.get('task')!r})",
                         f"pass --task-net with a {kind} (ddn models list)")
    net = build_model(sd, meta, path)  # UnsafeWeights for a bad config or mismatched tensors
    net.to(device).to(memory_format=torch.channels_last)
    return freeze(net), meta


def check_classes(net: torch.nn.Module, kind: str, name: str, device: torch.device) -> None:
    """Refuse a frozen network that does not score the task's classes (CamVid's 11, CIFAR-10's
    10): its loss would fail on the first labels beyond its outputs (or fit the wrong ones)."""
    from ..models.classifier import CIFAR10_CLASSES
    from ..models.segmenter import CAMVID_CLASSES

    n_data = len(CAMVID_CLASSES if kind == "seg" else CIFAR10_CLASSES)
    with torch.no_grad():  # how many classes it scores: one tiny forward pass
        n_out = int(net(torch.zeros(1, 3, 32, 32, device=device)).shape[1])
    if n_out != n_data:
        raise UsageError(f"--task-net {name}: {n_out} classes, but {'CamVid' if kind == 'seg' else 'CIFAR-10'} "
                         f"has {n_data}", f"pass a {NET_KIND[kind]} trained on them: the bundled one, or one "
                         "trained with ddn")


def freeze(net: torch.nn.Module) -> torch.nn.Module:
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class _CifarBank:
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def sample(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        from .classifier import augment

        idx = torch.randint(0, len(self.x), (batch,), generator=gen)
        return augment(self.x[idx], gen), self.y[idx]


@dataclass
class Cascade:
    """Task plumbing for the loop: ``sample`` -> (clean uint8 batch, labels);
    ``task_loss``; ``validate``."""

    kind: str  # seg | cls
    net: torch.nn.Module
    net_meta: dict
    net_path: str
    bank: object
    val_x: torch.Tensor
    val_y: torch.Tensor
    lam: float
    hash_before: str
    class_weights: torch.Tensor | None = None
    target: str = "labels"  # labels | clean | soft (see TARGETS)
    augment: bool = False  # seg: random shift and downscale between the denoiser and the network
    grad_blur: float = 0.0  # > 0: the task loss's gradient reaches the denoiser blurred (Gaussian, px)
    grad_highpass: float = 0.0  # > 0: ... minus its blur by this Gaussian (px): no coarse push
    noise: float = 0.0  # > 0: the network sees the denoised batch + fresh N(0, noise/255) (smoothed loss)
    scale: int = 1  # cls, > 1: the images are upscaled this much for the denoiser, its output area-downscaled back

    def __len__(self) -> int:
        return len(self.bank)

    def sample(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.bank.sample(batch, gen)
        return upscale_u8(x, self.scale), y

    def jitter(self, gen: torch.Generator, *maps: torch.Tensor | None) -> list[torch.Tensor | None]:
        """The same random geometry on each of ``maps`` (images (N, C, H, W) or label maps
        (N, H, W)): a shift by 0-7 px (a crop of 8 px less; not a multiple of the network's
        strides) and a downscale by 0.75-1 (bilinear with antialiasing; labels nearest), so
        the task loss cannot be lowered by patterns that only work pixel-exactly."""
        u = torch.rand(3, generator=gen)
        dy, dx, s = int(u[0] * 8), int(u[1] * 8), 0.75 + 0.25 * float(u[2])
        h, w = (n - 8 for n in next(m for m in maps if m is not None).shape[-2:])
        size = (max(8, int(h * s) // 8 * 8), max(8, int(w * s) // 8 * 8))
        out = []
        for m in maps:
            if m is None:
                out.append(None)
                continue
            m = m[..., dy:dy + h, dx:dx + w]
            if m.dtype.is_floating_point:
                out.append(F.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=True))
            else:
                out.append(F.interpolate(m[:, None].float(), size=size, mode="nearest")[:, 0].to(m.dtype))
        return out

    def task_loss(self, denoised: torch.Tensor, labels: torch.Tensor, precision, device,
                  clean: torch.Tensor | None = None, gen: torch.Generator | None = None) -> torch.Tensor:
        if self.scale > 1:  # back to the network's own input size (the mean of each scale x scale block)
            denoised = F.avg_pool2d(denoised, self.scale)
            clean = None if clean is None else F.avg_pool2d(clean, self.scale)
        if self.grad_blur > 0 or self.grad_highpass > 0:
            denoised = filter_gradient(denoised, self.grad_blur, self.grad_highpass)
        if self.augment:
            if gen is None:
                raise ValueError("augment needs the loop's generator")
            denoised, clean, labels = self.jitter(gen, denoised, clean, labels)
        clean_logits = None
        if self.target in ("clean", "soft"):
            # ask the network to see the denoised image as it sees the clean one, instead
            # of fitting the labels where even the clean image is misclassified
            if clean is None:
                raise ValueError(f"target {self.target!r} needs the clean batch")
            with torch.no_grad():
                xc = clean.contiguous(memory_format=torch.channels_last) if precision.channels_last else clean
                with precision.autocast(device):
                    clean_logits = self.net(xc).float()
            if self.target == "clean":
                labels = clean_logits.argmax(1)
        x = denoised
        if self.noise > 0:
            # the loss of the network smoothed by Gaussian noise (one draw per step): its expected
            # gradient keeps what survives the noise, not the fragile pixel-exact directions
            if gen is None:
                raise ValueError("task noise needs the loop's generator")
            x = x + torch.randn(x.shape, generator=gen).to(x.device, x.dtype) * (self.noise / 255)
        if precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision.autocast(device):
            logits = self.net(x)
        if self.target == "soft":
            # KL(net(clean) || net(denoised)) per pixel / image: zero for a perfect denoiser,
            # so it never pulls against the reconstruction loss the way label CE can
            kl = F.kl_div(F.log_softmax(logits.float(), dim=1), F.log_softmax(clean_logits, dim=1),
                          reduction="none", log_target=True)
            return kl.sum(1).mean()
        if self.kind == "seg":
            from ..models.segmenter import CAMVID_IGNORE

            return F.cross_entropy(logits.float(), labels.to(device), weight=self.class_weights,
                                   ignore_index=CAMVID_IGNORE)
        return F.cross_entropy(logits.float(), labels.to(device))

    @torch.no_grad()
    def validate(self, model, sigmas, device, precision, noise_level: bool, seed: int = 0) -> dict:
        """{sigma: {"psnr": dB, "metric": mIoU or top-1}} on the held-out slice."""
        from ..evaluation.metrics import psnr

        was = model.training
        model.eval()
        res = {}
        for s in sigmas:
            g = torch.Generator().manual_seed(seed * 1000 + int(s * 10))
            preds, ps = [], []
            bs = 4 if self.kind == "seg" else 500
            for i in range(0, len(self.val_x), bs):
                clean = self.val_x[i:i + bs].float() / 255
                noisy = clean + torch.randn(clean.shape, generator=g) * (s / 255)
                x = noisy.to(device)
                if precision.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with precision.autocast(device):
                    den = model(x, torch.full((len(x),), s / 255, device=device)) if noise_level else model(x)
                den = den.float().clamp(0, 1)
                den = (den * 255).round() / 255
                for a, b in zip(den.cpu().numpy(), clean.numpy()):
                    ps.append(psnr(np.transpose(a, (1, 2, 0)), np.transpose(b, (1, 2, 0)), peak=1.0))
                xin = den.contiguous(memory_format=torch.channels_last) if precision.channels_last else den
                with precision.autocast(device):
                    preds.append(self.net(xin).float().argmax(1).cpu())
            pred = torch.cat(preds)
            if self.kind == "seg":
                from .camvid import confusion, miou

                metric = miou(confusion(pred, self.val_y, self.net.num_classes))[0]
            else:
                metric = float((pred == self.val_y).float().mean())
            res[float(s)] = {"psnr": float(np.mean(ps)), "metric": metric}
        model.train(was)
        return res

    def feature_loss(self, denoised: torch.Tensor, clean: torch.Tensor, precision, device) -> torch.Tensor:
        """How far the frozen network's trunk features of ``denoised`` are from those of
        ``clean`` (any size, RGB in [0, 1]): per feature map the squared error relative to the
        clean features' mean square, averaged over the maps. A perceptual loss through the
        task network, used on photos (``--rehearse-features``): it asks the denoiser to keep
        what the network reads from real photos, where the label loss only sees the task's
        own images."""
        feats = getattr(self.net, "features", None)
        if feats is None:
            raise UsageError(f"{self.net_path}: this {NET_KIND[self.kind]} has no trunk features to compare",
                             "drop --rehearse-features, or use a ResNet-9 classifier as --task-net")
        xd = denoised.contiguous(memory_format=torch.channels_last) if precision.channels_last else denoised
        xc = clean.contiguous(memory_format=torch.channels_last) if precision.channels_last else clean
        with torch.no_grad(), precision.autocast(device):
            fc = [f.float() for f in feats(xc)]
        with precision.autocast(device):
            fd = feats(xd)
        terms = [(a.float() - b).pow(2).mean() / b.pow(2).mean().clamp_min(1e-8) for a, b in zip(fd, fc)]
        return torch.stack(terms).mean()

    def check_unchanged(self) -> str:
        after = state_hash(self.net)
        if after != self.hash_before:
            raise RuntimeError("the frozen high-level network changed during training")
        return after


def upscale_u8(x: torch.Tensor, scale: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) upscaled ``scale`` times (bicubic, rounded back to 8 bits);
    ``x`` itself when ``scale`` is 1."""
    if scale == 1:
        return x
    up = F.interpolate(x.float(), scale_factor=scale, mode="bicubic", align_corners=False)
    return up.round_().clamp_(0, 255).to(torch.uint8)


def gaussian_blur(x: torch.Tensor, std: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with standard deviation ``std`` px (kernel
    radius ceil(3 std), reflect padding; replicate where the image is too small to reflect)."""
    r = max(1, int(np.ceil(3 * std)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / std) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def filter_gradient(x: torch.Tensor, blur: float = 0.0, highpass: float = 0.0) -> torch.Tensor:
    """``x`` in the forward pass (up to float rounding), but the gradient that flows back
    through it is filtered: ``f(x) + (x - f(x)).detach()`` with ``f`` a Gaussian blur of std
    ``blur`` px (identity when 0) minus, when ``highpass`` > 0, a Gaussian blur of std
    ``highpass`` px. The blur keeps the task loss from steering the fine, high-frequency
    patterns a frozen network's gradient favours; the high-pass keeps it from steering the
    frame's coarse content (large areas' colour and brightness)."""
    f = gaussian_blur(x, blur) if blur > 0 else x
    if highpass > 0:
        f = f - gaussian_blur(x, highpass)
    return f + (x - f).detach()


def build_cascade(kind: str, data: str, task_net: str | None, lam: float | None, device: torch.device,
                  *, crop: int = 192, val_count: int = 0, target: str = "labels",
                  subset: tuple[str, ...] = (), augment: bool = False, class_weighted: bool = True,
                  grad_blur: float = 0.0, grad_highpass: float = 0.0, noise: float = 0.0, scale: int = 1) -> Cascade:
    """Load the frozen task network and the task's data. ``data``: the CamVid folder
    (seg) or CIFAR-10 class folders (cls). ``crop`` is the segmentation crop height
    (width = 4/3 of it). ``subset``: CamVid sequence ids to draw the training images from
    (e.g. the ones the task network was *not* trained on). ``scale`` (cls): train on the images
    upscaled this much, the denoised output area-downscaled back for the classifier; validation
    stays at the images' own size. ``class_weighted`` (seg): the label
    cross entropy with the class weights the segmenter was trained with (rare classes count
    2-10x), else the plain per-pixel mean."""
    from ..registry import resolve_weights

    net_kind = NET_KIND[kind]
    path = resolve_weights(task_net, net_kind)
    net, meta = load_task_net(path, net_kind, device)
    check_classes(net, kind, task_net or Path(path).name, device)
    lam = DEFAULT_LAMBDA[kind] if lam is None else lam
    if not (np.isfinite(lam) and lam >= 0):
        raise UsageError(f"--lambda {lam}: must be a finite number >= 0", "e.g. --lambda 0.01; 0 turns the task loss off")
    cw = None
    if kind == "seg":
        from .camvid import SegBank, class_weights, load_camvid

        x, y, _ = load_camvid(data, "train", subset=tuple(subset))
        n_val = val_count or max(1, min(24, len(x) // 8))
        if len(x) <= n_val:
            raise UsageError(f"{data}: too few CamVid training images ({len(x)})", "use the full CamVid folder")
        bank = SegBank(x[:-n_val], y[:-n_val], (crop, crop * 4 // 3 // 4 * 4))
        val_x, val_y = x[-n_val:], y[-n_val:]
        cw = class_weights(y[:-n_val], net.num_classes).to(device) if class_weighted else None
    else:
        from .classifier import load_split

        x, y, _, _ = load_split(data, 0.1)  # the classifier's own training part
        n_val = val_count or min(1000, max(1, len(x) // 10))
        if len(x) <= n_val:
            raise UsageError(f"{data}: too few CIFAR-10 training images ({len(x)})")
        g = torch.Generator().manual_seed(1234)
        perm = torch.randperm(len(x), generator=g)
        tr, va = perm[:-n_val], perm[-n_val:]
        bank = _CifarBank(x[tr], y[tr])
        val_x, val_y = x[va], y[va]
    if target not in TARGETS:
        raise UsageError(f"--task-target {target!r}: use {', '.join(TARGETS)}")
    if grad_blur < 0 or grad_highpass < 0:
        raise UsageError(f"--task-grad-blur {grad_blur} / --task-grad-highpass {grad_highpass}: must be >= 0 (0 = off)")
    if grad_highpass and grad_highpass <= grad_blur:
        raise UsageError(f"--task-grad-highpass {grad_highpass} must be larger than --task-grad-blur {grad_blur}",
                         "the high-pass removes what a wider Gaussian keeps")
    if not noise >= 0:
        raise UsageError(f"--task-noise {noise}: must be >= 0 (0 = off)")
    if scale != 1 and (kind != "cls" or not 1 <= scale <= 8):
        raise UsageError(f"--task-scale {scale}: an integer from 1 to 8, for --task cls only")
    return Cascade(kind, net, meta, str(path), bank, val_x, val_y, float(lam), state_hash(net), cw, target, augment,
                   float(grad_blur), float(grad_highpass), float(noise), int(scale))
