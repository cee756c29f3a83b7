#!/usr/bin/env python
"""Part maps for your own images with a trained SCOPS network (self-supervised co-part segmentation).

Examples::

    python scripts/scops_parts.py --checkpoint outputs/scops/runs/<run>/checkpoints/last.ckpt \\
        --input my_birds/ --output my_birds_parts/ --centres
    python scripts/scops_parts.py --checkpoint snapshots/SCOPS_K8/model_100000.pth --input faces/ --output parts/

Checkpoint: one written by ``python -m nvresearch.train paper=scops`` (the network is rebuilt from the run config
inside it, and images are resized to the side the run was trained at), or a released checkpoint of the official code
(``model_<step>.pth``; K is read from its head, images are resized to 256). ``--image-size`` overrides the side.

Input: a folder of images (PNG, JPEG, BMP; not recursive) or one image file. Use images of the category the model
was trained on (faces for the CelebA model, birds for the CUB model): SCOPS parts are consistent within a category.

Output, per image ``<stem>.<ext>``, at the image's own size:

- ``<stem>_parts.png``: 8-bit labels, 0 = background, 1..K = the parts (argmax of the network's K + 1 channels);
- ``<stem>_overlay.png``: the image with one colour per part (the background left as it is);
- with ``--centres``: ``centres.json``, ``{"<file name>": [[x, y], ...]}``, the K part centres in the image's pixels
  (the centres the official landmark evaluation regresses from).

Preprocessing is the training readers': the image is resized to a square without keeping its aspect ratio and the
Caffe mean is subtracted; the part logits are up-sampled back to the image's size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a file from a source checkout: make ``nvresearch`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nvresearch.core.data import DatasetLayoutError  # noqa: E402
from nvresearch.scops.data import IMAGE_SUFFIXES, load_rgb  # noqa: E402
from nvresearch.scops.infer import load_part_model, predict_parts  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Part maps (label PNGs and colour overlays) for a folder of images with a trained SCOPS model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Checkpoint:" + __doc__.split("Checkpoint:", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--checkpoint", required=True, help="paper=scops checkpoint (.ckpt) or official model_*.pth")
    parser.add_argument("--input", required=True, help="folder of images (or one image)")
    parser.add_argument("--output", required=True, help="folder for <stem>_parts.png, <stem>_overlay.png")
    parser.add_argument("--centres", action="store_true", help="also write the part centres to centres.json")
    parser.add_argument("--image-size", type=int, help="network input side (default: the side it was trained at)")
    parser.add_argument("--alpha", type=float, default=0.55, help="opacity of the part colours in the overlays")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    return parser


def list_images(source: Path) -> list[Path]:
    """The images to segment: ``source`` itself, or the image files of the folder ``source`` (sorted)."""
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such folder or image")
    if source.is_file():
        return [source]
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{source}: no image in the folder (extensions {', '.join(IMAGE_SUFFIXES)})")
    stems: dict[str, str] = {}
    for p in files:
        if p.stem in stems:
            raise ValueError(f"{source}: '{stems[p.stem]}' and '{p.name}' share the stem '{p.stem}' (outputs collide)")
        stems[p.stem] = p.name
    return files


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    files = list_images(Path(args.input).expanduser())
    net, size = load_part_model(args.checkpoint, args.image_size)
    net = net.to(args.device)
    from nvresearch.scops.module import part_overlay  # Lightning import: only once the inputs are known to be good

    out = Path(args.output).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    centres: dict[str, list[list[float]]] = {}
    for path in files:
        try:
            rgb = load_rgb(path)
        except DatasetLayoutError as err:
            raise ValueError(f"{path}: not a readable image ({err})") from err
        parts = predict_parts(net, rgb, size)
        labels = parts["labels"]
        _save_png(labels.to(torch.uint8).numpy(), out / f"{path.stem}_parts.png")
        overlay = part_overlay(rgb.float() / 255.0, labels, alpha=args.alpha)
        _save_png((overlay * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), out / f"{path.stem}_overlay.png")
        centres[path.name] = [[round(float(x), 3), round(float(y), 3)] for x, y in parts["centres"]]
    if args.centres:
        lines = [f" {json.dumps(name)}: {json.dumps(points)}" for name, points in centres.items()]
        (out / "centres.json").write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")  # one image a line
    print(f"wrote part maps of {len(files)} image(s) to {out} (K = {net.num_parts} parts, network input {size}x{size})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError) as err:  # bad inputs or checkpoint: a message, not a traceback
        sys.exit(f"error: {err}")
