"""The training loop for ``ddn train --task denoise`` (and the cascade tasks).

Library code: it never prints; progress goes to ``on_event(dict)``.
Features: bf16 autocast + channels_last, AdamW, warmup + cosine, gradient clipping,
EMA weights, validation with best-model keeping, atomic checkpoints every few
minutes, bit-exact ``--resume``, a hard time budget, and DDP under torchrun.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..devices import resolve_device, resolve_precision
from ..errors import DdnError, OutputError, RunStopped, UnsafeWeights, UsageError
from ..models import build_denoiser
from ..weightfile import load_weights, save_weights
from .checkpoint import REQUIRED_KEYS, checkpoint_path, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import ImageBank, list_training_images, make_noisy, parse_sigma
from .losses import pcgrad_combine, reconstruction_loss
from .schedule import lr_at

Event = Callable[[dict], None]

# what ``--resume`` takes from the checkpoint, whatever the command line says: the schedule
# and everything that shapes the batches and the loss (the run continues bit for bit), and the
# --init model it started from (its record in OUT.json)
RESUME_KEEPS = (
    "steps", "batch_size", "patch", "lr", "min_lr_ratio", "warmup", "sigma", "clip_fraction",
    "noise_level", "ema", "seed", "loss", "weight_decay", "grad_clip", "task", "lam", "task_net", "task_target",
    "task_augment", "task_class_weights", "subset", "freeze_bn", "rehearse", "rehearse_batch", "rehearse_patch",
    "task_rec_weight", "task_grad_blur", "task_grad_highpass", "task_noise", "task_scale", "task_pcgrad",
    "rehearse_features", "train_only", "distill", "init")
SIDE_FILES = (".json", ".ckpt", ".log")  # written beside --out


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


class EMA:
    """Exponential moving average of parameters; buffers (BN statistics) are copied."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1 - d)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


class _FrozenStatsBatchNorm2d(torch.nn.BatchNorm2d):
    """A BatchNorm2d that normalises with its running statistics in training too (its
    ``train()`` always means eval), while its affine weight and bias still learn."""

    def train(self, mode: bool = True) -> torch.nn.Module:
        return super().train(False)


def freeze_batchnorm_stats(model: torch.nn.Module) -> int:
    """Keep every BatchNorm2d of ``model`` on its running statistics from now on; returns
    how many. Fine-tuning in small batches otherwise re-estimates them from a few patches of
    mixed noise levels: measured on the shipped model, 1500 CPU steps of 16 x 128 px moved a
    running variance by 364 and cost 0.6 dB at sigma 15 on the validation photos."""
    n = 0
    for m in model.modules():
        if type(m) is torch.nn.BatchNorm2d:
            m.__class__ = _FrozenStatsBatchNorm2d
            m.eval()
            n += 1
    return n


