"""nvresearch.pac.load_official on state dicts built from the official code's parameter names and shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nvresearch.pac import load_official
from nvresearch.pac.segmentation.models import FCNWithCRF
from nvresearch.pac.upsampling.models import DJIF, PacJointUpsample, PacJointUpsampleLite


def _conv(prefix: str, out_ch: int, in_ch: int, k: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}.weight": (out_ch, in_ch, k, k)}
    if bias:
        shapes[f"{prefix}.bias"] = (out_ch,)
    return shapes


def _official_pac_x8() -> dict[str, tuple[int, ...]]:
    """``task_jointUpsampling/models.py`` ``PacJointUpsample(8)``: 221,937 parameters (transposed weights in, out)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (o, c) in enumerate([(32, 1), (32, 32), (32, 32)], start=1):
        shapes |= _conv(f"branch_t.conv{i}", o, c, 5)
    for i, (o, c) in enumerate([(32, 3), (32, 32), (48, 32)], start=1):
        shapes |= _conv(f"branch_g.conv{i}", o, c, 5)
    for i in range(3):
        shapes |= _conv(f"up_convts.{i}", 32, 32, 5)
    shapes |= _conv("branch_f.conv1", 32, 32, 5) | _conv("branch_f.conv2", 1, 32, 5)
    return shapes


def _official_djif() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for branch, c_in, widths in (
        ("branch_t", 1, (96, 48, 1)),
        ("branch_g", 3, (96, 48, 1)),
        ("branch_joint", 2, (64, 32, 1)),
    ):
        for idx, width, k in zip((0, 2, 4), widths, (9, 1, 5)):
            shapes |= _conv(f"{branch}.{idx}", width, c_in, k)
            c_in = width
    return shapes


def _official_fcn8s() -> dict[str, tuple[int, ...]]:
    """``task_semanticSegmentation/fcn8s.py`` ``FCN8s(21)``: 39 tensors."""
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = 3
    for stage, (width, depth) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], start=1):
        for i in range(1, depth + 1):
            shapes |= _conv(f"conv{stage}_{i}", width, c_in, 3)
            c_in = width
    shapes |= _conv("fc6", 4096, 512, 7) | _conv("fc7", 4096, 4096, 1)
    shapes |= _conv("score_fr", 21, 4096, 1) | _conv("score_pool3", 21, 256, 1) | _conv("score_pool4", 21, 512, 1)
    shapes |= _conv("upscore2", 21, 21, 4, False) | _conv("upscore8", 21, 21, 16, False)
    return shapes | _conv("upscore_pool4", 21, 21, 4, False)


def _random(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: torch.randn(s) for k, s in shapes.items()}


