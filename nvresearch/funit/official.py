"""Read the official FUNIT generator checkpoints (NVlabs/FUNIT ``gen_%08d.pt``, e.g. ``animal119_gen_00200000.pt``).

The official file holds ``{"gen": state dict, "gen_test": state dict}`` (the trained generator and its moving
average, which the official ``test_k_shot.py`` translates with). Its parameter names follow the official modules
(``enc_content``, ``enc_class_model``, ``dec``, ``mlp``); :func:`official_to_ours` renames them to
:class:`~nvresearch.funit.models.FewShotGenerator`'s, and :func:`load_official` infers the configuration from the
shapes, builds the generator and loads the weights with a strict key check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from nvresearch.funit.models import FewShotGenerator

# (official pattern, our name) for the plain convolutions and linear layers; residual blocks in _rename
_RULES = [
    (r"enc_class_model\.model\.(\d+)\.(.+)", r"class_encoder.model.\1.\2"),
    (r"enc_content\.model\.(\d+)\.conv\.(weight|bias)", r"content_encoder.model.\1.conv.\2"),
    (r"dec\.model\.(\d+)\.conv\.(weight|bias)", r"decoder.model.\1.conv.\2"),
    (r"mlp\.model\.(\d+)\.fc\.(weight|bias)", r"mlp.model.\1.fc.\2"),
]
# the official AdaIN layers keep running_mean / running_var buffers that they never update or use
_UNUSED = re.compile(r"dec\.model\.0\.model\.\d+\.model\.\d+\.norm\.running_(mean|var)")


def _rename(key: str) -> str | None:
    m = re.fullmatch(r"enc_content\.model\.(\d+)\.model\.(\d+)\.model\.(\d+)\.conv\.(weight|bias)", key)
    if m:
        return f"content_encoder.model.{m[1]}.{m[2]}.conv{int(m[3]) + 1}.conv.{m[4]}"
    m = re.fullmatch(r"dec\.model\.0\.model\.(\d+)\.model\.(\d+)\.conv\.(weight|bias)", key)
    if m:
        return f"decoder.model.0.{m[1]}.conv{int(m[2]) + 1}.conv.{m[3]}"
    for pattern, target in _RULES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, target, key)
    return None


def official_to_ours(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """Rename an official generator state dict to :class:`FewShotGenerator` names.

    Returns:
        ``(renamed, ignored, unmapped)``: the renamed tensors; the official keys deliberately dropped (the AdaIN
        layers' unused running statistics); and the official keys no rule maps (a different or damaged file).
    """
    renamed, ignored, unmapped = {}, [], []
    for key, value in state_dict.items():
        if _UNUSED.fullmatch(key):
            ignored.append(key)
            continue
        new = _rename(key)
        if new is None:
            unmapped.append(key)
        else:
            renamed[new] = value
    return renamed, ignored, unmapped


def _count(keys: list[str], pattern: str) -> int:
    return len({re.fullmatch(pattern, k)[1] for k in keys if re.fullmatch(pattern, k)})  # type: ignore[index]


def official_config(state_dict: Mapping[str, Tensor]) -> dict[str, int]:
    """The :class:`FewShotGenerator` arguments of an official generator state dict, read from its shapes."""
    keys = list(state_dict)
    try:
        return {
            "nf": int(state_dict["enc_content.model.0.conv.weight"].shape[0]),
            "num_downs_content": _count(keys, r"enc_content\.model\.(\d+)\.conv\.weight") - 1,
            "num_downs_class": _count(keys, r"enc_class_model\.model\.(\d+)\.conv\.weight") - 1,
            "num_res": _count(keys, r"enc_content\.model\.\d+\.model\.(\d+)\.model\.0\.conv\.weight"),
            "latent_dim": int(state_dict["mlp.model.0.fc.weight"].shape[1]),
            "mlp_dim": int(state_dict["mlp.model.0.fc.weight"].shape[0]),
            "mlp_blocks": _count(keys, r"mlp\.model\.(\d+)\.fc\.weight"),
        }
    except KeyError as err:
        raise ValueError(f"not an official FUNIT generator state dict: key {err} is missing") from err


def load_official(path: str | Path, key: str = "gen_test", strict: bool = True) -> FewShotGenerator:
    """Build a :class:`FewShotGenerator` from an official FUNIT generator checkpoint.

    Args:
        path: the official ``gen_*.pt`` file (``{"gen": ..., "gen_test": ...}``) or a bare generator state dict.
        key: which generator of the file: ``gen_test`` (the moving average, what the official test script
            translates with) or ``gen``.
        strict: raise when any official tensor is left unmapped or any of ours is missing; otherwise only report.

    Returns:
        The generator in eval mode, configured from the checkpoint's shapes (the released models: the official
        ``configs/funit_animals.yaml``, i.e. ``FewShotGenerator()``). Its ``official_report`` attribute lists the
        ignored, unmapped and missing keys.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"official FUNIT checkpoint not found: '{p}'")
    ckpt = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"'{p}': expected a dict, got {type(ckpt).__name__}")
    if "gen" in ckpt or "gen_test" in ckpt:
        if key not in ckpt:
            raise KeyError(f"'{p}' has no '{key}' generator; it holds {sorted(ckpt)}")
        state = ckpt[key]
    else:
        state = ckpt
    renamed, ignored, unmapped = official_to_ours(state)
    gen = FewShotGenerator(**official_config(state))
    ours = gen.state_dict()
    missing = sorted(set(ours) - set(renamed))
    shape = [
        f"{k}: {tuple(v.shape)} vs ours {tuple(ours[k].shape)}"
        for k, v in renamed.items()
        if k in ours and v.shape != ours[k].shape
    ]
    report = {"ignored": ignored, "unmapped": unmapped, "missing": missing, "shape_mismatch": shape}
    if shape or (strict and (unmapped or missing)):
        raise ValueError(
            f"'{p}' ({key}) does not map onto FewShotGenerator: {len(unmapped)} unmapped official keys "
            f"{unmapped[:3]}, {len(missing)} missing keys {missing[:3]}, shape mismatches {shape[:3]}"
        )
    gen.load_state_dict({k: v for k, v in renamed.items() if k in ours}, strict=False)
    gen.official_report = report  # type: ignore[attr-defined]
    return gen.eval()
