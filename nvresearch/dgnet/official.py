"""Read the official DG-Net checkpoints (NVlabs/DG-Net) into our networks (CONTRACT section 2).

The official trainer saves three files per snapshot, each ``{"a": state_dict}``: ``gen_<iter>.pt`` (``AdaINGen``:
structure encoder, decoder, eight MLPs), ``dis_<iter>.pt`` (``MsImageDis``) and ``id_<iter>.pt`` (``ft_netAB``, the
appearance encoder); the teacher (``ft_net``) is a plain state dict ``models/<name>/net_last.pth``. Our modules keep
the official ``nn.Sequential`` indices, so the mapping is a few renames:

- residual blocks: ``<...>.model.<k>.model.<j>.`` -> ``<...>.<k>.conv<j+1>.`` (ours are core ``ResBlock``s);
- ASPP branches ``conv1 / conv6 / conv12 / conv18`` -> ``branches.0..3``;
- ``enc_content`` -> ``structure_encoder``, ``dec`` -> ``decoder``, ``mlp_w<n>`` -> ``mlp_w.<n-1>`` (and ``b``),
  ``cnns.<s>.<i>`` -> ``nets.<s>.model.<i>``.

Dropped on purpose (listed by :func:`official_state_dict`): the AdaIN layers' dummy ``running_mean`` /
``running_var`` buffers, which the official forward never reads, and the ResNet's ImageNet ``model.fc``, which the
official forward never calls (our trunks do not have it).

Example::

    from nvresearch.dgnet import load_official

    encoder = load_official("outputs/E0.5new_reid0.5_w30000/checkpoints/id_00100000.pt")  # AppearanceEncoder
    generator = load_official("outputs/E0.5new_reid0.5_w30000/checkpoints/gen_00100000.pt")  # DGNetGenerator
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nvresearch.core.utils.state_dict import state_dict_mismatch
from nvresearch.dgnet.models import AppearanceEncoder, DGNetDiscriminator, DGNetGenerator, TeacherNet

__all__ = ["OfficialCheckpointError", "checkpoint_kind", "load_official", "official_state_dict"]

_ASPP = {"conv1": "0", "conv6": "1", "conv12": "2", "conv18": "3"}
_GEN_RES = re.compile(r"^(structure_encoder\.model\.\d+|decoder\.model\.\d+)\.model\.(\d+)\.model\.(\d+)\.")
_DIS_RES = re.compile(r"^(nets\.\d+\.model\.\d+)\.model\.(\d+)\.")
_ASPP_KEY = re.compile(r"^(structure_encoder\.model\.\d+)\.(conv1|conv6|conv12|conv18)\.")
_MLP = re.compile(r"^mlp_([wb])(\d+)\.")
_DROPPED = (re.compile(r"\.norm\.running_(mean|var)$"), re.compile(r"^model\.fc\."))


class OfficialCheckpointError(ValueError):
    """An official checkpoint does not map onto our network: names what is missing, unexpected or mis-shaped."""


def checkpoint_kind(state: Mapping[str, Any]) -> str:
    """``generator``, ``discriminator``, ``appearance`` or ``teacher`` from an official state dict's names."""
    keys = list(state)
    if any(k.startswith(("enc_content.", "structure_encoder.")) for k in keys):
        return "generator"
    if any(k.startswith(("cnns.", "nets.")) for k in keys):
        return "discriminator"
    if any(k.startswith("classifier1.") for k in keys):
        return "appearance"
    if any(k.startswith("classifier.") for k in keys):
        return "teacher"
    raise OfficialCheckpointError(
        f"not a DG-Net state dict: none of enc_content.*, cnns.*, classifier1.*, classifier.* in {keys[:4]}..."
    )


