"""nvresearch.core.utils.color against the standard library's colorsys (the embedded worlds' palettes use it)."""

from __future__ import annotations

import colorsys

import torch

from nvresearch.core.utils.color import hsv_to_rgb


def test_hsv_to_rgb_matches_colorsys() -> None:
    g = torch.Generator().manual_seed(0)
    hsv = torch.rand(200, 3, generator=g, dtype=torch.float64)
    hsv[:6, 0] = torch.tensor([0.0, 1 / 6, 1 / 3, 0.5, 2 / 3, 1.0])  # the sector boundaries, hue 1 wrapping to 0
    expected = torch.tensor([colorsys.hsv_to_rgb(*row) for row in hsv.tolist()], dtype=torch.float64)
    torch.testing.assert_close(hsv_to_rgb(hsv[:, 0], hsv[:, 1], hsv[:, 2]), expected, atol=1e-12, rtol=0)


def test_hsv_to_rgb_numbers_and_dtype() -> None:
    h = torch.tensor([0.0, 1 / 3], dtype=torch.float32)
    rgb = hsv_to_rgb(h, 0.5, 0.8)  # pure red and pure green at saturation 0.5
    assert rgb.dtype == torch.float32 and rgb.shape == (2, 3)
    torch.testing.assert_close(rgb, torch.tensor([[0.8, 0.4, 0.4], [0.4, 0.8, 0.4]]))
