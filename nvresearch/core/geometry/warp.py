"""Backward warping of images by dense optical flow in pixels (torch-only).

Convention (official vinterp ``models/model_utils.py``): a flow ``F`` of shape ``(B, 2, H, W)`` is defined on the
pixel grid of the output; channel 0 is the horizontal displacement ``u`` (along the width, x), channel 1 the vertical
``v`` (along the height, y). Backward warping samples the source at the displaced position,
``W(I, F)(x, y) = I(x + u(x, y), y + v(x, y))``, bilinearly, with zeros outside the image. So with ``F = F_{a->b}``
(defined on frame a), ``W(I_b, F_{a->b})`` approximates ``I_a``.

Pixel ``x`` maps to ``2 x / (W - 1) - 1`` in ``grid_sample``'s normalised coordinates, which is an exact
pixel-coordinate warp only with ``align_corners=True`` (the ``grid_sample`` default up to torch 1.2, under which the
SuperSloMo / unsupervised-video-interpolation models were trained): a zero flow then returns the image exactly.
``align_corners=False`` reproduces what the same normalisation does under torch >= 1.3 defaults (a half-pixel shift
and a ``W / (W - 1)`` stretch), for comparing with a reference run on current torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["backward_warp", "pixel_grid"]


def pixel_grid(height: int, width: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Pixel coordinates ``(x, y)`` of an ``H x W`` image.

    Shape:
        returns ``(1, 2, H, W)``: channel 0 the column index x, channel 1 the row index y.
    """
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack((xs, ys)).unsqueeze(0)


def backward_warp(image: Tensor, flow: Tensor, align_corners: bool = True) -> Tensor:
    """Sample ``image`` at ``(x + u, y + v)``: bilinear, zeros outside (official vinterp ``MyResample2D``).

    Args:
        image: the source image (any number of channels, floating point).
        flow: displacement in pixels, channel 0 horizontal (u), channel 1 vertical (v), on the output grid.
        align_corners: ``True`` (default) is the exact pixel warp: a zero flow returns ``image`` unchanged.
            ``False`` reproduces the reference's normalisation under torch >= 1.3 defaults (module docstring).

    Shape:
        image: ``(B, C, H, W)``; flow: ``(B, 2, H, W)``; returns ``(B, C, H, W)``.

    Raises:
        ValueError: the shapes do not match, or an image side is 1 pixel (the normalisation divides by ``side - 1``).
    """
    if image.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"backward_warp needs image (B, C, H, W) and flow (B, 2, H, W), got {tuple(image.shape)} "
            f"and {tuple(flow.shape)}"
        )
    b, _, h, w = image.shape
    if flow.shape[0] != b or tuple(flow.shape[2:]) != (h, w):
        raise ValueError(f"flow {tuple(flow.shape)} does not match image {tuple(image.shape)} (need (B, 2, H, W))")
    if h < 2 or w < 2:
        raise ValueError(f"backward_warp needs an image of at least 2x2 pixels, got {h}x{w}")
    pos = pixel_grid(h, w, device=flow.device, dtype=flow.dtype) + flow
    gx = 2.0 * pos[:, 0] / (w - 1) - 1.0
    gy = 2.0 * pos[:, 1] / (h - 1) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)
