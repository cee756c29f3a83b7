"""Tests for PAC pooling and PAC-CRF (nvresearch.core.layers.pac / paccrf; Su et al., CVPR 2019)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvresearch.core.layers.pac import PacPool2d, packernel2d, pacpool2d
from nvresearch.core.layers.pac.crf import PacCRF, PacCRFLoose, create_position_feats, create_YXRGB

DT = torch.float64


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ----------------------------------------------------------------------------------------------------------------------
# PacPool2d
# ----------------------------------------------------------------------------------------------------------------------
def _ref_pool(x: Tensor, f: Tensor, k: int, s: int, p: int, d: int, channel_wise: bool) -> Tensor:
    """Loop over the index form: out[c,y,x] = sum_j exp(-0.5 |f_j - f_i|^2) x_j (per channel when channel_wise)."""
    b, c, h, w = x.shape
    xp, fp = F.pad(x, (p,) * 4), F.pad(f, (p,) * 4)
    ho, wo = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
    out = torch.zeros(b, c, ho, wo, dtype=x.dtype)
    ctr = (k // 2) * d
    for y in range(ho):
        for xx in range(wo):
            for u in range(k):
                for v in range(k):
                    fy, fx = y * s + u * d, xx * s + v * d
                    diff2 = (fp[:, :, fy, fx] - fp[:, :, y * s + ctr, xx * s + ctr]) ** 2
                    kern = torch.exp(-0.5 * (diff2 if channel_wise else diff2.sum(1, keepdim=True)))
                    out[:, :, y, xx] += kern * xp[:, :, fy, fx]
    return out


def test_pool_constant_guidance_is_sum_pool() -> None:
    x = torch.randn(2, 3, 16, 17, dtype=DT)
    g = torch.full((2, 4, 16, 17), 0.7, dtype=DT)
    out = PacPool2d(5, stride=2, padding=2)(x, g)
    ref = 25 * nn.AvgPool2d(5, 2, 2)(x)
    assert out.shape == ref.shape == (2, 3, 8, 9)
    torch.testing.assert_close(out[:, :, 1:-1, 1:-1], ref[:, :, 1:-1, 1:-1], rtol=0, atol=1e-12)
    # Not an average: the interior is 25x the mean (fails for an implementation that normalises by default).
    assert not torch.allclose(out, nn.AvgPool2d(5, 2, 2)(x))


def test_pool_normalized_is_avg_pool_without_pad() -> None:
    x = torch.randn(2, 3, 15, 16, dtype=DT)
    g = torch.full((2, 2, 15, 16), -1.3, dtype=DT)
    out = PacPool2d(5, stride=2, padding=2, normalize_kernel=True)(x, g)
    ref = nn.AvgPool2d(5, 2, 2, count_include_pad=False)(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("k", "s", "p", "d", "channel_wise"), [(3, 1, 1, 1, False), (3, 2, 2, 2, True)])
def test_pool_matches_loop_reference(k: int, s: int, p: int, d: int, channel_wise: bool) -> None:
    x, f = torch.randn(2, 3, 7, 8, dtype=DT), torch.randn(2, 3, 7, 8, dtype=DT)
    out = PacPool2d(k, s, p, d, channel_wise=channel_wise)(x, f)
    torch.testing.assert_close(out, _ref_pool(x, f, k, s, p, d, channel_wise), rtol=0, atol=1e-12)


def test_pool_channel_wise_kernel_differs_per_channel() -> None:
    x = torch.ones(1, 2, 6, 6, dtype=DT)
    f = torch.zeros(1, 2, 6, 6, dtype=DT)
    f[:, 1, :, 3:] = 3.0  # only channel 1 has an edge
    mod = PacPool2d(3, padding=1, channel_wise=True)
    kernel, _ = mod.compute_kernel(f)
    assert kernel.shape == (1, 2, 3, 3, 6, 6)
    out = mod(x, f)
    assert out[0, 0, 2, 2] == pytest.approx(9.0)  # flat guidance: all 9 taps have weight 1
    assert out[0, 1, 2, 2] < 7.0  # the right column is across the edge
    torch.testing.assert_close(out, mod(x, None, kernel=kernel))  # an explicit kernel replaces the guidance
    torch.testing.assert_close(out, pacpool2d(x, kernel, 3, padding=1))


def test_pool_mask_returns_output_mask() -> None:
    x, f = torch.randn(1, 2, 5, 5, dtype=DT), torch.randn(1, 3, 5, 5, dtype=DT)
    mask = torch.ones(1, 1, 5, 5, dtype=DT)
    mask[..., :3, :3] = 0
    out, out_mask = PacPool2d(3, padding=1, normalize_kernel=True)(x, f, mask=mask)
    assert out.shape == (1, 2, 5, 5) and out_mask.shape == (1, 1, 5, 5)
    assert out_mask[0, 0, 0, 0] == 0 and out_mask[0, 0, 2, 2] == 1
    assert torch.all(out[..., 0, 0] == 0)


@pytest.mark.parametrize("channel_wise", [False, True])
def test_pool_gradcheck(channel_wise: bool) -> None:
    x = torch.randn(1, 2, 5, 6, dtype=DT, requires_grad=True)
    f = torch.randn(1, 2, 5, 6, dtype=DT, requires_grad=True)
    mod = PacPool2d(3, stride=2, padding=1, channel_wise=channel_wise, kernel_type="inv_0.5_-1", out_channels=2)
    mod = mod.to(DT)
    assert torch.autograd.gradcheck(lambda a, b: mod(a, b), (x, f))
    assert torch.autograd.gradcheck(lambda a, b: PacPool2d(3, padding=1, normalize_kernel=True)(a, b), (x, f))


def test_pool_repr_and_params() -> None:
    mod = PacPool2d(5, stride=2, padding=2, channel_wise=True, kernel_type="inv_0.5_-1", out_channels=3)
    text = repr(mod)
    assert "PacPool2d(" in text and "stride=(2, 2)" in text and "channel_wise=True" in text
    assert sorted(n for n, _ in mod.named_parameters()) == ["inv_alpha", "inv_lambda"]
    assert mod.inv_alpha.shape == (3,)
    assert list(PacPool2d(3).parameters()) == []
    assert repr(PacPool2d(3)) == "PacPool2d(kernel_size=(3, 3), kernel_type=gaussian)"


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (
            lambda: PacPool2d(3, channel_wise=True)(torch.randn(1, 2, 5, 5), torch.randn(1, 3, 5, 5)),
            ValueError,
            "F == C",
        ),
        (lambda: pacpool2d(torch.randn(1, 2, 5, 5), torch.ones(1, 3, 3, 3, 3, 3), 3), ValueError, "F == C"),
        (lambda: pacpool2d(torch.randn(1, 2, 5, 5), torch.ones(1, 1, 3, 3, 4, 4), 3), ValueError, r"kernel must have"),
        (lambda: pacpool2d(torch.randn(1, 2, 5, 5), torch.ones(1, 1, 3, 3), 3), ValueError, r"6-D"),
        (lambda: PacPool2d(4), ValueError, "odd"),
        (lambda: PacPool2d(3, channel_wise=True, kernel_type="inv_0.5_-1"), ValueError, "out_channels"),
        (lambda: PacPool2d(3, out_channels=0), ValueError, "out_channels"),
        (lambda: PacPool2d(3)(torch.randn(1, 2, 5, 5), torch.randn(1, 2, 4, 5)), ValueError, "spatial size"),
        (lambda: PacPool2d(3)(torch.randn(1, 2, 5, 5), torch.randn(1, 2, 5, 5, dtype=DT)), TypeError, "dtype"),
    ],
)
def test_pool_errors(make: object, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        make()  # type: ignore[operator]


def test_pool_kernel_from_packernel2d() -> None:
    x, f = torch.randn(2, 3, 9, 9, dtype=DT), torch.randn(2, 4, 9, 9, dtype=DT)
    kernel, _ = packernel2d(f, kernel_size=3, stride=2, padding=1, dilation=2)
    out = pacpool2d(x, kernel, 3, stride=2, padding=1, dilation=2)
    torch.testing.assert_close(out, _ref_pool(x, f, 3, 2, 1, 2, False), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# PacCRF
# ----------------------------------------------------------------------------------------------------------------------
def test_crf_parameters_match_reference_layout() -> None:
    crf = PacCRF(21, 5)
    crf.add_pairwise_kernel(5, 64)
    crf.add_pairwise_kernel(5, 16)
    params = dict(crf.named_parameters())
    assert list(params) == ["unary_weight", "messengers.0.weight", "messengers.1.weight"]
    assert params["unary_weight"].shape == ()
    assert sorted(crf.state_dict()) == sorted([*params, "pairwise_weights.0", "pairwise_weights.1"])
    assert crf.messengers[0].dilation == (64, 64) and crf.messengers[0].padding == (128, 128)
    for name in ("messengers.0.weight", "messengers.1.weight"):
        w = params[name].detach()
        assert w.shape == (21, 21, 5, 5)
        assert w[range(21), range(21)].abs().max() <= 5e-4
        off = w.sum(dim=(2, 3))[~torch.eye(21, dtype=torch.bool)]
        torch.testing.assert_close(off, torch.full_like(off, 22.237), rtol=0, atol=0.02)
    assert "pairwise_kernels=(4ds_5_64_1, 4ds_5_16_1)" in repr(crf)


def test_crf_learnable_pairwise_weight_only_for_potts_box() -> None:
    crf = PacCRF(3, 1, pairwise_kernels=[{"compat_type": "potts", "spatial_filter": False, "pairwise_weight": 2.0}])
    crf.add_pairwise_kernel(3, compat_type="potts", pairwise_weight=0.5)
    crf.add_pairwise_kernel(3, compat_type="2d")
    names = [n for n, _ in crf.named_parameters()]
    assert names == [
        "unary_weight",
        "messengers.1.weight",
        "messengers.2.weight",
        "compat.2.weight",
        "pairwise_weights.0",
    ]
    assert crf.pairwise_weights[0].item() == -2.0 and crf.pairwise_weights[1].item() == -0.5  # potts: negated
    w2 = crf.compat[2].weight.detach()[:, :, 0, 0]
    torch.testing.assert_close(w2, 1 - torch.eye(3), rtol=0, atol=5e-4)
    fixed = PacCRF(3, 1, fixed_weighting=True, pairwise_kernels={"compat_type": "potts", "spatial_filter": False})
    assert list(fixed.parameters()) == [] and "unary_weight" not in fixed.state_dict()
    # Gradients reach exactly the learnable scalars.
    u, f = torch.randn(1, 3, 6, 6), torch.randn(1, 3, 6, 6)
    crf(u, f).sum().backward()
    assert crf.unary_weight.grad is not None and crf.pairwise_weights[0].grad is not None


def test_crf_without_pairwise_terms_returns_unary() -> None:
    u = torch.randn(2, 4, 7, 8)
    torch.testing.assert_close(PacCRF(4, 3)(u, None), u)
    torch.testing.assert_close(PacCRF(4, 3, final_output="softmax")(u, None), F.softmax(u, 1))
    torch.testing.assert_close(PacCRF(4, 3, final_output="log_softmax")(u, None), F.log_softmax(u, 1))
    # A zero-weight pairwise term changes nothing either.
    crf = PacCRF(4, 3, pairwise_kernels={"kernel_size": 3, "pairwise_weight": 0.0})
    torch.testing.assert_close(crf(u, torch.randn(2, 3, 7, 8)), u)


def test_crf_one_step_matches_manual_mean_field() -> None:
    u, f = torch.randn(1, 3, 6, 6, dtype=DT), torch.randn(1, 2, 6, 6, dtype=DT)
    crf = PacCRF(3, 1, unary_weight=0.7, pairwise_kernels={"kernel_size": 3, "pairwise_weight": 1.5}).to(DT)
    kernel, _ = crf.messengers[0].compute_kernel(f)
    q = F.softmax(u, 1)
    # Reference message: sum_j K_ij sum_c' W[c, c', j] Q_j(c') from unfolded windows.
    cols = F.unfold(q, 3, padding=1).view(1, 3, 3, 3, 6, 6)
    w = crf.messengers[0].weight.detach()
    msg = torch.einsum("ocuv,bcuvyx,buvyx->boyx", w, cols, kernel[:, 0])
    torch.testing.assert_close(crf(u, f), 0.7 * u - 1.5 * msg)


def _scenes(n: int, size: int, n_cls: int = 5, n_rect: int = 8, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Label maps of random rectangles, a per-class colour palette + N(0, 5^2), unaries 2*onehot + N(0, 1.5^2)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.empty(n, size, size, dtype=torch.long)
    for i in range(n):
        lab = torch.full((size, size), int(torch.randint(n_cls, (1,), generator=g)))
        for _ in range(n_rect):
            y0, x0 = torch.randint(0, size - 8, (2,), generator=g).tolist()
            hh, ww = torch.randint(8, size // 2, (2,), generator=g).tolist()
            lab[y0 : y0 + hh, x0 : x0 + ww] = int(torch.randint(n_cls, (1,), generator=g))
        labels[i] = lab
    palette = torch.rand(n_cls, 3, generator=g) * 255
    img = palette[labels].permute(0, 3, 1, 2) + 5 * torch.randn(n, 3, size, size, generator=g)
    onehot = F.one_hot(labels, n_cls).permute(0, 3, 1, 2).float()
    return labels, img, 2 * onehot + 1.5 * torch.randn(onehot.shape, generator=g)


def _miou(pred: Tensor, label: Tensor, n_cls: int) -> float:
    cm = torch.bincount(label.flatten() * n_cls + pred.flatten(), minlength=n_cls * n_cls).view(n_cls, n_cls)
    inter, union = cm.diag(), cm.sum(0) + cm.sum(1) - cm.diag()
    return (inter[union > 0] / union[union > 0]).mean().item()


def test_crf_training_free_synthetic_segmentation() -> None:
    # Notes H.4 at reduced size: measured unary 0.406 -> potts 0.999 / 4d 0.980 (4 images, 48x48).
    labels, img, unary = _scenes(4, 48)
    base = _miou(unary.argmax(1), labels, 5)
    potts = PacCRF(5, 5, perturbed_init=False)
    potts.add_pairwise_kernel(11, compat_type="potts", spatial_filter=False)
    crf4d = PacCRF(5, 5, perturbed_init=False, pairwise_kernels={"kernel_size": 5, "dilation": 4})
    flush = torch.set_flush_denormal(True)  # far-apart colours give subnormal kernel values: slow on x86 CPUs
    try:
        with torch.no_grad():
            m_potts = _miou(potts(unary, img / 20).argmax(1), labels, 5)
            m_4d = _miou(crf4d(unary, img / 20).argmax(1), labels, 5)
    finally:
        if flush:
            torch.set_flush_denormal(False)
    assert base < 0.5
    assert m_potts > 0.95
    assert m_4d > 0.9


def test_crf_gradcheck_one_step() -> None:
    u = torch.randn(1, 2, 4, 5, dtype=DT, requires_grad=True)
    f = torch.randn(1, 1, 4, 5, dtype=DT, requires_grad=True)
    crf = PacCRF(2, 1, pairwise_kernels=[{"kernel_size": 3}, {"kernel_size": 3, "compat_type": "2d", "blur": 2}])
    crf = crf.to(DT)
    assert torch.autograd.gradcheck(lambda a, b: crf(a, b), (u, f))


@pytest.mark.parametrize("size", [(13, 10), (16, 16)])
def test_crf_blur_path(size: tuple[int, int]) -> None:
    h, w = size
    img = torch.rand(2, 3, h, w) * 255
    feats = create_YXRGB(img, 10.0, 30.0)
    crf = PacCRF(4, 2, final_output="softmax")
    crf.add_pairwise_kernel(3, blur=4, compat_type="potts")
    crf.add_pairwise_kernel(3, blur=2, compat_type="4d")
    crf.add_pairwise_kernel(3, compat_type="na")
    kernels = crf.compute_kernels(feats)
    assert kernels[0].shape == (2, 1, 3, 3, -(-h // 4), -(-w // 4)) and kernels[2] is None
    out = crf(torch.randn(2, 4, h, w), feats)
    assert out.shape == (2, 4, h, w) and torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(1), torch.ones(2, h, w))
    # Per-term features and precomputed kernels give the same result.
    u = torch.randn(2, 4, h, w)
    torch.testing.assert_close(crf(u, [feats] * 3), crf(u, None, edge_kernel=kernels))


def test_crf_loose() -> None:
    kernels = [{"kernel_size": 3}, {"kernel_size": 3, "blur": 2, "compat_type": "potts", "spatial_filter": False}]
    loose = PacCRFLoose(3, 4, final_output="log_softmax", pairwise_kernels=kernels)
    loose.add_pairwise_kernel(3, compat_type="na")
    assert len(loose.steps) == 4 and loose.num_pairwise_kernels() == 3
    assert all(s.num_steps == 1 for s in loose.steps)
    assert "steps.3.messengers.0.weight" in loose.state_dict()
    assert not torch.equal(loose.steps[0].messengers[0].weight, loose.steps[1].messengers[0].weight)  # untied
    u, f = torch.randn(1, 3, 9, 9), torch.randn(1, 3, 9, 9)
    out = loose(u, f)
    assert out.shape == u.shape and torch.isfinite(out).all()
    # Equal to chaining the steps with step 0's kernels.
    ks = loose.steps[0].compute_kernels(f)
    log_q = u
    for step in loose.steps:
        log_q = step(u, None, ks, log_q)
    torch.testing.assert_close(out, F.log_softmax(log_q, 1))


def test_crf_errors() -> None:
    with pytest.raises(ValueError, match="final_output"):
        PacCRF(3, 1, final_output="probs")
    with pytest.raises(ValueError, match="compat_type"):
        PacCRF(3, 1).add_pairwise_kernel(compat_type="3d")
    with pytest.raises(ValueError, match="odd"):
        PacCRF(3, 1).add_pairwise_kernel(kernel_size=4)
    crf = PacCRF(3, 1, pairwise_kernels={"kernel_size": 3})
    with pytest.raises(ValueError, match="C=3"):
        crf(torch.randn(1, 4, 5, 5), torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match="edge_feat"):
        crf(torch.randn(1, 3, 5, 5), None)


def test_position_features() -> None:
    pos = create_position_feats((3, 4), (2.0, 4.0), bs=2)
    assert pos.shape == (2, 2, 3, 4)
    assert pos[1, 0, 2, 1] == 1.0 and pos[1, 1, 2, 3] == 0.75
    img = torch.full((3, 3, 4), 60.0)
    feats = create_YXRGB(img, 100.0, torch.tensor([30.0, 60.0, 20.0]))
    assert feats.shape == (1, 5, 3, 4)
    torch.testing.assert_close(feats[0, 2:, 0, 0], torch.tensor([2.0, 1.0, 3.0]))
    assert feats[0, 1, 0, 3].item() == pytest.approx(0.03)
