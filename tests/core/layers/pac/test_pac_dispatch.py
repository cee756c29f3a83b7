"""The dispatcher is the one chooser of a PAC form: its automatic choices, the explicit ``form=`` / ``pac_form``
requests, and the errors for unknown or inapplicable forms."""

from __future__ import annotations

import pytest
import torch

from nvresearch.core.layers.pac import (
    FORMS,
    PacConv2d,
    PacConvTranspose2d,
    PacPool2d,
    pac_form,
    pacconv2d,
    packernel2d,
    pacpool2d,
)


def _name(out: torch.Tensor) -> str:
    return out.grad_fn.name()


def test_auto_choices_on_the_cpu() -> None:
    """Rows forms for wide, little-padded stride-1 layers (fused with a plain Gaussian), cols forms for narrower ones
    on large images, else the channels-first loops; the reference for native_impl."""
    x, f = torch.randn(1, 32, 16, 16), torch.randn(1, 4, 16, 16)
    assert "PacGaussianCorrelateBackward" in _name(PacConv2d(32, 32, 3, padding=1)(x, f))
    assert "PacRowsCorrelate" in _name(PacConv2d(32, 32, 3, padding=1, normalize_kernel=True)(x, f))
    assert "PacCorrelateBackward" in _name(PacConv2d(32, 32, 3, padding=1, stride=2)(x, f))
    assert "PacCorrelateBackward" in _name(PacConv2d(8, 8, 3, padding=1)(x[:, :8], f))
    assert "PacRowsCorrelate" not in _name(PacConv2d(32, 32, 3, padding=1, native_impl=True)(x, f))
    narrow_t = PacConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
    assert "PacGaussianCorrelateTaps" in _name(narrow_t(x[:, :8], torch.randn(1, 4, 32, 32)))
    half = PacConv2d(32, 32, 3, padding=1).bfloat16()  # the fused forms compute in float32/float64 only
    assert "PacRowsCorrelate" in _name(half(x.bfloat16(), f.bfloat16()))
    big_x, big_f = torch.randn(1, 8, 128, 128), torch.randn(1, 3, 128, 128)  # narrow on a large image: cols
    assert "PacGaussianCorrelateCols" in _name(PacConv2d(8, 8, 3, padding=1)(big_x, big_f))
    assert "PacColsCorrelate" in _name(PacConv2d(8, 8, 3, padding=1).bfloat16()(big_x.bfloat16(), big_f.bfloat16()))


def test_the_keyword_and_the_context_choose_the_form() -> None:
    x, f, w = torch.randn(1, 2, 6, 6, requires_grad=True), torch.randn(1, 2, 6, 6), torch.randn(2, 2, 3, 3)
    kernel, _ = packernel2d(f, kernel_size=3, padding=1)
    with pac_form("unfold"):
        assert "PacUnfoldCorrelate" in _name(pacconv2d(x, kernel, w, padding=1))
        assert "PacRowsCorrelate" in _name(pacconv2d(x, kernel, w, padding=1, form="rows"))  # the keyword wins
        with pac_form("taploop"):  # nested: the inner one, then the outer one again
            assert "PacCorrelateBackward" in _name(pacconv2d(x, kernel, w, padding=1))
        assert "PacUnfoldCorrelate" in _name(pacconv2d(x, kernel, w, padding=1))
    assert "PacCorrelateBackward" in _name(pacconv2d(x, kernel, w, padding=1))  # auto again: narrow -> tap loop


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x, k, f, w: pacconv2d(x, k, w, padding=1, form="winograd"), r"unknown PAC form 'winograd'"),
        (lambda x, k, f, w: pacconv2d(x, k, w, padding=1, form="fused_rows"), r"this call has a kernel"),
        (lambda x, k, f, w: pacconv2d(x, None, w, padding=1, guidance=f, form="fused_taps"), r"transposed layers"),
        (lambda x, k, f, w: pacconv2d(x, k[..., ::2, ::2], w, None, 2, 1, form="rows"), r"stride 1"),
        (lambda x, k, f, w: pacconv2d(x, k, w, padding=1, native_impl=True, form="rows"), r"native_impl=True"),
        (lambda x, k, f, w: pacpool2d(x, k, 3, padding=1, form="rows"), r"pacpool2d cannot run form 'rows'"),
        (lambda x, k, f, w: packernel2d(f, kernel_size=3, form="rows"), r"packernel2d computes its distances"),
    ],
    ids=["unknown", "fused-with-kernel", "fused-taps-conv", "rows-strided", "native-conflict", "pool", "kernel"],
)
def test_unknown_or_inapplicable_forms_raise(call, match: str) -> None:  # noqa: ANN001
    x, f, w = torch.randn(1, 2, 6, 6), torch.randn(1, 2, 6, 6), torch.randn(2, 2, 3, 3)
    kernel, _ = packernel2d(f, kernel_size=3, padding=1)
    with pytest.raises(ValueError, match=match) as info:
        call(x, kernel, f, w)
    if "unknown" in match or "does not apply" in str(info.value):
        assert str(FORMS) in str(info.value)  # the message lists the forms


def test_modules_honour_the_context_and_refuse_what_does_not_apply() -> None:
    x, f = torch.randn(1, 2, 6, 6), torch.randn(1, 2, 6, 6)
    with pac_form("rows"), pytest.raises(ValueError, match="reads the input at stride 1"):
        PacConv2d(2, 2, 3, stride=2)(x, f)
    with pac_form("fused_rows"), pytest.raises(ValueError, match="this call has a kernel"):
        PacConv2d(2, 2, 3, padding=1, kernel_type="inv_0.5_-1")(x, f)
    with pac_form("unfold"), pytest.raises(ValueError, match=r"pacpool2d runs only \('taploop', 'reference'\)"):
        PacPool2d(3, padding=1)(x, f)
    with pac_form("unfold"):  # a native_impl layer keeps the reference
        assert "Unfold" not in _name(PacConv2d(2, 2, 3, padding=1, native_impl=True)(x.requires_grad_(), f))


def test_pac_form_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="unknown PAC form"):
        with pac_form("fast"):
            pass
    with pytest.raises(ValueError, match="tile_rows must be a non-negative int"):
        with pac_form("rows", tile_rows=-1):
            pass
