"""The PAC layers on a CUDA device: every path agrees with the CPU float64 answer, low precision, compile, CRF.

On CUDA the modules pick the unfold forms (``_PacUnfoldCorrelate``, ``_PacSquaredDistance(unfold=True)``); their
agreement with the reference is also tested on the CPU (``test_pac_forms.py``, chosen with ``pac_form``).

All tests are marked ``gpu`` (skipped without a CUDA device). ``scripts/gpu_check.sh`` runs them on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from nvresearch.core.layers import PacConv2d, PacConvTranspose2d, PacCRF, PacPool2d

pytestmark = pytest.mark.gpu
DT = torch.float64

CASES = [
    (PacConv2d, dict(in_channels=4, out_channels=5, kernel_size=5, padding=2), (2, 4, 12, 12), (2, 3, 12, 12)),
    (
        PacConv2d,
        dict(in_channels=3, out_channels=2, kernel_size=3, stride=2, dilation=2, padding=2),
        (2, 3, 11, 11),
        (2, 3, 11, 11),
    ),
    (
        PacConv2d,
        dict(in_channels=3, out_channels=3, kernel_size=3, padding=1, shared_filters=True),
        (2, 3, 9, 9),
        (2, 2, 9, 9),
    ),
    (
        PacConvTranspose2d,
        dict(in_channels=4, out_channels=3, kernel_size=5, stride=2, padding=2, output_padding=1),
        (2, 4, 6, 6),
        (2, 3, 12, 12),
    ),
    (
        PacConvTranspose2d,
        dict(in_channels=3, out_channels=2, kernel_size=3, stride=3, padding=1),
        (1, 3, 5, 5),
        (1, 2, 13, 13),
    ),
    (PacPool2d, dict(kernel_size=3, padding=1, normalize_kernel=True), (2, 3, 10, 10), (2, 2, 10, 10)),
]


def _run(mod: nn.Module, x: Tensor, f: Tensor, device: str) -> list[Tensor]:
    mod = mod.to(device)
    mod.zero_grad()
    x = x.detach().to(device).requires_grad_()
    f = f.detach().to(device).requires_grad_()
    out = mod(x, f)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=device).view_as(out)
    (out * weights).sum().backward()
    params = [p.grad.cpu() for p in mod.parameters()]
    return [out.detach().cpu(), x.grad.cpu(), f.grad.cpu(), *params]


@pytest.mark.parametrize("native", [False, True], ids=["fast", "reference"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_cuda_float64_matches_cpu(case: int, native: bool) -> None:
    cls, kwargs, xs, fs = CASES[case]
    torch.manual_seed(case)
    mod = cls(native_impl=native, **kwargs).to(DT)
    x, f = torch.randn(xs, dtype=DT), torch.randn(fs, dtype=DT)
    want = _run(mod, x, f, "cpu")
    got = _run(mod, x, f, "cuda")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_cuda_gradcheck_fast_paths() -> None:
    torch.manual_seed(0)
    for mod, x, f in (
        (PacConv2d(2, 2, 3, padding=1), torch.randn(1, 2, 5, 5), torch.randn(1, 2, 5, 5)),
        (PacConvTranspose2d(2, 2, 3, 2, 1, 1), torch.randn(1, 2, 3, 3), torch.randn(1, 2, 6, 6)),
    ):
        mod = mod.to("cuda", DT)
        x = x.to("cuda", DT).requires_grad_()
        f = f.to("cuda", DT).requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b, m=mod: m(a, b), (x, f))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cls", [PacConv2d, PacConvTranspose2d])
def test_cuda_autocast_close_to_float32(cls: type, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    if cls is PacConv2d:
        mod, x, f = cls(8, 8, 5, padding=2), torch.randn(2, 8, 16, 16), torch.randn(2, 4, 16, 16)
    else:
        mod, x, f = cls(8, 8, 5, 2, 2, 1), torch.randn(2, 8, 8, 8), torch.randn(2, 4, 16, 16)
    mod = mod.cuda()
    x, f = x.cuda().requires_grad_(), f.cuda()
    want = mod(x, f)
    with torch.autocast("cuda", dtype=dtype):
        got = mod(x, f)
    assert got.dtype == dtype
    tol = 2e-2 if dtype is torch.float16 else 8e-2
    torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol * want.abs().max().item())
    got.float().sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(mod.weight.grad).all()


def test_cuda_deterministic() -> None:
    torch.manual_seed(0)
    mod = PacConv2d(8, 8, 5, padding=2).cuda()
    x, f = torch.randn(2, 8, 16, 16, device="cuda"), torch.randn(2, 4, 16, 16, device="cuda")
    runs = []
    for _ in range(2):
        xg = x.clone().requires_grad_()
        out = mod(xg, f)
        out.square().sum().backward()
        runs.append((out.detach(), xg.grad))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_cuda_crf_matches_cpu() -> None:
    torch.manual_seed(0)
    crf = PacCRF(3, num_steps=3).to(DT)
    unary, edge = torch.randn(1, 3, 10, 10, dtype=DT), torch.randn(1, 4, 10, 10, dtype=DT)
    want = crf(unary, edge)
    got = crf.cuda()(unary.cuda(), edge.cuda())
    torch.testing.assert_close(got.cpu(), want, rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_cuda_compile_fullgraph() -> None:
    torch._dynamo.reset()  # no compiled state from other tests
    torch.manual_seed(0)
    mod = PacConv2d(4, 4, 3, padding=1).cuda()
    x, f = torch.randn(2, 4, 12, 12, device="cuda"), torch.randn(2, 3, 12, 12, device="cuda")
    compiled = torch.compile(mod, fullgraph=True)
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.testing.assert_close(compiled(xc, f), mod(xe, f), rtol=1e-4, atol=1e-4)
    compiled(xc, f).sum().backward()
    mod(xe, f).sum().backward()
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-4, atol=1e-4)


def test_cpu_forms_are_refused_on_cuda() -> None:
    from nvresearch.core.layers.pac import pac_form

    layer = PacConv2d(32, 32, 3, padding=1).cuda()
    x, f = torch.randn(1, 32, 8, 8, device="cuda"), torch.randn(1, 2, 8, 8, device="cuda")
    for form in ("rows", "fused_rows", "cols", "fused_cols"):
        with pac_form(form), pytest.raises(ValueError, match="CPU form"):
            layer(x, f)