def trainable_parameters(model: torch.nn.Module, only: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """The parameters that learn: all of them, or (``only``, --train-only) those of the named
    top-level layers; the rest get ``requires_grad`` off and stay as initialised."""
    if not only:
        return list(model.parameters())
    layers = dict(model.named_children())
    unknown = [n for n in only if n not in layers or not any(True for _ in layers[n].parameters())]
    if unknown:
        names = ",".join(n for n, m in layers.items() if any(True for _ in m.parameters()))
        raise UsageError(f"--train-only {','.join(unknown)}: not a layer of this denoiser", f"use names from {names}")
    for n, m in layers.items():
        for p in m.parameters():
            p.requires_grad_(n in only)
    return [p for n in only for p in layers[n].parameters()]


def _state_cpu(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def validate_model(model, images, sigmas, device, precision, noise_level: bool) -> dict[float, float]:
    """Mean PSNR per sigma on (name, uint8) images with the standard protocol."""
    from ..evaluation.denoise_eval import evaluate

    was_training = model.training
    model.eval()

    def fn(noisy: np.ndarray, s: float) -> np.ndarray:
        x = torch.from_numpy(noisy).permute(2, 0, 1)[None].to(device)
        if precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision.autocast(device):
            y = model(x, s / 255.0) if noise_level else model(x)
        return y.float()[0].permute(1, 2, 0).cpu().numpy()

    try:
        res = evaluate(fn, images, sigmas)
    finally:
        model.train(was_training)
    return {s: r["psnr"] for s, r in res.items()}


class _ValidationAbandoned(Exception):
    """Raised inside a validation pass when an interrupt came: the rest of it is skipped."""


@contextlib.contextmanager
def _abandon_on_interrupt(models: list[torch.nn.Module], interrupts: _DeferredSignals):
    """While in the block, each forward call of ``models`` first checks for a Ctrl-C / SIGTERM
    received meanwhile and, if one came, raises ``_ValidationAbandoned`` (validation is a
    forward call per image and noise level, or per batch for the cascade tasks: an interrupt
    waits for one of them, not for the whole pass). The models' training modes are restored."""

    def check(module, args) -> None:
        if interrupts.pending is not None:
            raise _ValidationAbandoned

    modes = [m.training for m in models]
    hooks = [m.register_forward_pre_hook(check) for m in models]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()
        for m, mode in zip(models, modes):
            m.train(mode)


def check_outputs(cfg: TrainConfig) -> None:
    """Refuse, before any work, an ``out`` that a run would fail to write or that would destroy
    something: a folder (under its name or a side file's), or one of the run's input models.
    (``TrainConfig`` already requires the .safetensors suffix, so the side files never share
    its name.)"""
    out = Path(cfg.out)
    for p in (out, *(out.with_suffix(x) for x in SIDE_FILES)):
        if p.is_dir():
            raise UsageError(f"--out {out}: {p} is a folder", "give a file path such as runs/mine.safetensors")
    net_kind = {"seg": "segmenter", "cls": "classifier"}.get(cfg.task)
    for opt, src, kind in (("--init", cfg.init, "denoise"), ("--distill", cfg.distill, "denoise"),
                           ("--task-net", cfg.task_net, net_kind)):
        implicit = src is None and opt == "--task-net" and kind is not None  # the cascade's default network
        if (src or implicit) and out.resolve() in _weight_files(src, kind):
            raise UsageError(f"--out {out}: is the {opt} model{f' {src}' if src else ''}, which the run would overwrite",
                             "give another --out path")


def _weight_files(src: str | None, kind: str) -> set[Path]:
    """The files (resolved) that ``src``, a weight file or a model name (None: ``kind``'s
    default model), is or may be read from, never downloading: a name's copy in the model
    cache (or where a download would put it) and its bundled copy."""
    from ..hub import weights_dir
    from ..registry import bundled_dir, bundled_manifest, lookup

    if src and Path(src).expanduser().is_file():
        return {Path(src).expanduser().resolve()}
    try:
        spec = lookup(src or bundled_manifest().default(kind).name)
    except DdnError:  # no such model: resolving it later says so
        return set()
    return {(weights_dir() / spec.file).resolve(), (bundled_dir() / spec.file).resolve()}


def _prepare_output(out: Path) -> None:
    """Create ``out``'s folder and prove it writable (a temp file made and removed), so that a
    run that cannot save stops before training, not at its first save."""
    from ..atomic import temp_file

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with temp_file(out) as (fd, tmp):
            os.close(fd)
            tmp.unlink()
    except OSError as e:
        raise OutputError(f"--out {out}: cannot write in {out.parent} ({e.strerror or e})",
                          "choose a writable --out folder") from None


def _for_option(option: str, e: UsageError) -> UsageError:
    """``list_training_images``'s error ``e``, reworded for ``option`` (--val, --rehearse)."""
    hint = e.hint.replace("--data path", f"{option} path") if e.hint else e.hint
    return UsageError(e.message.replace("no training images", "no images"), hint)


def _init_model(src: str) -> tuple[torch.nn.Module, dict]:
    """The denoiser ``--init`` names (a name or a .safetensors file) and its metadata; a file
    that is not a ddn denoiser is refused as ``ddn denoise`` refuses it (``UnsafeWeights``)."""
    from ..registry import resolve_weights

    path = resolve_weights(src)
    sd, meta = load_weights(path)
    if meta.get("arch") != "ddn" or meta.get("task", "denoise") not in ("denoise", "seg", "cls"):
        raise UnsafeWeights(f"--init {src}: not a ddn denoiser (arch {meta.get('arch')!r})",
                            "pass a denoiser's name or weight file; see ddn models list")
    try:
        model = build_denoiser(meta.get("config", {}))
        model.load_state_dict(sd)
    except (TypeError, ValueError, RuntimeError) as e:
        raise UnsafeWeights(f"--init {src}: weights do not match the ddn architecture ({str(e).splitlines()[0][:120]})",
                            "pass a denoiser's name or weight file; see ddn models list") from None
    return model, meta


def _refuse_unfinished(ckpt_file: Path) -> None:
    """A fresh run would replace ``ckpt_file``: refuse if it is an unfinished run's (someone
    rerunning an interrupted command without --resume would lose its training), its final
    validation included (an interrupt there leaves no weight file yet). A finished run's
    checkpoint, or one that is no checkpoint at all, is replaced."""
    try:
        old = load_checkpoint(ckpt_file, REQUIRED_KEYS)
    except UsageError:
        return
    step, total = int(old["step"]), int(old["total"])
    if step < total or old.get("val_pending"):  # or its last validation was cut short
        what = f"step {step} of {total}" + (", its validation there not done" if old.get("val_pending") else "")
        raise UsageError(f"{ckpt_file}: an unfinished run's checkpoint ({what}), which a new run would replace",
                         "continue it with --resume, or delete it to start afresh")


class _DeferredSignals:
    """Once armed, SIGINT and SIGTERM, where Python handles them (Ctrl-C; the CLI's handler for
    both), only record that they came, so that an interrupt never lands in the middle of a
    training step; the loop checks ``pending`` between steps, saves a checkpoint and calls
    ``deliver()``, which puts the previous handlers back and calls the one for the signal
    received (Python's and the CLI's raise KeyboardInterrupt). Leaving the ``with`` block puts
    them back too, and delivers a signal that came after the last check."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.old: dict = {}
        self._handler = self._record  # one bound method, so that it can be recognised

    def _record(self, signum, frame) -> None:
        if self.pending is None:
            self.pending = signum

    def __enter__(self):
        return self

    def arm(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                h = signal.getsignal(sig)
                if callable(h):
                    self.old[sig] = h
                    signal.signal(sig, self._handler)

    def _restore(self) -> None:
        for sig, h in self.old.items():
            if signal.getsignal(sig) is self._handler:
                signal.signal(sig, h)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._restore()
        if exc_type is None and self.pending is not None:
            self.deliver()

    def deliver(self) -> None:
        self._restore()
        handler, self.old = self.old.get(self.pending), {}
        if handler is not None:
            handler(self.pending, None)
        raise KeyboardInterrupt


def _processes(n: int) -> str:
    return f"{n} process" + ("es" if n != 1 else "")


def _check_world_size(ckpt_file: Path, state: dict, world: int) -> None:
    """Refuse to resume ``state`` in a different number of processes than it was saved by:
    each process draws its own batches from its own saved generators, so another count
    cannot continue the run bit for bit (more processes had no state to take, fewer dropped
    the others' and halved the batch). Checkpoints from before ``world_size`` was recorded
    hold one generator state per process."""
    gens = state["gens"]
    saved = state.get("world_size", len(gens) if isinstance(gens, (list, tuple)) else None)
    if not isinstance(saved, int) or saved < 1 or not isinstance(gens, (list, tuple)) or len(gens) != saved:
        raise UsageError(f"{ckpt_file}: damaged or not a training checkpoint (random generator states missing)",
                         "delete it to start afresh, or run without --resume")
    if saved != world:
        how = f"resume with torchrun --nproc_per_node={saved}" if saved > 1 else "resume without torchrun"
        raise UsageError(f"{ckpt_file}: saved by a run of {_processes(saved)}, resumed in {_processes(world)}; "
                         "--resume continues a run in as many processes as it had", how)


def _describe(e: BaseException):
    """``e`` in a form another process can raise again (``_raise_described``)."""
    if isinstance(e, DdnError):
        return ("error", type(e), e.message, e.hint)
    if isinstance(e, KeyboardInterrupt):
        return ("interrupt",)
    return ("other", type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")


def _raise_described(d, rank: int):
    if d[0] == "interrupt":
        raise KeyboardInterrupt
    if d[0] == "error":
        _, cls, message, hint = d
        try:
            err = cls(message, hint)
        except Exception:  # noqa: BLE001 - an error class of another signature: the message all the same
            err = DdnError(message, hint)
        raise err
    raise DdnError(f"process {rank} of this torchrun run failed ({d[1]}: {d[2]})", "see its traceback above")


def _share_failure(failure: BaseException | None, world: int) -> None:
    """Every process (all must call it) learns whether any failed since the last call: the
    one that failed raises its own exception again; the others raise a copy of the first
    failure (a ``DdnError`` with the same one-line message and exit code). So an error that
    one process alone can meet (rank 0's --val images, --out folder, log, weight files) stops
    the whole run cleanly, instead of leaving the others to die in their next collective
    operation with a "Connection closed by peer" traceback (or to wait there)."""
    import torch.distributed as dist

    all_failures: list = [None] * world
    dist.all_gather_object(all_failures, None if failure is None else _describe(failure))
    if failure is not None:
        raise failure
    for r, d in enumerate(all_failures):
        if d is not None:
            _raise_described(d, r)


@contextlib.contextmanager
def _together(distributed: bool, world: int):
    """Run the block on every process, then share its outcome (``_share_failure``): an error
    raised in it on any one process is raised on all of them."""
    if not distributed:
        yield
        return
    failure = None
    try:
        yield
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - raised again, here and on the others
        failure = e
    _share_failure(failure, world)


def train_denoiser(cfg: TrainConfig, on_event: Event | None = None) -> dict:
    """Run (or resume) denoiser training. Returns the final summary dict. Raises ``UsageError``
    (bad options, --out or checkpoint), ``UnsafeWeights`` (--init not a denoiser), ``OutputError``
    (--out not writable); on Ctrl-C / SIGTERM during the training steps it saves a checkpoint at
    the step reached, then lets the interrupt go on (KeyboardInterrupt)."""
    check_outputs(cfg)
    with _DeferredSignals() as interrupts:
        return _train(cfg, on_event, interrupts)


def _train(cfg: TrainConfig, on_event: Event | None, interrupts: _DeferredSignals) -> dict:
    emit = on_event or (lambda e: None)
    world, rank, local = _dist_info()
    distributed = world > 1
    if rank != 0:  # one voice: only rank 0 reports
        emit = lambda e: None
    device = resolve_device(cfg.device)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    precision = resolve_precision(cfg.precision, device, training=True)
    out = Path(cfg.out)
    ckpt_file = checkpoint_path(out)
    noise = parse_sigma(cfg.sigma)
    noise = type(noise)(noise.lo, noise.hi, noise.values, cfg.clip_fraction)

    # the checks every process makes alike come before the process group, so that a refusal
    # stops each of them with its one line and none waits for the others in a collective
    state = None
    overridden: dict = {}
    if not cfg.resume and ckpt_file.is_file():
        _refuse_unfinished(ckpt_file)
    if cfg.resume:
        if not ckpt_file.exists():
            raise UsageError(f"{ckpt_file}: no checkpoint to resume from", "drop --resume to start fresh")
        state = load_checkpoint(ckpt_file, REQUIRED_KEYS)
        _check_world_size(ckpt_file, state, world)
        run_cfg = {**state["config"], "out": cfg.out, "val": (), "val_limit": 0}  # --val is this command line's
        if run_cfg.get("task", "denoise") == "denoise":  # cascade options an earlier version took and ignored here
            run_cfg.update(lam=None, task_net=None, task_target="labels")
        try:
            saved = TrainConfig.from_dict(run_cfg)
        except (DdnError, TypeError) as e:
            raise UsageError(f"{ckpt_file}: its settings are not valid ({e})",
                             "delete it to start afresh, or run without --resume") from None
        # the schedule-defining fields come from the checkpoint; those given otherwise are reported
        given = cfg.to_dict()
        kept = {k: saved.to_dict()[k] for k in RESUME_KEEPS}
        overridden = {k: {"given": given[k], "checkpoint": v} for k, v in kept.items() if given[k] != v}
        cfg = TrainConfig.from_dict({**given, **kept, "resume": True})

    if distributed and cfg.task_pcgrad:
        raise UsageError("--task-pcgrad runs in one process (it takes the two gradients apart before DDP could average them)",
                         "train without torchrun, or drop --task-pcgrad")
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # the rest of the setup may fail on one process only (rank 0 alone reads --val, prepares
    # --out and opens the log): every process learns of a failure before DDP's first collective
    with _together(distributed, world):
        torch.manual_seed(cfg.seed)
        model_cfg = {"noise_level": cfg.noise_level}
        if state is not None and "model_config" in state:
            # the resumed run's own architecture: a narrowed --init model is not the default width
            model_cfg = state["model_config"]
        init_meta: dict = {}
        if cfg.init and state is None:
            model, init_meta = _init_model(cfg.init)
            if not cfg.noise_level and model.config.noise_level:
                raise UsageError(f"--no-noise-level: the --init model {cfg.init} takes a noise level, and "
                                 "fine-tuning keeps its architecture", "drop --no-noise-level, or train without --init")
        else:
            model = build_denoiser(model_cfg)
            if state is not None:  # the original run's record of its --init model
                init_meta = state.get("init_meta") or {}
        noise_level = model.config.noise_level
        if cfg.noise_level != noise_level:  # an --init model without one (--noise-level is the default): recorded as run
            cfg = dataclasses.replace(cfg, noise_level=noise_level)
        frozen_bn = freeze_batchnorm_stats(model) if cfg.freeze_bn else 0
        model.to(device)
        if precision.channels_last:
            model = model.to(memory_format=torch.channels_last)
        ema = EMA(model, cfg.ema) if cfg.ema > 0 else None
        opt = torch.optim.AdamW(trainable_parameters(model, cfg.train_only), lr=cfg.lr, betas=(0.9, 0.99),
                                weight_decay=cfg.weight_decay)

        setup_events: list[dict] = []  # emitted once all of the run's inputs are read and its output is writable
        cascade = None
        if cfg.task in ("seg", "cls"):
            from .cascade import build_cascade

            cascade = build_cascade(cfg.task, cfg.data[0], cfg.task_net, cfg.lam, device, crop=cfg.patch,
                                    target=cfg.task_target, subset=cfg.subset, augment=cfg.task_augment,
                                    class_weighted=cfg.task_class_weights, grad_blur=cfg.task_grad_blur,
                                    grad_highpass=cfg.task_grad_highpass, noise=cfg.task_noise,
                                    scale=cfg.task_scale)
            bank = cascade
            if cfg.lam is None or cfg.task_net is None:
                # record what the defaults resolved to, so that a --resume after a release changes
                # them (seg: lambda 1e-4 -> 3e-4, resunet_s -> resnet9_unet) keeps this run's recipe
                from ..registry import bundled_manifest
                from .cascade import NET_KIND

                cfg = dataclasses.replace(cfg, lam=cascade.lam,
                                          task_net=cfg.task_net or bundled_manifest().defaults[NET_KIND[cfg.task]])
            setup_events.append({"event": "cascade", "task_net": cascade.net_path, "lambda": cascade.lam,
                  "held_out": len(cascade.val_x), "task_net_sha": cascade.hash_before})
        else:
            bank = ImageBank(list_training_images(cfg.data, cfg.data_root), cfg.patch, device=device)
        teacher = None
        if cfg.distill:
            from ..descriptor import Denoiser
            from ..registry import resolve_weights

            teacher = Denoiser.load(resolve_weights(cfg.distill), device=str(device), precision=precision.name).model
            if teacher.config.noise_level and not noise_level:
                raise UsageError(f"--distill {cfg.distill}: it takes a noise level, the model trained here does not",
                                 "distill into a model with a noise-level input (--noise-level)")
            setup_events.append({"event": "distill", "teacher": cfg.distill})
        rehearsal = None
        if cfg.rehearse:
            try:
                paths = list_training_images(cfg.rehearse, cfg.data_root)
            except UsageError as e:
                raise _for_option("--rehearse", e) from None
            rehearsal = ImageBank(paths, cfg.rehearse_patch, device=device)
            setup_events.append({"event": "rehearsal", "images": len(rehearsal), "batch": cfg.rehearse_batch, "patch": cfg.rehearse_patch})
        val_images = []
        if cfg.val and rank == 0 and cascade is None:
            from ..evaluation.denoise_eval import load_eval_images

            try:
                val_images = load_eval_images(cfg.val, cfg.val_limit, cfg.data_root)
            except UsageError as e:
                raise _for_option("--val", e) from None
        if rank == 0:
            _prepare_output(out)
            if state is None and ckpt_file.is_file():  # an earlier run's: never to be resumed into this one
                with _writing(ckpt_file):
                    ckpt_file.unlink()
                setup_events.append({"event": "replaced_checkpoint", "path": str(ckpt_file)})
        for e in setup_events:
            emit(e)
        emit({"event": "data", "train_images": len(bank), "val_images": len(val_images), "device": str(device),
              "precision": precision.name, "world_size": world, "frozen_batchnorm": frozen_bn})

        gen_cpu = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
        gen_dev = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank + 7)
        step = 0
        elapsed_before = 0.0
        best = {"score": -math.inf, "step": -1, "psnr": {}, "which": None}
        total = cfg.steps
        history: list[dict] = []
        val_pending = False  # an interrupt cut the validation at ``step`` short: it is still to be done
        if state is not None:  # every process loads the same state (before DDP, whose broadcast then changes nothing)
            model.load_state_dict(state["model"])
            if ema is not None and state.get("ema") is not None:
                ema.model.load_state_dict(state["ema"])
            opt.load_state_dict(state["opt"])
            step = int(state["step"])
            total = int(state["total"])
            elapsed_before = float(state["elapsed"])
            best = state["best"]
            history = state.get("history", [])
            val_pending = bool(state.get("val_pending", False))
            gens = state["gens"][rank]
            gen_cpu.set_state(gens["cpu"])
            gen_dev.set_state(gens["dev"])
            emit({"event": "resumed", "step": step, "total": total, "overridden": overridden})

    ddp_model = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    # under DDP, an error in what one process does by itself (rank 0: the log, validation, the
    # weight and checkpoint files) is held until the next point where all of them meet (the
    # end of the step, the interrupt, the end of the run), then raised by every one of them
    failure: list[BaseException] = []

    @contextlib.contextmanager
    def alone():
        if not distributed:
            yield
            return
        try:
            yield
        except Exception as e:  # noqa: BLE001 - raised again at the next meeting point, by all
            if not failure:
                failure.append(e)

    def denoise_noisy(m: torch.nn.Module, clean: torch.Tensor, g_cpu, g_dev,
                      target: torch.nn.Module | None = None):
        """Fresh noise on ``clean`` (sigma and clipping drawn per sample), then the model's output,
        with ``target`` (a frozen denoiser) that denoiser's output on the same noisy input (else
        None), and the sigmas drawn (0-255 scale)."""
        n = len(clean)
        sig = noise.draw_sigma(n, g_cpu)
        clip = torch.rand(n, generator=g_cpu) < noise.clip_fraction
        noisy = make_noisy(clean, sig, clip, g_dev)
        if precision.channels_last:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        s = (sig / 255.0).to(device)
        with precision.autocast(device):
            out = m(noisy, s) if noise_level else m(noisy)
        if target is None:
            return out, None, sig
        with torch.no_grad(), precision.autocast(device):
            t = target(noisy, s) if target.config.noise_level else target(noisy)
        return out, t.float(), sig

    pcgrad_conflicts = [0]  # --task-pcgrad: steps whose two gradients conflicted since the last report

    def one_step(m: torch.nn.Module, optim, g_cpu, g_dev, lr: float) -> float:
        for group in optim.param_groups:
            group["lr"] = lr
        if cascade is not None:
            clean_u8, labels = cascade.sample(cfg.batch_size, g_cpu)
            clean = clean_u8.to(device).to(torch.float32).div_(255.0)
        else:
            clean = bank.sample(cfg.batch_size, g_cpu).to(torch.float32).div_(255.0)
        pred, target, sig = denoise_noisy(m, clean, g_cpu, g_dev, teacher)
        if target is None:  # else distillation: the teacher's output is the target
            target = clean
        loss = reconstruction_loss(cfg.loss, pred.float(), target, sig)
        if cascade is not None and cfg.task_rec_weight != 1.0:
            loss = loss * cfg.task_rec_weight
        task = None
        if cascade is not None and cascade.lam > 0:
            task = cascade.lam * cascade.task_loss(pred.float(), labels, precision, device, clean, gen=g_cpu)
        if rehearsal is not None:  # L_rec also on photos of the denoiser's own domain
            rc = rehearsal.sample(cfg.rehearse_batch, g_cpu).to(torch.float32).div_(255.0)
            rpred, _, rsig = denoise_noisy(m, rc, g_cpu, g_dev)
            loss = loss + reconstruction_loss(cfg.loss, rpred.float(), rc, rsig)
            if cfg.rehearse_features > 0:  # and keep what the task network reads from the photos
                loss = loss + cfg.rehearse_features * cascade.feature_loss(rpred.float(), rc, precision, device)
        optim.zero_grad(set_to_none=True)
        if task is not None and cfg.task_pcgrad:  # the task loss may not work against reconstruction
            params = [p for p in m.parameters() if p.requires_grad]
            g_task = torch.autograd.grad(task, params, retain_graph=True, allow_unused=True)
            g_rec = torch.autograd.grad(loss, params, allow_unused=True)
            grads, conflict = pcgrad_combine(list(g_task), list(g_rec))
            pcgrad_conflicts[0] += int(conflict)
            for p, g in zip(params, grads):
                p.grad = g
            loss = loss.detach() + task.detach()
        else:
            if task is not None:
                loss = loss + task
            loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.grad_clip)
        optim.step()
        return loss.detach()

    def validation_seconds(m: torch.nn.Module) -> float:
        """Rank 0's estimate of one validation pass (of the raw and the EMA weights): a pass of
        ``m`` on a few of the images, timed and scaled up by their share of the whole."""
        t0 = time.perf_counter()
        if cascade is not None:
            k = min(len(cascade.val_x), 4 if cascade.kind == "seg" else 100)
            few = dataclasses.replace(cascade, val_x=cascade.val_x[:k], val_y=cascade.val_y[:k])
            few.validate(m, cfg.val_sigmas, device, precision, noise_level)
            share = k / len(cascade.val_x)
        else:
            validate_model(m, val_images[:2], cfg.val_sigmas, device, precision, noise_level)
            share = sum(im.size for _, im in val_images[:2]) / sum(im.size for _, im in val_images)
        _sync(device)
        return (time.perf_counter() - t0) / share * (2 if ema is not None else 1)

    # how long a validation pass takes (rank 0): estimated for --steps 0, then as the last one took;
    # the time budget keeps room for the validation that ends the run
    val_took = [0.0]
    t_start = time.perf_counter()
    if total == 0:  # calibrate the step count to the time budget on a throwaway copy
        probe = copy.deepcopy(model)
        popt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr)
        g1 = torch.Generator().manual_seed(12345)
        g2 = torch.Generator(device=device).manual_seed(12345)
        for _ in range(5):
            one_step(probe, popt, g1, g2, cfg.lr * 0.01)
        _sync(device)
        t0 = time.perf_counter()
        n_probe = 20
        for _ in range(n_probe):
            one_step(probe, popt, g1, g2, cfg.lr * 0.01)
        _sync(device)
        rate = n_probe / (time.perf_counter() - t0)
        val_took[0] = validation_seconds(probe) if rank == 0 and (val_images or cascade is not None) else 0.0
        del probe, popt
        left = cfg.time_budget - (time.perf_counter() - t_start)
        # the steps and the validations (one every --val-every steps, one at the end) in 92% of what is left
        total = max(10, int((left * 0.92 - val_took[0]) / (1 / rate + val_took[0] / cfg.val_every)))
        if distributed:
            import torch.distributed as dist

            t = torch.tensor([total], dtype=torch.long, device=device if device.type == "cuda" else "cpu")
            dist.broadcast(t, 0)
            total = int(t.item())
        with alone():
            emit({"event": "calibrated", "steps_per_s": rate, "total": total,
                  "val_reserve_s": round(val_took[0] * math.ceil(total / cfg.val_every), 1)})
        pcgrad_conflicts[0] = 0  # the probe's steps are not the run's

    def cascade_info() -> dict:
        if cascade is None:
            return {}
        return {"cascade": {"task_net": Path(cascade.net_path).name, "task_net_meta": {
            k: cascade.net_meta.get(k) for k in ("arch", "task", "classes", "val_acc", "val")},
            "lambda": cascade.lam, "target": cascade.target, "task_net_sha": cascade.hash_before, "held_out": len(cascade.val_x)}}

    def snapshot_best(psnrs: dict[float, float], which: str, m: torch.nn.Module, metric: dict | None = None) -> None:
        score = float(np.mean(list((metric or psnrs).values())))
        if score > best["score"]:
            best.update(score=score, step=step, psnr={str(k): v for k, v in psnrs.items()}, which=which)
            if metric is not None:
                best["metric"] = {str(k): v for k, v in metric.items()}
            _write_weights(out, m, cfg, best, train_images=len(bank), elapsed=elapsed_before + time.perf_counter() - t_start,
                           init_meta=init_meta, history=history, precision=precision.name, device=str(device),
                           **cascade_info())

    def do_checkpoint(interrupted: bool = False) -> None:
        gens = {"cpu": gen_cpu.get_state(), "dev": gen_dev.get_state()}
        all_gens = [gens]
        if distributed:
            import torch.distributed as dist

            all_gens = [None] * world
            dist.all_gather_object(all_gens, gens)
        if rank == 0:
            with alone():
                save_checkpoint(ckpt_file, {
                    "model": _state_cpu(model), "model_config": model.config.to_dict(),
                    "ema": _state_cpu(ema.model) if ema else None,
                    "opt": opt.state_dict(), "step": step, "total": total,
                    "elapsed": elapsed_before + time.perf_counter() - t_start, "best": best,
                    "gens": all_gens, "world_size": world, "val_pending": val_pending, "init_meta": init_meta,
                    "config": {**cfg.to_dict(), "steps": total}, "history": history,
                })
                emit({"event": "checkpoint", "step": step, "path": str(ckpt_file), **({"interrupted": True} if interrupted else {})})

    def validate_now() -> bool:
        """Rank 0: validate the raw (and EMA) weights at ``step``, keep the best, record it.
        False when a Ctrl-C / SIGTERM cut the pass short: its results are dropped (a resumed
        run does this validation again) and the interrupt is taken at once."""
        rec = {"step": step}
        history.append(rec)
        variants = [("raw", model)] + ([("ema", ema.model)] if ema is not None else [])
        try:
            with _abandon_on_interrupt([m for _, m in variants], interrupts):
                for which, m in variants:
                    if cascade is not None:
                        r = cascade.validate(m, cfg.val_sigmas, device, precision, noise_level)
                        ps = {s: v["psnr"] for s, v in r.items()}
                        mt = {s: v["metric"] for s, v in r.items()}
                        rec[which] = {str(k): v for k, v in ps.items()}
                        rec[which + "_metric"] = {str(k): v for k, v in mt.items()}
                    else:
                        ps = validate_model(m, val_images, cfg.val_sigmas, device, precision, noise_level)
                        mt = None
                        rec[which] = {str(k): v for k, v in ps.items()}
                    snapshot_best(ps, which, m, mt)
        except _ValidationAbandoned:
            history.pop()  # rec
            return False
        _update_sidecar_history(out, history)
        emit({"event": "val", **rec, "best": best["score"], "best_step": best["step"]})
        return True

    def check_finite() -> None:
        """Stop a run that diverged (a loss since the last check, or a weight, no longer finite)
        before anything saves it: the checkpoint and weight file stay the last good ones.
        Under torchrun every process calls it at every step (one all_reduce)."""
        ok = finite_loss & torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()
        if distributed:
            import torch.distributed as dist

            ok = ok.to(torch.int32)
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if not bool(ok):
            kept = (f"{ckpt_file} (step {saved_step[0]}) is kept" if saved_step[0] is not None
                    else "nothing was saved")
            raise RunStopped(f"training diverged by step {step}: the loss or the weights are no longer finite",
                             f"{kept}; lower --lr{' or --lambda' if cascade is not None else ''}")

    def end_of_step(val_due: bool, last: bool) -> None:
        """What follows a step: validation (rank 0), the periodic / final checkpoint, and a
        Ctrl-C / SIGTERM received meanwhile taken (a checkpoint, then the interrupt). Every
        process calls it, in step: the others wait in the flags' all_reduce while rank 0
        validates, and an interrupt ends rank 0's validation early. Before any of them saves
        the weights, a diverged run is stopped (``check_finite``)."""
        nonlocal last_ckpt, val_pending
        if (distributed or val_due or last or interrupts.pending is not None
                or (time.perf_counter() - last_ckpt) > cfg.ckpt_minutes * 60):
            check_finite()
        val_pending = False
        if rank == 0 and val_due and not failure:
            with alone():
                t0 = time.perf_counter()
                val_pending = not validate_now()
                if not val_pending:
                    val_took[0] = time.perf_counter() - t0
        want_ckpt = (time.perf_counter() - last_ckpt) > cfg.ckpt_minutes * 60 or last
        stop = interrupts.pending is not None  # Ctrl-C / SIGTERM during this step: save it, then stop
        failed = bool(failure)
        if distributed:
            import torch.distributed as dist

            # rank 0's clock decides the periodic checkpoint; an interrupt on any rank stops all,
            # and so does an error on any (rank 0's writes, its log: shared, then raised by all)
            flag = torch.tensor([int(want_ckpt and rank == 0), int(stop), int(failed)],
                                device=device if device.type == "cuda" else "cpu")
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            want_ckpt, stop, failed = bool(flag[0]), bool(flag[1]), bool(flag[2])
            if failed:
                _share_failure(failure[0] if failure else None, world)
        if want_ckpt or stop:
            if rank == 0 and not val_images and cascade is None:
                with alone():
                    # no validation data: the newest (EMA) weights are the output
                    best.update(step=step, which="ema" if ema else "raw")
                    _write_weights(out, ema.model if ema else model, cfg, best, train_images=len(bank),
                                   elapsed=elapsed_before + time.perf_counter() - t_start, init_meta=init_meta,
                                   history=history, precision=precision.name, device=str(device), **cascade_info())
            do_checkpoint(interrupted=stop)
            last_ckpt = time.perf_counter()
            saved_step[0] = step
        if stop:
            if distributed:  # a checkpoint rank 0 failed to write is the error to report, not the interrupt
                _share_failure(failure[0] if failure else None, world)
            interrupts.deliver()

    model.train()
    last_ckpt = time.perf_counter()
    t_run = time.perf_counter()
    step0 = step
    loss_acc, loss_n = torch.zeros((), device=device), 0
    finite_loss = torch.ones((), dtype=torch.bool, device=device)  # every loss since the start was finite
    saved_step = [step if state is not None else None]  # the step of this run's newest checkpoint
    stopped_early = False
    interrupts.arm()  # from here an interrupt is taken between steps: a checkpoint, then the interrupt
    if val_pending:  # resumed from a checkpoint saved when an interrupt cut this step's validation short
        end_of_step(val_due=bool(val_images or cascade is not None), last=step >= total)
    while step < total:
        lr = lr_at(step, total, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
        loss = one_step(ddp_model, opt, gen_cpu, gen_dev, lr)
        loss_acc += loss
        finite_loss &= torch.isfinite(loss)  # no sync: read where it matters (check_finite)
        loss_n += 1
        if ema is not None:
            ema.update(model, step)
        step += 1
        # the budget is this process's: a resumed run gets it afresh (the summary's elapsed_s adds the
        # earlier runs'); it stops the steps in time for the validation that ends the run
        over_budget = cfg.time_budget > 0 and (time.perf_counter() - t_start + val_took[0]) > cfg.time_budget
        if distributed:
            import torch.distributed as dist

            flag = torch.tensor([int(over_budget)], device=device if device.type == "cuda" else "cpu")
            dist.broadcast(flag, 0)
            over_budget = bool(flag.item())
        last = step == total or over_budget
        if step % 50 == 0 or last:
            rate = (step - step0) / max(1e-9, time.perf_counter() - t_run)
            loss_v = float(loss_acc) / max(1, loss_n)
            loss_acc.zero_()
            loss_n = 0
            extra = {}
            if cfg.task_pcgrad:
                extra["pcgrad_conflicts"] = pcgrad_conflicts[0]
                pcgrad_conflicts[0] = 0
            with alone():
                emit({"event": "step", "step": step, "total": total, "loss": loss_v, "lr": lr,
                      "patches_per_s": rate * cfg.batch_size * world, "eta_s": (total - step) / max(rate, 1e-9), **extra})
        end_of_step(val_due=bool(val_images or cascade is not None) and (step % cfg.val_every == 0 or last), last=last)
        if over_budget and step < total:
            stopped_early = True
            with alone():
                emit({"event": "time_budget", "step": step, "total": total})
            break
    summary = {"steps_done": step, "total": total, "best": best, "out": str(out), "checkpoint": str(ckpt_file),
               "elapsed_s": elapsed_before + time.perf_counter() - t_start, "stopped_early": stopped_early,
               "train_images": len(bank), "patches_per_s": (step - step0) * cfg.batch_size * world / max(1e-9, time.perf_counter() - t_run)}
    if cascade is not None:  # the frozen network must be exactly what it was
        summary["task_net_sha_before"] = cascade.hash_before
        summary["task_net_sha_after"] = cascade.check_unchanged()
    with alone():
        emit({"event": "done", **summary})
    if distributed:
        import torch.distributed as dist

        _share_failure(failure[0] if failure else None, world)
        # a plain barrier last: with the process group destroyed straight after the object
        # gather, rank 0 aborted at exit ("terminate called without an active exception") in
        # 9 of 108 two-process runs; with the barrier, 0 of 60
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def json_safe(obj):
    """``obj`` with non-finite floats as None (null): JSON has no Infinity (the best score before
    any validation is -inf) or NaN, and strict parsers refuse them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _update_sidecar_history(out: Path, history: list[dict]) -> None:
    import json

    from ..atomic import write_bytes as atomic_write_bytes

    sidecar = out.with_suffix(".json")
    if sidecar.is_file():
        doc = json.loads(sidecar.read_text())
        doc["history"] = history
        with _writing(sidecar):
            atomic_write_bytes(sidecar, json.dumps(json_safe(doc), indent=2, default=str, allow_nan=False).encode())


def _write_weights(out: Path, model: torch.nn.Module, cfg: TrainConfig, best: dict, **info) -> None:
    import json

    meta = json_safe({  # JSON in the weight file and the sidecar: -inf / NaN as null
        "arch": "ddn",
        "task": cfg.task,
        "config": model.config.to_dict(),
        "training": {k: v for k, v in cfg.to_dict().items() if k not in ("extra",)},
        "best": best,
        **{k: v for k, v in info.items() if k not in ("history",)},
    })
    sd = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    with _writing(out):
        save_weights(sd, out, meta)
    sidecar = out.with_suffix(".json")
    from ..atomic import write_bytes as atomic_write_bytes

    with _writing(sidecar):
        atomic_write_bytes(sidecar, json.dumps({**meta, "history": json_safe(info.get("history", []))}, indent=2,
                                                 default=str, allow_nan=False).encode())


@contextlib.contextmanager
def _writing(path: Path):
    """An OSError while writing ``path`` (disk full, permissions changed) as ``OutputError``."""
    try:
        yield
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})", "free some space or choose another --out") from None
