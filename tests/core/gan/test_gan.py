"""GAN core: norms, blocks, discriminators, losses against hand-computed values, R1, feature matching, EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nvresearch.core.gan import (
    MLP,
    ActFirstResBlock,
    AdaptiveInstanceNorm2d,
    ClassConditionalHead,
    Conv2dBlock,
    LayerNorm2d,
    MultiScaleDiscriminator,
    PatchDiscriminator,
    ResBlock,
    SwitchableNorm2d,
    assign_adain_params,
    d_loss_fake,
    d_loss_real,
    ema_copy,
    ema_update,
    feature_matching_loss,
    g_loss,
    init_weights,
    make_norm,
    num_adain_params,
    r1_penalty,
    set_norm_mode,
)


def test_adain_matches_formula_and_parameter_layout():
    torch.manual_seed(0)
    net = nn.Sequential(AdaptiveInstanceNorm2d(2), nn.Identity(), AdaptiveInstanceNorm2d(3))
    assert num_adain_params(net) == 2 * (2 + 3)
    params = torch.arange(10, dtype=torch.float32).view(1, 10).repeat(2, 1)
    assign_adain_params(params, net)
    # [beta_1 (2), gamma_1 (2), beta_2 (3), gamma_2 (3)]
    assert net[0].bias.tolist()[0] == [0, 1] and net[0].weight.tolist()[0] == [2, 3]
    assert net[2].bias.tolist()[0] == [4, 5, 6] and net[2].weight.tolist()[0] == [7, 8, 9]
    x = torch.randn(2, 2, 4, 5)
    m, v = x.mean((2, 3), keepdim=True), x.var((2, 3), unbiased=False, keepdim=True)
    expected = (x - m) / torch.sqrt(v + 1e-5) * torch.tensor([2.0, 3.0]).view(1, 2, 1, 1) + torch.tensor(
        [0.0, 1.0]
    ).view(1, 2, 1, 1)
    torch.testing.assert_close(net[0](x), expected)
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        assign_adain_params(torch.zeros(2, 9), net)
    with pytest.raises(RuntimeError, match="assign_adain_params"):
        AdaptiveInstanceNorm2d(2)(x)


def test_adain_and_layer_norm_gradcheck():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)

    def adain(x, w, b):
        m = AdaptiveInstanceNorm2d(3)
        m.weight, m.bias = w, b
        return m(x)

    assert torch.autograd.gradcheck(adain, (x, w, b))
    ln = LayerNorm2d(3).double()
    assert torch.autograd.gradcheck(ln, (x,))


def test_layer_norm_uses_unbiased_std_plus_eps():
    torch.manual_seed(0)
    ln = LayerNorm2d(2)
    x = torch.randn(3, 2, 4, 4)
    flat = x.view(3, -1)
    y = (x - flat.mean(1).view(3, 1, 1, 1)) / (flat.std(1, unbiased=True).view(3, 1, 1, 1) + 1e-5)
    y = y * ln.gamma.view(1, 2, 1, 1) + ln.beta.view(1, 2, 1, 1)
    torch.testing.assert_close(ln(x), y)
    assert (ln.gamma >= 0).all() and (ln.gamma <= 1).all() and (ln.beta == 0).all()


def test_switchable_norm_selects_parameter_set():
    sn = SwitchableNorm2d(2, num_modes=2)
    with torch.no_grad():
        sn.norms[0].beta.fill_(1.0)
        sn.norms[1].beta.fill_(-1.0)
        sn.norms[1].gamma.copy_(sn.norms[0].gamma)
    x = torch.randn(1, 2, 3, 3)
    net = nn.Sequential(sn)
    set_norm_mode(net, 1)
    y1 = net(x)
    set_norm_mode(net, 0)
    y0 = net(x)
    torch.testing.assert_close(y0 - y1, torch.full_like(x, 2.0))


@pytest.mark.parametrize(
    "name,cls",
    [
        ("none", nn.Identity),
        ("batch", nn.BatchNorm2d),
        ("instance", nn.InstanceNorm2d),
        ("layer", LayerNorm2d),
        ("adain", AdaptiveInstanceNorm2d),
        ("switchable", SwitchableNorm2d),
    ],
)
def test_make_norm(name, cls):
    assert isinstance(make_norm(name, 4), cls)


def test_bad_names_fail_clearly():
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        make_norm("group", 4)
    with pytest.raises(ValueError, match="unknown activation"):
        Conv2dBlock(3, 4, 3, activation="gelu2")
    with pytest.raises(ValueError, match="unknown padding"):
        Conv2dBlock(3, 4, 3, pad_type="circular2")


def test_conv_block_orders():
    torch.manual_seed(0)
    blk = Conv2dBlock(2, 3, 3, 1, 1, norm="none", activation="relu")
    x = torch.randn(1, 2, 5, 5)
    ref = torch.relu(
        nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), blk.conv.weight, blk.conv.bias)
    )
    torch.testing.assert_close(blk(x), ref)
    pre = Conv2dBlock(2, 3, 3, 1, 1, norm="none", activation="relu", activation_first=True)
    with torch.no_grad():
        pre.conv.weight.copy_(blk.conv.weight)
        pre.conv.bias.copy_(blk.conv.bias)
    xr = torch.relu(x)
    ref_pre = nn.functional.conv2d(nn.functional.pad(xr, (1, 1, 1, 1), mode="reflect"), blk.conv.weight, blk.conv.bias)
    torch.testing.assert_close(pre(x), ref_pre)
    sn = Conv2dBlock(2, 3, 4, 2, 1, spectral_norm=True)
    assert sn(x).shape == (1, 3, 2, 2) and hasattr(sn.conv, "parametrizations")


def test_res_block_is_identity_when_last_conv_is_zero():
    blk = ResBlock(4, norm="none")
    nn.init.zeros_(blk.conv2.conv.weight)
    nn.init.zeros_(blk.conv2.conv.bias)
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(blk(x), x)


def test_act_first_block_reference_aliasing():
    torch.manual_seed(0)
    clean = ActFirstResBlock(4, 4)
    ref = ActFirstResBlock(4, 4, shortcut_after_activation=True)
    ref.load_state_dict(clean.state_dict())
    x = torch.randn(2, 4, 6, 6)
    # the reference's in-place LeakyReLU makes the identity shortcut carry LReLU(x) instead of x
    torch.testing.assert_close(ref(x) - clean(x), nn.functional.leaky_relu(x, 0.2) - x)
    learned = ActFirstResBlock(4, 8)
    learned_ref = ActFirstResBlock(4, 8, shortcut_after_activation=True)
    learned_ref.load_state_dict(learned.state_dict())
    torch.testing.assert_close(learned(x), learned_ref(x))
    assert learned.conv_s.bias is None and learned(x).shape == (2, 8, 6, 6)


def test_mlp_and_init():
    mlp = MLP(16, 40, 32, 3)
    assert sum(p.numel() for p in mlp.parameters()) == 16 * 32 + 32 + 32 * 32 + 32 + 32 * 40 + 40
    assert mlp(torch.randn(5, 16, 1, 1)).shape == (5, 40)
    init_weights(mlp, "kaiming")
    w = mlp.model[0].fc.weight
    assert (mlp.model[0].fc.bias == 0).all()
    assert abs(w.std().item() - math.sqrt(2 / 16)) < 0.05


def test_discriminators_shapes_and_class_heads():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    assert PatchDiscriminator(3, 8, num_layers=2, num_res_blocks=1)(x).shape == (2, 1, 8, 8)
    outs = MultiScaleDiscriminator(3, in_channels=3, base_channels=8, num_layers=2, norm="layer")(x)
    assert [tuple(o.shape) for o in outs] == [(2, 1, 8, 8), (2, 1, 4, 4), (2, 1, 2, 2)]
    feats = torch.randn(2, 6, 3, 3)
    labels = torch.tensor([2, 0])
    mt = ClassConditionalHead(6, 4, "multitask", activation="none")
    full = mt.conv(feats)
    torch.testing.assert_close(mt(feats, labels), torch.stack([full[0, 2], full[1, 0]]))
    pj = ClassConditionalHead(6, 4, "projection", activation="none")
    e = pj.embed(labels)
    expected = pj.conv(feats)[:, 0] + (feats * e[:, :, None, None]).sum(1)
    torch.testing.assert_close(pj(feats, labels), expected)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        mt(feats, torch.tensor([4, 0]))


def test_gan_losses_by_hand():
    d = torch.tensor([[-2.0, 0.5], [1.5, 0.0]])
    # hinge: relu(1 - d) = [3, .5, 0, 1] -> 1.125; relu(1 + d) = [0, 1.5, 2.5, 1] -> 1.25; g: -mean d = 0
    assert d_loss_real(d, "hinge").item() == pytest.approx(1.125)
    assert d_loss_fake(d, "hinge").item() == pytest.approx(1.25)
    assert g_loss(d, "hinge").item() == pytest.approx(0.0)
    # lsgan: (d-1)^2 = [9, .25, .25, 1] -> 2.625; d^2 = [4, .25, 2.25, 0] -> 1.625
    assert d_loss_real(d, "lsgan").item() == pytest.approx(2.625)
    assert d_loss_fake(d, "lsgan").item() == pytest.approx(1.625)
    assert g_loss(d, "lsgan").item() == pytest.approx(2.625)
    sp = [math.log1p(math.exp(-v)) for v in (-2.0, 0.5, 1.5, 0.0)]
    assert d_loss_real(d, "nonsaturating").item() == pytest.approx(sum(sp) / 4)
    assert g_loss(d, "nonsaturating").item() == pytest.approx(sum(sp) / 4)
    sp_fake = [math.log1p(math.exp(v)) for v in (-2.0, 0.5, 1.5, 0.0)]
    assert d_loss_fake(d, "nonsaturating").item() == pytest.approx(sum(sp_fake) / 4)
    # lists (multi-scale) are summed over scales
    assert d_loss_real([d, d], "hinge").item() == pytest.approx(2.25)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        d_loss_real(d, "wgan")


def test_r1_penalty_on_linear_toy():
    """D_ip = w . x_i at each of P positions: d sum_p / d x_i = P w, so R = P^2 |w|^2 for sample_sum."""
    b, p = 4, 6
    w = torch.tensor([1.0, -2.0, 0.5])
    x = torch.randn(b, 3, requires_grad=True)
    out = (x @ w)[:, None].expand(b, p)
    wn = float(w.pow(2).sum())
    assert r1_penalty(out, x, "sample_sum").item() == pytest.approx(p**2 * wn)
    assert r1_penalty(out, x, "sample_mean").item() == pytest.approx(wn)
    assert r1_penalty(out, x, "batch_mean").item() == pytest.approx(wn / b**2)
    assert r1_penalty(out, x, "sample_mean", grad_scale=1024.0).item() == pytest.approx(wn)
    # the penalty is differentiable (create_graph): d/dw of |w|^2 through a learnable D
    lin = nn.Linear(3, 1, bias=False)
    r = r1_penalty(lin(x), x)
    r.backward()
    torch.testing.assert_close(lin.weight.grad, 2 * lin.weight.detach())
    with pytest.raises(ValueError, match="require grad"):
        r1_penalty(out.detach(), x.detach())


def test_feature_matching_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    r = torch.tensor([[0.0, 2.0], [5.0, 4.0]])
    assert feature_matching_loss(f, r).item() == pytest.approx(0.75)
    assert feature_matching_loss(f, r, "l2").item() == pytest.approx(1.25)
    assert feature_matching_loss([f, f], [r, f]).item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="shapes differ"):
        feature_matching_loss(f, r[:1])


def test_ema_update_is_exact():
    net = nn.Linear(2, 2)
    avg = ema_copy(net)
    assert not any(p.requires_grad for p in avg.parameters())
    old = avg.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema_update(avg, net, decay=0.9)
    torch.testing.assert_close(avg.weight, 0.9 * old + 0.1 * net.weight.detach())
    with pytest.raises(ValueError, match="decay"):
        ema_update(avg, net, decay=1.5)
