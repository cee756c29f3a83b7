"""The PAC implementation forms agree: rows form (CPU default; with the Gaussian fused in), cols form (the rows
geometry with channels first: narrow layers on large images; chosen here), tap loop (strided PacConv2d; chosen here
with ``pac_form`` for the others), unfold form (CUDA; chosen here), reference.

The reference (``native_impl=True``) is plain autograd on ``F.unfold``: obviously correct, memory-hungry. The tests
compare the fast paths against it in float64, for outputs and for the gradients of input, guidance, weight, bias.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from nvresearch.core.layers.pac import (
    PacConv2d,
    PacConvTranspose2d,
    PacPool2d,
    pac_form,
    pacconv2d,
    pacconv_transpose2d,
)
from nvresearch.core.layers.pac.plans import _tap_groups, _transposed_plan

DT = torch.float64


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


TUNING = {"tile_rows": 7, "chunk_bytes": 1}  # uneven tiles of 7 rows; one sample per unfold chunk
GRAD_FN = {
    "rows": "PacRowsCorrelate",
    "fused_rows": "PacGaussianCorrelateBackward",
    "cols": "PacColsCorrelate",
    "fused_cols": "PacGaussianCorrelateColsBackward",
    "fused_taps": "PacGaussianCorrelateTaps",
    "taploop": "PacCorrelateBackward",
    "unfold": "PacUnfoldCorrelate",
}


@pytest.fixture(params=["rows", "cols", "taploop", "unfold"])
def form(request: pytest.FixtureRequest) -> str:
    """The family of forms a test runs: the rows forms (taken for these narrow layers too, in uneven tiles of 7 rows),
    the cols forms (the narrow layers' form on large images, here on small ones, in uneven tiles of 7 columns), the
    channels-first loops (tap loop, fused Gaussian with channels first) and the unfold form (with a chunk of one
    sample, so that the batch is split)."""
    return request.param


def _forms(family: str, fused: bool, transposed: bool) -> tuple[str, str]:
    """(form of a call with the guidance, form of a call with a kernel) of a family."""
    if family in ("rows", "cols"):
        return (f"fused_{family}" if fused else family), family
    if family == "taploop":
        return ("fused_taps" if fused and transposed else "taploop"), "taploop"
    return family, family


def _pair_of(cls: type, *args: object, **kwargs: object) -> tuple[nn.Module, nn.Module]:
    fast = cls(*args, **kwargs).to(DT)
    ref = cls(*args, native_impl=True, **kwargs).to(DT)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def _grads(mod: nn.Module, x: Tensor, f: Tensor, how: str) -> list[Tensor]:
    x, f = x.clone().requires_grad_(), f.clone().requires_grad_()
    mod.zero_grad()
    if how == "kernel":  # the tap loop: kernel computed first, then pacconv with an explicit kernel
        out = mod(x, None, kernel=mod.compute_kernel(f)[0])
    else:
        out = mod(x, f)
    (out * torch.linspace(-1, 1, out.numel(), dtype=DT).view_as(out)).sum().backward()
    grads = [out.detach(), x.grad, f.grad, mod.weight.grad]
    return grads + ([mod.bias.grad] if mod.bias is not None else [])


def _agree(fast: nn.Module, ref: nn.Module, x: Tensor, f: Tensor, fused: bool, family: str) -> None:
    """The forms of ``family`` (``fused``: the layer's kernel is a plain Gaussian) agree with the reference."""
    guide_form, kernel_form = _forms(family, fused, fast.transposed)
    want = _grads(ref, x, f, "guide")
    for how, name in (("guide", guide_form), ("kernel", kernel_form)):
        with pac_form(name, **TUNING):
            out = fast(x, f) if how == "guide" else fast(x, None, kernel=fast.compute_kernel(f)[0])
            assert GRAD_FN[name] in out.grad_fn.name(), (name, out.grad_fn.name())
            got = _grads(fast, x, f, how)
        for what, a, b in zip(("output", "input", "guidance", "weight", "bias"), got, want):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"{name} ({how} path), {what}")


CONV_CASES = [
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
    dict(in_channels=3, out_channels=2, kernel_size=5, padding=0, stride=2),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=3, dilation=2),
    dict(in_channels=3, out_channels=3, kernel_size=5, padding=2, shared_filters=True),
    dict(in_channels=2, out_channels=2, kernel_size=(3, 5), padding=(1, 2), stride=(1, 2), bias=False),
    # windows the fused forms' flat, mirrored kernel must get right: rectangular and dilated, no padding, over-padded
    dict(in_channels=3, out_channels=2, kernel_size=(5, 3), padding=(2, 3), dilation=(1, 2)),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=0),
    dict(in_channels=8, out_channels=8, kernel_size=5, padding=3),
]


