"""Known-answer tests for nvresearch.core.geometry (FAZE spec A.3, A.8, H.2)."""

from __future__ import annotations

import math

import pytest
import torch

from nvresearch.core.geometry import (
    angular_error,
    as_gaze_vector,
    gaze_angular_error,
    mean_angular_error,
    pitchyaw_angular_error,
    pitchyaw_to_rotation,
    pitchyaw_to_vector,
    rotation_x,
    rotation_y,
    vector_to_pitchyaw,
)

D = math.pi / 180


def test_pitchyaw_vector_known_values_and_round_trip() -> None:
    v = pitchyaw_to_vector(torch.tensor([[0.0, 0.0], [math.pi / 2, 0.0], [0.0, math.pi / 2], [30 * D, 0.0]]))
    expected = torch.tensor([[0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0.5, math.sqrt(3) / 2]], dtype=torch.float32)
    torch.testing.assert_close(v, expected, atol=1e-6, rtol=0)
    py = (torch.rand(100, 2, dtype=torch.float64) - 0.5) * torch.tensor([3.0, 6.0], dtype=torch.float64)
    torch.testing.assert_close(vector_to_pitchyaw(pitchyaw_to_vector(py)), py, atol=1e-12, rtol=0)
    # vector_to_pitchyaw ignores the length
    torch.testing.assert_close(vector_to_pitchyaw(3.0 * pitchyaw_to_vector(py)), py, atol=1e-12, rtol=0)


def test_rotation_convention_and_sign_relation() -> None:
    py = torch.tensor([[0.3, -0.7], [-0.2, 0.4]], dtype=torch.float64)
    r = pitchyaw_to_rotation(py)
    torch.testing.assert_close(r, rotation_y(py[:, 1]) @ rotation_x(py[:, 0]))
    eye = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye, atol=1e-12, rtol=0)
    assert torch.allclose(torch.linalg.det(r), torch.ones(2, dtype=torch.float64))
    # R_x(90 deg) maps y to z; R_y(90 deg) maps z to x.
    torch.testing.assert_close(
        rotation_x(torch.tensor(math.pi / 2)) @ torch.tensor([0.0, 1, 0]), torch.tensor([0.0, 0, 1]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        rotation_y(torch.tensor(math.pi / 2)) @ torch.tensor([0.0, 0, 1]), torch.tensor([1.0, 0, 0]), atol=1e-6, rtol=0
    )
    # Spec A.8: R(p, y) e_z = v(-p, y), not v(p, y).
    ez = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(r @ ez, pitchyaw_to_vector(py * torch.tensor([-1.0, 1.0], dtype=torch.float64)))
    assert (r @ ez - pitchyaw_to_vector(py)).abs().max() > 0.1


def test_angular_error_known_values_clip_floor_and_symmetry() -> None:
    a = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [0.0, 2, 0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 0, 0], [0.0, 1, 0], [-1.0, 0, 0], [0.0, 0, 5]], dtype=torch.float64)
    e = angular_error(a, b)
    floor = math.degrees(math.acos(1 - 1e-6))
    assert e[0].item() == pytest.approx(floor, rel=1e-9) and floor == pytest.approx(0.081, abs=1e-3)
    assert e[1].item() == pytest.approx(90.0, abs=1e-9)
    assert e[2].item() == pytest.approx(180.0 - floor, rel=1e-9)  # the clip on the other side
    assert e[3].item() == pytest.approx(90.0, abs=1e-9)
    torch.testing.assert_close(angular_error(b, a), e)
    u, w = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, 3, dtype=torch.float64)
    ref = torch.rad2deg(torch.acos((u * w).sum(-1) / u.norm(dim=-1) / w.norm(dim=-1)))
    torch.testing.assert_close(angular_error(u, w), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(angular_error(u, w, degrees=False), torch.deg2rad(ref), atol=1e-8, rtol=0)
    # gradients stay finite at identical inputs thanks to the clip
    x = u.clone().requires_grad_(True)
    angular_error(x, u).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_pitchyaw_angular_error() -> None:
    a = torch.tensor([[0.0, 0.0], [10 * D, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 30 * D], [-5 * D, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(pitchyaw_angular_error(a, b), torch.tensor([30.0, 15.0], dtype=torch.float64))


def test_pitchyaw_angular_error_has_no_floor() -> None:
    a = torch.tensor([[0.1, -0.3]], dtype=torch.float64)
    assert pitchyaw_angular_error(a, a).item() == pytest.approx(0.0, abs=1e-5)  # the loss form gives 0.081


def test_pitchyaw_angular_error_is_the_plain_dot_product() -> None:
    # Bit for bit the unit-vector dot product, not angular_error's renormalising cosine similarity: the two differ in
    # the last bits, most near identical pairs (0.03 degrees in float32), and the reported evaluation uses this one.
    g = torch.Generator().manual_seed(0)
    a = torch.rand(200, 2, generator=g) - 0.5
    for b in (a.flip(0), a.clone(), a + 1e-6 * torch.randn(200, 2, generator=g)):
        va, vb = pitchyaw_to_vector(a), pitchyaw_to_vector(b)
        expected = torch.acos((va * vb).sum(-1).clamp(-1.0, 1.0)) * (180.0 / math.pi)
        assert torch.equal(pitchyaw_angular_error(a, b), expected)


def test_gaze_angular_error_takes_pitchyaw_or_vectors() -> None:
    # Known answers: 30 degrees of yaw apart, and 15 degrees of pitch apart, with the target as (pitch, yaw).
    pred = pitchyaw_to_vector(torch.tensor([[0.0, 30 * D], [10 * D, 0.0]], dtype=torch.float64)) * 3.0
    target = torch.tensor([[0.0, 0.0], [-5 * D, 0.0]], dtype=torch.float64)
    expected = torch.tensor([30.0, 15.0], dtype=torch.float64)
    torch.testing.assert_close(gaze_angular_error(pred, target), expected)
    torch.testing.assert_close(gaze_angular_error(pred, pitchyaw_to_vector(target)), expected)
    torch.testing.assert_close(mean_angular_error(pred, target), expected.mean())
    vectors = torch.randn(5, 3)
    assert as_gaze_vector(vectors) is vectors


def test_mean_angular_error_is_the_clipped_loss() -> None:
    # Parallel inputs: the clip floor (0.081 degrees) and a finite gradient, which an unclipped arccos would not give.
    x = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    loss = mean_angular_error(x, x.detach() * 2)
    loss.backward()
    assert loss.item() == pytest.approx(math.degrees(math.acos(1 - 1e-6)), rel=1e-2)  # 1 - 1e-6 rounds in float32
    assert torch.isfinite(x.grad).all()


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"pitchyaw must have shape \(\.\.\., 2\)"):
        pitchyaw_to_vector(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"vector must have shape \(\.\.\., 3\)"):
        vector_to_pitchyaw(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="last dimensions differ"):
        angular_error(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"gaze must have shape \(\.\.\., 2\) \(pitch, yaw\) or \(\.\.\., 3\)"):
        as_gaze_vector(torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"prediction \(3, 3\) and target \(2, 3\) differ in shape"):
        gaze_angular_error(torch.zeros(3, 3), torch.zeros(2, 2))
