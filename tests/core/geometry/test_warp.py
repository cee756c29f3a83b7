"""Known-answer tests for nvresearch.core.geometry.warp (vinterp spec A.1, E.1, F.2)."""

from __future__ import annotations

import pytest
import torch

from nvresearch.core.geometry.warp import backward_warp, pixel_grid


def test_zero_flow_is_the_identity() -> None:
    torch.manual_seed(0)
    image = torch.rand(2, 3, 7, 9) * 255
    out = backward_warp(image, torch.zeros(2, 2, 7, 9))
    torch.testing.assert_close(out, image, atol=1e-4, rtol=0)


def test_zero_flow_without_align_corners_is_not_the_identity() -> None:
    """The torch >= 1.3 default shifts by half a pixel and blends the border with zeros (spec E.1)."""
    image = torch.full((1, 1, 8, 8), 100.0)
    out = backward_warp(image, torch.zeros(1, 2, 8, 8), align_corners=False)
    assert out[0, 0, 4, 4] == pytest.approx(100.0, abs=1e-4)  # inside: a constant stays constant
    assert out[0, 0, 0, 0] < 90.0  # the corner samples half outside the image


def test_integer_shift_matches_roll_and_channel_order() -> None:
    """u (channel 0) moves along the width, v (channel 1) along the height: W(I, F)(x, y) = I(x + u, y + v)."""
    torch.manual_seed(1)
    image = torch.rand(1, 3, 10, 12)
    flow = torch.zeros(1, 2, 10, 12)
    flow[:, 0] = 2.0  # sample two columns to the right
    out = backward_warp(image, flow)
    torch.testing.assert_close(out[..., :-2], image[..., 2:], atol=1e-5, rtol=0)
    assert torch.all(out[..., -2:] == 0)  # outside: zero padding
    flow = torch.zeros(1, 2, 10, 12)
    flow[:, 1] = -3.0  # sample three rows up
    out = backward_warp(image, flow)
    torch.testing.assert_close(out[..., 3:, :], torch.roll(image, 3, dims=2)[..., 3:, :], atol=1e-5, rtol=0)


def test_fractional_shift_is_bilinear() -> None:
    image = torch.arange(20.0).reshape(1, 1, 4, 5)
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 0] = 0.25
    flow[:, 1] = 0.5
    out = backward_warp(image, flow)
    # I(x, y) = 5 y + x is linear, so bilinear sampling is exact inside: I(x + 0.25, y + 0.5) = I(x, y) + 2.75
    torch.testing.assert_close(out[..., :3, :4], image[..., :3, :4] + 2.75, atol=1e-5, rtol=0)


def test_per_pixel_flow_and_gradients() -> None:
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    flow = torch.zeros(1, 2, 4, 4, requires_grad=True)
    with torch.no_grad():
        flow[0, 0, 1, 1] = 1.0  # only pixel (x=1, y=1) samples its right neighbour
    out = backward_warp(image, flow)
    expected = image.clone()
    expected[0, 0, 1, 1] = image[0, 0, 1, 2]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    out.sum().backward()
    assert flow.grad is not None and flow.grad[0, 0].abs().sum() > 0


def test_pixel_grid_layout() -> None:
    g = pixel_grid(2, 3)
    assert g.shape == (1, 2, 2, 3)
    assert g[0, 0].tolist() == [[0, 1, 2], [0, 1, 2]]
    assert g[0, 1].tolist() == [[0, 0, 0], [1, 1, 1]]


def test_bad_shapes_fail_clearly() -> None:
    with pytest.raises(ValueError, match="does not match"):
        backward_warp(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        backward_warp(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="2x2"):
        backward_warp(torch.zeros(1, 3, 1, 4), torch.zeros(1, 2, 1, 4))
