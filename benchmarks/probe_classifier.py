"""A CIFAR-10 classifier that sees through the bundled segmenter's eyes: ``ResNet9`` with its
convolutional trunk (``net[0:6]``, BatchNorm statistics included) taken unchanged from a
``resnet9_unet`` segmenter and only the last linear layer trained (a linear probe).

Why: the classification-guided denoiser helped CamVid through a segmenter whose trunk was the
classifier's, frozen, and hurt it through the fine-tuned trunk that became the bundled
segmenter (benchmarks/results/cascade/RESULTS.md). A classifier standing on the *segmenter's*
trunk shares its features the other way round; a cascade through it (``ddn train --task cls
--task-net THIS``) tests whether the shared features carry the transfer to that segmenter.

    python benchmarks/probe_classifier.py --out runs/probe/resnet9_segtrunk.safetensors

The linear layer is fitted on trunk features of ``--augments`` randomly cropped / flipped
copies of the training part (computed once, bf16 where the CPU has it), with AdamW and label
smoothing; the held-out part (the bundled classifier's: the last 10% of each class) is
scored with and without flip test-time augmentation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch
import torch.nn.functional as F

from ddn_cli.devices import Precision, resolve_precision
from ddn_cli.models import ResNet9
from ddn_cli.models.classifier import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from ddn_cli.training.classifier import accuracy, augment, load_split
from ddn_cli.weightfile import load_weights, save_weights


@torch.no_grad()
def features(net: ResNet9, x_u8: torch.Tensor, prec: Precision, flip: bool = False, batch: int = 500) -> torch.Tensor:
    """(N, 256) pooled trunk features of uint8 images (what ``net.net[-1]`` reads)."""
    out = []
    body = net.net[:-1]
    for i in range(0, len(x_u8), batch):
        xb = x_u8[i:i + batch].float() / 255
        if flip:
            xb = xb.flip(3)
        xb = ((xb - net.mean) / net.std).contiguous(memory_format=torch.channels_last)
        with prec.autocast(torch.device("cpu")):
            out.append(body(xb).float())
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segmenter", default=str(ROOT / "weights/resnet9_unet.camvid.safetensors"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10/train"))
    ap.add_argument("--holdout", type=float, default=0.1)
    ap.add_argument("--augments", type=int, default=4, help="augmented copies of the training part")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/probe/resnet9_segtrunk.safetensors")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    t0 = time.time()
    prec = resolve_precision("auto", torch.device("cpu"))
    seg_sd, seg_meta = load_weights(a.segmenter)
    width = int(seg_meta.get("config", {}).get("width", 32))
    net = ResNet9(width=width, tta_flip=True).eval()
    trunk = {k[len("trunk."):]: v for k, v in seg_sd.items() if k.startswith("trunk.")}
    missing = net.net[:6].load_state_dict(trunk, strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    net = net.to(memory_format=torch.channels_last)
    x_tr, y_tr, x_va, y_va = load_split(a.data, a.holdout)
    gen = torch.Generator().manual_seed(a.seed)
    f_tr = torch.cat([features(net, augment(x_tr, gen), prec) for _ in range(a.augments)])
    y_all = y_tr.repeat(a.augments)
    f_va, f_va_flip = features(net, x_va, prec), features(net, x_va, prec, flip=True)
    t_feat = time.time() - t0

    head = torch.nn.Linear(f_tr.shape[1], 10, bias=False)
    opt = torch.optim.AdamW(head.parameters(), lr=a.lr, weight_decay=5e-4)
    steps_per_epoch = (len(f_tr) + 511) // 512
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=a.epochs * steps_per_epoch)
    history = []
    for ep in range(a.epochs):
        perm = torch.randperm(len(f_tr), generator=gen)
        for i in range(0, len(f_tr), 512):
            j = perm[i:i + 512]
            loss = F.cross_entropy(head(f_tr[j]) * net.scale, y_all[j], label_smoothing=a.smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if ep % 10 == 9 or ep == a.epochs - 1:
            with torch.no_grad():
                single = float((head(f_va).argmax(1) == y_va).float().mean())
                tta = float(((head(f_va) + head(f_va_flip)).argmax(1) == y_va).float().mean())
            history.append({"epoch": ep + 1, "val_acc_single_view": single, "val_acc": tta})
            print(json.dumps(history[-1]), flush=True)
    net.net[-1].weight.data.copy_(head.weight.data)
    net = net.to(memory_format=torch.contiguous_format)
    # the saved classifier, measured end to end as ``ddn`` runs it (fp32, flip TTA)
    cpu = torch.device("cpu")
    acc = accuracy(net, x_va, y_va, resolve_precision("fp32", cpu), cpu)
    meta = {
        "task": "classifier", "arch": "resnet9", "config": {"width": width, "num_classes": 10, "tta_flip": True},
        "classes": list(CIFAR10_CLASSES), "input_size": [32, 32],
        "normalisation": {"inside_model": True, "mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)},
        "val_acc": acc, "val_note": "fp32, flip TTA, the held-out last 10% of each class",
        "training": {"kind": "linear probe on a segmenter's trunk", "segmenter": str(a.segmenter),
                     "augments": a.augments, "epochs": a.epochs, "lr": a.lr, "smoothing": a.smoothing,
                     "seed": a.seed, "history": history},
        "elapsed_s": time.time() - t0,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    save_weights(net.state_dict(), a.out, meta)
    print(json.dumps({"out": a.out, "val_acc": acc, "features_s": round(t_feat, 1),
                      "elapsed_s": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
