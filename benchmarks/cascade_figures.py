"""Side-by-side crops for the cascade results: noisy / reconstruction-only denoiser /
task-guided denoiser / clean, with the bundled segmenter's output under each (CamVid val),
and a CIFAR-10 strip with the classifier's top label under each image.

    python benchmarks/cascade_figures.py --sigma 60
Writes benchmarks/results/cascade/crop_seg_sigma60.png and crop_cls_sigma60.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ddn_cli.classify import top_k
from ddn_cli.descriptor import Denoiser
from ddn_cli.evaluation.protocol import make_noisy, to_uint8
from ddn_cli.evaluation.task_eval import load_task_data
from ddn_cli.highlevel import load_highlevel
from ddn_cli.registry import resolve_weights
from ddn_cli.segment import segment_array

OUT = ROOT / "benchmarks/results/cascade"


def label(img: Image.Image, text: str) -> Image.Image:
    canvas = Image.new("RGB", (img.width, img.height + 18), "white")
    canvas.paste(img, (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), text, fill="black")
    return canvas


def grid(rows: list[list[Image.Image]]) -> Image.Image:
    w = sum(im.width for im in rows[0]) + 4 * (len(rows[0]) - 1)
    h = sum(r[0].height for r in rows) + 4 * (len(rows) - 1)
    g = Image.new("RGB", (w, h), "white")
    y = 0
    for r in rows:
        x = 0
        for im in r:
            g.paste(im, (x, y))
            x += im.width + 4
        y += r[0].height + 4
    return g


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sigma", type=float, default=60)
    ap.add_argument("--image", type=int, default=40, help="CamVid val index")
    a = ap.parse_args()
    dev = torch.device("cpu")
    dens = [(n, Denoiser.load(resolve_weights(n), name=n, precision="fp32")) for n in ("ddn.color-sigma", "ddn.seg")]
    seg = load_highlevel(None, "segmenter", dev)
    td = load_task_data("seg", str(ROOT.parent / "shared/data/camvid"), "val")
    i = a.image
    clean = td.images[i]
    noisy = make_noisy(clean, a.sigma, td.names[i])
    pal = np.array(seg.palette + [(0, 0, 0)], np.uint8)
    gt = td.labels[i].copy()
    gt[gt == 11] = len(seg.palette)
    imgs = [("noisy", to_uint8(noisy))] + [(n, to_uint8(d(noisy[None], a.sigma)[0])) for n, d in dens] + [("clean", clean)]
    y0, x0, h, w = 60, 120, 240, 320  # a crop with road, cars, pavement, poles
    top, bottom = [], []
    for name, im in imgs:
        lab = segment_array(seg, im.astype(np.float32) / 255)
        keep = td.labels[i] != 11
        acc = float((lab[keep] == td.labels[i][keep]).mean())
        top.append(label(Image.fromarray(im[y0:y0 + h, x0:x0 + w]), name))
        bottom.append(label(Image.fromarray(pal[lab][y0:y0 + h, x0:x0 + w]), f"pixel acc {acc:.3f} (whole image)"))
    top.append(label(Image.fromarray(clean[y0:y0 + h, x0:x0 + w]), "ground truth ->"))
    bottom.append(label(Image.fromarray(pal[gt][y0:y0 + h, x0:x0 + w]), "CamVid label (void black)"))
    OUT.mkdir(parents=True, exist_ok=True)
    grid([top, bottom]).save(OUT / f"crop_seg_sigma{a.sigma:g}.png")

    dens_c = [(n, Denoiser.load(resolve_weights(n), name=n, precision="fp32")) for n in ("ddn.color-sigma", "ddn.cls")]
    clf = load_highlevel(None, "classifier", dev)
    tc = load_task_data("cls", str(ROOT.parent / "shared/data/cifar10/train"), limit=0)
    rows = []
    for j in range(0, len(tc.images), len(tc.images) // 8)[:8]:
        c = tc.images[j]
        n = make_noisy(c, a.sigma, tc.names[j])
        variants = [("noisy", to_uint8(n))] + [(nm, to_uint8(d(n[None], a.sigma)[0])) for nm, d in dens_c] + [("clean", c)]
        row = []
        for nm, im in variants:
            lab, p = top_k(clf, im.astype(np.float32) / 255, 1)[0]
            big = Image.fromarray(im).resize((128, 128), Image.NEAREST)
            row.append(label(big, f"{lab} {p:.2f}"))
        rows.append(row)
    header = [label(Image.new("RGB", (128, 1), "white"), nm) for nm in ("noisy", "ddn.color-sigma", "ddn.cls", "clean")]
    grid([header] + rows).save(OUT / f"crop_cls_sigma{a.sigma:g}.png")
    print("wrote", OUT / f"crop_seg_sigma{a.sigma:g}.png", OUT / f"crop_cls_sigma{a.sigma:g}.png")


if __name__ == "__main__":
    main()