@pytest.mark.parametrize("cfg", CONV_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_conv_paths_agree(cfg: dict, form: str) -> None:
    fast, ref = _pair_of(PacConv2d, **cfg)
    x, f = torch.randn(2, cfg["in_channels"], 9, 11, dtype=DT), torch.randn(2, 3, 9, 11, dtype=DT)
    if form in ("rows", "cols") and cfg.get("stride", 1) not in (1, (1, 1)):
        with pac_form(form), pytest.raises(ValueError, match="reads the input at stride 1"):
            fast(x, f)
        return
    _agree(fast, ref, x, f, fused=True, family=form)


TRANSPOSED_CASES = [
    dict(in_channels=3, out_channels=4, kernel_size=5, stride=2, padding=2, output_padding=1),
    dict(in_channels=2, out_channels=3, kernel_size=3, stride=3, padding=1, output_padding=2),
    dict(in_channels=2, out_channels=2, kernel_size=3, stride=1, padding=1),
    dict(in_channels=2, out_channels=3, kernel_size=5, stride=2, padding=0, dilation=2, output_padding=1),
    dict(in_channels=3, out_channels=3, kernel_size=5, stride=2, padding=2, output_padding=1, shared_filters=True),
    dict(in_channels=2, out_channels=2, kernel_size=(3, 5), stride=(2, 3), padding=(1, 3), bias=False),
    dict(in_channels=2, out_channels=2, kernel_size=3, stride=4, padding=0),  # some outputs get no tap at all
]


@pytest.mark.parametrize("cfg", TRANSPOSED_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_transposed_paths_agree(cfg: dict, form: str) -> None:
    fast, ref = _pair_of(PacConvTranspose2d, **cfg)
    x = torch.randn(2, cfg["in_channels"], 5, 6, dtype=DT)
    h, w = fast._expected_guidance_size((5, 6))  # the guidance lives at the output size
    _agree(fast, ref, x, torch.randn(2, 3, h, w, dtype=DT), fused=True, family=form)


GENERAL_CASES = [
    dict(kernel_type="inv_0.5_-1", smooth_kernel_type="gaussian"),
    dict(kernel_type="inv_0.2_0.2_asym"),
    dict(normalize_kernel=True),
    dict(smooth_kernel_type="full_3", normalize_kernel=True),
]


@pytest.mark.parametrize("cfg", GENERAL_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("transposed", [False, True])
def test_general_kernels_tap_loop_agrees_with_reference(cfg: dict, transposed: bool, form: str) -> None:
    if transposed:
        fast, ref = _pair_of(PacConvTranspose2d, 2, 3, 5, stride=2, padding=2, output_padding=1, **cfg)
        x, f = torch.randn(2, 2, 5, 6, dtype=DT), torch.randn(2, 3, 10, 12, dtype=DT)
    else:
        fast, ref = _pair_of(PacConv2d, 2, 3, 3, padding=1, **cfg)
        x, f = torch.randn(2, 2, 7, 6, dtype=DT), torch.randn(2, 3, 7, 6, dtype=DT)
    _agree(fast, ref, x, f, fused=False, family=form)


@pytest.mark.parametrize("pool_form", ["taploop", "reference"])
def test_pool_forms_agree(pool_form: str) -> None:
    fast = PacPool2d(3, stride=2, padding=1, channel_wise=True, normalize_kernel=True)
    ref = PacPool2d(3, stride=2, padding=1, channel_wise=True, normalize_kernel=True, native_impl=True)
    x, f = torch.randn(2, 3, 9, 8, dtype=DT, requires_grad=True), torch.randn(2, 3, 9, 8, dtype=DT)
    with pac_form(pool_form):
        got = fast(x, f)
    torch.testing.assert_close(got, ref(x, f), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fused", ["fused_rows", "fused_cols", "fused_taps"])
def test_fused_path_gradcheck(fused: str) -> None:
    tconv = PacConvTranspose2d(2, 2, 3, stride=2, padding=1, output_padding=1).to(DT)
    x = torch.randn(1, 2, 4, 4, dtype=DT, requires_grad=True)
    g = torch.randn(1, 2, 8, 8, dtype=DT, requires_grad=True)
    fn = _with(tconv, tconv.weight, tconv.bias)
    with pac_form(fused, tile_rows=7):
        name = fn(x, g).grad_fn.name()
        assert GRAD_FN[fused] in name, name
        assert torch.autograd.gradcheck(
            lambda x, f, w, b: _with(tconv, w, b)(x, f), (x, g, tconv.weight, tconv.bias), fast_mode=True
        )


@pytest.mark.parametrize("fused", ["fused_rows", "fused_cols", "fused_taps"])
def test_fused_path_gradgradcheck(fused: str) -> None:
    tconv = PacConvTranspose2d(2, 2, 3, stride=2, padding=1, output_padding=1).to(DT)
    x = torch.randn(1, 2, 3, 3, dtype=DT, requires_grad=True)
    g = torch.randn(1, 2, 6, 6, dtype=DT, requires_grad=True)
    with pac_form(fused):
        assert torch.autograd.gradgradcheck(
            lambda x, f, w: _with(tconv, w, tconv.bias)(x, f), (x, g, tconv.weight), fast_mode=True
        )


@pytest.mark.parametrize("fused", ["fused_rows", "fused_cols"])
@pytest.mark.parametrize("cfg", [dict(kernel_size=5, padding=2), dict(kernel_size=(3, 5), padding=(2, 3), dilation=2)])
def test_fused_conv_gradcheck_and_gradgradcheck(fused: str, cfg: dict) -> None:
    """A stride-1 PacConv2d computes its kernel from flat guidance rows, each mirrored pair of taps from one pass:
    first and second derivatives of input, guidance, weight and bias, in uneven tiles."""
    conv = PacConv2d(2, 2, **cfg).to(DT)
    x = torch.randn(1, 2, 5, 6, dtype=DT, requires_grad=True)
    g = torch.randn(1, 2, 5, 6, dtype=DT, requires_grad=True)
    args = (x, g, conv.weight, conv.bias)
    with pac_form(fused, tile_rows=7):
        assert GRAD_FN[fused] in _with(conv, conv.weight, conv.bias)(x, g).grad_fn.name()
        # the full Jacobian: fast mode's random projection missed a dropped mirror term in the dilated case
        assert torch.autograd.gradcheck(lambda x, f, w, b: _with(conv, w, b)(x, f), args)
        assert torch.autograd.gradgradcheck(lambda x, f, w, b: _with(conv, w, b)(x, f), args, fast_mode=True)


def test_stacked_tap_groups_agree() -> None:
    """The tap loop with every tap of a phase stacked into one matrix product (off by default) is exact too."""
    with pac_form("taploop", group_bytes=2**30):
        for cfg in CONV_CASES[:3]:
            fast, ref = _pair_of(PacConv2d, **cfg)
            x, f = torch.randn(2, cfg["in_channels"], 9, 11, dtype=DT), torch.randn(2, 3, 9, 11, dtype=DT)
            _agree(fast, ref, x, f, fused=False, family="taploop")
        cfg = dict(stride=2, padding=2, output_padding=1, kernel_type="inv_0.5_-1")
        fast, ref = _pair_of(PacConvTranspose2d, 3, 4, 5, **cfg)
        x, f = torch.randn(2, 3, 5, 6, dtype=DT), torch.randn(2, 3, 10, 12, dtype=DT)
        _agree(fast, ref, x, f, fused=False, family="taploop")


@pytest.mark.parametrize("rows_form", ["rows", "cols"])
@pytest.mark.parametrize("shared", [False, True])
def test_rows_form_gradcheck_and_gradgradcheck(shared: bool, rows_form: str) -> None:
    """The rows and cols forms with an explicit kernel, split into uneven tiles: first and second derivatives of
    input, kernel and weight, for a dilated convolution and a strided transposed one."""
    w_conv = torch.randn(1, 1, 3, 3, dtype=DT) if shared else torch.randn(3, 2, 3, 3, dtype=DT)
    w_tr = torch.randn(1, 1, 3, 3, dtype=DT) if shared else torch.randn(2, 3, 3, 3, dtype=DT)
    cases = [
        (
            lambda x, k, w: pacconv2d(x, k, w, padding=2, dilation=2, shared_filters=shared, form=rows_form),
            torch.randn(2, 2, 4, 5, dtype=DT),
            torch.rand(2, 1, 3, 3, 4, 5, dtype=DT),
            w_conv,
        ),
        (
            lambda x, k, w: pacconv_transpose2d(
                x, k, w, stride=2, padding=1, output_padding=1, shared_filters=shared, form=rows_form
            ),
            torch.randn(1, 2, 3, 3, dtype=DT),
            torch.rand(1, 1, 3, 3, 6, 6, dtype=DT),
            w_tr,
        ),
    ]
    for fn, x, k, w in cases:
        args = tuple(t.clone().requires_grad_() for t in (x, k, w))
        with pac_form(tile_rows=5):  # uneven tiles
            assert GRAD_FN[rows_form] in fn(*args).grad_fn.name()
            assert torch.autograd.gradcheck(fn, args, fast_mode=True)
            assert torch.autograd.gradgradcheck(fn, args, fast_mode=True)


@pytest.mark.parametrize("rows_form", ["rows", "cols"])
def test_rows_form_saves_only_its_inputs(rows_form: str) -> None:
    """The correlation keeps its input, kernel and weight; never a channels-last (or -first) copy or tap products;
    with the Gaussian fused in, only the input, the guidance and the weight."""
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    k = torch.rand(2, 1, 5, 5, 16, 16, requires_grad=True)
    w = torch.randn(8, 8, 5, 5, requires_grad=True)
    out, saved = _run_and_record_saved(lambda: pacconv2d(x, k, w, padding=2, form=rows_form))
    assert GRAD_FN[rows_form] in out.grad_fn.name()
    assert set(saved) <= {t.untyped_storage().data_ptr() for t in (x, k, w)}
    f = torch.randn(2, 3, 16, 16, requires_grad=True)
    out, saved = _run_and_record_saved(lambda: pacconv2d(x, None, w, padding=2, guidance=f, form=f"fused_{rows_form}"))
    assert GRAD_FN[f"fused_{rows_form}"] in out.grad_fn.name()
    assert set(saved) <= {t.untyped_storage().data_ptr() for t in (x, f, w)}


def test_cpu_picks_the_rows_form_for_wide_little_padded_layers() -> None:
    """Rows form for the benchmark's shapes; the channels-first loops for narrow layers and for heavy padding (a
    dilated CRF message), where the rows form measured slower."""
    x, f = torch.randn(1, 32, 32, 32), torch.randn(1, 8, 32, 32)
    assert "PacGaussianCorrelateBackward" in PacConv2d(32, 32, 5, padding=2)(x, f).grad_fn.name()
    assert "PacRowsCorrelate" in PacConv2d(32, 32, 5, padding=2, kernel_type="inv_0.5_-1")(x, f).grad_fn.name()
    wide_t = PacConvTranspose2d(32, 32, 5, stride=2, padding=2, output_padding=1)
    assert "PacGaussianCorrelateBackward" in wide_t(x, torch.randn(1, 8, 64, 64)).grad_fn.name()
    assert "PacCorrelateBackward" in PacConv2d(32, 32, 5, padding=16, dilation=8)(x, f).grad_fn.name()
    narrow = PacConv2d(8, 8, 5, padding=2)(x[:, :8], f)
    assert "PacCorrelateBackward" in narrow.grad_fn.name()
    narrow_t = PacConvTranspose2d(16, 16, 5, stride=2, padding=2, output_padding=1)
    assert "PacGaussianCorrelateTaps" in narrow_t(x[:, :16], torch.randn(1, 8, 64, 64)).grad_fn.name()


def test_cpu_picks_the_cols_form_for_narrow_layers_on_large_images() -> None:
    """From _COLS_MIN_ROWS padded rows on, layers of 8 to 31 channels take the cols form (fused with a plain
    Gaussian); narrower ones, strided ones and heavy padding keep the channels-first loops."""
    x, f = torch.randn(1, 16, 128, 128), torch.randn(1, 3, 128, 128)
    assert "PacGaussianCorrelateCols" in PacConv2d(8, 8, 5, padding=2)(x[:, :8], f).grad_fn.name()
    assert "PacGaussianCorrelateCols" in PacConv2d(16, 16, 3, padding=1)(x, f).grad_fn.name()
    assert "PacColsCorrelate" in PacConv2d(8, 8, 3, padding=1, normalize_kernel=True)(x[:, :8], f).grad_fn.name()
    assert "PacCorrelateBackward" in PacConv2d(8, 8, 5, padding=2, stride=2)(x[:, :8], f).grad_fn.name()
    assert "PacCorrelateBackward" in PacConv2d(4, 4, 5, padding=2)(x[:, :4], f).grad_fn.name()  # below 8 channels
    assert "PacCorrelateBackward" in PacConv2d(8, 8, 5, padding=64, dilation=32)(x[:, :8], f).grad_fn.name()
    narrow_t = PacConvTranspose2d(16, 16, 5, stride=2, padding=2, output_padding=1)
    assert "PacGaussianCorrelateCols" in narrow_t(x, torch.randn(1, 8, 256, 256)).grad_fn.name()
    assert "PacCorrelateBackward" in PacConv2d(8, 8, 5, padding=2)(x[:, :8, :64, :64], f[..., :64, :64]).grad_fn.name()


@pac_form("unfold", chunk_bytes=1)  # one sample per chunk
def test_unfold_form_gradcheck_and_gradgradcheck() -> None:
    for mod, x, g in (
        (
            PacConv2d(2, 3, 3, padding=1, stride=2).to(DT),
            torch.randn(2, 2, 5, 5, dtype=DT),
            torch.randn(2, 2, 5, 5, dtype=DT),
        ),
        (
            PacConv2d(2, 2, 3, padding=1, shared_filters=True).to(DT),
            torch.randn(2, 2, 4, 4, dtype=DT),
            torch.randn(2, 2, 4, 4, dtype=DT),
        ),
        (
            PacConvTranspose2d(2, 2, 3, stride=2, padding=1, output_padding=1).to(DT),
            torch.randn(2, 2, 3, 3, dtype=DT),
            torch.randn(2, 2, 6, 6, dtype=DT),
        ),
    ):
        x.requires_grad_()
        g.requires_grad_()
        fn = _with(mod, mod.weight, mod.bias)
        assert "PacUnfoldCorrelate" in fn(x, g).grad_fn.name()
        args = (x, g, mod.weight, mod.bias)
        assert torch.autograd.gradcheck(lambda x, f, w, b, m=mod: _with(m, w, b)(x, f), args, fast_mode=True)
        assert torch.autograd.gradgradcheck(lambda x, f, w, b, m=mod: _with(m, w, b)(x, f), args, fast_mode=True)


@pac_form("unfold")
def test_unfold_form_saves_only_its_inputs() -> None:
    """The unfold form keeps the (padded) input, the guidance and the kernel; never an im2col."""
    mod = PacConv2d(8, 8, 5, padding=2)
    x, f = torch.randn(2, 8, 16, 16, requires_grad=True), torch.randn(2, 3, 16, 16, requires_grad=True)
    out, saved = _run_and_record_saved(lambda: mod(x, f))
    assert "PacUnfoldCorrelate" in out.grad_fn.name()
    im2col = x.numel() * 25 * x.element_size()
    padded_x = 2 * 8 * 20 * 20 * 4
    kernel = 2 * 25 * 16 * 16 * 4
    assert sum(saved.values()) <= padded_x + f.numel() * 4 * 3 + 2 * kernel + mod.weight.numel() * 4
    assert sum(saved.values()) < im2col / 2


def _run_and_record_saved(fn: object) -> tuple[Tensor, dict[int, int]]:
    """``fn()`` and the storages autograd saved for its backward: ``{data_ptr: bytes}``."""
    saved: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()  # type: ignore[operator]
    return out, saved


def _with(mod: nn.Module, weight: Tensor, bias: Tensor | None) -> nn.Module:
    """``mod`` whose weight and bias are the given (differentiable) tensors."""

    def call(x: Tensor, f: Tensor) -> Tensor:
        return torch.func.functional_call(mod, {"weight": weight, "bias": bias}, (x, f))

    return call  # type: ignore[return-value]


def test_fused_path_saves_only_its_inputs() -> None:
    """Nothing beyond the caller's input and guidance and one weight-sized tensor (the flipped weight) is kept."""
    mod = PacConvTranspose2d(8, 8, 5, stride=2, padding=2, output_padding=1)
    x, f = torch.randn(2, 8, 8, 8, requires_grad=True), torch.randn(2, 3, 16, 16, requires_grad=True)
    out, saved = _run_and_record_saved(lambda: mod(x, f))
    extra = {
        p: n for p, n in saved.items() if p not in {x.untyped_storage().data_ptr(), f.untyped_storage().data_ptr()}
    }
    assert sum(extra.values()) <= mod.weight.untyped_storage().nbytes()
    out.sum().backward()
    assert x.grad is not None and f.grad is not None


def test_fused_path_is_deterministic() -> None:
    mod = PacConvTranspose2d(4, 4, 5, stride=2, padding=2, output_padding=1)
    x, f = torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 3, 16, 16)
    out1 = mod(x, f)
    (g1,) = torch.autograd.grad(out1.sum(), x)
    out2 = mod(x, f)
    (g2,) = torch.autograd.grad(out2.sum(), x)
    assert torch.equal(out1, out2) and torch.equal(g1, g2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("transposed", [False, True])
def test_low_precision_close_to_float32(dtype: torch.dtype, transposed: bool) -> None:
    """Half-precision modules run (the kernel is computed in float32) and stay close to the float32 result."""
    if transposed:
        mod = PacConvTranspose2d(4, 5, 5, stride=2, padding=2, output_padding=1)
        x, f = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 16, 16)
    else:
        mod = PacConv2d(4, 5, 3, padding=1)
        x, f = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 8, 8)
    want = mod(x, f)
    half = mod.to(dtype)
    xh = x.to(dtype).requires_grad_()
    out = half(xh, f.to(dtype))
    assert out.dtype == dtype
    tol = 3e-2 if dtype == torch.bfloat16 else 5e-3
    torch.testing.assert_close(out.float(), want, rtol=tol, atol=tol)
    out.float().sum().backward()
    assert xh.grad.dtype == dtype and torch.isfinite(xh.grad.float()).all()


def test_tap_groups_cover_each_tap_once_and_share_a_phase() -> None:
    plan, _ = _transposed_plan((6, 7), (5, 5), (2, 2), (2, 2), (1, 1), (12, 14))
    groups = _tap_groups(plan, bytes_per_tap=1, budget=4 * 2**20)
    assert sorted(i for g in groups for i in g) == list(range(25))
    assert all(len({plan.taps[i][2] for i in g}) == 1 for g in groups)
    assert len(_tap_groups(plan, bytes_per_tap=2**40, budget=4 * 2**20)) == 25  # huge taps: one per group


@pytest.mark.slow
@pytest.mark.parametrize("transposed", [False, True])
def test_fused_path_compiles_fullgraph(transposed: bool) -> None:
    """torch.compile captures the fused path in one graph (forward and backward) and computes the same."""
    torch._dynamo.reset()  # no compiled state from other tests (an inductor compile after another test failed)
    if transposed:
        mod = PacConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
        x, f = torch.randn(2, 3, 6, 6), torch.randn(2, 2, 12, 12)
    else:
        mod = PacConv2d(3, 4, 3, padding=1)
        x, f = torch.randn(2, 3, 6, 6), torch.randn(2, 2, 6, 6)
    compiled = torch.compile(mod, backend="aot_eager", fullgraph=True)
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = compiled(xc, f)
    torch.testing.assert_close(out, mod(xe, f))
    out.sum().backward()
    mod(xe, f).sum().backward()
    torch.testing.assert_close(xc.grad, xe.grad)


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    for mod, x, f in (
        (PacConv2d(4, 5, 5, padding=2), torch.randn(2, 4, 16, 16), torch.randn(2, 3, 16, 16)),
        (PacConvTranspose2d(4, 5, 5, 2, 2, 1), torch.randn(2, 4, 8, 8), torch.randn(2, 3, 16, 16)),
    ):
        want = mod(x, f)
        got = mod.cuda()(x.cuda(), f.cuda())
        torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)