def _cheap(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """One distinct value per tensor, stored as an expanded scalar (a 134M-parameter file of a few kilobytes)."""
    return {k: torch.full((), float(i)).expand(s) for i, (k, s) in enumerate(shapes.items())}


def test_joint_upsampling_files_by_name_and_by_keys(tmp_path: Path) -> None:
    state = _random(_official_pac_x8())
    assert sum(t.numel() for t in state.values()) == 221_937
    torch.save(state, tmp_path / "x8_pac_weights_epoch_5000.pth")
    net = load_official(tmp_path / "x8_pac_weights_epoch_5000.pth")
    assert type(net) is PacJointUpsample and net.factor == 8 and not net.training
    torch.testing.assert_close(net.branch_g.conv3.weight, state["branch_g.conv3.weight"])
    # the official transposed layer correlates with the unflipped weight: ours holds it flipped
    torch.testing.assert_close(net.up_convts[1].weight, state["up_convts.1.weight"].flip(-2, -1))
    torch.save(state, tmp_path / "renamed.pth")  # no name: the layout and factor come from the keys
    by_keys = load_official(tmp_path / "renamed.pth", channels=2)
    assert type(by_keys) is PacJointUpsample and by_keys.factor == 8 and by_keys.channels == 2
    lite = PacJointUpsampleLite(4).state_dict()
    torch.save({k: torch.randn_like(v) for k, v in lite.items()}, tmp_path / "lite.pth")
    assert type(load_official(tmp_path / "lite.pth")) is PacJointUpsampleLite
    with pytest.raises(ValueError, match="factor 4 but the file has 3 upsampling layers"):
        load_official(tmp_path / "renamed.pth", factor=4)


def test_djif_files_need_a_factor(tmp_path: Path) -> None:
    state = _random(_official_djif())
    assert sum(t.numel() for t in state.values()) == 56_323
    torch.save(state, tmp_path / "x16_djif_weights_epoch_5000.pth")
    net = load_official(tmp_path / "x16_djif_weights_epoch_5000.pth", channels=2)  # a flow file
    assert type(net) is DJIF and net.factor == 16 and net.channels == 2
    torch.testing.assert_close(net.branch_joint[4].weight, state["branch_joint.4.weight"])
    torch.save(state, tmp_path / "djif.pth")
    with pytest.raises(ValueError, match="djif.pth: a DJIF checkpoint does not record its factor"):
        load_official(tmp_path / "djif.pth")
    assert load_official(tmp_path / "djif.pth", factor=4).factor == 4


def test_strict_key_check_reports_what_did_not_map(tmp_path: Path) -> None:
    state = _random(_official_djif())
    del state["branch_g.2.bias"]
    state["branch_g.2.weight"] = torch.randn(48, 96, 3, 3)
    state["up_bns.0.weight"] = torch.ones(3)
    torch.save(state, tmp_path / "x8_djif_weights_epoch_5000.pth")
    with pytest.raises(
        ValueError,
        match=r"missing: branch_g\.2\.bias; unexpected: up_bns\.0\.weight; shape: "
        r"branch_g\.2\.weight \(48, 96, 3, 3\) vs ours \(48, 96, 1, 1\)",
    ):
        load_official(tmp_path / "x8_djif_weights_epoch_5000.pth")
    with pytest.warns(UserWarning, match="missing: branch_g.2.bias"):
        net = load_official(tmp_path / "x8_djif_weights_epoch_5000.pth", strict=False)
    torch.testing.assert_close(net.branch_t[0].weight, state["branch_t.0.weight"])  # what maps is loaded


def test_segmentation_files(tmp_path: Path) -> None:
    fcn = _official_fcn8s()
    crf = {f"backbone.{k}": s for k, s in fcn.items()}
    crf |= {
        "crf.unary_weight": (),
        "crf.messengers.0.weight": (21, 21, 5, 5),
        "crf.messengers.1.weight": (21, 21, 5, 5),
    }
    crf |= {"crf.pairwise_weights.0": (), "crf.pairwise_weights.1": (), "feat_scales.0": (3,), "feat_scales.1": (3,)}
    state = _cheap(crf)
    torch.save(state, tmp_path / "fcn8s_paccrf_epoch_30.pth")
    net = load_official(tmp_path / "fcn8s_paccrf_epoch_30.pth")
    assert isinstance(net, FCNWithCRF) and len(net.crf.messengers) == 2
    assert [m.dilation for m in net.crf.messengers] in ([64, 16], [(64, 64), (16, 16)])
    assert net.backbone.fc7.weight.min() == state["backbone.fc7.weight"][0, 0, 0, 0]
    assert net.crf.messengers[1].weight.max() == state["crf.messengers.1.weight"].max()
    del net, state
    torch.save(_cheap(fcn), tmp_path / "fcn8s_from_caffe.pth")
    backbone = load_official(tmp_path / "fcn8s_from_caffe.pth")
    assert backbone.crf is None and backbone.backbone.upscore8.weight.max() == len(fcn) - 2


def test_unreadable_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        load_official(tmp_path / "nothere.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="junk.pth is not a torch state dict"):
        load_official(tmp_path / "junk.pth")
    torch.save({"a": torch.ones(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth: not a released PAC checkpoint layout"):
        load_official(tmp_path / "other.pth")
