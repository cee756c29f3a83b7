"""Read the official PAC code's released checkpoints (NVlabs/pacnet, README "pretrained weights") into our models.

The released files are plain state dicts with the official parameter names, which our models keep:

- joint depth upsampling: ``x{4,8,16}_{pac,paclite,djif}_weights_epoch_5000.pth``;
- joint optical-flow upsampling: ``x{4,8,16}_{pac,djif}_weights_epoch_5000.pth`` (the same networks: the official code
  builds them with one channel and folds ``u, v`` into the batch, so load them with ``channels=2``);
- segmentation: ``fcn8s_from_caffe.pth`` (FCN-8s), ``fcn8s_paccrf_epoch_30.pth`` (``fcn8s_crfi5p4d5641p4d5161``),
  ``fcn8s_paccrf32_epoch_30.pth`` (``fcn8s_crfi5p4d5321``), ``fcn8s_pacfcn_epoch_20.pth`` (``fcn8spac``) and
  ``fcn8s_pacfcncrf_epoch_20.pth`` (``fcn8spac_crfi5p4d5641p4d5161``).

Transposed PAC weights are flipped spatially on the way in (the official layer correlates with the unflipped weight;
:func:`nvresearch.core.layers.pac.load_official_state_dict`).
"""

from __future__ import annotations

import os
import re
import warnings

import torch
from torch import Tensor, nn

from nvresearch.core.layers.pac import load_official_state_dict
from nvresearch.pac.segmentation.models import FCNWithCRF, create_model
from nvresearch.pac.upsampling.models import DJIF, PacJointUpsample, PacJointUpsampleLite

__all__ = ["OFFICIAL_SEGMENTATION_FILES", "build_official_model", "load_official", "official_key_report"]

OFFICIAL_SEGMENTATION_FILES: dict[str, str] = {
    "fcn8s_from_caffe": "fcn8s",
    "fcn8s_paccrf32": "fcn8s_crfi5p4d5321",
    "fcn8s_paccrf": "fcn8s_crfi5p4d5641p4d5161",
    "fcn8s_pacfcncrf": "fcn8spac_crfi5p4d5641p4d5161",
    "fcn8s_pacfcn": "fcn8spac",
}
"""Released segmentation file stems and the official model names they were trained as (official README)."""

_JOINT_FILE = re.compile(r"x(?P<factor>\d+)_(?P<kind>pac|paclite|djif)_weights")
_JOINT_KINDS = {"pac": PacJointUpsample, "paclite": PacJointUpsampleLite, "djif": DJIF}


