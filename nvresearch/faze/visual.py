"""Pictures of a FAZE run: the error-vs-k curve (drawn with OpenCV), reconstructions and gaze-code rotations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nvresearch.core.geometry import pitchyaw_to_rotation
from nvresearch.core.utils.visual import save_grid
from nvresearch.faze.models import DTED, rotate_codes

__all__ = ["draw_error_curve", "save_gaze_rotation", "save_reconstructions", "to_unit_range"]

# Patches are 32x64 (embedded world) or 64x256 (GazeCapture): cells are enlarged (nearest neighbour) to at least
# this height so that an eye strip is not a thumbnail next to its captions.
PICTURE_MIN_CELL = 128
# Gaze offsets (pitch, yaw) in degrees shown by gaze_rotation.png: yaw sweep, then pitch sweep.
ROTATION_OFFSETS_DEG: tuple[tuple[float, float], ...] = tuple((0.0, d) for d in (-45, -25, 0, 25, 45)) + tuple(
    (d, 0.0) for d in (-45, -25, 25, 45)
)

_COLOURS = [(200, 80, 30), (40, 140, 40), (40, 40, 200), (140, 60, 160)]  # BGR


def to_unit_range(images: Tensor) -> Tensor:
    """DT-ED images in [-1, 1] (outputs are unbounded) -> [0, 1] for saving."""
    return ((images.detach().float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)


def _gaze_caption(gaze: Tensor) -> str:
    """``(2,)`` (pitch, yaw) radians -> a short row caption in degrees."""
    p, y = (math.degrees(float(v)) for v in gaze[:2])
    return f"p{p:+.0f} y{y:+.0f}"


@torch.no_grad()
def save_reconstructions(dted: DTED, batch: dict[str, Tensor], path: str | Path, num: int = 6) -> Path | None:
    """Save ``reconstructions.png``: per row image a, image b (same person) and a re-decoded with b's gaze and head.

    Images are shown as the model sees them (after the data's preprocessing), mapped from [-1, 1] to [0, 1] by
    :func:`to_unit_range`, RGB as stored; rows are captioned with the person index and the two gaze labels.

    Args:
        dted: the trained DT-ED.
        batch: a sample batch with ``image`` ``(B, 3, H, W)`` in [-1, 1], ``person`` ``(B,)``, ``gaze`` ``(B, 2)``
            (pitch, yaw) radians, ``R_gaze`` and ``R_head`` ``(B, 3, 3)``; consecutive samples of one person form pairs.
        path: the PNG to write.
        num: at most this many rows.

    Returns:
        the path, or None when the batch holds no pair of one person (nothing is written).
    """
    img, person, gaze = batch["image"], batch["person"], batch["gaze"]
    pairs: list[int] = []  # non-overlapping neighbours of one person, (0, 1), (2, 3), ...
    i = 0
    while i < img.shape[0] - 1 and len(pairs) < num:
        if person[i] == person[i + 1]:
            pairs.append(i)
            i += 1
        i += 1
    if not pairs:
        return None
    a, b = torch.tensor(pairs), torch.tensor(pairs) + 1
    rg, rh = batch["R_gaze"], batch["R_head"]
    out = dted(img[a], rg[a], rh[a], rg[b], rh[b])
    rows = [
        [to_unit_range(img[i]), to_unit_range(img[j]), to_unit_range(x)]
        for i, j, x in zip(a.tolist(), b.tolist(), out["image_b_hat"])
    ]
    row_labels = [
        f"#{int(person[i])} {_gaze_caption(gaze[i])} -> {_gaze_caption(gaze[j])}"
        for i, j in zip(a.tolist(), b.tolist())
    ]
    cols = ["image a (model input)", "image b (target)", "a redirected to b"]
    return save_grid(rows, path, col_labels=cols, row_labels=row_labels, min_cell=PICTURE_MIN_CELL)


@torch.no_grad()
def save_gaze_rotation(dted: DTED, batch: dict[str, Tensor], path: str | Path, num: int = 6) -> Path:
    """Save ``gaze_rotation.png``: per row an input image, then its decoding with the gaze code rotated by offsets.

    The gaze code is rotated from the image's gaze to the gaze plus each of :data:`ROTATION_OFFSETS_DEG` (appearance
    and head codes kept); images as in :func:`save_reconstructions`, rows captioned with the input's gaze label.

    Args:
        dted: the trained DT-ED.
        batch: as in :func:`save_reconstructions` (``person`` and ``R_head`` unused).
        path: the PNG to write.
        num: at most this many rows.
    """
    img = batch["image"]
    n = min(num, img.shape[0])
    z_app, z_gaze, z_head = dted.encode(img[:n])
    rot_a = batch["R_gaze"][:n]
    rows = []
    for i in range(n):
        row = [to_unit_range(img[i])]
        for dp, dy in ROTATION_OFFSETS_DEG:
            target = batch["gaze"][i : i + 1] + torch.tensor([[dp, dy]], device=img.device) * math.pi / 180
            zg = rotate_codes(z_gaze[i : i + 1], rot_a[i : i + 1], pitchyaw_to_rotation(target))
            row.append(to_unit_range(dted.decode(z_app[i : i + 1], zg, z_head[i : i + 1])[0]))
        rows.append(row)
    cols = ["model input"] + [f"yaw {dy:+.0f}" if dp == 0 else f"pitch {dp:+.0f}" for dp, dy in ROTATION_OFFSETS_DEG]
    row_labels = [_gaze_caption(batch["gaze"][i]) for i in range(n)]
    return save_grid(rows, path, col_labels=cols, row_labels=row_labels, min_cell=PICTURE_MIN_CELL)


def draw_error_curve(
    ks: Sequence[int],
    curves: dict[str, Sequence[float]],
    path: str | Path,
    hlines: dict[str, float] | None = None,
    title: str = "FAZE: gaze error vs calibration samples k",
) -> Path:
    """Save a line plot of error (degrees) against k as PNG; k is placed on equally spaced ticks.

    Args:
        ks: the calibration sizes (x ticks).
        curves: label -> one error per k.
        path: output ``.png``.
        hlines: label -> a constant reference error (drawn dashed), e.g. the person-independent estimator.
        title: the heading.
    """
    import cv2

    w, h, left, right, top, bottom = 760, 480, 70, 200, 40, 60
    img = np.full((h, w, 3), 255, np.uint8)
    values = [v for c in curves.values() for v in c] + list((hlines or {}).values())
    lo, hi = 0.0, max(values) * 1.1 if values else 1.0
    pw, ph = w - left - right, h - top - bottom

    def xy(i: float, v: float) -> tuple[int, int]:
        x = left + (i / max(1, len(ks) - 1)) * pw
        y = top + ph - (v - lo) / (hi - lo) * ph
        return int(round(x)), int(round(y))

    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    for t in np.linspace(lo, hi, 6):
        _, y = xy(0, t)
        cv2.line(img, (left - 4, y), (left + pw, y), (225, 225, 225), 1)
        cv2.putText(img, f"{t:.1f}", (8, y + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for i, k in enumerate(ks):
        x, _ = xy(i, lo)
        cv2.line(img, (x, top + ph), (x, top + ph + 4), (0, 0, 0), 1)
        cv2.putText(img, str(k), (x - 8, top + ph + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "k (calibration samples)", (left + pw // 2 - 80, h - 15), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "error (deg)", (5, top - 12), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, title, (left + 60, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    legend_y = top + 10
    for c, (label, vals) in enumerate(curves.items()):
        colour = _COLOURS[c % len(_COLOURS)]
        pts = [xy(i, v) for i, v in enumerate(vals)]
        for a, b in zip(pts, pts[1:]):
            cv2.line(img, a, b, colour, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 3, colour, -1, cv2.LINE_AA)
        cv2.line(img, (left + pw + 10, legend_y), (left + pw + 30, legend_y), colour, 2)
        cv2.putText(img, label, (left + pw + 35, legend_y + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        legend_y += 20
    for label, v in (hlines or {}).items():
        _, y = xy(0, v)
        for x in range(left, left + pw, 12):
            cv2.line(img, (x, y), (min(x + 6, left + pw), y), (90, 90, 90), 1)
        cv2.line(img, (left + pw + 10, legend_y), (left + pw + 30, legend_y), (90, 90, 90), 1)
        cv2.putText(img, label, (left + pw + 35, legend_y + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        legend_y += 20
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path
