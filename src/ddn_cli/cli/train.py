"""``ddn train``: train or fine-tune a denoiser."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from .common import err, fail, handled, show_progress


def train(
    ctx: typer.Context,
    task: Annotated[str, typer.Option(help="denoise: plain denoiser training; seg / cls: the cascade (denoiser -> "
                                           "frozen segmenter / classifier, L = MSE + lambda * task loss).")] = "denoise",
    data: Annotated[list[str], typer.Option("--data", help="denoise: folder(s) of clean images or list file(s), repeatable; "
                                                           "seg: the CamVid folder; cls: CIFAR-10 class folders.")] = [],  # noqa: B006
    lam: Annotated[float | None, typer.Option("--lambda", help="Cascade: weight of the task loss (default 3e-4 for seg, "
                                                               "0.01 for cls; see the README).")] = None,
    task_net: Annotated[str | None, typer.Option(help="Cascade: the frozen high-level network, NAME or PATH "
                                                      "(default: the bundled segmenter / classifier).")] = None,
    task_target: Annotated[str, typer.Option(help="Cascade: what the task loss fits: labels (the paper), or clean "
                                                  "(the frozen network's argmax on the clean image) or soft (KL divergence to its softmax "
                                                  "on the clean image).")] = "labels",
    task_augment: Annotated[bool, typer.Option("--task-augment", help="seg: shift (0-7 px) and downscale (0.75-1) "
                                                                      "the denoised crop at random before the segmenter.")] = False,
    task_class_weights: Annotated[bool | None, typer.Option("--task-class-weights/--no-task-class-weights",
                                                            help="seg: weigh the task cross entropy by class (rare "
                                                                 "classes 2-10x, as the segmenter was trained) or not "
                                                                 "(default: not, as ddn.seg was trained).",
                                                            show_default=False)] = None,
    subset: Annotated[list[str], typer.Option("--subset", help="seg: train only on CamVid images of these sequences "
                                                                "(name prefixes such as 0001TP; repeatable).")] = [],  # noqa: B006
    rehearse: Annotated[list[str], typer.Option("--rehearse", help="Cascade: folder(s) or list file(s) of clean photos whose "
                                                                   "reconstruction loss is added each step, so the denoiser stays good "
                                                                   "outside the task's images (repeatable).")] = [],  # noqa: B006
    rehearse_batch: Annotated[int, typer.Option(min=1, help="Cascade: photo patches per step for --rehearse.")] = 8,
    rehearse_patch: Annotated[int, typer.Option(min=16, help="Cascade: patch size for --rehearse (multiple of 4).")] = 96,
    task_rec_weight: Annotated[float, typer.Option(min=0.0, help="Cascade: weight of the reconstruction loss on the task's own "
                                                                 "images (1 = the paper; 0 = only on --rehearse photos, e.g. for "
                                                                 "CIFAR-10's JPEG thumbnails).")] = 1.0,
    task_grad_blur: Annotated[float, typer.Option(min=0.0, help="Cascade: blur the task loss's gradient (Gaussian, std in px) "
                                                                "before it reaches the denoiser; 0 = off. The network still "
                                                                "sees the denoised image itself.")] = 0.0,
    task_grad_highpass: Annotated[float, typer.Option(min=0.0, help="Cascade: also remove from the task loss's gradient what "
                                                                    "a Gaussian of this std (px) keeps, so it cannot push large "
                                                                    "areas' colour and brightness; 0 = off.")] = 0.0,
    task_noise: Annotated[float, typer.Option(min=0.0, help="Cascade: add fresh Gaussian noise of this std (8-bit levels) "
                                                            "to the denoised image before the task network, so the task "
                                                            "loss is the noise-smoothed network's; 0 = off.")] = 0.0,
    task_scale: Annotated[int, typer.Option(min=1, max=8, help="cls: upscale each CIFAR-10 image this many times (bicubic) "
                                                           "before the noise and area-downscale the denoised one back "
                                                           "for the classifier, so its guidance acts at the scale of "
                                                           "objects in photos; 1 = off (the paper).")] = 1,
    task_pcgrad: Annotated[bool, typer.Option("--task-pcgrad", help="Cascade: where the task loss's gradient "
                                                                  "points against the reconstruction loss's (task images "
                                                                  "and rehearsal photos), remove that component (PCGrad), "
                                                                  "so the optimiser gets no gradient against reconstruction.")] = False,
    rehearse_features: Annotated[float, typer.Option(min=0.0, help="Cascade with --rehearse: add this weight x the task "
                                                                   "network's trunk-feature error (denoised vs clean photo, "
                                                                   "relative) to the photos' loss, a perceptual loss through "
                                                                   "the frozen network; 0 = off.")] = 0.0,
    train_only: Annotated[str | None, typer.Option(help="Fine-tuning: only these layers of the denoiser learn, comma-separated "
                                                        "(head, down1, res1, down2, res2, up1, fuse1, res3, up2, tail); the "
                                                        "others keep --init's weights. Default: all learn.")] = None,
    distill: Annotated[str | None, typer.Option(help="Denoise: train towards this denoiser's output (name or .safetensors) "
                                                     "on the same noisy input instead of the clean image (distillation, "
                                                     "e.g. after benchmarks/prune_width.py).")] = None,
    val_sigma: Annotated[str | None, typer.Option(help="Validation noise levels (default 15,25,50; cascade 30,60).")] = None,
    data_root: Annotated[str | None, typer.Option(help="Root for relative entries in list files (default: the list file's folder).")] = None,
    val: Annotated[list[str], typer.Option("--val", help="Validation folder(s) or list file(s); repeatable.")] = [],  # noqa: B006
    val_limit: Annotated[int, typer.Option(min=0, help="Use only the first N validation images (0 = all).")] = 0,
    val_every: Annotated[int, typer.Option(min=1, help="Validate every N steps.")] = 2000,
    out: Annotated[Path, typer.Option(help="Output .safetensors (a .json sidecar, .ckpt checkpoint and .log go beside it).")] = Path("runs/ddn.safetensors"),
    init: Annotated[str | None, typer.Option(help="Start from this model name or .safetensors path (fine-tuning).")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from OUT's checkpoint, same schedule.")] = False,
    steps: Annotated[int, typer.Option(min=0, help="Optimiser steps (0 = fit the --time-budget).")] = 20000,
    time_budget: Annotated[float, typer.Option(help="Stop after this many seconds of this run's training, its last "
                                                         "validation included; a --resume gets them afresh (0 = no limit).")] = 0.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Patches per step (per process under torchrun).")] = 16,
    patch: Annotated[int, typer.Option(min=16, help="Patch size (multiple of 4).")] = 96,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warmup + cosine).")] = 1e-3,
    warmup: Annotated[int, typer.Option(min=0, help="Warmup steps.")] = 500,
    sigma: Annotated[str, typer.Option(help="Noise: a range 0-75 (noise-level model) or values 15,25,50.")] = "0-75",
    clip_fraction: Annotated[float, typer.Option(help="Fraction of samples clipped to [0,255] and quantised, like real files.")] = 0.5,
    noise_level: Annotated[bool, typer.Option("--noise-level/--no-noise-level", help="Give the network a sigma map input (one model for all sigmas).")] = True,
    loss: Annotated[str | None, typer.Option(help="l1, mse, charbonnier or mse-sigma (MSE with each sample weighted "
                                                   "by (25 / sigma)^2, so every noise level counts alike in PSNR terms) "
                                                   "(default l1; mse for the cascade).")] = None,
    freeze_bn: Annotated[bool | None, typer.Option("--freeze-bn/--train-bn", help="Keep BatchNorm on its running "
                                                   "statistics (default: yes when fine-tuning with --init or a cascade, "
                                                   "whose small batches would re-estimate them badly).")] = None,
    ema: Annotated[float, typer.Option(help="EMA decay of the weights (0 = off).")] = 0.999,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 on AMX/AVX512-BF16 CPUs and GPUs), fp32 or bf16.")] = "auto",
    ckpt_minutes: Annotated[float, typer.Option(help="Checkpoint every N minutes (and on Ctrl-C / SIGTERM).")] = 5.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Train a denoiser with fresh synthetic noise each step, alone (denoise) or cascaded
    into a frozen segmenter / classifier (seg / cls; only the denoiser learns)."""
    import os

    env = {k: os.environ.get(k, "").strip() for k in ("RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")}
    if env["RANK"] not in ("", "0") and env["WORLD_SIZE"] not in ("", "1") and env["LOCAL_WORLD_SIZE"] == env["WORLD_SIZE"]:
        # torchrun on one machine: every process meets the same errors (the files are the same
        # for all, and the loop shares one process's errors with the others), so rank 0 says
        # them, once, not one line per process. Across machines each says its own.
        err.quiet = True
    with handled():
        from ..training.config import TrainConfig

        cascade = task in ("seg", "cls")
        if loss is None:
            loss = "mse" if cascade else "l1"
        try:
            vs = tuple(float(v) for v in (val_sigma or ("30,60" if cascade else "15,25,50")).split(","))
        except ValueError:
            raise fail(f"--val-sigma {val_sigma!r}: expected numbers like 30,60") from None
        if cascade and init is None and not resume:
            init = "ddn.color-sigma"  # the cascade fine-tunes the shipped MSE-trained denoiser
        if task_class_weights and task != "seg":  # (--no-task-class-weights: TrainConfig refuses it)
            raise fail("--task-class-weights applies to --task seg only (drop --task-class-weights)")
        if task_class_weights is None:  # seg: the plain cross entropy by default (the shipped ddn.seg's)
            task_class_weights = task != "seg"
        cfg = TrainConfig(distill=distill, task_pcgrad=task_pcgrad, rehearse_features=rehearse_features, task_noise=task_noise, task_scale=task_scale, train_only=tuple(v.strip() for v in train_only.split(",")) if train_only else (),
                          task_grad_highpass=task_grad_highpass, task_grad_blur=task_grad_blur, task_rec_weight=task_rec_weight, rehearse=tuple(rehearse), rehearse_batch=rehearse_batch, rehearse_patch=rehearse_patch, lam=lam, task_net=task_net, task_target=task_target, task_augment=task_augment, task_class_weights=task_class_weights, subset=tuple(subset), val_sigmas=vs, task=task, data=tuple(data), data_root=data_root, val=tuple(val), val_limit=val_limit,
                          out=str(out), init=init, resume=resume, steps=steps, time_budget=time_budget,
                          batch_size=batch_size, patch=patch, lr=lr, warmup=warmup, sigma=sigma,
                          clip_fraction=clip_fraction, noise_level=noise_level, loss=loss, ema=ema, freeze_bn=freeze_bn, seed=seed,
                          device=device, precision=precision, val_every=val_every, ckpt_minutes=ckpt_minutes,
                          log=str(out.with_suffix(".log")))
        from ..errors import OutputError
        from ..training.loop import json_safe, train_denoiser

        log_path = out.with_suffix(".log")
        log = None
        t0 = time.time()
        live = show_progress(quiet)

        def on_event(e: dict) -> None:
            nonlocal log
            try:
                if log is None:  # the first event comes once the inputs are read and OUT's folder is writable
                    # a resumed run continues its log; a fresh one starts its own, as it does its weights
                    log = open(log_path, "a" if resume else "w")  # noqa: SIM115 - open for the whole run, closed below
                log.write(json.dumps(json_safe({**e, "time": round(time.time() - t0, 2)}), default=str,
                                     allow_nan=False) + "\n")  # -inf / NaN (a score before any validation) as null
                log.flush()
            except OSError as x:
                raise OutputError(f"{log_path}: cannot write the log ({x.strerror or x})",
                                  "choose a writable --out folder") from None
            kind = e["event"]
            if kind == "resumed" and e.get("overridden"):
                _note_overridden(ctx, e["overridden"])
            elif kind == "replaced_checkpoint":
                err.print(f"note: {e['path']} (an earlier run's checkpoint) is replaced by this new run; "
                          "--resume continues a run instead", markup=False)
            elif kind == "checkpoint" and e.get("interrupted"):
                err.print(f"interrupted at step {e['step']}: checkpoint {e['path']} saved; continue with --resume",
                          markup=False)
            if quiet:
                return
            if kind == "step":
                if live or e["step"] % 500 == 0 or e["step"] == e["total"]:
                    line = (f"step {e['step']}/{e['total']}  loss {e['loss']:.5f}  lr {e['lr']:.2e}  "
                            f"{e['patches_per_s']:.0f} patches/s  ETA {e['eta_s'] / 60:.1f} min")
                    err.print(line, end="\r" if live else "\n")
            elif kind == "val":
                best = e["best"]
                parts = "  ".join(f"s{float(k):g}: {v:.2f}" for k, v in e["raw"].items())
                if "raw_metric" in e:
                    parts += "  task " + "  ".join(f"s{float(k):g}: {v:.4f}" for k, v in e["raw_metric"].items())
                extra = ""
                if "ema" in e:
                    extra = "  ema " + "  ".join(f"s{float(k):g}: {v:.2f}" for k, v in e["ema"].items())
                err.print(f"val @ {e['step']}: PSNR {parts}{extra}  (best mean {best:.4f} @ {e['best_step']})")
            elif kind in ("data", "calibrated", "resumed", "time_budget", "cascade"):
                err.print(f"{kind}: " + ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("event", "overridden")))
            elif kind == "done":
                err.print(f"done: {e['steps_done']}/{e['total']} steps in {e['elapsed_s'] / 60:.1f} min; "
                          f"weights {e['out']}; checkpoint {e['checkpoint']}")

        try:
            train_denoiser(cfg, on_event)
        finally:
            if log is not None:
                log.close()


def _note_overridden(ctx: typer.Context, overridden: dict) -> None:
    """--resume keeps the checkpoint's schedule: name the options given on this command line
    that it overrides (the log records every difference, defaults included)."""
    opts = {p.name: "/".join(p.opts + p.secondary_opts) for p in ctx.command.params}
    given = [f"{opts[k]} {v['given']} (checkpoint: {v['checkpoint']})" for k, v in overridden.items()
             if k in opts and getattr(ctx.get_parameter_source(k), "name", None) in ("COMMANDLINE", "ENVIRONMENT")]
    if given:
        err.print("note: --resume continues with the checkpoint's settings; ignored: " + ", ".join(given), markup=False)
