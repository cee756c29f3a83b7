"""``load_official``: released SCOPS checkpoints (official names and shapes) into our network, strictly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nvresearch.scops import OfficialCheckpointError, PartSegmenter, load_official, load_official_basis

SMALL = {"blocks": (1, 1, 1, 1), "base_channels": 4}


def _official_names(model: PartSegmenter, prefix: str = "", counters: bool = True) -> dict[str, torch.Tensor]:
    """Our state dict under the official names (``layer5.conv2d_list.i``), as ``train.py`` saves it."""
    out = {}
    for k, v in model.state_dict().items():
        if not counters and k.endswith("num_batches_tracked"):
            continue  # torch 0.4.0 files have no counters
        out[prefix + k.replace("aspp.convs.", "layer5.conv2d_list.")] = v.clone()
    return out


def test_load_official_round_trip_infers_k(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = PartSegmenter(5, **SMALL).eval()
    path = tmp_path / "model_100000.pth"
    torch.save(_official_names(src, prefix="module.", counters=False), path)
    net = load_official(path, **SMALL).eval()
    assert net.num_parts == 5
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(net(x), src(x))


def test_load_official_reports_what_does_not_map(tmp_path: Path) -> None:
    state = _official_names(PartSegmenter(3, **SMALL))
    del state["layer2.0.conv1.weight"]
    state["layer5.conv2d_list.4.weight"] = torch.zeros(4, 64, 3, 3)
    state["conv1.weight"] = torch.zeros(4, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(OfficialCheckpointError) as err:
        load_official(tmp_path / "bad.pth", **SMALL)
    msg = str(err.value)
    assert "bad.pth" in msg and "1 missing: ['layer2.0.conv1.weight']" in msg
    assert "1 unexpected: ['aspp.convs.4.weight']" in msg and "conv1.weight (4, 3, 3, 3) (ours (4, 3, 7, 7))" in msg
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(OfficialCheckpointError, match="not a SCOPS DeepLab checkpoint"):
        load_official(tmp_path / "other.pth")
    with pytest.raises(FileNotFoundError, match="none.pth"):
        load_official(tmp_path / "none.pth")


def test_load_official_basis(tmp_path: Path) -> None:
    w = torch.randn(4, 6)
    torch.save({"W": w.relu(), "W_state_dict": {"w": w}}, tmp_path / "BASIS_5000.pth")
    basis = load_official_basis(tmp_path / "BASIS_5000.pth")
    assert torch.equal(basis(), w.relu())
    torch.save({"W": w}, tmp_path / "bad.pth")
    with pytest.raises(OfficialCheckpointError, match="W_state_dict.w"):
        load_official_basis(tmp_path / "bad.pth")
