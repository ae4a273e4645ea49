"""Write the manifest entry of a released weight from its file and measured results.

    python benchmarks/release_manifest.py   # rewrites weights/manifest.json for ddn.color-sigma

Metrics come from the `ddn eval denoise --json` files in benchmarks/results/; the
training record from the H200/H100 logs in benchmarks/results/training/. Nothing here is
typed in by hand except the description of the recipe.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
RES = ROOT / "benchmarks" / "results"


def psnrs(path: Path) -> dict:
    doc = json.loads(path.read_text())
    r = doc["models"][0]["results"]
    return {k: round(v["psnr"], 3) for k, v in r.items()}, {k: round(v.get("ssim", 0), 4) for k, v in r.items()}


def done(log: Path) -> dict:
    for line in log.read_text().splitlines():
        e = json.loads(line)
        if e["event"] == "done":
            return e
    raise SystemExit(f"{log}: no done event")


def shipped(file: str) -> tuple[dict, dict] | None:
    """(file facts for the manifest: file, sha256, size; the weight file's metadata), or None
    if ``weights/<file>`` is not there yet."""
    from ddn_cli.weightfile import load_weights

    wpath = ROOT / "weights" / file
    if not wpath.is_file():
        return None
    data = wpath.read_bytes()
    _, meta = load_weights(wpath)
    return {"file": wpath.name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}, meta


def classifier_entry() -> dict | None:
    """The bundled CIFAR-10 classifier, if it has been trained and copied into weights/."""
    if (got := shipped("resnet9.cifar10.safetensors")) is None:
        return None
    facts, meta = got
    log = RES / "training" / "classifier_cpu_log.jsonl"
    evs = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")] if log.is_file() else []
    vals = list({e["step"]: e for e in evs if e.get("event") == "val"}.values())  # a resume repeats one
    t = meta["training"]
    return {
        "name": "resnet9.cifar10", "arch": "resnet9", "task": "classifier", **facts, "license": "MIT",
        "description": "half-width ResNet-9 CIFAR-10 classifier with flip test-time augmentation: the frozen "
                       "high-level network of the cls cascade",
        "config": meta["config"], "classes": meta["classes"], "input_size": meta["input_size"],
        "normalisation": meta["normalisation"],
        "training": {"data": "CIFAR-10 train (../shared/data/cifar10/train), the last 10% of each class's sorted "
                             "files held out", "steps": meta["step"], "epochs": t["epochs"], "batch": t["batch_size"],
                     "optimizer": f"SGD nesterov lr {t['lr']} (warmup + linear decay), wd {t['weight_decay']}, "
                                  f"label smoothing {t['label_smoothing']}",
                     "augmentation": "4 px reflect-pad random crop, horizontal flip", "precision": "bf16 autocast, CPU",
                     "wall_s": round(meta["elapsed_s"], 1), "hardware": "2-core Sapphire Rapids CPU",
                     "val_history": [round(v["val_acc"], 4) for v in vals]},
        "metrics": {"val_acc": round(meta["val_acc"], 4), "val_acc_single_view": round(meta["val_acc_single_view"], 4),
                    "val_images": 5000, "sigma": 0,
                    "note": "val_acc with flip test-time augmentation (config tta_flip, the shipped setting), fp32"},
        "urls": [],
    }


SEGMENTERS = {  # name -> (description, how it started); the default is the first one shipped
    "resnet9_unet.camvid": (("CamVid segmenter (11 classes) on the bundled CIFAR-10 classifier's ResNet-9 trunk, "
                             "fine-tuned, + a 1/16 context block and a U-Net decoder: the default segmenter (from "
                             "2026-12-01; higher mIoU than resunet_s.camvid clean and behind every denoiser measured)"),
                            "trunk initialised from resnet9.cifar10 and fine-tuned, decoder from scratch"),
    "resunet_s.camvid": (("compact residual U-Net CamVid segmenter (11 classes): the frozen high-level network of "
                          "the seg cascade until 2026-12-01 (ddn.seg v1 and v2 were fine-tuned through it)"),
                         "from scratch"),
}


def segmenter_entry(name: str) -> dict | None:
    """A bundled CamVid segmenter, if trained and copied into weights/."""
    if (got := shipped(f"{name}.safetensors")) is None:
        return None
    facts, meta = got
    t = meta["training"]
    v = meta["val"]
    what, start = SEGMENTERS[name]
    return {
        "name": name, "arch": meta.get("arch", "resunet_s"), "task": "segmenter", **facts,
        "license": "MIT (weights; CamVid data CC BY-NC 4.0)",
        "description": what,
        "config": meta["config"], "classes": meta["classes"], "input_size": meta["input_size"],
        "ignore_index": meta["ignore_index"], "palette": meta["palette"], "normalisation": meta["normalisation"],
        "training": {"data": f"CamVid train (367 images, ../shared/data/camvid/train), {start}",
                     "steps": meta["step"], "batch": t["batch_size"], "crop": t["crop"],
                     "optimizer": f"AdamW lr {t['lr']} (warmup {t['warmup']} + cosine), wd {t['weight_decay']}",
                     "loss": "class-weighted cross entropy (1/ln(1.10 + p)), void ignored",
                     "augmentation": "random scale 0.75-1.5, crop, horizontal flip, brightness/contrast +-20%",
                     "selection": "final weights (no pick on val)", "precision": "bf16 autocast + channels_last, CPU",
                     "wall_s": round(meta["elapsed_s"], 1), "hardware": "2-core Sapphire Rapids CPU",
                     "val_history": [{"step": h["step"], "miou": round(h["miou"], 4)} for h in v.get("history", [])]},
        "metrics": {"CamVid_val": {"miou": round(v["miou"], 4), "pixel_acc": round(v["pixel_acc"], 4),
                                   "per_class_iou": dict(zip(meta["classes"], [round(x, 4) for x in v["per_class"]])),
                                   "images": 101, "size": "360x480", "sigma": 0}},
        "urls": [],
    }


def guided_entry(task: str) -> dict | None:
    """A task-guided denoiser (ddn.seg / ddn.cls), if trained and copied into weights/."""
    name = f"ddn.{task}"
    if (got := shipped(f"{name}.safetensors")) is None:
        return None
    facts, meta = got
    t = meta["training"]
    c = meta["cascade"]
    metrics = {}
    ev = RES / "cascade" / f"eval_{task}.json"
    if ev.is_file():
        doc = json.loads(ev.read_text())
        for v in doc["variants"]:
            if v["label"] == name:
                metrics[doc["metric"]] = {k: round(x, 4) for k, x in v["metric"].items()}
                metrics["psnr"] = {k: (round(x, 3) if x is not None else None) for k, x in v["psnr"].items()}
        metrics["on"] = ("CamVid val (101 images, 360x480)" if task == "seg" else
                         "CIFAR-10 held-out 10% (5000 images)") + ", unclipped noise, known sigma"
    rehearse = t.get("rehearse") or []
    gpu = t.get("device") == "cuda"
    # the recipe, by hand: which default the fine-tune started from (weight files record no hash of their init):
    # ddn.cls v2 (CPU, rehearsal), ddn.seg v2 (lent H200) and v3 (CPU) from v4, all with BatchNorm frozen;
    # ddn.seg v1 and ddn.cls v1 (BatchNorm trained) from v1
    start = ("v4 (sha256 e34d2b3a..., BatchNorm frozen)" if rehearse or gpu or t.get("freeze_bn")
             else "v1 (stages 1-2, sha256 460de281...)")
    # the task network by its bundled name (ddn.seg v3 was trained through runs/cseg/tuned.safetensors, the file
    # bundled since as resnet9_unet.camvid; the state hash below identifies it)
    task_net = {"tuned.safetensors": "resnet9_unet.camvid.safetensors"}.get(c["task_net"], c["task_net"])
    segmenter = task_net.removesuffix(".safetensors")
    data = t["data"][0].replace(str(ROOT.parent) + "/", "../").replace(".devdata/", "../shared/data/")
    return {
        "name": name, "arch": "ddn", "task": task, **facts, "license": "MIT",
        "description": ("segmentation" if task == "seg" else "classification") + f"-guided denoiser: ddn.color-sigma "
                       f"{start} fine-tuned through the frozen " + (f"CamVid segmenter {segmenter}" if task == "seg"
                                                                    else "CIFAR-10 classifier")
                       + " with L = MSE + lambda * cross entropy (Liu et al. 2020)"
                       + (f", plus the MSE on {t['rehearse_batch']} photo patches of {t['rehearse_patch']} px per step "
                          "(rehearsal, so it stays a general denoiser)" if rehearse else ""),
        "config": meta["config"],
        "training": {"init": t["init"], "data": data,
                     "task_net": task_net, "task_net_sha256_of_state": c["task_net_sha"], "lambda": c["lambda"],
                     "task_target": c.get("target", "labels") + (" (the frozen network's argmax on the clean image)"
                                                                  if c.get("target") == "clean" else " (ground truth)"),
                     "loss": t["loss"], "sigma": t["sigma"], "clip_fraction": t["clip_fraction"],
                     **({"task_loss": "cross entropy, " + ("class-weighted as the segmenter was trained"
                                                          if t.get("task_class_weights", True) else "unweighted")}
                        if task == "seg" else {}),
                     "steps": meta["best"]["step"], "batch": t["batch_size"], "patch": t["patch"], "lr": t["lr"],
                     **({"rehearse": [r.replace(str(ROOT.parent) + "/", "../") for r in rehearse],
                         "rehearse_batch": t["rehearse_batch"], "rehearse_patch": t["rehearse_patch"]} if rehearse else {}),
                     "selection": (f"best mean task metric at sigma {t['val_sigmas']} on {c['held_out']} images held "
                                   "out of the training data" if t["val_every"] < t["steps"] else
                                   f"final weights (validated once, at the end, on {c['held_out']} images held out of "
                                   "the training data)"),
                     "wall_s": round(meta["elapsed"], 1), "precision": meta["precision"],
                     "hardware": ("1x NVIDIA H200 (a lent device, shared by the runs of benchmarks/device_cascade.sh; "
                                  "the data carried there as .devdata/camvid)" if gpu else "2-core Sapphire Rapids CPU")},
        "metrics": metrics,
        "urls": [],
    }


def beats_reconstruction(task: str) -> bool:
    """A guided denoiser becomes its task's default only if it measured better than the
    reconstruction-only denoiser on the task at sigma 30 and 60 (ddn eval JSON)."""
    ev = RES / "cascade" / f"eval_{task}.json"
    if not ev.is_file():
        return False
    by = {v["role"]: v for v in json.loads(ev.read_text())["variants"]}
    return all(by["guided"]["metric"][s] > by["reconstruction"]["metric"][s] for s in ("30", "60"))


def cpu_stage(init: str, t: dict, s: dict, result: str, budget: int, out: str) -> dict:
    """A frozen-BatchNorm CPU fine-tuning stage: its settings ``t``, its log's summary ``s``."""
    return {"init": init, "loss": t["loss"].upper(), "batch": t["batch_size"], "patch": t["patch"], "lr": t["lr"],
            "warmup": t["warmup"],
            "batchnorm": "frozen (running statistics kept; only weights learn)" if t["freeze_bn"] else "trained",
            "ema": int(t["ema"]) if t["ema"] == 0 else t["ema"], "steps": s["steps_done"],
            "wall_s": round(s["elapsed_s"], 1), "patches_per_s": round(s["patches_per_s"], 1),
            "val_psnr": s["best"]["psnr"], "result": result,
            "command": "ddn train --data benchmarks/splits/denoise_train.txt --val benchmarks/splits/denoise_val.txt "
                       "--data-root ../shared/data --init ddn.color-sigma --loss mse --lr 2e-5 --warmup 50 --steps 0 "
                       f"--time-budget {budget} --batch-size 16 --patch 128 --val-every 100000 --ema 0 --device cpu "
                       f"--out runs/{out}/ft.safetensors"}


def main() -> None:
    name = "ddn.color-sigma"
    facts, meta = shipped(f"{name}.safetensors")
    s1 = done(RES / "training" / "stage1_h200_log.jsonl")
    s2 = done(RES / "training" / "stage2_h200_log.jsonl")
    s3 = done(RES / "training" / "stage3_h100_log.jsonl")
    s3_alt = done(RES / "training" / "stage3_h100_alt_lr1e-4_log.jsonl")
    s4c = done(RES / "training" / "stage4_h100_mse_lr5e-5_log.jsonl")
    s4d = done(RES / "training" / "stage4_h100_mse_lr2e-5_log.jsonl")
    s5 = done(RES / "training" / "stage5_cpu_mse_frozenbn_log.jsonl")
    s6 = done(RES / "training" / "stage6_cpu_mse_frozenbn_log.jsonl")
    t6 = meta["training"]  # the shipped file is stage 6's output: its own training record
    metrics = {}
    for ds, key in (("CBSD68", "cbsd68"), ("Kodak24", "kodak24")):
        metrics[ds] = {}
        for mode, suffix in (("unclipped", "no-clip"), ("clipped", "clip")):
            p, s = psnrs(RES / f"eval_{key}_{suffix}.json")
            metrics[ds][mode] = p
            metrics[ds][mode + "_ssim"] = s
    auto = json.loads((RES / "eval_cbsd68_sigma_auto.json").read_text())["models"][0]["results"]
    metrics["CBSD68"]["unclipped_sigma_auto"] = {k: round(v["psnr"], 3) for k, v in auto.items()}
    metrics["protocol"] = ("ddn eval denoise: clean uint8 -> + N(0, sigma/255) seeded per image, unclipped "
                           "(clipped: also clipped to [0,1] and quantised), fp32, rounded to uint8, PSNR over RGB")
    training = {
        "data": "CBSD432 (432 BSDS500 images) + 184 ImageNet samples (benchmarks/splits/denoise_train.txt); "
                "never CBSD68 or Kodak24",
        "validation": "16 held-out ImageNet samples (benchmarks/splits/denoise_val.txt), sigma 15/25/50",
        "noise": "sigma ~ U(0, 75) per patch; 50% of patches clipped to [0,255] and quantised to 8 bits",
        "loss": "L1 (stages 1-3), then MSE (stages 4-6)",
        "optimizer": "AdamW(betas 0.9/0.99, wd 0), warmup + cosine, grad clip 1.0, EMA 0.999 "
                     "(validated alongside the raw weights; the better one kept)",
        "precision": "bf16 autocast + channels_last",
        "hardware": "stages 1-2: 1x NVIDIA H200; stages 3-4: 1x NVIDIA H100 80GB HBM3 (lent devices), "
                    "benchmarks/gpu_train.py via benchmarks/device_run.sh and device_run2.sh; stages 5-6: this "
                    "project's 2-core Sapphire Rapids CPU, ddn train",
        "selection": "every choice (checkpoint, variant, averaging) by PSNR on the 16 validation images; "
                     "CBSD68 and Kodak24 only measured afterwards",
        "stages": [
            {"steps": s1["steps_done"], "batch": 64, "patch": 128, "lr": 1e-3, "wall_s": round(s1["elapsed_s"], 1),
             "patches_per_s": round(s1["patches_per_s"], 1), "val_psnr": s1["best"]["psnr"]},
            {"init": "stage 1", "steps": s2["steps_done"], "scheduled_steps": s2["total"], "batch": 32, "patch": 192,
             "lr": 2e-4, "wall_s": round(s2["elapsed_s"], 1), "patches_per_s": round(s2["patches_per_s"], 1),
             "stopped": "time budget", "val_psnr": s2["best"]["psnr"]},
            {"init": "stage 2", "steps": s3["steps_done"], "batch": 64, "patch": 256, "lr": 5e-5, "loss": "L1",
             "wall_s": round(s3["elapsed_s"], 1), "patches_per_s": round(s3["patches_per_s"], 1),
             "kept_step": s3["best"]["step"], "val_psnr": s3["best"]["psnr"],
             "note": "run side by side with a batch-32/patch-192/lr-1e-4 variant "
                     f"(val {s3_alt['best']['psnr']}), which validated lower"},
            {"init": "stage 3", "loss": "MSE", "batch": 64, "patch": 256,
             "runs": [{"lr": 5e-5, "steps": s4c["steps_done"], "kept_step": s4c["best"]["step"],
                       "val_psnr": s4c["best"]["psnr"], "wall_s": round(s4c["elapsed_s"], 1)},
                      {"lr": 2e-5, "steps": s4d["steps_done"], "kept_step": s4d["best"]["step"],
                       "val_psnr": s4d["best"]["psnr"], "wall_s": round(s4d["elapsed_s"], 1)}],
             "result": "the two runs' weights averaged (validated best, ddn eval fp32)"},
            cpu_stage("stage 4 (v2)", {"loss": "mse", "batch_size": 16, "patch": 128, "lr": 2e-5, "warmup": 50,
                                        "freeze_bn": True, "ema": 0.0}, s5, "v3", 420, "cpu_mse2"),
            cpu_stage("stage 5 (v3)", t6, s6, "v4", 1500, "cpu_mse3"),
        ],
        # steps behind the shipped weights (each stage continued from the kept step of the last)
        "steps": (s1["steps_done"] + s2["steps_done"] + s3["best"]["step"] + s4c["best"]["step"] + s5["steps_done"]
                  + s6["steps_done"]),
        "wall_s": round(s1["elapsed_s"] + s2["elapsed_s"] + s3["elapsed_s"] + s4c["elapsed_s"] + s5["elapsed_s"]
                        + s6["elapsed_s"], 1),
    }
    entry = {
        "name": name, "arch": "ddn", "task": "denoise", **facts, "license": "MIT",
        "description": "Liu et al. (TIP 2020) multi-scale denoiser with a noise-level input; one model for sigma 0-75",
        "config": meta["config"], "training": training, "metrics": metrics,
        "urls": [],  # not served anywhere yet: bundled with the package; DDN_MIRROR can host it
    }
    entries = [entry]
    defaults = {"denoise": name}
    segs = [segmenter_entry(n) for n in SEGMENTERS]
    for kind, e in (("seg", guided_entry("seg")), ("cls", guided_entry("cls")),
                    *(("segmenter", x) for x in segs), ("classifier", classifier_entry())):
        if e:
            entries.append(e)
            if kind in ("seg", "cls") and not beats_reconstruction(kind):
                continue  # shipped and listed, but not the default while it measures worse
            defaults.setdefault(kind, e["name"])
    man = {"schema": 1, "defaults": defaults, "weights": entries}
    (ROOT / "weights" / "manifest.json").write_text(json.dumps(man, indent=2) + "\n")
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
