"""Shared pieces of the SCOPS reproduce scripts (landmarks.py, cub.py): the models to evaluate, training a model when
none is given, the embedded world a checkpoint was trained on, the landmark probes, and the paper-number cells."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nvresearch.core.training.checkpoint import CONFIG_KEY, read_checkpoint

PAPER_FLAG_NOTE = (
    '"?": from a third-party leaderboard (wizwand) listing the paper, not checked against its PDF; '
    '"-": not retrieved / not reported'
)


def paper_cell(entry: tuple[float | None, str] | None) -> str:
    """A paper number for a table cell: ``"?"`` marks one not checked against the PDF, ``"-"`` a missing one."""
    if entry is None or entry[0] is None:
        return "-"
    value, status = entry
    return f"{value:.2f}" + ("" if status == "checked" else "?")


def parse_models(items: Sequence[str]) -> dict[str, str]:
    """``NAME=PATH`` arguments (a bare path is named by its file stem)."""
    models = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem, item
        if not Path(path).expanduser().is_file():
            raise SystemExit(f"--checkpoint {item}: no file at '{path}'")
        models[name] = path
    return models


def train_run(overrides: Sequence[str], out_dir: Path) -> str:
    """Train with ``nvresearch.train``'s run loop and return the run's last checkpoint."""
    from nvresearch._hydra import compose
    from nvresearch.core.training.run import train

    train(compose([*overrides, f"paths.output_dir={out_dir}"]))
    ckpt = out_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise SystemExit(f"the training run wrote no checkpoint at '{ckpt}'")
    return str(ckpt)


def embedded_world(checkpoint: str, split: str) -> Any:
    """The split of the embedded part-object world that a ``paper=scops`` checkpoint was trained on (its data config);
    the default world when the checkpoint has no embedded data config (e.g. a released checkpoint)."""
    from nvresearch.scops.data import part_objects_split

    config = read_checkpoint(checkpoint).get(CONFIG_KEY, {}).get("config", {})
    dataset = dict(config.get("data", {}).get("dataset", {}))
    params = {k: v for k, v in dataset.items() if not k.startswith("_")}
    if dataset.get("_target_", "").endswith("part_objects_split") or not dataset:
        return part_objects_split(split, **params)
    raise SystemExit(f"'{checkpoint}' was trained on {dataset.get('_target_')}, not the embedded world: use full mode")


def foreground_probes(labels: Tensor) -> dict[str, Tensor]:
    """Trivial landmark probes from the ground-truth foreground (labels > 0), as ``(N, P, 2)`` "centres": the mean
    shape (a constant), the foreground centroid, and the centroid with the second moments."""
    n, h, w = labels.shape
    fg = (labels > 0).double()
    mass = fg.sum(dim=(1, 2)).clamp(min=1)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    cx = (fg * xs).sum(dim=(1, 2)) / mass
    cy = (fg * ys).sum(dim=(1, 2)) / mass
    dx, dy = xs - cx.view(n, 1, 1), ys - cy.view(n, 1, 1)
    cxx, cyy, cxy = ((fg * d).sum(dim=(1, 2)) / mass for d in (dx * dx, dy * dy, dx * dy))
    centroid = torch.stack([cx, cy], dim=1)[:, None]
    moments = torch.stack([centroid[:, 0], torch.stack([cxx, cyy], 1), torch.stack([cxy, torch.zeros_like(cxy)], 1)], 1)
    return {"mean shape": torch.zeros(n, 1, 2), "fg centroid": centroid.float(), "fg moments": moments.float()}


def percent(x: float) -> float:
    return 100.0 * float(x) if not math.isnan(float(x)) else math.nan