def _read(path: str) -> dict[str, Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"official checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for files that are not torch pickles
        raise ValueError(
            f"{path} is not a torch state dict ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    return dict(obj)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def build_official_model(
    path: str, state: dict[str, Tensor], model: str | None = None, factor: int | None = None, channels: int = 1
) -> nn.Module:
    """Our model for an official checkpoint: from ``model`` (an official name), else the file name, else the keys.

    ``model`` is ``pac``, ``paclite``, ``djif`` (joint upsampling) or an official segmentation model name
    (``fcn8s_crfi5p4d5641p4d5161``, ...). The factor of a joint-upsampling file comes from ``factor``, the file name
    (``x8_...``) or the number of transposed PAC layers; a DJIF file holds no factor, so its name or ``factor`` must.
    """
    stem = _stem(path)
    joint = _JOINT_FILE.search(stem)
    kind = model
    if kind is None:
        if joint:
            kind = joint["kind"]
        else:
            kind = next((name for s, name in OFFICIAL_SEGMENTATION_FILES.items() if stem.startswith(s)), None)
    if kind is None:  # unknown file name: recognise the layout by its keys
        if any(k.startswith("up_convts.") for k in state):
            kind = "pac" if state.get("branch_t.conv1.weight", torch.empty(0)).shape[:1] == (32,) else "paclite"
        elif any(k.startswith("branch_joint.") for k in state):
            kind = "djif"
        elif "conv1_1.weight" in state or "backbone.conv1_1.weight" in state:
            n_terms = len({k.split(".")[2] for k in state if k.startswith("crf.messengers.")})
            kind = {0: "fcn8s", 1: "fcn8s_crfi5p4d5321", 2: "fcn8s_crfi5p4d5641p4d5161"}.get(n_terms)
        if kind is None:
            raise ValueError(
                f"{path}: not a released PAC checkpoint layout (no up_convts.*, branch_joint.* or conv1_1.*); pass "
                "model='pac' | 'paclite' | 'djif' | an official segmentation model name"
            )
    if kind in _JOINT_KINDS:
        ups = {int(k.split(".")[1]) for k in state if k.startswith("up_convts.")}
        from_keys = 2 ** len(ups) if ups else None
        from_name = int(joint["factor"]) if joint else None
        chosen = factor or from_name or from_keys
        if chosen is None:
            raise ValueError(f"{path}: a DJIF checkpoint does not record its factor; pass factor=4, 8 or 16")
        if from_keys is not None and chosen != from_keys:
            raise ValueError(f"{path}: factor {chosen} but the file has {len(ups)} upsampling layers (x{from_keys})")
        return _JOINT_KINDS[kind](chosen, channels=channels)
    return create_model(kind, 21)


def official_key_report(target: dict[str, Tensor], state: dict[str, Tensor]) -> tuple[list[str], list[str], list[str]]:
    """Keys of ``state`` that do not map onto ``target``: ``(missing, unexpected, shape mismatches)``."""
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs ours {tuple(target[k].shape)}"
        for k in target
        if k in state and state[k].shape != target[k].shape
    ]
    return missing, unexpected, shapes


def _format(path: str, model: str, missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    def head(items: list[str]) -> str:
        return ", ".join(items[:6]) + (f", ... ({len(items)} in all)" if len(items) > 6 else "")

    parts = [
        f"{label}: {head(items)}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
        if items
    ]
    return f"{path}: the official checkpoint does not map onto {model}: " + "; ".join(parts)


def load_official(
    path: str | os.PathLike[str],
    model: str | nn.Module | None = None,
    factor: int | None = None,
    channels: int = 1,
    strict: bool = True,
) -> nn.Module:
    """Load a checkpoint released with the official PAC code into our model (contract section 2).

    Args:
        path: The released ``.pth`` file (a plain state dict with the official names).
        model: Our model to load into, or the official model kind (``pac``, ``paclite``, ``djif``, or a segmentation
            model name such as ``fcn8s_crfi5p4d5641p4d5161``); None: from the file name, else from the keys.
        factor: Upsampling factor of a joint-upsampling file whose name does not say it (always needed for DJIF).
        channels: Target channels of a joint-upsampling model: 1 for depth, 2 for the flow files.
        strict: Refuse a file whose keys or shapes do not map one to one (the error lists them). False loads the
            tensors that map and warns with the same list.

    Returns:
        The model with the weights loaded, in eval mode. An FCN-8s backbone file (``fcn8s_from_caffe.pth``) gives
        :class:`~nvresearch.pac.segmentation.models.FCNWithCRF` without CRF, the weights in its ``backbone``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a state dict, or (``strict``) its keys or shapes do not map.
    """
    path = os.fspath(path)
    state = _read(path)
    net = model if isinstance(model, nn.Module) else build_official_model(path, state, model, factor, channels)
    target: nn.Module = net
    if isinstance(net, FCNWithCRF) and net.crf is None and not any(k.startswith("backbone.") for k in state):
        target = net.backbone  # a plain FCN-8s file: its keys are the backbone's
    missing, unexpected, shapes = official_key_report(target.state_dict(), state)
    if missing or unexpected or shapes:
        message = _format(path, type(target).__name__, missing, unexpected, shapes)
        if strict:
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)
        bad = {s.split(" ", 1)[0] for s in shapes}
        state = {k: v for k, v in state.items() if k not in unexpected and k not in bad}
    with torch.no_grad():
        load_official_state_dict(target, state, strict=strict)
    return net.eval()