def _rename(key: str) -> str:
    key = key.removeprefix("module.")
    if key.startswith("enc_content."):
        key = "structure_encoder." + key[len("enc_content.") :]
    elif key.startswith("dec."):
        key = "decoder." + key[len("dec.") :]
    elif key.startswith("cnns."):
        key = re.sub(r"^cnns\.(\d+)\.", r"nets.\1.model.", key)
    key = _MLP.sub(lambda m: f"mlp_{m[1]}.{int(m[2]) - 1}.", key)
    key = _GEN_RES.sub(lambda m: f"{m[1]}.{m[2]}.conv{int(m[3]) + 1}.", key)
    key = _DIS_RES.sub(lambda m: f"{m[1]}.conv{int(m[2]) + 1}.", key)
    return _ASPP_KEY.sub(lambda m: f"{m[1]}.branches.{_ASPP[m[2]]}.", key)


def official_state_dict(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Rename an official state dict to ours.

    Returns:
        The renamed state dict, and the official names dropped on purpose (AdaIN dummy buffers, ImageNet ``fc``).
    """
    out, dropped = {}, []
    for key, value in state.items():
        bare = key.removeprefix("module.")
        if any(p.search(bare) for p in _DROPPED):
            dropped.append(key)
            continue
        out[_rename(key)] = value
    return out, dropped


def _default_model(kind: str, state: Mapping[str, Tensor]) -> nn.Module:
    if kind == "generator":
        return DGNetGenerator()
    if kind == "discriminator":
        return DGNetDiscriminator()
    if kind == "appearance":
        return AppearanceEncoder(num_classes=int(state["classifier1.classifier.0.weight"].shape[0]))
    return TeacherNet(num_classes=int(state["classifier.classifier.0.weight"].shape[0]))


def _report(path: object, expected: Mapping[str, Tensor], given: Mapping[str, Tensor]) -> tuple[str | None, set]:
    problem, bad = state_dict_mismatch(expected, given)
    return (f"'{path}' does not map onto the DG-Net network: {problem}" if problem else None), bad


def load_official(
    path: str | os.PathLike | Mapping[str, Tensor], model: nn.Module | None = None, strict: bool = True
) -> nn.Module:
    """Read an official DG-Net checkpoint into :class:`DGNetGenerator`, :class:`DGNetDiscriminator`,
    :class:`AppearanceEncoder` or :class:`TeacherNet` (chosen from the names in the file).

    Args:
        path: ``gen_*.pt`` / ``dis_*.pt`` / ``id_*.pt`` (``{"a": state_dict}``), a teacher ``net_last.pth`` (a plain
            state dict), or such a state dict already in memory.
        model: the network to fill; None builds the reference configuration (the class count is read from the heads;
            an appearance encoder gets ``last_stride=1``, a teacher ``last_stride=2``: pass ``model`` otherwise).
        strict: every name and shape must map (besides the names dropped on purpose, see the module docstring).
            ``strict=False`` loads what maps and warns with the list of the rest (the released Market checkpoint is
            reported to carry non-local weights that the default architecture lacks).

    Returns:
        ``model`` (or the new network) with the checkpoint's weights, in eval mode.

    Raises:
        FileNotFoundError: no file at ``path``.
        OfficialCheckpointError: not a DG-Net state dict, or (strict) names missing, unexpected or mis-shaped.
    """
    if isinstance(path, Mapping):
        state, where = path, "<state dict>"
    else:
        where = Path(path)
        if not where.is_file():
            raise FileNotFoundError(f"no official DG-Net checkpoint at '{where}'")
        try:
            state = torch.load(where, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for non-checkpoint bytes
            raise OfficialCheckpointError(
                f"cannot read '{where}' as a torch checkpoint ({type(err).__name__})"
            ) from err
    if isinstance(state, Mapping) and set(state) == {"a"}:
        state = state["a"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise OfficialCheckpointError(f"'{where}' is not a state dict of tensors (gen/dis/id_*.pt or net_last.pth)")
    mapped, _ = official_state_dict(state)
    kind = checkpoint_kind(mapped)
    if model is None:
        model = _default_model(kind, mapped)
    problem, bad = _report(where, model.state_dict(), mapped)
    if problem:
        if strict:
            raise OfficialCheckpointError(problem)
        warnings.warn(problem + " (loaded the rest: strict=False)", stacklevel=2)
        mapped = {k: v for k, v in mapped.items() if k not in bad}
    model.load_state_dict(mapped, strict=strict)
    return model.eval()
