"""Pictures for people: colour-mapped scalar fields and image grids saved as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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


def save_grid(rows: Sequence[Sequence[Tensor]], path: str | Path, pad: int = 2) -> Path:
    """Save a grid of ``(3, H, W)`` images in [0, 1] (one inner sequence per row; all the same size) as PNG."""
    from torchvision.utils import save_image

    images = [img.detach().float().cpu().clamp(0, 1) for row in rows for img in row]
    ncol = max(len(r) for r in rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.stack(images), path, nrow=ncol, padding=pad, pad_value=1.0)
    return path
