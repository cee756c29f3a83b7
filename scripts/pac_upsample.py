#!/usr/bin/env python
"""Upsample your own low-resolution depth (or disparity) map, guided by an RGB photo of the same view.

Examples::

    python scripts/pac_upsample.py --checkpoint outputs/pac/runs/<run>/checkpoints/last.ckpt \\
        --rgb photo.png --depth depth_lowres.png --out depth_up.png --out-npy depth_up.npy
    python scripts/pac_upsample.py --model bicubic --rgb photo.png --depth depth_lowres.png --out depth_up.png

Inputs: ``--rgb`` is any image OpenCV reads (PNG, JPEG); ``--depth`` is a single-channel 8/16-bit PNG (e.g. millimetres)
or a ``.npy`` array (any units, e.g. metres). The output has the size of the RGB image; it is in the units of the input
map. A trained model upsamples by its own factor: if the RGB image is not exactly ``factor`` times the map, the guide
is resized to ``factor`` times the map and the result resized to the RGB size (as the official ``apply_model``); the
script warns when it does.

Holes: pixels that are ``inf``, NaN or 0 (Middlebury's infinite disparities, Kinect's zeros) hold no measurement. They
are filled from their valid neighbours before the min-max normalisation and the network (so the output is dense and
in the range of the valid values), and the script reports how many it filled. ``--keep-zeros`` treats 0 as a value.
A map without any valid pixel is refused.

The 16-bit PNG holds ``round(value * png_scale)`` clipped to [0, 65535]. ``--png-scale`` defaults to 1 for a 16-bit
PNG input (same integer units as the input), 257 for an 8-bit PNG input (0-255 spread over 0-65535), and 1000 for a
``.npy`` input (metres -> millimetres, the usual 16-bit depth convention). ``--out-npy`` saves the exact float32 values
in the input's units.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np
import torch

if __package__ in (None, ""):  # run as a file from a source checkout: make ``nvresearch`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nvresearch.pac.upsampling.inference import (  # noqa: E402
    infer_factor,
    invalid_mask,
    read_depth,
    read_image,
    upsample,
)
from nvresearch.pac.upsampling.models import Bicubic, Bilinear  # noqa: E402


def _png_scale(depth_path: str) -> float:
    """Default PNG scale for an input file (see the module docstring)."""
    if depth_path.lower().endswith(".npy"):
        return 1000.0
    import cv2

    data = cv2.imread(depth_path, cv2.IMREAD_UNCHANGED)
    return 257.0 if data is not None and data.dtype == np.uint8 else 1.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Upsample a low-resolution depth/disparity map guided by an RGB image (PAC joint upsampling).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Inputs:", 1)[1] if __doc__ else None,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint written by `python -m nvresearch.train paper=pac`")
    source.add_argument("--model", choices=("bicubic", "bilinear"), help="untrained baseline, no checkpoint")
    parser.add_argument("--rgb", required=True, help="guide image (PNG/JPEG), full resolution")
    parser.add_argument("--depth", required=True, help="low-resolution depth or disparity (PNG 8/16-bit or .npy)")
    parser.add_argument("--out", required=True, help="output 16-bit PNG")
    parser.add_argument("--out-npy", help="also save the float32 result (input units) as .npy")
    parser.add_argument("--factor", type=int, help="upsampling factor (default: the model's, else from the sizes)")
    parser.add_argument("--png-scale", type=float, help="multiplier before writing the 16-bit PNG (see below)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--keep-zeros", action="store_true", help="0 is a valid value (default: 0 marks a hole)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    guide = read_image(args.rgb)
    depth = read_depth(args.depth)
    if args.checkpoint:
        from nvresearch.core.training import load_checkpoint

        net = load_checkpoint(args.checkpoint, map_location=args.device).net.eval()
        factor = int(getattr(net, "factor", 0)) or None
        if args.factor is not None and factor is not None and args.factor != factor:
            raise SystemExit(f"--factor {args.factor} differs from the checkpoint's factor {factor}")
        factor = factor or args.factor
    else:
        factor = args.factor or infer_factor(tuple(depth.shape[-2:]), tuple(guide.shape[-2:]))
        net = (Bicubic if args.model == "bicubic" else Bilinear)(factor)
    net = net.to(args.device)

    invalid = invalid_mask(depth, zero_invalid=not args.keep_zeros)
    n_bad, n_all = int(invalid.sum()), invalid.numel()
    if n_bad == n_all:
        raise ValueError(f"{args.depth}: no valid pixel (every value is inf, NaN{'' if args.keep_zeros else ' or 0'})")
    if n_bad:
        n_inf, n_nan = int(torch.isinf(depth).sum()), int(torch.isnan(depth).sum())
        print(
            f"filled {n_bad} invalid pixels of {n_all} ({100 * n_bad / n_all:.1f} %: {n_inf} inf, {n_nan} NaN, "
            f"{n_bad - n_inf - n_nan} zero) from their valid neighbours before upsampling"
        )
    lr_size, rgb_size = tuple(depth.shape[-2:]), tuple(guide.shape[-2:])
    model_size = (lr_size[0] * factor, lr_size[1] * factor)
    if model_size != rgb_size:
        ratio = (rgb_size[0] / lr_size[0], rgb_size[1] / lr_size[1])
        print(
            f"warning: the model upsamples x{factor}, but the RGB image {rgb_size[1]}x{rgb_size[0]} is "
            f"x{ratio[1]:.3g} / x{ratio[0]:.3g} the depth map {lr_size[1]}x{lr_size[0]}: the guide is resized to "
            f"{model_size[1]}x{model_size[0]} for the network and the result back to {rgb_size[1]}x{rgb_size[0]}",
            file=sys.stderr,
        )

    out = upsample(net, guide, depth, factor=factor, invalid=invalid)[0].cpu().numpy()
    scale = args.png_scale if args.png_scale is not None else _png_scale(args.depth)

    import cv2

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    png = np.clip(np.rint(out.astype(np.float64) * scale), 0, 65535).astype(np.uint16)
    if not cv2.imwrite(args.out, png):
        raise SystemExit(f"could not write {args.out} (use a .png file name)")
    print(f"wrote {args.out} ({png.shape[1]}x{png.shape[0]} 16-bit PNG, value = depth x {scale:g}, x{factor})")
    if args.out_npy:
        np.save(args.out_npy, out.astype(np.float32))
        print(f"wrote {args.out_npy} (float32, input units)")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError) as err:  # unreadable inputs or checkpoint: a message, not a traceback
        sys.exit(f"error: {err}")
