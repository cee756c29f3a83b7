"""PAC joint optical-flow upsampling (.flo files, Sintel layout, procedural flow, EPE) and the depth baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nvresearch.core.data import DatasetLayoutError
from nvresearch.pac.upsampling.data import (
    FLO_MAGIC,
    JointUpsamplingDataset,
    SintelFlow,
    SyntheticFlow,
    read_flo,
    write_flo,
)
from nvresearch.pac.upsampling.models import DJIF, DJIFResidual, PacJointUpsample, PacJointUpsampleLite


# ----------------------------------------------------------------------------------------------------------------------
# Baseline networks of the tables (spec B.1)
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("factor", "lite", "djif"), [(4, 55_509, 56_323), (8, 56_273, 56_323), (16, 55_777, 56_323)])
def test_lite_and_djif_parameter_counts(factor: int, lite: int, djif: int) -> None:
    assert sum(p.numel() for p in PacJointUpsampleLite(factor).parameters()) == lite
    assert sum(p.numel() for p in DJIF(factor).parameters()) == djif


def test_lite_widths_and_forward() -> None:
    net = PacJointUpsampleLite(8, channels=2)
    assert [m.out_channels for m in net.up_convts] == [12, 16, 16]
    assert net.branch_f.conv1.out_channels == 20 and net.branch_g[-1].out_channels == 36  # k_ch 12 x 3 stages
    out = net(torch.rand(2, 2, 3, 4), torch.rand(2, 3, 24, 32))
    assert out.shape == (2, 2, 24, 32)
    with pytest.raises(ValueError, match="factors"):
        PacJointUpsampleLite(2)
    with pytest.raises(ValueError, match="f_filters"):
        PacJointUpsample(4, f_filters=(8, 8))


def test_pac_residual_predicts_a_correction_of_bilinear() -> None:
    torch.manual_seed(0)
    net = PacJointUpsample(4, channels=2, n_t_filters=4, n_g_filters=4, n_f_filters=4, k_ch=2, residual=True)
    plain = PacJointUpsample(4, channels=2, n_t_filters=4, n_g_filters=4, n_f_filters=4, k_ch=2)
    plain.load_state_dict(net.state_dict())  # the option adds no parameters
    lr, guide = torch.rand(2, 2, 3, 5), torch.rand(2, 3, 12, 20)
    up = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bilinear", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(net(lr, guide), plain(lr, guide) + up)
        net.branch_f[-1].weight.zero_()
        net.branch_f[-1].bias.zero_()
        torch.testing.assert_close(net(lr, guide), up)  # zero correction: exactly the bilinear upsampling


def test_djif_residual_starts_near_bilinear_and_folds_channels() -> None:
    torch.manual_seed(0)
    net = DJIFResidual(4, channels=2)
    lr, guide = torch.rand(1, 2, 3, 3), torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        for conv in (net.branch_joint[4],):
            conv.weight.zero_()
            conv.bias.zero_()
        up = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bilinear", align_corners=False)
        torch.testing.assert_close(net(lr, guide), up)  # zero residual: exactly the bilinear upsampling
    one = DJIFResidual(4, channels=1)
    one.load_state_dict(net.state_dict())
    torch.testing.assert_close(net(lr, guide)[:, 1:], one(lr[:, 1:], guide))


# ----------------------------------------------------------------------------------------------------------------------
# .flo and Sintel
# ----------------------------------------------------------------------------------------------------------------------
def test_flo_roundtrip_and_byte_layout(tmp_path: Path) -> None:
    flow = torch.randn(2, 3, 5)
    write_flo(tmp_path / "a.flo", flow)
    raw = (tmp_path / "a.flo").read_bytes()
    assert raw[:4] == b"PIEH" and np.frombuffer(raw[:4], "<f4")[0] == np.float32(FLO_MAGIC)
    assert np.frombuffer(raw[4:12], "<i4").tolist() == [5, 3]  # width, then height
    assert np.frombuffer(raw[12:20], "<f4").tolist() == [flow[0, 0, 0].item(), flow[1, 0, 0].item()]  # (u, v) pairs
    torch.testing.assert_close(read_flo(tmp_path / "a.flo"), flow)


def test_flo_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.flo"):
        read_flo(tmp_path / "nope.flo")
    (tmp_path / "bad.flo").write_bytes(b"XXXX" + np.array([2, 2], "<i4").tobytes())
    with pytest.raises(ValueError, match="not a .flo file"):
        read_flo(tmp_path / "bad.flo")
    write_flo(tmp_path / "short.flo", torch.zeros(2, 4, 4))
    (tmp_path / "short.flo").write_bytes((tmp_path / "short.flo").read_bytes()[:-8])
    with pytest.raises(ValueError, match="expected 32 flow values"):
        read_flo(tmp_path / "short.flo")
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        write_flo(tmp_path / "x.flo", torch.zeros(3, 2, 2))


def _write_sintel(root: Path, scenes: dict[str, int], h: int = 6, w: int = 8) -> dict[str, torch.Tensor]:
    """``training/{clean,flow}/<scene>/frame_XXXX`` with ``n`` frames and ``n - 1`` flows per scene."""
    import cv2

    rng = np.random.default_rng(0)
    flows = {}
    for scene, n in scenes.items():
        (root / "training" / "clean" / scene).mkdir(parents=True)
        (root / "training" / "flow" / scene).mkdir(parents=True)
        for k in range(1, n + 1):
            cv2.imwrite(str(root / "training/clean" / scene / f"frame_{k:04d}.png"), rng.integers(0, 255, (h, w, 3)))
            if k < n:
                flow = torch.from_numpy(rng.normal(size=(2, h, w)).astype(np.float32))
                write_flo(root / "training/flow" / scene / f"frame_{k:04d}.flo", flow)
                flows[f"{scene}/{k}"] = flow
    return flows


def test_sintel_loader_layout_and_reference_split(tmp_path: Path) -> None:
    flows = _write_sintel(tmp_path, {"alley_1": 4, "ambush_6": 3, "bamboo_2": 28})
    train, val = SintelFlow(tmp_path, "train"), SintelFlow(tmp_path, "val")
    # alley_1: 3 train pairs; ambush_6: all 2 pairs val; bamboo_2: 27 pairs, the last 25 val
    assert (len(train), len(val), len(SintelFlow(tmp_path, "all"))) == (5, 27, 32)
    sample = train[3]  # bamboo_2 frame 1
    assert sample["image"].shape == (3, 6, 8) and 0 <= float(sample["image"].min())
    torch.testing.assert_close(sample["flow"], flows["bamboo_2/1"])
    torch.testing.assert_close(val[0]["flow"], flows["ambush_6/1"])
    (tmp_path / "split.txt").write_text("\n".join(["2"] * 3 + ["1"] * 29) + "\n")
    assert len(SintelFlow(tmp_path, "val", split_file=tmp_path / "split.txt")) == 3
    # as a joint-upsampling sample: the whole 6x8 frame is kept at evaluation, LR by anti-aliased bilinear resizing
    ds = JointUpsamplingDataset(val, factor=4, lowres_mode="bilinear", target_key="flow", eval_full_size=True)
    s = ds[0]
    assert s["target"].shape == (2, 6, 8) and s["lowres"].shape == (2, 2, 2)


def test_sintel_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"(?s)training/clean.*MPI-Sintel-complete"):
        SintelFlow(tmp_path, "train")
    _write_sintel(tmp_path, {"alley_1": 3})
    (tmp_path / "training/flow/alley_1/frame_0001.flo").unlink()
    with pytest.raises(DatasetLayoutError, match="3 frames .* but 1 flows"):
        SintelFlow(tmp_path, "train")
    with pytest.raises(ValueError, match="pass_name"):
        SintelFlow(tmp_path, "train", pass_name="dark")


def test_synthetic_flow_is_deterministic_and_edges_coincide() -> None:
    ds = SyntheticFlow(6, height=48, width=64, seed=0)
    a, b = ds[2], SyntheticFlow(6, height=48, width=64, seed=0)[2]
    torch.testing.assert_close(a["flow"], b["flow"])
    assert a["image"].shape == (3, 48, 64) and a["flow"].shape == (2, 48, 64)
    # flow discontinuities (a jump over 0.5 px between neighbours) lie on colour edges
    on_edge, total = 0, 0
    for i in range(6):
        s = ds[i]
        jump = (s["flow"][:, :, 1:] - s["flow"][:, :, :-1]).abs().amax(0) > 0.5
        colour = (s["image"][:, :, 1:] - s["image"][:, :, :-1]).abs().amax(0) > 0.03
        on_edge += int((jump & colour).sum())
        total += int(jump.sum())
    assert total > 50 and on_edge / total > 0.8, (on_edge, total)
    assert float(ds[0]["flow"].abs().max()) > 2.0  # objects move by several pixels


# ----------------------------------------------------------------------------------------------------------------------
# Training module with end-point error
# ----------------------------------------------------------------------------------------------------------------------
def test_module_epe_and_resize_back_for_non_multiple_sizes() -> None:
    from nvresearch.pac.upsampling.data import normalize_lowres
    from nvresearch.pac.upsampling.metrics import denormalize, per_image_epe
    from nvresearch.pac.upsampling.models import Bilinear
    from nvresearch.pac.upsampling.module import JointUpsamplingModule

    module = JointUpsamplingModule(Bilinear(4), metric="epe")
    target = torch.randn(1, 2, 18, 24)  # 18 rows: not a multiple of 4, like Sintel's 436 at x8
    lr, lo, scale = normalize_lowres(torch.randn(1, 2, 5, 6))
    batch = {"lowres": lr, "guide": torch.rand(1, 3, 18, 24), "target": target, "lr_min": lo, "lr_scale": scale}
    preds = module._predictions(batch)
    assert set(preds) == {"epe", "epe_bilinear", "epe_bicubic"}
    # the net ran at 20x24 and was resized back to 18x24
    net = torch.nn.functional.interpolate(lr, size=(20, 24), mode="bilinear", align_corners=False)
    net = torch.nn.functional.interpolate(net, size=(18, 24), mode="bilinear", align_corners=False)
    torch.testing.assert_close(preds["epe"], denormalize(net, lo, scale))
    assert per_image_epe(preds["epe"], target).shape == (1,)
    with pytest.raises(ValueError, match="metric"):
        JointUpsamplingModule(Bilinear(4), metric="psnr")
