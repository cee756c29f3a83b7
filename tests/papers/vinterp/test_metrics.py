"""vinterp evaluation (spec C.3): known answers, and SSIM against a scipy transcription of skimage's formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nvresearch.vinterp.metrics import (
    InterpolationScores,
    frame_metrics,
    interpolate_window,
    interpolation_error,
    psnr,
    quantize,
    ssim,
)


def test_quantize_truncates_and_wraps_like_numpy_astype_uint8() -> None:
    x = torch.tensor([-1.5, -0.5, 0.99, 300.7, 255.9, 256.0, -256.5])
    assert quantize(x).tolist() == [255, 0, 0, 44, 255, 0, 0]  # np.float32 array .astype(np.uint8)
    assert quantize(x, "round").tolist() == [0, 0, 1, 255, 255, 255, 0]
    with pytest.raises(ValueError, match="'floor'"):
        quantize(x, "floor")


def test_psnr_known_values() -> None:
    gt = torch.full((2, 3, 4, 4), 100, dtype=torch.uint8)
    pred = gt.clone()
    pred[0] += 5
    out = psnr(pred, gt)
    assert out[0].item() == pytest.approx(10 * math.log10(255**2 / 25))
    assert math.isinf(out[1].item())


def test_ssim_known_values() -> None:
    torch.manual_seed(0)
    x = torch.randint(0, 256, (1, 3, 16, 20), dtype=torch.uint8)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)
    # constant images: zero variance, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = torch.full((1, 3, 12, 12), 100.0), torch.full((1, 3, 12, 12), 110.0)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b).item() == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), rel=1e-12)
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.zeros(1, 3, 10, 20), torch.zeros(1, 3, 10, 20))


def test_ssim_matches_skimage_formula() -> None:
    """skimage.metrics.structural_similarity(gaussian_weights=True, channel_axis=-1) transcribed with scipy: filter
    the whole image (reflect), use the N / (N - 1) sample covariance, crop 5 pixels, average; then over channels."""
    from scipy.ndimage import gaussian_filter

    def reference(x: np.ndarray, y: np.ndarray) -> float:
        def f(z: np.ndarray) -> np.ndarray:
            return gaussian_filter(z, sigma=1.5, truncate=3.5, mode="reflect")

        x, y = x.astype(np.float64), y.astype(np.float64)
        ux, uy = f(x), f(y)
        cn = 121 / 120
        vx, vy, vxy = cn * (f(x * x) - ux * ux), cn * (f(y * y) - uy * uy), cn * (f(x * y) - ux * uy)
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        return float(s[5:-5, 5:-5].mean())

    torch.manual_seed(1)
    gt = torch.randint(0, 256, (2, 3, 24, 30), dtype=torch.uint8)
    pred = (gt.float() + torch.randn(2, 3, 24, 30) * 25).clamp(0, 255).to(torch.uint8)
    expected = [np.mean([reference(pred[i, c].numpy(), gt[i, c].numpy()) for c in range(3)]) for i in range(2)]
    torch.testing.assert_close(ssim(pred, gt), torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)


def test_interpolation_error_is_the_mean_rgb_norm() -> None:
    gt = torch.zeros(1, 3, 2, 2)
    pred = gt.clone()
    pred[:, 0], pred[:, 1] = 3.0, 4.0  # |(3, 4, 0)| = 5 at every pixel
    pred[0, :, 0, 0] = 0.0  # one pixel exact: mean (0 + 5 + 5 + 5) / 4
    assert interpolation_error(pred, gt).item() == pytest.approx(3.75)


def test_frame_metrics_quantize_first() -> None:
    gt = torch.full((1, 3, 12, 12), 100.7)  # truncates to 100
    pred = torch.full((1, 3, 12, 12), 101.2)  # truncates to 101
    m = frame_metrics(pred, gt)
    assert m["psnr"].item() == pytest.approx(10 * math.log10(255**2))
    assert m["ie"].item() == pytest.approx(math.sqrt(3))


def test_interpolate_window_time_grid_padding_and_crop() -> None:
    seen = []

    def blend(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(a.shape))
        return (1 - t.view(-1, 1, 1, 1)) * a + t.view(-1, 1, 1, 1) * b

    first, last = torch.zeros(2, 3, 40, 70), torch.full((2, 3, 40, 70), 80.0)
    frames = interpolate_window(blend, first, last, num_interp=7, multiple=64)
    assert seen == [(2, 3, 64, 128)] * 7  # zero-padded bottom/right to multiples of 64
    assert [f.shape for f in frames] == [(2, 3, 40, 70)] * 7
    assert [round(f[0, 0, 0, 0].item(), 4) for f in frames] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]


def test_scores_nanmean_overall_and_per_index() -> None:
    scores = InterpolationScores(num_interp=2)
    gt = torch.full((2, 3, 12, 12), 100.0)
    scores.update(gt + 5, gt, k=1)  # IE 5 * sqrt(3) for both frames
    scores.update(gt + torch.tensor([1.0, 2.0]).view(2, 1, 1, 1), gt, k=2)
    out = scores.compute()
    assert out["ie_k1"] == pytest.approx(5 * math.sqrt(3))
    assert out["ie_k2"] == pytest.approx(1.5 * math.sqrt(3))
    assert out["ie"] == pytest.approx((2 * 5 + 1 + 2) * math.sqrt(3) / 4)
    assert out["psnr_k2"] == pytest.approx((10 * math.log10(255**2) + 10 * math.log10(255**2 / 4)) / 2)
    with pytest.raises(ValueError, match="1..2"):
        scores.update(gt, gt, k=3)
