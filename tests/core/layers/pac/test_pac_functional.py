"""The functional PAC API reaches every form through ``form=`` (the fused Gaussian ones with ``guidance=``), each
agrees with the reference in float64 and passes gradcheck, and an empty batch gives an empty output."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from nvresearch.core.layers.pac import (
    PacConv2d,
    PacConvTranspose2d,
    PacPool2d,
    pacconv2d,
    pacconv_transpose2d,
    packernel2d,
    pacpool2d,
)

DT = torch.float64
CONV_FORMS = ["rows", "fused_rows", "cols", "fused_cols", "taploop", "unfold", "reference"]
TRANSPOSED_FORMS = ["rows", "fused_rows", "cols", "fused_cols", "fused_taps", "taploop", "unfold", "reference"]
CONV = dict(padding=2, dilation=2)
TRANSPOSED = dict(stride=2, padding=1, output_padding=1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _conv_args(batch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return (
        torch.randn(batch, 2, 5, 6, dtype=DT),
        torch.randn(batch, 2, 5, 6, dtype=DT),
        torch.randn(3, 2, 3, 3, dtype=DT),
        torch.randn(3, dtype=DT),
    )


def _transposed_args(batch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return (
        torch.randn(batch, 2, 3, 4, dtype=DT),
        torch.randn(batch, 2, 6, 8, dtype=DT),
        torch.randn(2, 3, 3, 3, dtype=DT),
        torch.randn(3, dtype=DT),
    )


def _conv(form: str, x: Tensor, f: Tensor, w: Tensor, b: Tensor) -> Tensor:
    if form.startswith("fused"):
        return pacconv2d(x, None, w, b, guidance=f, form=form, **CONV)
    kernel, _ = packernel2d(f, kernel_size=3, **CONV)
    return pacconv2d(x, kernel, w, b, form=form, **CONV)


def _transposed(form: str, x: Tensor, f: Tensor, w: Tensor, b: Tensor) -> Tensor:
    if form.startswith("fused"):
        return pacconv_transpose2d(x, None, w, b, guidance=f, form=form, **TRANSPOSED)
    kernel, _ = packernel2d(f, kernel_size=3, transposed=True, **TRANSPOSED)
    return pacconv_transpose2d(x, kernel, w, b, form=form, **TRANSPOSED)


CASES = [(_conv, _conv_args, f) for f in CONV_FORMS] + [(_transposed, _transposed_args, f) for f in TRANSPOSED_FORMS]
IDS = [f"{fn.__name__[1:]}-{form}" for fn, _, form in CASES]


@pytest.mark.parametrize(("fn", "make", "form"), CASES, ids=IDS)
def test_every_form_matches_the_reference_and_passes_gradcheck(fn, make, form: str) -> None:  # noqa: ANN001
    args = tuple(t.requires_grad_() for t in make(2))
    want = fn("reference", *args)
    torch.testing.assert_close(fn(form, *args), want, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda *a: fn(form, *a), args, fast_mode=True)


@pytest.mark.parametrize(("fn", "make", "form"), CASES, ids=IDS)
def test_every_form_takes_an_empty_batch(fn, make, form: str) -> None:  # noqa: ANN001
    args = tuple(t.requires_grad_() for t in make(0))
    out = fn(form, *args)
    assert out.shape == (0, 3, *fn("reference", *make(1))[0].shape[-2:])
    out.sum().backward()
    x, f, w, b = args
    assert x.grad.shape == x.shape and w.grad is not None and torch.equal(w.grad, torch.zeros_like(w))


@pytest.mark.parametrize("form", ["taploop", "reference"])
def test_pool_forms_take_an_empty_batch(form: str) -> None:
    x = torch.randn(0, 3, 5, 6, dtype=DT, requires_grad=True)
    kernel, _ = packernel2d(torch.randn(0, 2, 5, 6, dtype=DT), kernel_size=3, padding=1)
    out = pacpool2d(x, kernel, 3, padding=1, form=form)
    assert out.shape == (0, 3, 5, 6)
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize(
    ("layer", "x_shape", "f_shape", "out_shape"),
    [
        (PacConv2d(4, 32, 3, padding=1), (0, 4, 7, 9), (0, 2, 7, 9), (0, 32, 7, 9)),
        (PacConv2d(32, 32, 5, padding=2), (0, 32, 7, 9), (0, 2, 7, 9), (0, 32, 7, 9)),  # the fused rows form
        (PacConv2d(4, 5, 3, stride=2, kernel_type="inv_0.5_-1"), (0, 4, 7, 9), (0, 2, 7, 9), (0, 5, 3, 4)),
        (PacConvTranspose2d(4, 5, 5, **{**TRANSPOSED, "padding": 2}), (0, 4, 3, 4), (0, 2, 6, 8), (0, 5, 6, 8)),
        (PacConvTranspose2d(32, 32, 3, **TRANSPOSED), (0, 32, 3, 4), (0, 2, 6, 8), (0, 32, 6, 8)),
        (PacPool2d(3, padding=1, normalize_kernel=True), (0, 4, 7, 9), (0, 2, 7, 9), (0, 4, 7, 9)),
    ],
    ids=["conv", "conv-wide", "conv-strided-inv", "transposed", "transposed-wide", "pool"],
)
def test_modules_take_an_empty_batch_like_nn_conv2d(layer: nn.Module, x_shape, f_shape, out_shape) -> None:  # noqa: ANN001
    x = torch.randn(*x_shape, requires_grad=True)
    out = layer(x, torch.randn(*f_shape))
    assert out.shape == out_shape
    out.sum().backward()
    assert x.grad.shape == x.shape
    if getattr(layer, "weight", None) is not None:
        assert torch.equal(layer.weight.grad, torch.zeros_like(layer.weight))


def test_kernel_or_guidance_not_both() -> None:
    x, f, w, _ = _conv_args(1)
    kernel, _ = packernel2d(f, kernel_size=3, **CONV)
    with pytest.raises(TypeError, match="either kernel .* or guidance="):
        pacconv2d(x, kernel, w, guidance=f, **CONV)
    with pytest.raises(TypeError, match="either kernel"):
        pacconv2d(x, None, w, **CONV)
    with pytest.raises(ValueError, match=r"guidance must have spatial size \(5, 6\)"):
        pacconv2d(x, None, w, guidance=f[:, :, :4], **CONV)
