"""vinterp losses against values computed by hand on 2x3 constant frames (spec A.5-A.7)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nvresearch.vinterp import CycleOutput, Interpolation, SuperSloMo
from nvresearch.vinterp.losses import (
    LossWeights,
    cycle_consistency_loss,
    cycle_terms,
    perceptual_loss,
    pseudo_targets,
    smoothness_loss,
    supervised_loss,
    supervised_terms,
)

H, W = 2, 3


def _img(value: float) -> torch.Tensor:
    return torch.full((1, 1, H, W), float(value))


def _ramp() -> torch.Tensor:
    """u = [0, 1, 3] on both rows, v = 0: horizontal differences 1, 2 -> smoothness 6 / 8 = 0.75."""
    flow = torch.zeros(1, 2, H, W)
    flow[0, 0] = torch.tensor([[0.0, 1.0, 3.0], [0.0, 1.0, 3.0]])
    return flow


def _out_of_image() -> torch.Tensor:
    """u = 5 everywhere: every sample falls outside the 3-pixel-wide image, so the warp is 0."""
    flow = torch.zeros(1, 2, H, W)
    flow[0, 0] = 5.0
    return flow


def _interp(frame: float, **kw: torch.Tensor) -> Interpolation:
    zero = torch.zeros(1, 2, H, W)
    fields = {name: kw.get(name, zero) for name in Interpolation._fields}
    fields["frame"] = _img(frame)
    for name in ("warped0_raw", "warped1_raw"):
        fields[name] = kw.get(name, _img(0))
    fields["visibility0"] = torch.full((1, 1, H, W), 0.5)
    return Interpolation(**fields)


def test_smoothness_by_hand() -> None:
    assert smoothness_loss(_ramp()).item() == pytest.approx(0.75)
    flow = torch.zeros(1, 2, H, W)
    flow[0, 1, 1] = 4.0  # v jumps by 4 between the rows: vertical term 3 * 4 / 6 = 2
    assert smoothness_loss(flow).item() == pytest.approx(2.0)


def test_perceptual_is_feature_mse_of_frames_over_255() -> None:
    assert perceptual_loss(nn.Identity(), _img(15), _img(16)).item() == pytest.approx(1 / 255**2, rel=1e-5)
    assert perceptual_loss(None, _img(15), _img(16)).item() == 0.0


def test_supervised_terms_by_hand() -> None:
    """I0 = 10, I1 = 20, I_t* = 16, I_t = 15, raw warps 12 and 19, F01 = ramp, F10 = out of the image:
    rec |15 - 16| = 1; warp |12-16| + |19-16| + mean|W(I0, F10) - I1| = |0 - 20| + mean|W(I1, F01) - I0| =
    mean(|20-10|, |20-10|, |0-10|) = 10 -> 37; smooth 0.75 (F01) + 0; total 0.8 + 0.4 * 37 + 0.75 = 16.35."""
    out = _interp(15, warped0_raw=_img(12), warped1_raw=_img(19), flow_01=_ramp(), flow_10=_out_of_image())
    terms = supervised_terms(out, _img(10), _img(16), _img(20))
    expected = {"rec": 1.0, "perceptual": 0.0, "warp": 37.0, "smooth": 0.75, "total": 16.35}
    assert {k: round(v.item(), 5) for k, v in terms.items()} == expected
    with_vgg = supervised_terms(out, _img(10), _img(16), _img(20), nn.Identity(), LossWeights(perceptual=255.0**2))
    assert with_vgg["total"].item() == pytest.approx(16.35 + 1.0, rel=1e-5)


def test_cycle_terms_by_hand() -> None:
    """I0 = 2, I1 = 10, I2 = 30; Î_t = 4, Î_{1+t} = 20, Î1 = 12 with raw warps 9, 13; teacher 5, 18.
    warp = |9-10| + |13-10| + |W(4, F10c = out) - 20| + mean|W(20, F01c = ramp) - 4| (16, 16, 4 -> 12)
    + |W(2, F10a = out) - 10| + mean|W(10, F01a = 2 ramp) - 2| (8, 2, 2 -> 4) + |10 - 30| + |W(30, F01b = out) - 10|
    = 1 + 3 + 20 + 12 + 10 + 4 + 20 + 10 = 80; smooth 0.75 + 1.5; pseudo |5-4| + |18-20| = 3; rec 2;
    total 0.8 * 2 + 0.4 * 80 + 2.25 + 0.8 * 3 = 38.25."""
    out = CycleOutput(
        _interp(4, flow_10=_out_of_image(), flow_01=2 * _ramp()),
        _interp(20, flow_01=_out_of_image()),
        _interp(12, warped0_raw=_img(9), warped1_raw=_img(13), flow_10=_out_of_image(), flow_01=_ramp()),
    )
    terms = cycle_terms(out, _img(2), _img(10), _img(30), pseudo=(_img(5), _img(18)))
    expected = {"rec": 2.0, "perceptual": 0.0, "warp": 80.0, "smooth": 2.25, "pseudo": 3.0, "total": 38.25}
    assert {k: round(v.item(), 5) for k, v in terms.items()} == expected
    no_teacher = cycle_terms(out, _img(2), _img(10), _img(30))
    assert no_teacher["pseudo"].item() == 0.0 and no_teacher["total"].item() == pytest.approx(38.25 - 2.4)


def test_wrappers_match_the_terms_and_the_teacher_is_frozen() -> None:
    torch.manual_seed(0)
    model = SuperSloMo(base_channels=4)
    teacher = SuperSloMo(base_channels=4).eval().requires_grad_(False)
    frames = [torch.rand(2, 3, 32, 32) * 255 for _ in range(3)]
    t = torch.tensor([0.25, 0.5])
    terms, out = supervised_loss(model, frames[0], frames[1], frames[2], t)
    m = model.mean_pixel
    again = supervised_terms(out, frames[0] - m, frames[1] - m, frames[2] - m)
    assert terms["total"].item() == pytest.approx(again["total"].item())
    terms, out = cycle_consistency_loss(model, *frames, t, teacher=teacher)
    p_t, p_1t = pseudo_targets(teacher, *frames, t)
    assert not p_t.requires_grad
    assert terms["pseudo"].item() == pytest.approx(
        ((p_t - out.first.frame).abs().mean() + (p_1t - out.second.frame).abs().mean()).item()
    )
    terms["total"].backward()
    assert model.flow_net.flow_01.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
