"""The state-dict comparison behind the papers' ``load_official``."""

from __future__ import annotations

import torch

from nvresearch.core.utils.state_dict import state_dict_mismatch


def test_a_matching_state_dict_has_no_message() -> None:
    state = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    assert state_dict_mismatch(state, {k: v.clone() for k, v in state.items()}) == (None, set())


def test_missing_unexpected_and_wrong_shapes_are_named_and_counted() -> None:
    expected = {f"k{i}": torch.zeros(1) for i in range(8)} | {"w": torch.zeros(2, 3)}
    given = {"w": torch.zeros(3, 2), "x": torch.zeros(1), "k0": torch.zeros(1)}
    message, bad = state_dict_mismatch(expected, given)
    assert message == "7 missing: k1, k2, k3, k4, k5 and 2 more; 1 unexpected: x; 1 wrong shape: w (3, 2) (ours (2, 3))"
    assert bad == {"x", "w"}
    assert state_dict_mismatch(expected, given, shown=7)[0].startswith("7 missing: k1, k2, k3, k4, k5, k6, k7; ")
