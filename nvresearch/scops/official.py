"""Read the released SCOPS checkpoints (NVlabs/SCOPS) into our networks (CONTRACT section 2).

The official trainer saves ``model.state_dict()`` of ``Res50_Deeplab_2branch(K + 1)`` (``train.py``; the CelebA
``snapshots_CelebA`` of ``download_CelebA.sh``, the CUB ``model_60000.pth``): the backbone under torchvision's names
(``conv1``, ``bn1``, ``layer1..4``), the ASPP as ``layer5.conv2d_list.{0..3}``. The part bases are saved apart
(``BASIS_<step>.pth``: ``{"W": ReLU(w), "W_state_dict": {"w": w}}``). Files written by torch 0.4.0 lack the BN
``num_batches_tracked`` counters; those alone may be missing (they are set to 0).

Example::

    from nvresearch.scops import load_official

    net = load_official("snapshots/SCOPS_K8/model_100000.pth").eval()  # PartSegmenter(num_parts=8)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from nvresearch.scops.models import PartBasis, PartSegmenter

__all__ = ["OfficialCheckpointError", "load_official", "load_official_basis", "official_state_dict"]

_HEAD = "layer5.conv2d_list."


class OfficialCheckpointError(ValueError):
    """A released checkpoint does not map onto our network: names what is missing, unexpected or mis-shaped."""


def official_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an official state dict to ours: strip ``module.`` (DataParallel), ``layer5.conv2d_list.i`` ->
    ``aspp.convs.i``; every other name is already ours."""
    out = {}
    for key, value in state.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        if key.startswith(_HEAD):
            key = "aspp.convs." + key[len(_HEAD) :]
        out[key] = value
    return out


def _read(path: str | os.PathLike) -> tuple[Path, dict]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no SCOPS checkpoint at '{p}'")
    state = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise OfficialCheckpointError(f"'{p}' holds a {type(state).__name__}, not a state dict")
    return p, dict(state)


def load_official(
    path: str | os.PathLike,
    num_parts: int | None = None,
    blocks: tuple[int, int, int, int] = (3, 4, 6, 3),
    base_channels: int = 64,
) -> PartSegmenter:
    """Build a :class:`~nvresearch.scops.models.PartSegmenter` from a released SCOPS checkpoint, strictly.

    Args:
        path: the ``.pth`` file (a plain state dict, possibly with ``module.`` prefixes).
        num_parts: K; read from the ASPP weights when ``None`` (their first dimension is K + 1).
        blocks, base_channels: the network's size (the released checkpoints are ResNet-50: the defaults).

    Raises:
        OfficialCheckpointError: listing the missing, unexpected and mis-shaped names (only BN ``num_batches_tracked``
            counters may be missing).
    """
    p, raw = _read(path)
    state = official_state_dict(raw)
    head = state.get("aspp.convs.0.weight")
    if num_parts is None:
        if head is None:
            raise OfficialCheckpointError(f"'{p}' has no '{_HEAD}0.weight': not a SCOPS DeepLab checkpoint")
        num_parts = int(head.shape[0]) - 1
    model = PartSegmenter(num_parts=num_parts, blocks=blocks, base_channels=base_channels)
    expected = model.state_dict()
    missing = sorted(k for k in set(expected) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} (ours {tuple(expected[k].shape)})"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing: {missing[:5]}"] if missing else []
        parts += [f"{len(unexpected)} unexpected: {unexpected[:5]}"] if unexpected else []
        parts += [f"{len(shapes)} mis-shaped: {shapes[:5]}"] if shapes else []
        raise OfficialCheckpointError(
            f"'{p}' does not map onto PartSegmenter(num_parts={num_parts}): " + "; ".join(parts)
        )
    merged = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **state}
    model.load_state_dict(merged, strict=True)
    return model


def load_official_basis(path: str | os.PathLike) -> PartBasis:
    """Read a released part-basis file (``BASIS_<step>.pth``: ``W_state_dict.w``, or a bare ``{"w": ...}``)."""
    p, raw = _read(path)
    inner = raw.get("W_state_dict", raw)
    w = inner.get("w") if isinstance(inner, Mapping) else None
    if not isinstance(w, Tensor) or w.dim() != 2:
        raise OfficialCheckpointError(f"'{p}' has no (K, C) tensor 'W_state_dict.w' or 'w'")
    basis = PartBasis(int(w.shape[0]), int(w.shape[1]))
    with torch.no_grad():
        basis.w.copy_(w)
    return basis
