"""Make a narrower denoiser from a trained one: drop the least important channels of the
1/2-scale decoder's residual stream (``fuse``: fuse1's output, res3's input and output, up2's
input), keeping every other weight, as the starting point of a fine-tune (``ddn train --init``).

Why there: fuse1 (the 3x3 160->256 convolution) and res3 take over half of a CPU tile's time,
and oneDNN's bf16 speed is not proportional to the width: a 224-wide stream runs a 512 px tile
1.18x faster than 256 here, 192 1.32x (random weights, the inference form; `--time`;
benchmarks/results/prune/width_time.txt).

A channel's importance: its mean activation on noisy training photos (after fuse1's ReLU and
after res3's), times the norm of the weights that read it (res3's first 1x1 convolution and
up2). The images come from the training split only, never CBSD68 or Kodak24.

    python benchmarks/prune_width.py --width 224 --out runs/prune/w224_init.safetensors [--time]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ddn_cli.evaluation.denoise_eval import load_eval_images
from ddn_cli.models.denoiser import build_denoiser
from ddn_cli.registry import resolve_weights
from ddn_cli.weightfile import load_weights, save_weights

STREAM = {  # tensor -> the dimension that indexes the fuse channels
    "fuse1.0.weight": 0, "fuse1.1.weight": 0, "fuse1.1.bias": 0, "fuse1.1.running_mean": 0, "fuse1.1.running_var": 0,
    "res3.body.0.weight": 1, "res3.body.6.weight": 0, "res3.body.7.weight": 0, "res3.body.7.bias": 0,
    "res3.body.7.running_mean": 0, "res3.body.7.running_var": 0, "up2.weight": 0,
}
INNER = ("res3.body.0.weight", "res3.body.1.", "res3.body.3.weight", "res3.body.4.", "res3.body.6.weight")


def importance(model, images, sigmas=(15.0, 25.0, 50.0), crop=256) -> torch.Tensor:
    acts: dict[str, torch.Tensor] = {}

    def hook(name):
        def f(_m, _i, out):
            acts[name] = acts.get(name, 0) + out.detach().abs().mean(dim=(0, 2, 3)).double()
        return f

    model.fuse1.register_forward_hook(hook("fuse1"))
    model.res3.register_forward_hook(hook("res3"))
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for i, (_, img) in enumerate(images):
            x = torch.from_numpy(img[:crop, :crop]).permute(2, 0, 1)[None].float() / 255
            s = sigmas[i % len(sigmas)]
            model(x + torch.randn(x.shape, generator=gen) * s / 255, s / 255)
    w_in = model.res3.body[0].weight.detach().double().flatten(2).norm(dim=(0, 2))  # (fuse,)
    w_up = model.up2.weight.detach().double().flatten(1).norm(dim=1)  # (fuse,)
    return acts["fuse1"] * w_in + acts["res3"] * w_up


def prune(sd: dict, keep: torch.Tensor, inner: int) -> dict:
    """``sd`` with the fuse stream cut to the channels ``keep``; res3's bottleneck cut to ``inner``
    channels (the architecture's fuse // 4), keeping its strongest by BatchNorm scale."""
    out = dict(sd)
    for k, dim in STREAM.items():
        out[k] = sd[k].index_select(dim, keep).clone()
    if inner < sd["res3.body.1.weight"].shape[0]:
        g1 = sd["res3.body.1.weight"].abs() / (sd["res3.body.1.running_var"] + 1e-5).sqrt()
        g2 = sd["res3.body.4.weight"].abs() / (sd["res3.body.4.running_var"] + 1e-5).sqrt()
        k1 = torch.sort(torch.topk(g1, inner).indices).values
        k2 = torch.sort(torch.topk(g2, inner).indices).values
        out["res3.body.0.weight"] = out["res3.body.0.weight"].index_select(0, k1).clone()
        for s in ("weight", "bias", "running_mean", "running_var"):
            out[f"res3.body.1.{s}"] = sd[f"res3.body.1.{s}"].index_select(0, k1).clone()
            out[f"res3.body.4.{s}"] = sd[f"res3.body.4.{s}"].index_select(0, k2).clone()
        out["res3.body.3.weight"] = sd["res3.body.3.weight"].index_select(0, k2).index_select(1, k1).clone()
        out["res3.body.6.weight"] = out["res3.body.6.weight"].index_select(1, k2).clone()
    return out


def time_widths(widths: list[int], reps: int) -> None:
    from ddn_cli.models import onednn
    from ddn_cli.models.fast import FastDenoiser

    ms = {}
    for w in widths:
        m = build_denoiser({"fuse": w}).eval()
        ms[w] = onednn.onednn_form(FastDenoiser(m).eval(), torch.bfloat16).to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 512, 512).contiguous(memory_format=torch.channels_last)
    t: dict[int, list[float]] = {w: [] for w in widths}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for m in ms.values():
            m(x, 0.1), m(x, 0.1)
        for _ in range(reps):
            for w, m in ms.items():
                t0 = time.perf_counter()
                m(x, 0.1)
                t[w].append(time.perf_counter() - t0)
    for w in widths:
        ratio = statistics.median([a / b for a, b in zip(t[widths[0]], t[w], strict=True)])
        print(f"fuse {w}: median {1000 * statistics.median(t[w]):.1f} ms per 512 px tile (bf16); "
              f"{ratio:.2f}x fuse {widths[0]}'s speed (median of the {reps} interleaved rounds' ratios)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ddn.color-sigma")
    ap.add_argument("--width", type=int, default=224)
    ap.add_argument("--images", default=str(ROOT / "benchmarks/splits/denoise_train.txt"),
                    help="a list file of training images (paths relative to --data-root)")
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared/data"))
    ap.add_argument("--n", type=int, default=48, help="training images to score the channels on")
    ap.add_argument("--out", default=None)
    ap.add_argument("--time", default="", help="comma-separated widths to time (random weights), e.g. 256,224,192")
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    if a.time:
        time_widths([int(v) for v in a.time.split(",")], a.reps)
    if not a.out:
        return
    sd, meta = load_weights(resolve_weights(a.model))
    cfg = dict(meta["config"])
    if not 16 <= a.width < cfg["fuse"] or a.width % 4:
        raise SystemExit(f"--width must be a multiple of 4 in [16, {cfg['fuse']})")
    model = build_denoiser(cfg).eval()
    model.load_state_dict(sd)
    names = [p for p in Path(a.images).read_text().split() if p]
    names = names[:: max(1, len(names) // a.n)][: a.n]  # spread over the list
    images = load_eval_images([str(Path(a.data_root) / p) for p in names])
    score = importance(model, images)
    keep = torch.sort(torch.topk(score, a.width).indices).values
    new = prune(sd, keep, a.width // 4)
    cfg["fuse"] = a.width
    student = build_denoiser(cfg)
    student.load_state_dict(new)  # shapes checked here
    kept = float(score[keep].sum() / score.sum())
    save_weights(new, a.out, {"arch": meta.get("arch", "ddn"), "config": cfg, "task": "denoise",
                              "pruned": {"from": a.model, "width": a.width, "importance_kept": kept, "images": len(images)}})
    print(f"wrote {a.out}: fuse {len(score)} -> {a.width}, {100 * kept:.1f}% of the channel importance kept")


if __name__ == "__main__":
    main()
