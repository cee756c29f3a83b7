"""Read the released checkpoints of NVIDIA/unsupervised-video-interpolation into :class:`SuperSloMo`.

The released files (``baseline_superslomo_adobe.pth``, ``unsupervised_adobe2slowflow.pth`` ...) hold
``{"state_dict": ...}`` with the official ``HJSuperSloMo`` names. The name map:

- ``flow_pred_encoder_layer{i}`` -> ``flow_net.unet.encoders.{i-1}``; ``flow_pred_bottleneck`` ->
  ``flow_net.unet.bottleneck``; ``flow_pred_decoder_layer{j}`` -> ``flow_net.unet.decoders.{5-j}`` (layer 5 runs
  first); ``flow_pred_refine_layer`` -> ``flow_net.unet.refine``; ``forward_flow_conv`` -> ``flow_net.flow_01``;
  ``backward_flow_conv`` -> ``flow_net.flow_10``;
- the same for ``flow_interp_*`` -> ``interp_net.unet.*``, with ``flow_interp_backward_out_layer`` ->
  ``interp_net.delta_t0`` (the t->0 residual), ``flow_interp_forward_out_layer`` -> ``interp_net.delta_t1`` and
  ``flow_interp_vis_layer`` -> ``interp_net.visibility`` (swapping the two residual heads gives wrong frames);
- buffers and frozen parts that are not learned (``mean_pix``, ``tlinespace``, ``resample2d*``, ``vgg16_features.*``,
  a cycle model's ``teacher.*``) are dropped; a ``module.`` prefix (DataParallel) is stripped.

Example::

    from nvresearch.vinterp import load_official

    model = load_official("unsupervised_adobe2slowflow.pth", flow_scale=2.0)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nvresearch.core.utils.state_dict import state_dict_mismatch
from nvresearch.vinterp.models import SuperSloMo

__all__ = ["OfficialCheckpointError", "load_official", "official_state_dict"]

_IGNORED = ("mean_pix", "tlinespace", "resample2d", "vgg16_features.", "teacher.")
_HEADS = {
    "forward_flow_conv": "flow_net.flow_01",
    "backward_flow_conv": "flow_net.flow_10",
    "flow_interp_forward_out_layer": "interp_net.delta_t1",
    "flow_interp_backward_out_layer": "interp_net.delta_t0",
    "flow_interp_vis_layer": "interp_net.visibility",
}
_BODY = re.compile(r"^flow_(pred|interp)_(encoder_layer(\d)|decoder_layer(\d)|bottleneck|refine_layer)\.(.+)$")


class OfficialCheckpointError(ValueError):
    """A released checkpoint does not map onto SuperSloMo: names what is missing, unexpected or mis-shaped."""


def _rename(key: str) -> str | None:
    """Our name for one official key; None for a key that is not a learned parameter (dropped)."""
    if key.startswith(_IGNORED):
        return None
    head, _, rest = key.partition(".")
    if head in _HEADS:
        return f"{_HEADS[head]}.{rest}"
    match = _BODY.match(key)
    if match is None:
        return key  # unknown: reported as unexpected by the caller
    net = "flow_net" if match.group(1) == "pred" else "interp_net"
    if match.group(3):
        part = f"encoders.{int(match.group(3)) - 1}"
    elif match.group(4):
        part = f"decoders.{5 - int(match.group(4))}"
    else:
        part = "bottleneck" if match.group(2) == "bottleneck" else "refine"
    return f"{net}.unet.{part}.{match.group(5)}"


def official_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an official ``HJSuperSloMo`` / ``CycleHJSuperSloMo`` state dict to :class:`SuperSloMo`'s names."""
    out = {}
    for key, value in state.items():
        name = _rename(key.removeprefix("module."))
        if name is not None:
            out[name] = value
    return out


def _report(path: Path, expected: Mapping[str, Tensor], given: Mapping[str, Tensor]) -> str | None:
    problem, _ = state_dict_mismatch(expected, given)
    return f"'{path}' does not map onto SuperSloMo: {problem}" if problem else None


def load_official(
    path: str | os.PathLike, flow_scale: float = 2.0, align_corners: bool = True, model: SuperSloMo | None = None
) -> SuperSloMo:
    """Read a released checkpoint into :class:`SuperSloMo` with a strict check of every name and shape.

    Args:
        path: a ``.pth`` file holding ``{"state_dict": ...}`` (or a bare state dict) with the official names.
        flow_scale: the checkpoint's flow scale (README: 2 for the SlowFlow/Sintel/Adobe models, 1 for UCF101).
        align_corners: the warping convention (True = the 2019 training convention, torch <= 1.2).
        model: the network to fill; None builds the reference configuration (base width 32).

    Returns:
        the model with the checkpoint's weights, in eval mode.

    Raises:
        FileNotFoundError: no file at ``path``.
        OfficialCheckpointError: not a state dict, or names missing, unexpected or mis-shaped (all listed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no official vinterp checkpoint at '{path}'")
    try:
        blob: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for non-checkpoint bytes
        raise OfficialCheckpointError(f"cannot read '{path}' as a torch checkpoint ({type(err).__name__})") from err
    state = blob.get("state_dict", blob) if isinstance(blob, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise OfficialCheckpointError(f"'{path}' holds no state dict of tensors (expected {{'state_dict': ...}})")
    if model is None:
        model = SuperSloMo(base_channels=32, flow_scale=flow_scale, align_corners=align_corners)
    mapped = official_state_dict(state)
    problem = _report(path, model.state_dict(), mapped)
    if problem:
        raise OfficialCheckpointError(problem)
    model.load_state_dict(mapped, strict=True)
    return model.eval()
