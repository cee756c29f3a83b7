"""Tests for the pixel-adaptive convolution layers (nvresearch.core.layers.pac; Su et al., CVPR 2019)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvresearch.core.layers import (
    PacConv2d,
    PacConvTranspose2d,
    nd2col,
    official_transposed_weight_to_torch,
    pacconv2d,
    pacconv_transpose2d,
    packernel2d,
)

DT = torch.float64


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _copy_params(src: nn.Module, dst: nn.Module) -> None:
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if src.bias is not None:
            dst.bias.copy_(src.bias)


# ----------------------------------------------------------------------------------------------------------------------
# Independent references (loops over the index form of Eq. 3)
# ----------------------------------------------------------------------------------------------------------------------
def _ref_kernel(
    f: Tensor,
    k: int,
    s: int,
    p: int,
    d: int,
    kappa: Callable[[Tensor], Tensor],
    smooth: Tensor | None = None,
) -> Tensor:
    """K[b,0,u,w,y,x] = kappa(f~[yS+uD, xS+wD] - r[y, x]); r = window centre of the zero-padded f (or smoothed)."""
    b, nf, h, w = f.shape
    fp = F.pad(f, (p, p, p, p))
    ho, wo = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
    c = (k - 1) // 2
    out = torch.empty(b, 1, k, k, ho, wo, dtype=f.dtype)
    for y in range(ho):
        for x in range(wo):
            cy, cx = y * s + c * d, x * s + c * d
            if smooth is None:
                ref = fp[:, :, cy, cx]
            else:
                r = (smooth.shape[-1] - 1) // 2
                fpp = F.pad(fp, (r, r, r, r))
                ref = (fpp[:, :, cy : cy + 2 * r + 1, cx : cx + 2 * r + 1] * smooth).sum(dim=(-2, -1))
            for u in range(k):
                for v in range(k):
                    out[:, 0, u, v, y, x] = kappa(fp[:, :, y * s + u * d, x * s + v * d] - ref)
    return out


def _gauss(diff: Tensor) -> Tensor:
    return torch.exp(-0.5 * (diff**2).sum(dim=1))


def _ref_pacconv2d(x: Tensor, kernel: Tensor, weight: Tensor, bias: Tensor | None, s: int, p: int, d: int) -> Tensor:
    b, c, h, w = x.shape
    o, _, k, _ = weight.shape
    ho, wo = kernel.shape[-2:]
    cols = F.unfold(x, k, dilation=d, padding=p, stride=s).view(b, c, k, k, ho, wo)
    out = torch.einsum("ocuv,bcuvyx,buvyx->boyx", weight, cols, kernel[:, 0])
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _zero_insert(x: Tensor, s: int) -> Tensor:
    b, c, h, w = x.shape
    z = x.new_zeros(b, c, (h - 1) * s + 1, (w - 1) * s + 1)
    z[:, :, ::s, ::s] = x
    return z


def _official_style_transposed(
    x: Tensor, kernel: Tensor, w_official: Tensor, s: int, p: int, op: int, d: int
) -> Tensor:
    """The official recipe: zero insertion, pad (k-1)D-P (+op), correlate with the UNflipped permuted weight."""
    k = w_official.shape[-1]
    pp = (k - 1) * d - p
    xz = F.pad(_zero_insert(x, s), (pp, pp + op, pp, pp + op))
    return _ref_pacconv2d(xz, kernel, w_official.transpose(0, 1), None, 1, 0, d)


# ----------------------------------------------------------------------------------------------------------------------
# K == 1 identities
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "k,s,p,d,size",
    [(3, 1, 1, 1, 9), (5, 2, 4, 2, 31), (3, 2, 0, 1, 10), (5, 1, 2, 1, 8), (1, 1, 0, 1, 5), (3, 3, 2, 2, 11)],
)
def test_conv_constant_guidance_equals_conv2d(k: int, s: int, p: int, d: int, size: int) -> None:
    pac = PacConv2d(4, 3, k, stride=s, padding=p, dilation=d).to(DT)
    conv = nn.Conv2d(4, 3, k, stride=s, padding=p, dilation=d).to(DT)
    _copy_params(pac, conv)
    x = torch.randn(2, 4, size, size, dtype=DT)
    guide = torch.full((2, 3, size, size), 0.7, dtype=DT)  # non-zero: padded taps have K != 1, but v is 0 there
    torch.testing.assert_close(pac(x, guide), conv(x), rtol=0, atol=1e-12)


def test_non_square_arguments_equal_torch() -> None:
    kw = dict(kernel_size=(3, 5), stride=(2, 3), padding=(1, 2), dilation=(1, 2))
    pac, conv = PacConv2d(2, 3, **kw).to(DT), nn.Conv2d(2, 3, **kw).to(DT)
    _copy_params(pac, conv)
    x = torch.randn(1, 2, 9, 10, dtype=DT)
    torch.testing.assert_close(pac(x, torch.zeros_like(x)), conv(x), rtol=0, atol=1e-12)
    tpac = PacConvTranspose2d(2, 3, output_padding=(1, 0), **kw).to(DT)
    tconv = nn.ConvTranspose2d(2, 3, output_padding=(1, 0), **kw).to(DT)
    _copy_params(tpac, tconv)
    ref = tconv(x)
    assert ref.shape == (1, 3, 18, 32)
    torch.testing.assert_close(tpac(x, torch.zeros(1, 1, 18, 32, dtype=DT)), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "k,s,p,op,d,size,value",
    [
        (5, 2, 2, 1, 1, 7, -1.3),
        (3, 1, 1, 0, 1, 6, -1.3),
        (3, 2, 1, 1, 2, 5, -1.3),
        (5, 2, 3, 0, 2, 4, -1.3),
        # padding > (k-1)D: taps outside the output image hold real samples, and the zero-padded guidance there
        # gives K != 1 unless the constant is 0 (same as the official layer)
        (5, 3, 6, 2, 1, 4, 0.0),
    ],
)
def test_transposed_constant_guidance_equals_conv_transpose2d(
    k: int, s: int, p: int, op: int, d: int, size: int, value: float
) -> None:
    pac = PacConvTranspose2d(4, 3, k, stride=s, padding=p, output_padding=op, dilation=d).to(DT)
    conv = nn.ConvTranspose2d(4, 3, k, stride=s, padding=p, output_padding=op, dilation=d).to(DT)
    _copy_params(pac, conv)
    x = torch.randn(2, 4, size, size + 1, dtype=DT)
    ref = conv(x)
    guide = torch.full((2, 2, *ref.shape[-2:]), value, dtype=DT)
    torch.testing.assert_close(pac(x, guide), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("transposed", [False, True])
def test_shared_filters_equal_depthwise_conv(transposed: bool) -> None:
    c = 3
    if transposed:
        pac = PacConvTranspose2d(c, c, 3, stride=2, padding=1, output_padding=1, shared_filters=True).to(DT)
        conv = nn.ConvTranspose2d(c, c, 3, stride=2, padding=1, output_padding=1, groups=c).to(DT)
    else:
        pac = PacConv2d(c, c, 3, stride=2, padding=1, shared_filters=True).to(DT)
        conv = nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c).to(DT)
    assert pac.weight.shape == (1, 1, 3, 3)
    with torch.no_grad():
        conv.weight.copy_(pac.weight.expand(c, 1, 3, 3))
        conv.bias.copy_(pac.bias)
    x = torch.randn(2, c, 6, 7, dtype=DT)
    ref = conv(x)
    guide = torch.zeros(2, 2, *(ref.shape[-2:] if transposed else x.shape[-2:]), dtype=DT)
    torch.testing.assert_close(pac(x, guide), ref, rtol=0, atol=1e-12)


def test_output_sizes_and_values_match_torch_over_grid() -> None:
    x = torch.randn(1, 2, 7, 8, dtype=DT)
    n_checked = 0
    for k, s, p, d in itertools.product((1, 3, 5), (1, 2, 3), (0, 3), (1, 2)):
        if 7 + 2 * p - d * (k - 1) - 1 < 0:
            continue
        pac = PacConv2d(2, 2, k, stride=s, padding=p, dilation=d).to(DT)
        conv = nn.Conv2d(2, 2, k, stride=s, padding=p, dilation=d).to(DT)
        _copy_params(pac, conv)
        torch.testing.assert_close(pac(x, torch.zeros_like(x)), conv(x), rtol=0, atol=1e-12)
        for op in range(max(s, d)):
            tpac = PacConvTranspose2d(2, 2, k, stride=s, padding=p, output_padding=op, dilation=d).to(DT)
            tconv = nn.ConvTranspose2d(2, 2, k, stride=s, padding=p, output_padding=op, dilation=d).to(DT)
            _copy_params(tpac, tconv)
            ref = tconv(x)
            out = tpac(x, torch.zeros(1, 1, *ref.shape[-2:], dtype=DT))
            assert out.shape == ref.shape
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
            n_checked += 1
    assert n_checked > 60


# ----------------------------------------------------------------------------------------------------------------------
# Kernel values
# ----------------------------------------------------------------------------------------------------------------------
def test_gaussian_kernel_by_hand() -> None:
    f = torch.randn(1, 2, 4, 5, dtype=DT)
    kernel, mask = packernel2d(f, kernel_size=3, padding=1)
    assert mask is None and kernel.shape == (1, 1, 3, 3, 4, 5)
    # Tap (u, w) = (0, 2) at output (y, x) = (2, 1): neighbour f[:, 1, 2], reference (centre) f[:, 2, 1].
    expected = math.exp(-0.5 * ((f[0, :, 1, 2] - f[0, :, 2, 1]) ** 2).sum().item())
    assert kernel[0, 0, 0, 2, 2, 1].item() == pytest.approx(expected, rel=1e-12)
    # Centre tap is exactly 1; out-of-image tap sees zero-padded guidance: exp(-0.5 ||f_i||^2).
    assert torch.all(kernel[:, :, 1, 1] == 1)
    assert kernel[0, 0, 0, 0, 0, 0].item() == pytest.approx(math.exp(-0.5 * (f[0, :, 0, 0] ** 2).sum().item()))
    torch.testing.assert_close(kernel, _ref_kernel(f, 3, 1, 1, 1, _gauss), rtol=0, atol=1e-14)


@pytest.mark.parametrize("k,s,p,d", [(3, 2, 1, 1), (3, 1, 2, 2), (5, 2, 0, 1), (5, 1, 3, 1)])
def test_gaussian_kernel_matches_reference_geometry(k: int, s: int, p: int, d: int) -> None:
    f = torch.randn(2, 3, 7, 8, dtype=DT)
    kernel, _ = packernel2d(f, kernel_size=k, stride=s, padding=p, dilation=d)
    torch.testing.assert_close(kernel, _ref_kernel(f, k, s, p, d, _gauss), rtol=0, atol=1e-14)


def test_inverse_kernel_values_and_module() -> None:
    f = torch.randn(1, 2, 4, 5, dtype=DT)
    kernel, _ = packernel2d(f, kernel_size=3, padding=1, kernel_type="inv_0.5_-2")
    d2 = ((f[0, :, 1, 2] - f[0, :, 2, 1]) ** 2).sum().item()
    assert kernel[0, 0, 0, 2, 2, 1].item() == pytest.approx(0.5 + (d2 + 1e-4) ** -1.0, rel=1e-12)
    assert torch.allclose(kernel[:, :, 1, 1], torch.full_like(kernel[:, :, 1, 1], 0.5 + 1e-4**-1.0))
    ref = _ref_kernel(f, 3, 1, 1, 1, lambda dd: 0.5 + ((dd**2).sum(1) + 1e-4) ** -1.0)
    torch.testing.assert_close(kernel, ref, rtol=1e-12, atol=0)
    # The module's learnable parameters are used (and change the kernel).
    mod = PacConv2d(2, 2, 3, padding=1, kernel_type="inv_0.5_-2").to(DT)
    torch.testing.assert_close(mod.compute_kernel(f)[0], kernel)
    with torch.no_grad():
        mod.inv_alpha.fill_(1.5)
        mod.inv_lambda.fill_(2.0)
    ref2 = _ref_kernel(f, 3, 1, 1, 1, lambda dd: 1.5 + ((dd**2).sum(1) + 1e-4) ** 1.0)
    torch.testing.assert_close(mod.compute_kernel(f)[0], ref2, rtol=1e-12, atol=0)


def test_asymmetric_inverse_kernel() -> None:
    f = torch.randn(1, 2, 5, 5, dtype=DT)
    kernel, _ = packernel2d(f, kernel_size=3, padding=1, kernel_type="inv_0.2_0.2_asym")
    ref = _ref_kernel(f, 3, 1, 1, 1, lambda dd: 0.2 + ((dd.clamp_min(0) ** 2).sum(1) + 1e-4) ** 0.1)
    torch.testing.assert_close(kernel, ref, rtol=1e-12, atol=0)
    # One-sided: a neighbour smaller than the centre in every channel gives the d=0 value.
    f2 = torch.zeros(1, 1, 3, 3, dtype=DT)
    f2[0, 0, 1, 1] = 5.0
    k2, _ = packernel2d(f2, kernel_size=3, padding=1, kernel_type="inv_0.2_0.2_asym_fixed")
    assert k2[0, 0, 0, 0, 1, 1].item() == pytest.approx(0.2 + 1e-4**0.1)
    k3, _ = packernel2d(f2, kernel_size=3, padding=1, kernel_type="inv_0.2_0.2")
    assert k3[0, 0, 0, 0, 1, 1].item() == pytest.approx(0.2 + (25 + 1e-4) ** 0.1)


@pytest.mark.parametrize("smooth", ["gaussian", "average_3", "full_3", "average_5"])
def test_smoothing_constant_guidance_gives_unit_interior_kernel(smooth: str) -> None:
    f = torch.full((1, 2, 9, 9), 0.8, dtype=DT)
    kernel, _ = packernel2d(f, kernel_size=3, padding=1, smooth_kernel_type=smooth)
    r = int(smooth[-1]) // 2 if smooth != "gaussian" else 1
    interior = kernel[..., r : 9 - r, r : 9 - r]  # the smoothed reference equals the feature away from the border
    torch.testing.assert_close(interior, torch.ones_like(interior), rtol=0, atol=1e-14)
    assert kernel[0, 0, 1, 1, 0, 0].item() < 1  # at the border the smoothing sees the zero padding


@pytest.mark.parametrize("smooth,size", [("gaussian", 3), ("average_3", 3), ("average_5", 5)])
@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), (5, 2, 0, 1), (3, 2, 2, 2), (5, 1, 1, 1)])
def test_smoothed_reference_matches_reference(smooth: str, size: int, k: int, s: int, p: int, d: int) -> None:
    f = torch.randn(2, 2, 7, 8, dtype=DT)
    if smooth == "gaussian":
        filt = torch.outer(torch.tensor([0.25, 0.5, 0.25]), torch.tensor([0.25, 0.5, 0.25])).to(DT)
    else:
        filt = torch.full((size, size), 1.0 / size**2, dtype=DT)
    kernel, _ = packernel2d(f, kernel_size=k, stride=s, padding=p, dilation=d, smooth_kernel_type=smooth)
    torch.testing.assert_close(kernel, _ref_kernel(f, k, s, p, d, _gauss, smooth=filt), rtol=0, atol=1e-14)


def test_full_smoothing_uses_learnable_filter() -> None:
    mod = PacConv2d(2, 2, 3, padding=1, smooth_kernel_type="full_3").to(DT)
    assert isinstance(mod.smooth_kernel, nn.Parameter) and mod.smooth_kernel.shape == (1, 1, 3, 3)
    torch.testing.assert_close(mod.smooth_kernel, torch.full((1, 1, 3, 3), 1 / 9, dtype=DT))
    with torch.no_grad():
        mod.smooth_kernel.zero_()
        mod.smooth_kernel[0, 0, 0, 1] = 1.0  # reference = the feature one row above the centre
    f = torch.randn(1, 2, 5, 6, dtype=DT)
    ref = _ref_kernel(f, 3, 1, 1, 1, _gauss, smooth=mod.smooth_kernel[0, 0].detach())
    torch.testing.assert_close(mod.compute_kernel(f)[0], ref, rtol=0, atol=1e-14)
    assert mod.compute_kernel(f)[0][0, 0, 0, 1, 2, 3].item() == pytest.approx(1.0)


def test_transposed_kernel_uses_output_resolution_same_padding() -> None:
    f = torch.randn(1, 2, 8, 10, dtype=DT)  # output size of k5 s2 p2 op1 on a 4x5 input
    kernel, _ = packernel2d(f, kernel_size=5, stride=2, padding=2, output_padding=1, transposed=True)
    torch.testing.assert_close(kernel, _ref_kernel(f, 5, 1, 2, 1, _gauss), rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------------------------------------------------
# Normalisation and masks
# ----------------------------------------------------------------------------------------------------------------------
def test_normalized_kernel_sums_to_one_conv() -> None:
    f = torch.randn(2, 3, 6, 7, dtype=DT)
    kernel, _ = packernel2d(f, kernel_size=5, padding=2, normalize_kernel=True)
    sums = kernel.sum(dim=(2, 3))
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-12)
    assert torch.all(kernel[0, 0, 0, :, 0, :] == 0)  # taps above the image are excluded
    raw, _ = packernel2d(f, kernel_size=5, padding=2)
    in_image = nd2col(torch.ones(1, 1, 6, 7, dtype=DT), 5, padding=2)
    torch.testing.assert_close(kernel, raw * in_image / (raw * in_image).sum(dim=(2, 3), keepdim=True))


def test_normalized_kernel_sums_to_one_transposed() -> None:
    x = torch.randn(1, 2, 4, 5, dtype=DT)
    f = torch.randn(1, 3, 8, 10, dtype=DT)
    layer = PacConvTranspose2d(2, 2, 5, stride=2, padding=2, output_padding=1, normalize_kernel=True).to(DT)
    kernel, _ = layer.compute_kernel(f)
    sums = kernel.sum(dim=(2, 3))
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-12)
    # Only taps on real (not zero-inserted) samples carry weight. Real samples sit at padded rows 2, 4, 6, 8, so
    # output row 0 sees them at taps u = 2, 4 and output row 1 at taps u = 1, 3.
    real = nd2col(torch.ones(1, 1, 4, 5, dtype=DT), 5, 2, 2, 1, 1, transposed=True)
    assert real[0, 0, :, 0, 0, 2].tolist() == [0, 0, 1, 0, 1]
    assert real[0, 0, :, 0, 1, 2].tolist() == [0, 1, 0, 1, 0]
    assert torch.all(kernel[real.expand_as(kernel) == 0] == 0)
    assert torch.all(kernel[real.expand_as(kernel) == 1] > 0)
    out = layer(x, f)
    assert out.shape == (1, 2, 8, 10)


def test_mask_path_returns_output_mask() -> None:
    torch.manual_seed(1)
    layer = PacConv2d(2, 3, 3, padding=1).to(DT)
    x = torch.randn(1, 2, 6, 6, dtype=DT)
    f = torch.randn(1, 2, 6, 6, dtype=DT)
    mask = torch.ones(1, 1, 6, 6, dtype=DT)
    mask[..., :, :3] = 0  # left half invalid: outputs in columns 0 and 1 have no valid neighbour
    out, out_mask = layer(x, f, mask=mask)
    expected_mask = torch.ones(1, 1, 6, 6, dtype=DT)
    expected_mask[..., :2] = 0
    torch.testing.assert_close(out_mask, expected_mask)
    torch.testing.assert_close(out[..., :2], layer.bias.view(1, 3, 1, 1).expand(1, 3, 6, 2))  # only the bias
    # normalize_kernel=False: K * m / (fraction of valid in-image taps)
    kernel, _ = layer.compute_kernel(f, mask)
    raw, _ = packernel2d(f, kernel_size=3, padding=1)
    m_cols = nd2col(mask, 3, padding=1)
    in_image = nd2col(torch.ones_like(mask), 3, padding=1)
    frac = m_cols.sum(dim=(2, 3), keepdim=True) / in_image.sum(dim=(2, 3), keepdim=True)
    expected = torch.where(frac > 0, raw * m_cols / frac.clamp_min(1e-30), torch.zeros_like(raw))
    torch.testing.assert_close(kernel, expected)
    assert kernel[0, 0, 1, 2, 0, 2].item() == pytest.approx(raw[0, 0, 1, 2, 0, 2].item() * 6 / 2)
    # bool masks are accepted and give the same result; normalize_kernel=True sums to 1 where the mask is 1
    out_b, mask_b = layer(x, f, mask=mask.bool())
    torch.testing.assert_close(out_b, out)
    norm_layer = PacConv2d(2, 3, 3, padding=1, normalize_kernel=True).to(DT)
    kernel_n, mask_n = norm_layer.compute_kernel(f, mask)
    torch.testing.assert_close(mask_n, expected_mask)
    torch.testing.assert_close(kernel_n.sum(dim=(2, 3)), expected_mask)
    assert not torch.isnan(kernel_n).any()


def test_mask_path_transposed() -> None:
    layer = PacConvTranspose2d(2, 2, 3, stride=2, padding=1, output_padding=1).to(DT)
    x = torch.randn(1, 2, 3, 3, dtype=DT)
    f = torch.randn(1, 2, 6, 6, dtype=DT)
    mask = torch.zeros(1, 1, 3, 3, dtype=DT)
    mask[..., 0, 0] = 1  # only the top-left input sample is valid: it reaches outputs (0..1, 0..1)
    out, out_mask = layer(x, f, mask=mask)
    expected = torch.zeros(1, 1, 6, 6, dtype=DT)
    expected[..., :2, :2] = 1
    torch.testing.assert_close(out_mask, expected)
    assert out.shape == (1, 2, 6, 6)


def test_explicit_kernel_with_mask_reports_valid_outputs() -> None:
    layer = PacConv2d(2, 2, 3, padding=1).to(DT)
    x, f = torch.randn(1, 2, 5, 5, dtype=DT), torch.randn(1, 2, 5, 5, dtype=DT)
    mask = torch.zeros(1, 1, 5, 5, dtype=DT)
    mask[..., 2, 2] = 1
    kernel, out_mask = layer.compute_kernel(f, mask)
    out2, out_mask2 = layer(x, None, kernel=kernel, mask=mask)
    torch.testing.assert_close(out_mask2, out_mask)
    torch.testing.assert_close(out2, layer(x, f, mask=mask)[0])


# ----------------------------------------------------------------------------------------------------------------------
# Index form with a random kernel, and the transposed weight convention
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), (3, 2, 2, 2), (5, 2, 1, 1)])
def test_pacconv2d_random_kernel_matches_index_form(k: int, s: int, p: int, d: int) -> None:
    x = torch.randn(2, 3, 7, 8, dtype=DT)
    w, b = torch.randn(4, 3, k, k, dtype=DT), torch.randn(4, dtype=DT)
    ho, wo = (7 + 2 * p - d * (k - 1) - 1) // s + 1, (8 + 2 * p - d * (k - 1) - 1) // s + 1
    kernel = torch.rand(2, 1, k, k, ho, wo, dtype=DT)
    out = pacconv2d(x, kernel, w, b, stride=s, padding=p, dilation=d)
    torch.testing.assert_close(out, _ref_pacconv2d(x, kernel, w, b, s, p, d), rtol=0, atol=1e-12)
    shared = pacconv2d(x, kernel, w[:1, :1], None, stride=s, padding=p, dilation=d, shared_filters=True)
    ref_shared = torch.cat([_ref_pacconv2d(x[:, i : i + 1], kernel, w[:1, :1], None, s, p, d) for i in range(3)], 1)
    torch.testing.assert_close(shared, ref_shared, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k,s,p,op,d", [(5, 2, 2, 1, 1), (3, 2, 1, 0, 2), (3, 1, 0, 0, 1)])
def test_transposed_random_kernel_matches_official_recipe_after_flip(k: int, s: int, p: int, op: int, d: int) -> None:
    x = torch.randn(2, 3, 4, 5, dtype=DT)
    w_official = torch.randn(3, 2, k, k, dtype=DT)
    ho = (4 - 1) * s - 2 * p + d * (k - 1) + op + 1
    wo = (5 - 1) * s - 2 * p + d * (k - 1) + op + 1
    kernel = torch.rand(2, 1, k, k, ho, wo, dtype=DT)
    ref = _official_style_transposed(x, kernel, w_official, s, p, op, d)
    w_torch = official_transposed_weight_to_torch(w_official)
    out = pacconv_transpose2d(x, kernel, w_torch, None, stride=s, padding=p, output_padding=op, dilation=d)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert not torch.allclose(pacconv_transpose2d(x, kernel, w_official, None, s, p, op, d), ref)


def test_official_weight_conversion_round_trip() -> None:
    w = torch.randn(3, 2, 5, 5)
    converted = official_transposed_weight_to_torch(w)
    assert converted[0, 1, 0, 4] == w[0, 1, 4, 0]
    assert not torch.equal(converted, w)
    torch.testing.assert_close(official_transposed_weight_to_torch(converted), w, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------------------------------
GRAD_CASES = [
    dict(kernel_type="gaussian"),
    dict(kernel_type="inv_0.5_-1"),
    dict(kernel_type="inv_0.3_0.6_asym"),
    dict(normalize_kernel=True),
    dict(smooth_kernel_type="full_3"),
    dict(smooth_kernel_type="gaussian", kernel_type="inv_1_-0.5", normalize_kernel=True),
    dict(shared_filters=True),
    dict(stride=2, padding=1),
    dict(dilation=2, padding=2),
]


def _extra_params(mod: nn.Module) -> list[Tensor]:
    return [p for n, p in mod.named_parameters() if n not in ("weight", "bias")]


def _functional_call(mod: nn.Module, x: Tensor, f: Tensor, *params: Tensor) -> Tensor:
    names = [n for n, _ in mod.named_parameters()]
    return torch.func.functional_call(mod, dict(zip(names, params)), (x, f))


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gradcheck_conv(case: dict) -> None:
    mod = PacConv2d(2, 2, 3, **{"padding": 1, **case}).to(DT)
    x = torch.randn(1, 2, 5, 6, dtype=DT, requires_grad=True)
    f = torch.randn(1, 2, 5, 6, dtype=DT, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in mod.parameters()]
    assert len(params) == 2 + len(_extra_params(mod))
    fast = case != {"kernel_type": "gaussian"}  # full Jacobians for the base case, random projections otherwise
    assert torch.autograd.gradcheck(
        lambda *a: _functional_call(mod, a[0], a[1], *a[2:]), (x, f, *params), fast_mode=fast
    )


@pytest.mark.parametrize(
    "case",
    [
        dict(kernel_type="gaussian"),
        dict(kernel_type="inv_0.5_-1"),
        dict(normalize_kernel=True),
        dict(smooth_kernel_type="average_3"),
        dict(shared_filters=True),
        dict(dilation=2, padding=2, output_padding=1),
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
def test_gradcheck_transposed(case: dict) -> None:
    kwargs = {"stride": 2, "padding": 1, "output_padding": 1, **case}
    mod = PacConvTranspose2d(2, 2, 3, **kwargs).to(DT)
    x = torch.randn(1, 2, 3, 3, dtype=DT, requires_grad=True)
    out_size = (3 - 1) * 2 - 2 * kwargs["padding"] + kwargs.get("dilation", 1) * (3 - 1) + kwargs["output_padding"] + 1
    f = torch.randn(1, 2, out_size, out_size, dtype=DT, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in mod.parameters()]
    fast = case != {"kernel_type": "gaussian"}  # full Jacobians for the base case, random projections otherwise
    assert torch.autograd.gradcheck(
        lambda *a: _functional_call(mod, a[0], a[1], *a[2:]), (x, f, *params), fast_mode=fast
    )


def test_gradgradcheck_conv() -> None:
    x = torch.randn(1, 2, 4, 4, dtype=DT, requires_grad=True)
    f = torch.randn(1, 2, 4, 4, dtype=DT, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=DT, requires_grad=True)

    def fn(x: Tensor, f: Tensor, w: Tensor) -> Tensor:
        return pacconv2d(x, packernel2d(f, kernel_size=3, stride=2, padding=1)[0], w, None, stride=2, padding=1)

    assert torch.autograd.gradgradcheck(fn, (x, f, w), fast_mode=True)


def test_guidance_and_inverse_parameters_receive_gradients() -> None:
    mod = PacConv2d(2, 2, 3, padding=1, kernel_type="inv_0.5_-1", smooth_kernel_type="full_3")
    f = torch.randn(1, 2, 5, 5, requires_grad=True)
    mod(torch.randn(1, 2, 5, 5), f).square().sum().backward()
    for t in (f, mod.weight, mod.bias, mod.inv_alpha, mod.inv_lambda, mod.smooth_kernel):
        assert t.grad is not None and t.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------------------
# Kernel reuse, parameters, fillers, determinism
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transposed", [False, True])
def test_explicit_kernel_reuse(transposed: bool) -> None:
    if transposed:
        mod = PacConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, kernel_type="inv_0.5_-1").to(DT)
        x, f = torch.randn(2, 2, 4, 4, dtype=DT), torch.randn(2, 3, 8, 8, dtype=DT)
    else:
        mod = PacConv2d(2, 3, 3, stride=2, padding=1, normalize_kernel=True).to(DT)
        x, f = torch.randn(2, 2, 7, 7, dtype=DT), torch.randn(2, 3, 7, 7, dtype=DT)
    kernel, _ = mod.compute_kernel(f)
    torch.testing.assert_close(mod(x, None, kernel=kernel), mod(x, f), rtol=0, atol=0)
    torch.testing.assert_close(mod(x, f * 100, kernel=kernel), mod(x, f), rtol=0, atol=0)  # guidance ignored


def test_parameter_and_buffer_names() -> None:
    mod = PacConv2d(2, 2, 3, kernel_type="inv_0.5_-2")
    assert [n for n, _ in mod.named_parameters()] == ["weight", "bias", "inv_alpha", "inv_lambda"]
    assert mod.inv_alpha.shape == () and mod.inv_alpha.item() == 0.5 and mod.inv_lambda.item() == -2
    fixed = PacConvTranspose2d(2, 2, 3, kernel_type="inv_0.5_-2_fixed", smooth_kernel_type="gaussian", bias=False)
    assert [n for n, _ in fixed.named_parameters()] == ["weight"]
    assert sorted(n for n, _ in fixed.named_buffers()) == ["inv_alpha", "inv_lambda", "smooth_kernel"]
    assert fixed.weight.shape == (2, 2, 3, 3)
    full = PacConv2d(3, 4, 5, smooth_kernel_type="full_5")
    assert [n for n, _ in full.named_parameters()] == ["weight", "bias", "smooth_kernel"]
    assert full.weight.shape == (4, 3, 5, 5) and full.smooth_kernel.shape == (1, 1, 5, 5)
    assert PacConvTranspose2d(3, 4, 5).weight.shape == (3, 4, 5, 5)
    # reset_parameters refills the learnable kernel parameters
    with torch.no_grad():
        mod.inv_alpha.fill_(7.0)
    mod.reset_parameters()
    assert mod.inv_alpha.item() == 0.5
    assert "kernel_type=inv_0.5_-2" in repr(mod) and "smooth_kernel_type=gaussian" in repr(fixed)


def test_uniform_filler_bounds() -> None:
    mod = PacConv2d(8, 8, 3)
    bound = 1 / math.sqrt(8 * 9)
    assert mod.weight.abs().max() <= bound and mod.weight.abs().max() > 0.8 * bound
    assert mod.bias.abs().max() <= bound
    shared = PacConv2d(8, 8, 3, shared_filters=True)
    assert shared.weight.abs().max() <= 8 * bound and shared.weight.abs().max() > bound


@pytest.mark.parametrize("normalize,profile", [(False, [0, 0.5, 1, 0.5, 0]), (True, [0, 1, 3, 1, 0])])
def test_linear_filler(normalize: bool, profile: list) -> None:
    mod = PacConvTranspose2d(
        3, 3, 5, stride=2, padding=2, output_padding=1, filler="linear", normalize_kernel=normalize
    )
    p = torch.tensor(profile, dtype=torch.float32)
    for c in range(3):
        torch.testing.assert_close(mod.weight[c, c], torch.outer(p, p))
    off_diag = mod.weight.detach().clone()
    off_diag[range(3), range(3)] = 0
    assert torch.all(off_diag == 0) and torch.all(mod.bias == 0)
    shared = PacConvTranspose2d(3, 3, 5, stride=2, filler="linear", shared_filters=True, normalize_kernel=normalize)
    torch.testing.assert_close(shared.weight[0, 0], torch.outer(p, p))


def test_linear_filler_is_bilinear_upsampling() -> None:
    # k3 s2 p1: even outputs copy a sample, odd outputs average two neighbours (align_corners=True interpolation).
    mod = PacConvTranspose2d(2, 2, 3, stride=2, padding=1, filler="linear").to(DT)
    x = torch.randn(1, 2, 4, 5, dtype=DT)
    out = mod(x, torch.randn(1, 3, 7, 9, dtype=DT) * 1e-9)
    ref = F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=True)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_crf_fillers() -> None:
    mod = PacConv2d(4, 4, 5, padding=2, filler="crf", bias=False)
    w = mod.weight.detach()
    assert torch.all(w[:, :, 2, 2] == 0)  # no self-message from the centre tap
    assert torch.all(w[range(4), range(4)] == 0)  # Potts: no message to the same label
    off = w[0, 1]
    assert off.sum().item() == pytest.approx(25 - 2.7630, abs=1e-3)
    torch.testing.assert_close(off, off.flip(0))
    torch.testing.assert_close(off, off.t())
    assert off[1, 2] > off[0, 2] > 0
    shared = PacConv2d(4, 4, 5, filler="crf", shared_filters=True)
    torch.testing.assert_close(shared.weight[0, 0], off)
    perturbed = PacConv2d(4, 4, 5, filler="crf_perturbed")
    diff = perturbed.weight.detach() - w
    assert diff.abs().max() <= 5e-4 and diff.abs().max() > 0
    pool = PacConv2d(4, 4, 3, filler="crf_pool", shared_filters=True)
    assert [n for n, _ in pool.named_parameters()] == ["bias"]
    assert pool.weight.sum() == 8 and pool.weight[0, 0, 1, 1] == 0


def test_determinism() -> None:
    mod = PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.5_-1", normalize_kernel=True)
    x, f = torch.randn(2, 3, 9, 9), torch.randn(2, 2, 9, 9)
    assert torch.equal(mod(x, f), mod(x, f))
    tmod = PacConvTranspose2d(3, 4, 5, stride=2, padding=2, output_padding=1)
    g = torch.randn(2, 2, 18, 18)
    assert torch.equal(tmod(x, g), tmod(x, g))


def test_native_impl_selects_the_reference_path() -> None:
    x, f = torch.randn(1, 2, 6, 6), torch.randn(1, 3, 6, 6)
    a = PacConv2d(2, 2, 3, padding=1, kernel_type="inv_0.5_-1", smooth_kernel_type="gaussian", native_impl=False)
    b = PacConv2d(2, 2, 3, padding=1, kernel_type="inv_0.5_-1", smooth_kernel_type="gaussian", native_impl=True)
    b.load_state_dict(a.state_dict())
    out_a, out_b = a(x, f), b(x, f)
    assert out_a.grad_fn.name() != out_b.grad_fn.name()  # two implementations...
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)  # ...one answer
    kernel, _ = packernel2d(f, kernel_size=3, padding=1, native_impl=True)
    torch.testing.assert_close(kernel, packernel2d(f, kernel_size=3, padding=1)[0])
    torch.testing.assert_close(
        pacconv2d(x, kernel, a.weight, native_impl=True, padding=1), pacconv2d(x, kernel, a.weight, padding=1)
    )


def test_autocast_keeps_kernel_in_float32() -> None:
    mod = PacConv2d(3, 4, 3, padding=1)
    x, f = torch.randn(1, 3, 6, 6), torch.randn(1, 2, 6, 6) * 30
    ref = mod(x, f)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kernel, _ = mod.compute_kernel(f.bfloat16())
        out = mod(x.bfloat16(), f)
    assert kernel.dtype == torch.float32
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)
    k16, _ = packernel2d(f.half() * 10, kernel_size=3, padding=1, kernel_type="inv_1_-2")  # d^2 > 65504
    assert k16.dtype == torch.float16 and torch.isfinite(k16).all()


def test_memory_light_backward() -> None:
    """Autograd keeps no im2col: only the padded input and guidance, the kernel and the weight are saved."""
    mod = PacConv2d(16, 16, 5, padding=2)
    x, f = torch.randn(2, 16, 32, 32, requires_grad=True), torch.randn(2, 2, 32, 32, requires_grad=True)
    saved: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = mod(x, f)
    out.sum().backward()
    expected = 4 * (2 * 16 * 36 * 36 + 2 * 2 * 36 * 36 + 2 * 25 * 32 * 32 + 16 * 16 * 25)
    assert sum(saved.values()) <= 1.1 * expected
    assert sum(saved.values()) < 2 * 16 * 25 * 32 * 32 * 4 / 5  # a fifth of the input's im2col
    assert x.grad is not None and f.grad is not None


# ----------------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------------
def _conv() -> PacConv2d:
    return PacConv2d(2, 3, 3, padding=1)


X = torch.randn(1, 2, 5, 6)
G = torch.randn(1, 2, 5, 6)

ERROR_CASES = [
    ("input_3d", lambda: _conv()(X[0], G), ValueError, r"input_2d must be 4-D .*got shape \(2, 5, 6\)"),
    ("guidance_3d", lambda: _conv()(X, G[0]), ValueError, r"input_for_kernel must be 4-D"),
    ("guidance_missing", lambda: _conv()(X, None), TypeError, r"input_for_kernel must be a Tensor"),
    ("batch", lambda: _conv()(X, torch.randn(2, 2, 5, 6)), ValueError, r"batch size 1 .*\(2, 2, 5, 6\)"),
    ("spatial", lambda: _conv()(X, torch.randn(1, 2, 5, 5)), ValueError, r"spatial size \(5, 6\).*got \(5, 5\)"),
    (
        "spatial_transposed",
        lambda: PacConvTranspose2d(2, 2, 5, stride=2, padding=2, output_padding=1)(X, G),
        ValueError,
        r"spatial size \(10, 12\) \(the output size of this transposed layer\), got \(5, 6\)",
    ),
    ("channels", lambda: _conv()(torch.randn(1, 4, 5, 6), G), ValueError, r"in_channels=2 .*\(1, 4, 5, 6\)"),
    ("even_kernel", lambda: PacConv2d(2, 2, 4), ValueError, r"kernel_size must be odd"),
    ("even_kernel_functional", lambda: packernel2d(G, kernel_size=2), ValueError, r"kernel_size must be odd"),
    ("int_input", lambda: _conv()(X.long(), G), TypeError, r"input_2d must have a floating-point dtype"),
    ("int_guidance", lambda: _conv()(X, G.long()), TypeError, r"input_for_kernel must have a floating-point dtype"),
    ("dtype_mismatch", lambda: _conv()(X, G.double()), TypeError, r"input_for_kernel has dtype torch.float64"),
    ("weight_dtype", lambda: _conv()(X.double(), G.double()), TypeError, r"weight has dtype torch.float32"),
    (
        "mask_shape",
        lambda: _conv()(X, G, mask=torch.ones(1, 1, 5, 5)),
        ValueError,
        r"mask must have shape .*\(1, 1, 5, 6\)",
    ),
    (
        "kernel_shape",
        lambda: _conv()(X, None, kernel=torch.ones(1, 1, 3, 3, 5, 5)),
        ValueError,
        r"kernel must have shape .*\(1, 1, 3, 3, 5, 6\), got \(1, 1, 3, 3, 5, 5\)",
    ),
    ("kernel_ndim", lambda: _conv()(X, None, kernel=torch.ones(1, 3, 3, 5, 6)), ValueError, r"kernel must be 6-D"),
    ("channel_wise_kernel", lambda: _conv()(X, None, kernel=torch.ones(1, 2, 3, 3, 5, 6)), ValueError, r"channel_wise"),
    ("shared_in_out", lambda: PacConv2d(2, 3, 3, shared_filters=True), ValueError, r"in_channels == out_channels"),
    (
        "gaussian_asym",
        lambda: PacConv2d(2, 2, 3, kernel_type="gaussian_asym"),
        ValueError,
        r"valid forms are 'gaussian'",
    ),
    ("bad_inv", lambda: PacConv2d(2, 2, 3, kernel_type="inv_a_1"), ValueError, r"valid forms"),
    ("short_inv", lambda: packernel2d(G, kernel_size=3, kernel_type="inv_1"), ValueError, r"valid forms"),
    ("bad_suffix", lambda: PacConv2d(2, 2, 3, kernel_type="inv_1_2_sym"), ValueError, r"valid forms"),
    ("even_smooth", lambda: PacConv2d(2, 2, 3, smooth_kernel_type="average_4"), ValueError, r"odd positive"),
    ("bad_smooth", lambda: PacConv2d(2, 2, 3, smooth_kernel_type="box_3"), ValueError, r"valid forms"),
    ("bad_filler", lambda: PacConv2d(2, 2, 3, filler="xavier"), ValueError, r"valid fillers are \('uniform'"),
    ("linear_conv", lambda: PacConv2d(2, 2, 3, filler="linear"), ValueError, r"valid fillers"),
    ("linear_small", lambda: PacConvTranspose2d(2, 2, 3, stride=4, filler="linear"), ValueError, r">= 2 \* stride - 1"),
    ("linear_channels", lambda: PacConvTranspose2d(2, 3, 3, filler="linear"), ValueError, r"in_channels == out_"),
    ("crf_channels", lambda: PacConv2d(2, 3, 3, filler="crf"), ValueError, r"in_channels == out_channels"),
    ("pool_unshared", lambda: PacConv2d(2, 2, 3, filler="pool"), ValueError, r"requires shared_filters=True"),
    ("output_padding", lambda: PacConvTranspose2d(2, 2, 3, stride=2, output_padding=2), ValueError, r"output_padding"),
    (
        "weight_channels",
        lambda: pacconv2d(X, torch.ones(1, 1, 3, 3, 3, 4), torch.ones(3, 4, 3, 3)),
        ValueError,
        r"expects C_in=4 .*\(1, 2, 5, 6\)",
    ),
    (
        "bias_shape",
        lambda: pacconv2d(X, torch.ones(1, 1, 3, 3, 3, 4), torch.ones(3, 2, 3, 3), torch.ones(2)),
        ValueError,
        r"bias must have shape \(3,\)",
    ),
    (
        "shared_weight_shape",
        lambda: pacconv2d(X, torch.ones(1, 1, 3, 3, 3, 4), torch.ones(2, 2, 3, 3), shared_filters=True),
        ValueError,
        r"\(1, 1, kh, kw\)",
    ),
    (
        "transposed_guidance_size",
        lambda: packernel2d(G, kernel_size=3, stride=2, normalize_kernel=True, transposed=True),
        ValueError,
        r"not an output size",
    ),
    ("not_tensor", lambda: packernel2d([[1.0]], kernel_size=3), TypeError, r"must be a Tensor"),
    ("inv_alpha_gauss", lambda: packernel2d(G, kernel_size=3, inv_alpha=1.0), ValueError, r"only used by 'inv_"),
    ("smooth_given_none", lambda: packernel2d(G, kernel_size=3, smooth_kernel=torch.ones(3, 3)), ValueError, r"'none'"),
    (
        "smooth_shape",
        lambda: packernel2d(G, kernel_size=3, smooth_kernel_type="full_3", smooth_kernel=torch.ones(5, 5)),
        ValueError,
        r"smooth_kernel must have shape \(1, 1, 3, 3\)",
    ),
    ("bad_stride", lambda: PacConv2d(2, 2, 3, stride=0), ValueError, r"stride must be positive"),
    ("bad_channels", lambda: PacConv2d(0, 2, 3), ValueError, r"in_channels must be a positive int"),
]


@pytest.mark.parametrize("fn,exc,match", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_errors(fn: Callable[[], object], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        fn()


# ----------------------------------------------------------------------------------------------------------------------
# torch.compile
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_torch_compile_smoke() -> None:
    # a clean dynamo state: after test_pac_paths' aot_eager compiles, inductor raised "Node ... was invalid, but is
    # output" on this graph (torch 2.14.1) unless reset
    torch._dynamo.reset()
    mod = PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.5_-1")
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    f = torch.randn(2, 2, 8, 8)
    compiled = torch.compile(mod)
    out = compiled(x, f)
    torch.testing.assert_close(out, mod(x, f), rtol=1e-4, atol=1e-5)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
