"""Read the released FAZE checkpoints (NVlabs/few_shot_gaze) into our networks (CONTRACT section 2).

Two kinds of file are released (``outputs_of_full_train_test_and_plot.zip``):

- the DT-ED weights (``checkpoints/at_step_*.pth.tar``): a plain state dict of 51 tensors whose names equal
  :class:`~nvresearch.faze.models.DTED`'s, prefixed ``module.`` when saved from a (Distributed)DataParallel wrapper;
- the meta-learned gaze MLPs (``MAML_<k>/<...>.pth.tar``): ``layer01.weights`` (64, 6), ``layer01.bias``,
  ``layer02.weights`` (3, 64), ``layer02.bias``, read into :class:`~nvresearch.faze.models.GazeMLP` (SELU).

Example::

    from nvresearch.faze import load_official

    dted = load_official("at_step_0057101.pth.tar")  # DTED at the reference configuration
    mlp = load_official("MAML_09/meta_learned_parameters.pth.tar")  # GazeMLP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nvresearch.core.utils.state_dict import state_dict_mismatch
from nvresearch.faze.models import DTED, GazeMLP

__all__ = ["OfficialCheckpointError", "load_official", "official_state_dict"]

# The official MAML MLP's names (2_meta_learning.py, GazeEstimationModel.state_dict) -> GazeMLP's.
_MLP_NAMES = {
    "layer01.weights": "layer1.weight",
    "layer01.bias": "layer1.bias",
    "layer02.weights": "layer2.weight",
    "layer02.bias": "layer2.bias",
}


class OfficialCheckpointError(ValueError):
    """A released checkpoint does not map onto our network: names what is missing, unexpected or mis-shaped."""


def _is_mlp(state: Mapping[str, Any]) -> bool:
    return any(key in _MLP_NAMES for key in state)


def official_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an official state dict to ours: strip ``module.``; rename the MAML MLP's ``layerNN.weights``."""
    out = {}
    for key, value in state.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        out[_MLP_NAMES.get(key, key)] = value
    return out


def _report(path: Path, expected: Mapping[str, Tensor], given: Mapping[str, Tensor]) -> str | None:
    problem, _ = state_dict_mismatch(expected, given)
    return f"'{path}' does not map onto the FAZE network: {problem}" if problem else None


def load_official(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Read a released FAZE checkpoint into a :class:`DTED` or :class:`GazeMLP` (strict: every name and shape).

    Args:
        path: a DT-ED state dict (``at_step_*.pth.tar``) or a MAML MLP (``layer01.weights`` ...), CPU or CUDA saved.
        model: the network to fill; None builds :class:`DTED` at the reference configuration (64 / 2 / 16, growth
            rate 32, decoder input 32, 64x256) or ``GazeMLP(6, 64, 'selu')`` as the file's names say.

    Returns:
        ``model`` (or the new network) with the checkpoint's weights, in eval mode.

    Raises:
        FileNotFoundError: no file at ``path``.
        OfficialCheckpointError: the file is not a state dict, or names are missing, unexpected or mis-shaped
            (all listed, not silently skipped as the official loader's ``strict=local_rank`` does).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no official FAZE checkpoint at '{path}'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for non-checkpoint bytes
        raise OfficialCheckpointError(f"cannot read '{path}' as a torch checkpoint ({type(err).__name__})") from err
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise OfficialCheckpointError(f"'{path}' is not a state dict of tensors (a released DT-ED or MAML file)")
    if model is None:
        if _is_mlp({k.removeprefix("module."): v for k, v in state.items()}):
            w = state.get("layer01.weights", state.get("module.layer01.weights"))
            model = GazeMLP(int(w.shape[1]) if w is not None else 6, int(w.shape[0]) if w is not None else 64)
        else:
            model = DTED()
    mapped = official_state_dict(state)
    problem = _report(path, model.state_dict(), mapped)
    if problem:
        raise OfficialCheckpointError(problem)
    model.load_state_dict(mapped, strict=True)
    return model.eval()
