"""Pictures for people: colour-mapped scalar fields and image grids saved as PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# Anchor colours of a perceptually ordered dark-blue -> yellow map (close to viridis), interpolated linearly.
_ANCHORS = torch.tensor(
    [
        [0.267, 0.005, 0.329],
        [0.283, 0.141, 0.458],
        [0.254, 0.265, 0.530],
        [0.207, 0.372, 0.553],
        [0.164, 0.471, 0.558],
        [0.128, 0.567, 0.551],
        [0.135, 0.659, 0.518],
        [0.267, 0.749, 0.441],
        [0.478, 0.821, 0.318],
        [0.741, 0.873, 0.150],
        [0.993, 0.906, 0.144],
    ]
)


def colorize(x: Tensor, vmin: float | Tensor | None = None, vmax: float | Tensor | None = None) -> Tensor:
    """Map a scalar field to RGB in [0, 1] with a viridis-like colour map.

    Shape:
        x: ``(H, W)``, ``(1, H, W)`` or ``(B, 1, H, W)``; returns ``(3, H, W)`` or ``(B, 3, H, W)``.
    """
    batched = x.dim() == 4
    if x.dim() == 2:
        x = x[None]
    if not batched:
        x = x[None]
    if x.shape[1] != 1:
        raise ValueError(f"colorize expects one channel, got shape {tuple(x.shape)}")
    x = x.detach().float().cpu()
    # Limits may be tensors on the model's device (e.g. CUDA): bring them to the CPU like x.
    lo = x.amin() if vmin is None else torch.as_tensor(vmin, dtype=torch.float32).detach().cpu()
    hi = x.amax() if vmax is None else torch.as_tensor(vmax, dtype=torch.float32).detach().cpu()
    t = ((x - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)[:, 0]  # (B, H, W)
    pos = t * (len(_ANCHORS) - 1)
    i0 = pos.floor().long().clamp(max=len(_ANCHORS) - 2)
    w = (pos - i0).unsqueeze(-1)
    rgb = _ANCHORS[i0] * (1 - w) + _ANCHORS[i0 + 1] * w  # (B, H, W, 3)
    rgb = rgb.permute(0, 3, 1, 2).contiguous()
    return rgb if batched else rgb[0]


def save_grid(
    rows: Sequence[Sequence[Tensor]],
    path: str | Path,
    pad: int = 2,
    col_labels: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    min_cell: int = 96,
) -> Path:
    """Save a grid of images in [0, 1] as PNG, with optional captions drawn above the columns and left of the rows.

    With captions, cells smaller than ``min_cell`` pixels are enlarged by an integer factor (nearest neighbour, so
    pixels stay visible) until the captions fit; without captions the grid is saved at its own size.

    Args:
        rows: one inner sequence per row; all images the same size.
        path: the PNG file to write (folders are created).
        pad: white pixels between cells.
        col_labels: one caption per column (e.g. ``["guide", "low resolution", "bicubic", ...]``).
        row_labels: one caption per row.
        min_cell: the smallest cell height and width, in pixels, when captions are drawn.

    Shape:
        each image: ``(3, H, W)``.
    """
    from torchvision.utils import make_grid, save_image

    images = [img.detach().float().cpu().clamp(0, 1) for row in rows for img in row]
    ncol = max(len(r) for r in rows)
    if col_labels is not None and len(col_labels) != ncol:
        raise ValueError(f"save_grid: {len(col_labels)} column labels for {ncol} columns")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"save_grid: {len(row_labels)} row labels for {len(rows)} rows")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if col_labels is None and row_labels is None:
        save_image(torch.stack(images), path, nrow=ncol, padding=pad, pad_value=1.0)
        return path
    batch = torch.stack(images)
    scale = max(1, math.ceil(min_cell / min(batch.shape[-2:])))
    if scale > 1:
        batch = batch.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    grid = make_grid(batch, nrow=ncol, padding=pad, pad_value=1.0)  # (3, H, W)
    pixels = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    cell_w, cell_h = batch.shape[-1], batch.shape[-2]
    pixels = _draw_captions(pixels, cell_w + pad, cell_h + pad, pad, col_labels, row_labels)
    from PIL import Image

    Image.fromarray(pixels).save(path)
    return path


def _draw_captions(
    pixels: np.ndarray,
    step_x: int,
    step_y: int,
    pad: int,
    col_labels: Sequence[str] | None,
    row_labels: Sequence[str] | None,
) -> np.ndarray:
    """Add a white band above (column captions) and left (row captions) of an ``(H, W, 3)`` uint8 grid."""
    import cv2  # OpenCV's built-in Hershey font: no font file to ship or download

    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    longest = max((cv2.getTextSize(t, font, 1.0, thickness)[0][0] for t in col_labels or [""]), default=1) or 1
    # One font size for the whole picture: the longest column caption fits its cell, within readable bounds.
    scale = min(0.5, max(0.3, (step_x - 2 * pad - 4) / longest))
    text_h = cv2.getTextSize("Ag", font, scale, thickness)[0][1]
    top = 2 * text_h + 6 if col_labels else 0
    left = 0
    if row_labels:
        left = max(cv2.getTextSize(t, font, scale, thickness)[0][0] for t in row_labels) + 2 * pad + 6
    out = np.full((pixels.shape[0] + top, pixels.shape[1] + left, 3), 255, dtype=np.uint8)
    out[top:, left:] = pixels
    out = np.ascontiguousarray(out)
    for c, text in enumerate(col_labels or []):
        width = cv2.getTextSize(text, font, scale, thickness)[0][0]
        x = left + pad + c * step_x + max(0, (step_x - pad - width) // 2)
        cv2.putText(out, text, (x, top - text_h // 2 - 2), font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    for r, text in enumerate(row_labels or []):
        y = top + pad + r * step_y + (step_y - pad + text_h) // 2
        cv2.putText(out, text, (pad + 2, y), font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return out
