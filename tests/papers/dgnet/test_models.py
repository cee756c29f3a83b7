"""DG-Net networks at the official configuration (counts and shapes on the meta device), their wiring on tiny
configurations, and ``load_official``'s renaming of official checkpoint names."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from nvresearch.dgnet import (
    AppearanceEncoder,
    DGNetDiscriminator,
    DGNetGenerator,
    OfficialCheckpointError,
    TeacherNet,
    load_official,
    official_state_dict,
    resnet_trunk,
    to_gray,
    upscale_small,
)
from nvresearch.dgnet.models import _trunk_features

TINY_G = {"base_channels": 4, "num_downsample": 1, "num_res": 2, "appearance_dim": 32, "mlp_dim": 8}
TINY_D = {"base_channels": 4, "num_downsample": 1, "num_res": 1, "num_scales": 2}
TINY_A = {"num_classes": 5, "backbone": "tiny", "bottleneck": 16}


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_reference_parameter_counts_and_shapes():
    """Issue 17 / spec B: the official AdaINGen, MsImageDis, ft_netAB (without the unused fc) and ft_net(751) at
    configs/latest.yaml; spec A.2-A.5 shapes for one 256x128 image: s 128x64x32, a code of 8192 from a 16x8 layer4
    map, D maps 64x32 / 32x16 / 16x8. Built on the meta device: sizes only, no memory or init cost."""
    with torch.device("meta"):
        g = DGNetGenerator()
        assert _count(g) == 13_380_675
        assert _count(g.structure_encoder) == 380_544
        assert _count(g.decoder) == 1_455_555
        assert _count(g.mlp_w) + _count(g.mlp_b) == 11_544_576
        assert _count(g.mlp_w[0]) == 1_443_072
        d = DGNetDiscriminator()
        assert _count(d) == 1_025_571 and _count(d.nets[0]) == 341_857
        a = AppearanceEncoder(751).eval()
        assert _count(a) == 26_378_782
        assert _count(a.model) == 23_508_032 and _count(a.classifier1) == _count(a.classifier2) == 1_435_375
        t = TeacherNet(751).eval()
        assert _count(t) == 24_943_407

        x = torch.empty(1, 3, 256, 128)
        s = g.encode(to_gray(x))
        assert s.shape == (1, 128, 64, 32)
        assert _trunk_features(a.model, x).shape == (1, 2048, 16, 8)
        code, p1, p2 = a(x)
        assert code.shape == (1, 8192) and p1.shape == p2.shape == (1, 751)
        assert g.decode(s, code).shape == (1, 3, 256, 128)
        assert [tuple(o.shape) for o in d(x)] == [(1, 1, 64, 32), (1, 1, 32, 16), (1, 1, 16, 8)]
        assert _trunk_features(t.model, x).shape == (1, 2048, 8, 4)
        assert t(x).shape == (1, 751)


def test_gray_and_upscale():
    x = torch.arange(24.0).view(1, 3, 4, 2)
    assert torch.equal(to_gray(x), x.mean(1, keepdim=True))
    assert upscale_small(x).shape == (1, 3, 8, 4)
    assert torch.equal(upscale_small(x)[..., ::2, ::2], x)  # nearest
    big = torch.zeros(1, 3, 130, 4)
    assert upscale_small(big) is big


def test_generator_slice_k_drives_only_res_block_k():
    """Spec A.4: slice k of the channel-major code feeds mlp_w[k] / mlp_b[k], whose outputs are the AdaIN scales /
    shifts of residual block k (two layers of C channels each)."""
    torch.manual_seed(0)
    g = DGNetGenerator(**TINY_G).eval()
    c = g.width  # 16
    code = torch.randn(2, 32)
    w, b = g.adain_params(code)
    assert w.shape == b.shape == (2, 2 * 2 * c)
    bumped = code.clone()
    bumped[:, 16:] += 1.0  # slice 1 of 2
    w2, b2 = g.adain_params(bumped)
    assert torch.equal(w2[:, : 2 * c], w[:, : 2 * c]) and torch.equal(b2[:, : 2 * c], b[:, : 2 * c])
    assert not torch.allclose(w2[:, 2 * c :], w[:, 2 * c :]) and not torch.allclose(b2[:, 2 * c :], b[:, 2 * c :])
    s = g.encode(torch.randn(2, 1, 40, 24))  # the ASPP's reflection padding of 9 needs maps of side >= 10
    assert s.shape == (2, 16, 20, 12)
    out = g.decode(s, code)
    assert out.shape == (2, 3, 40, 24)
    # the decoder's AdaIN layers hold exactly the MLP outputs, scales from mlp_w and shifts from mlp_b
    from nvresearch.core.gan import adain_layers

    layers = adain_layers(g.decoder)
    assert len(layers) == 4
    for i, layer in enumerate(layers):
        assert torch.equal(layer.weight, w[:, i * c : (i + 1) * c]) and torch.equal(
            layer.bias, b[:, i * c : (i + 1) * c]
        )
    with pytest.raises(ValueError, match="appearance code must be"):
        g.decode(s, torch.randn(2, 31))
    with pytest.raises(ValueError, match="equal slices"):
        DGNetGenerator(num_res=3, appearance_dim=32)


def test_decoder_has_no_tanh_and_layer_norm_upsampling():
    g = DGNetGenerator(**TINY_G)
    from nvresearch.core.gan import LayerNorm2d

    assert sum(isinstance(m, LayerNorm2d) for m in g.decoder.modules()) == 1  # one per up-sampling
    assert not any(isinstance(m, torch.nn.Tanh) for m in g.modules())
    assert isinstance(g.decoder.model[0], torch.nn.Dropout) and isinstance(g.decoder.model[2], torch.nn.Upsample)


@pytest.fixture(scope="module")
def tiny_encoder() -> AppearanceEncoder:
    """One ResNet-18 appearance encoder per module (building a ResNet costs most of these tests' time)."""
    torch.manual_seed(0)
    return AppearanceEncoder(**TINY_A).eval()


@pytest.fixture(scope="module")
def tiny_teacher() -> TeacherNet:
    torch.manual_seed(0)
    return TeacherNet(5, backbone="tiny", bottleneck=16).eval()


def test_appearance_code_is_detached_channel_major_max_pool(tiny_encoder):
    """Spec A.3: code[4c + p] = max over stripe p of channel c of the stride-1 layer4 map; no gradient."""
    a = tiny_encoder
    x = torch.randn(2, 3, 64, 32, requires_grad=True)
    code, p1, p2 = a(x)
    fmap = _trunk_features(a.model, x)
    assert fmap.shape == (2, 128, 4, 2)  # stride 1 in layer4: 64x32 / 16
    assert code.shape == (2, 128 * 4)
    assert torch.equal(code.view(2, 128, 4)[:, 7, 2], fmap[:, 7, 2].amax(-1))
    assert not code.requires_grad
    assert torch.equal(a.encode(x), code)
    (p1.sum() + p2.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    f1, f2 = a.features(x)
    assert f1.shape == f2.shape == (2, 16)
    assert torch.allclose(a.classifier1.classifier(f1), p1, atol=1e-5)
    a.detach_code = False
    try:
        assert a(x)[0].requires_grad
    finally:
        a.detach_code = True
    assert a.classifier1.add_block[2].p == 0.5 and a.classifier2.add_block[2].p == 0.75
    assert not hasattr(a.model, "fc")


def test_class_block_init_follows_the_reference():
    from nvresearch.dgnet import ClassBlock

    torch.manual_seed(0)
    head = ClassBlock(2048, 200, 0.5, 512)
    last = head.classifier[0]
    assert abs(last.weight.std().item() - 0.001) < 1e-4 and last.bias.abs().max() == 0
    first = head.add_block[0]
    assert abs(first.weight.std().item() - (2 / 512) ** 0.5) < 0.005  # kaiming fan_out
    assert torch.equal(head.add_block[1].weight, torch.ones(512))


def test_trunk_from_a_local_file(tmp_path, tiny_encoder):
    from nvresearch.dgnet.models import load_trunk_weights

    state = {k: v + 1.0 if v.is_floating_point() else v for k, v in tiny_encoder.model.state_dict().items()}
    state |= {"fc.weight": torch.zeros(1000, 128), "fc.bias": torch.zeros(1000)}  # a torchvision file has its fc
    torch.save(state, tmp_path / "r18.pth")
    trunk = resnet_trunk("tiny", 1, str(tmp_path / "r18.pth"))
    assert torch.equal(trunk.layer3[0].conv2.weight, state["layer3.0.conv2.weight"])
    assert torch.equal(trunk.bn1.running_var, state["bn1.running_var"])
    assert trunk.layer4[0].conv1.stride == (1, 1) and not hasattr(trunk, "fc")
    r18 = resnet_trunk("resnet18", 1)  # torchvision's: stride 1 on the first block of layer4, conv and shortcut
    assert r18.layer4[0].conv1.stride == r18.layer4[0].downsample[0].stride == (1, 1)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_trunk_weights(trunk, tmp_path / "nope.pth")
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3)
    del state["layer2.0.bn1.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad.pth.*1 missing.*layer2.0.bn1.bias.*1 mis-shaped.*layer1.0.conv1"):
        load_trunk_weights(trunk, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="backbone"):
        resnet_trunk("vgg16")


# ------------------------------------------------------------------------------------------------- load_official
def _to_official(state: dict) -> dict:
    """Our names -> the official ones (the inverse of the renames, written independently of official.py)."""
    aspp = {"0": "conv1", "1": "conv6", "2": "conv12", "3": "conv18"}
    out = {}
    for k, v in state.items():
        k = re.sub(r"^structure_encoder\.", "enc_content.", k)
        k = re.sub(r"^decoder\.", "dec.", k)
        k = re.sub(r"^mlp_([wb])\.(\d)\.", lambda m: f"mlp_{m[1]}{int(m[2]) + 1}.", k)
        k = re.sub(r"^nets\.(\d)\.model\.", r"cnns.\1.", k)
        k = re.sub(r"\.branches\.(\d)\.", lambda m: f".{aspp[m[1]]}.", k)
        k = re.sub(
            r"^(enc_content|dec)\.model\.(\d)\.(\d)\.conv(\d)\.",
            lambda m: f"{m[1]}.model.{m[2]}.model.{m[3]}.model.{int(m[4]) - 1}.",
            k,
        )
        k = re.sub(r"^(cnns\.\d\.\d)\.conv(\d)\.", lambda m: f"{m[1]}.model.{int(m[2]) - 1}.", k)
        out[k] = v
    return out


def test_official_names_map_onto_ours():
    """Names from the official state dicts (spec F) land on ours; the dummy AdaIN buffers and fc are dropped."""
    t = torch.zeros(1)
    official = {
        "enc_content.model.0.conv.weight": "structure_encoder.model.0.conv.weight",
        "enc_content.model.4.model.3.model.1.conv.bias": "structure_encoder.model.4.3.conv2.conv.bias",
        "enc_content.model.5.conv1.conv.weight": "structure_encoder.model.5.branches.0.conv.weight",
        "enc_content.model.5.conv12.1.conv.bias": "structure_encoder.model.5.branches.2.1.conv.bias",
        "enc_content.model.5.fuse.conv.weight": "structure_encoder.model.5.fuse.conv.weight",
        "dec.model.1.model.2.model.0.conv.weight": "decoder.model.1.2.conv1.conv.weight",
        "dec.model.3.norm.gamma": "decoder.model.3.norm.gamma",
        "dec.model.8.conv.bias": "decoder.model.8.conv.bias",
        "mlp_w1.model.0.fc.weight": "mlp_w.0.model.0.fc.weight",
        "mlp_b4.model.2.fc.bias": "mlp_b.3.model.2.fc.bias",
        "cnns.2.4.conv.weight": "nets.2.model.4.conv.weight",
        "cnns.0.7.model.1.conv.weight": "nets.0.model.7.conv2.conv.weight",
        "cnns.1.9.bias": "nets.1.model.9.bias",
        "model.layer4.0.downsample.0.weight": "model.layer4.0.downsample.0.weight",
        "classifier2.add_block.1.running_mean": "classifier2.add_block.1.running_mean",
        "module.classifier1.classifier.0.weight": "classifier1.classifier.0.weight",
    }
    mapped, dropped = official_state_dict(
        dict.fromkeys(official, t)
        | {
            "dec.model.1.model.0.model.1.norm.running_var": t,
            "model.fc.weight": t,
        }
    )
    assert sorted(mapped) == sorted(official.values())
    assert sorted(dropped) == ["dec.model.1.model.0.model.1.norm.running_var", "model.fc.weight"]


@pytest.mark.parametrize("kind", ["generator", "discriminator", "appearance", "teacher"])
def test_load_official_round_trip(tmp_path, kind, tiny_encoder, tiny_teacher):
    torch.manual_seed(0)
    build = {
        "generator": lambda: DGNetGenerator(**TINY_G),
        "discriminator": lambda: DGNetDiscriminator(**TINY_D),
        "appearance": lambda: copy.deepcopy(tiny_encoder),
        "teacher": lambda: copy.deepcopy(tiny_teacher),
    }[kind]
    src = build()
    with torch.no_grad():  # the target starts from other values
        for p in src.parameters():
            p.add_(torch.rand_like(p))
    state = _to_official(src.state_dict())
    if kind == "generator":  # the official AdaIN layers carry unused buffers
        state["dec.model.1.model.0.model.0.norm.running_mean"] = torch.zeros(16)
    if kind in ("appearance", "teacher"):  # and the ResNet keeps its ImageNet fc
        state["model.fc.weight"] = torch.zeros(1000, 128)
    if kind in ("generator", "discriminator"):  # through a file, as the official trainer saves it
        torch.save({"a": state}, tmp_path / "ckpt.pt")
        state = tmp_path / "ckpt.pt"
    dst = load_official(state, build())
    assert not dst.training
    for (k1, v1), (k2, v2) in zip(src.state_dict().items(), dst.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2), k1


def test_load_official_reports_what_does_not_map(tmp_path):
    torch.manual_seed(0)
    state = _to_official(DGNetDiscriminator(**TINY_D).state_dict())
    state["cnns.0.10.weight"] = torch.zeros(1)  # e.g. a non-local block the default architecture lacks
    del state["cnns.1.0.conv.bias"]
    with pytest.raises(
        OfficialCheckpointError,
        match=r"1 missing: nets\.1\.model\.0\.conv\.bias.*1 unexpected: nets\.0\.model\.10\.weight",
    ):
        load_official(state, DGNetDiscriminator(**TINY_D))
    state = _to_official(DGNetDiscriminator(**TINY_D).state_dict())
    state["cnns.0.10.weight"] = torch.zeros(1)
    with pytest.warns(UserWarning, match="unexpected: nets.0.model.10.weight"):
        load_official(state, DGNetDiscriminator(**TINY_D), strict=False)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_official(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(OfficialCheckpointError, match="junk.pt"):
        load_official(tmp_path / "junk.pt")
    with pytest.raises(OfficialCheckpointError, match="not a DG-Net state dict"):
        load_official({"foo.weight": torch.zeros(1)})
