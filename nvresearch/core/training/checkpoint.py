"""Checkpoints that rebuild their own model: the resolved run config travels inside every checkpoint.

Loading never unpickles arbitrary objects (``torch.load(weights_only=True)``), and the embedded config may only
build classes from an allow-list of packages, so a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nvresearch.core.training.errors import NoCheckpointError, UserError
from nvresearch.core.utils.instantiate import instantiate

CONFIG_KEY = "nvresearch"
"""Top-level checkpoint key holding ``{"config": <resolved run config>, "version": <library version>}``."""

ALLOWED_TARGETS: tuple[str, ...] = ("nvresearch.", "torch.nn.", "torch.optim.", "torchvision.models.")
"""Import-path prefixes that a checkpoint's embedded config may instantiate."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file is unreadable, unsafe, or was not written by nvresearch."""


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dictionary safely (tensors, numbers, strings and containers only).

    Raises:
        NoCheckpointError: ``path`` does not exist (a ``FileNotFoundError``).
        CheckpointError: the file holds pickled Python objects (refused: unpickling can execute code), or it is not
            a readable checkpoint (empty, truncated, or not written by ``torch.save``).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise NoCheckpointError(f"checkpoint not found: '{p}'")
    if p.stat().st_size == 0:
        raise CheckpointError(f"'{p}' is not a readable checkpoint: the file is empty")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's safe unpickler names the class it refused ("Unsupported global" / "not an allowed global"); any
        # other unpickling failure (e.g. "Unsupported operand") means the bytes are not a pickle at all.
        if "global" not in str(err):
            raise CheckpointError(
                f"'{p}' is not a readable checkpoint (not a file written by torch.save, or damaged)"
            ) from err
        refused = re.search(r"GLOBAL (\S+)", str(err))
        raise CheckpointError(
            f"refusing to load '{p}': it contains pickled Python objects, not only tensors and plain containers"
            + (f" (a {refused.group(1)})" if refused else "")
            + ". Unpickling such a file can execute arbitrary code, so nvresearch never does it."
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"'{p}' is not a readable checkpoint (damaged or truncated: {reason[:200]})") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"'{p}' is not a checkpoint dictionary (got {type(ckpt).__name__})")
    return ckpt


MOVED_TARGETS: dict[str, str] = {
    **{f"nvresearch.pac.{old}.": f"nvresearch.pac.upsampling.{old}." for old in ("models", "module", "datamodule")},
    "nvresearch.pac.seg_models.": "nvresearch.pac.segmentation.models.",
    "nvresearch.pac.seg_module.": "nvresearch.pac.segmentation.module.",
    "nvresearch.pac.seg_datamodule.": "nvresearch.pac.segmentation.datamodule.",
}
"""Import paths that moved since a checkpoint may have been written (old prefix -> new prefix)."""


def _update_moved_targets(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _update_moved_targets(v) for k, v in node.items()}
        target = node.get("_target_")
        if isinstance(target, str):
            for old, new in MOVED_TARGETS.items():
                if target.startswith(old):
                    node["_target_"] = new + target.removeprefix(old)
        return node
    if isinstance(node, list):
        return [_update_moved_targets(v) for v in node]
    return node


def checkpoint_config(ckpt: dict[str, Any], path: str | Path = "<checkpoint>") -> dict[str, Any]:
    """The resolved run config embedded in a checkpoint dictionary (import paths that moved since: updated)."""
    meta = ckpt.get(CONFIG_KEY)
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise CheckpointError(
            f"'{path}' has no embedded nvresearch config (key '{CONFIG_KEY}'); it was not written by nvresearch.train"
        )
    return _update_moved_targets(meta["config"])


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    strict: bool = True,
    extra_allowed_targets: Sequence[str] = (),
) -> Any:
    """Rebuild a trained model from a checkpoint alone, without Hydra.

    Args:
        path: a checkpoint written by ``nvresearch.train``.
        map_location: device for the loaded tensors.
        strict: passed to ``load_state_dict``.
        extra_allowed_targets: import-path prefixes to trust besides :data:`ALLOWED_TARGETS` (your own modules).

    Returns:
        The paper's LightningModule in eval mode with the trained weights; its ``config`` attribute holds the
        resolved run config, and paper modules expose their torch network(s) as plain attributes (e.g. ``.net``).
    """
    ckpt = read_checkpoint(path, map_location)
    config = checkpoint_config(ckpt, path)
    if "model" not in config:
        raise CheckpointError(f"the config embedded in '{path}' has no 'model' section")
    module = instantiate(config["model"], allowed_prefixes=(*ALLOWED_TARGETS, *extra_allowed_targets))
    module.load_state_dict(ckpt["state_dict"], strict=strict)
    module.config = config
    return module.eval()
