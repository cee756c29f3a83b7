"""Pictures of a FAZE run: the error-vs-k curve (drawn with OpenCV), reconstructions and gaze-code rotations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

__all__ = ["draw_error_curve", "to_unit_range"]

_COLOURS = [(200, 80, 30), (40, 140, 40), (40, 40, 200), (140, 60, 160)]  # BGR


def to_unit_range(images: Tensor) -> Tensor:
    """DT-ED images in [-1, 1] (outputs are unbounded) -> [0, 1] for saving."""
    return ((images.detach().float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)


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
