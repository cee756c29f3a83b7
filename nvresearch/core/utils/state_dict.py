"""Comparing a state dict read from a file with a model's own, for the papers' ``load_official`` (torch-only)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor


def state_dict_mismatch(
    expected: Mapping[str, Tensor], given: Mapping[str, Tensor], shown: int = 5
) -> tuple[str | None, set[str]]:
    """What keeps ``given`` from loading into a model whose state dict is ``expected``.

    Args:
        expected: the model's ``state_dict()``.
        given: the state dict read from the file, already renamed to the model's names.
        shown: how many names of each kind the message lists before "and N more".

    Returns:
        A one-line description (``"2 missing: a, b; 1 wrong shape: c (3,) (ours (4,))"``), or ``None`` when every name
        and shape matches; and the names of ``given`` that cannot be loaded (unexpected or of the wrong shape), for a
        non-strict load that skips them.

    Example:
        >>> import torch
        >>> message, bad = state_dict_mismatch({"w": torch.zeros(2)}, {"w": torch.zeros(3), "b": torch.zeros(1)})
        >>> message, sorted(bad)
        ('1 unexpected: b; 1 wrong shape: w (3,) (ours (2,))', ['b', 'w'])
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(k for k in set(expected) & set(given) if tuple(given[k].shape) != tuple(expected[k].shape))
    shapes = [f"{k} {tuple(given[k].shape)} (ours {tuple(expected[k].shape)})" for k in wrong]
    parts = []
    for name, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" and {len(items) - shown} more" if len(items) > shown else ""
            parts.append(f"{len(items)} {name}: {', '.join(items[:shown])}{more}")
    return ("; ".join(parts) if parts else None), set(unexpected) | set(wrong)
