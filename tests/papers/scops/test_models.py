"""SCOPS networks: official parameter counts (spec A.1), the DeepLab-v2 layout details that change the function but
not the count, the frozen parameters, and local pretrained weights."""

from __future__ import annotations

import math

import pytest
import torch

from nvresearch.scops import PartBasis, PartSegmenter, VGGFeatures, l2_normalize_rows, load_matching, upsample_logits


def _count(module: torch.nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


@pytest.mark.parametrize(
    ("num_parts", "total", "trainable", "head"),
    [(8, 23_839_844, 23_794_404, 331_812), (4, 23_692_372, 23_646_932, 184_340)],
)
def test_part_segmenter_official_parameter_counts(num_parts: int, total: int, trainable: int, head: int) -> None:
    with torch.device("meta"):  # counts and shapes without initialising 24 M weights
        m = PartSegmenter(num_parts)
    assert (_count(m), _count(m, trainable=True), _count(m.aspp)) == (total, trainable, head)
    sd = m.state_dict()
    # torchvision / official backbone names; the ASPP reads the second half of layer4 (1024 of 2048 channels)
    assert sd["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert sd["aspp.convs.3.weight"].shape == (num_parts + 1, 1024, 3, 3)
    assert "fc.weight" not in sd


def test_vgg_features_count_frozen_and_layers() -> None:
    with torch.device("meta"):
        v = VGGFeatures()
    assert _count(v) == 20_024_384 and _count(v, trainable=True) == 0
    assert isinstance(v.features[-1], torch.nn.ReLU) and len(v.features) == 36  # ends at relu5_4
    v.train()
    assert not v.training  # frozen: stays in evaluation mode


def test_deeplab_layout_details() -> None:
    m = PartSegmenter(3, blocks=(1, 2, 2, 1), base_channels=4)
    assert m.maxpool.ceil_mode
    assert m.layer2[0].conv1.stride == (2, 2) and m.layer2[0].conv2.stride == (1, 1)  # Caffe: stride on the 1x1
    for layer, d in ((m.layer1, 1), (m.layer2, 1), (m.layer3, 2), (m.layer4, 4)):
        for block in layer:  # every block of a dilated stage, the first included
            assert block.conv2.dilation == (d, d) and block.conv2.padding == (d, d)
    assert [c.dilation[0] for c in m.aspp.convs] == [6, 12, 18, 24]
    # frozen: the stem BN and the three BNs of every block; the shortcut BNs train (official 2-branch file)
    assert not any(p.requires_grad for p in m.bn1.parameters())
    assert not any(p.requires_grad for p in m.layer3[1].bn2.parameters())
    assert all(p.requires_grad for p in m.layer3[0].downsample[1].parameters())


def test_output_stride_and_two_branch_split() -> None:
    torch.manual_seed(0)
    m = PartSegmenter(5, blocks=(1, 1, 1, 1), base_channels=4).eval()
    x = torch.randn(2, 3, 128, 128)
    instance, part, logits = m.forward_all(x)
    assert logits.shape == (2, 6, 17, 17)  # 128 -> 17 (ceil-mode pool), 256 -> 33 in the official network
    assert instance.shape == part.shape == (2, 64, 17, 17)
    assert torch.equal(m(x), logits)
    # the logits depend on the second half of layer4 only
    full = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
    torch.testing.assert_close(part, full[:, 64:])
    torch.testing.assert_close(logits, m.aspp(full[:, 64:]))
    assert upsample_logits(logits, 128).shape == (2, 6, 128, 128)
    # align_corners=True keeps the corner values
    torch.testing.assert_close(upsample_logits(logits, 128)[..., 0, -1], logits[..., 0, -1])


def test_param_groups_head_at_ten_times() -> None:
    m = PartSegmenter(2, blocks=(1, 1, 1, 1), base_channels=4)
    groups = m.param_groups(1e-5)
    assert groups[0]["lr"] == 1e-5 and groups[1]["lr"] == pytest.approx(1e-4)
    assert sum(p.numel() for g in groups for p in g["params"]) == _count(m, trainable=True)


def test_load_matching_by_name_and_shape(tmp_path) -> None:
    torch.manual_seed(0)
    src = PartSegmenter(4, blocks=(1, 1, 1, 1), base_channels=4)
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("aspp")}
    state["conv1.weight"] = torch.randn(7, 3, 7, 7)  # wrong shape: skipped, as in the official loader
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": state}, path)
    dst = PartSegmenter(4, blocks=(1, 1, 1, 1), base_channels=4, pretrained=str(path))
    assert torch.equal(dst.layer3[0].conv2.weight, src.layer3[0].conv2.weight)
    assert not torch.equal(dst.conv1.weight, src.conv1.weight)
    assert not torch.equal(dst.aspp.convs[0].weight, src.aspp.convs[0].weight)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_matching(dst, tmp_path / "nope.pth")
    torch.save({"other.weight": torch.ones(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth"):
        load_matching(dst, tmp_path / "other.pth")


def test_part_basis_relu_and_norm() -> None:
    torch.manual_seed(0)
    basis = PartBasis(3, 5)
    assert basis().shape == (3, 5) and (basis.w >= 0).all()  # |N(0, 1)| initialisation
    with torch.no_grad():
        basis.w[0, 0] = -2.0
    assert basis()[0, 0] == 0  # ReLU
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(
        l2_normalize_rows(w), torch.tensor([[3.0, 4.0], [0.0, 0.0]]) / torch.tensor([[5.0], [1e-3]])
    )


def test_random_features_are_frozen_deterministic_and_scaled() -> None:
    from nvresearch.scops.models import RandomFeatures

    x = torch.randn(2, 3, 32, 32) * 60
    a, b = RandomFeatures(16, stride=8, seed=3), RandomFeatures(16, stride=8, scale=10.0, seed=3)
    out = a(x)
    assert out.shape == (2, 16, 4, 4) and (out >= 0).all()
    assert torch.allclose(b(x), 10 * out)
    assert not any(p.requires_grad for p in a.parameters())
    assert not torch.equal(RandomFeatures(16, seed=4)(x), out)
    with pytest.raises(ValueError, match="stride must be a power of 2"):
        RandomFeatures(16, layers=2, stride=8)


def _stripes(period: float, colours: tuple[tuple[float, ...], tuple[float, ...]], angle: float = 0.0) -> torch.Tensor:
    """A 32x32 network input (RGB x 255 minus the Caffe mean) of sinusoidal stripes between two colours."""
    from nvresearch.scops.data import caffe_normalize

    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    t = 0.5 + 0.5 * torch.sin(2 * torch.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period)
    a, b = torch.tensor(colours[0])[:, None, None], torch.tensor(colours[1])[:, None, None]
    return caffe_normalize((a * t + b * (1 - t)) * 255.0)


def test_texture_features_tell_periods_apart_whatever_the_colours_and_orientation() -> None:
    from nvresearch.scops.models import TextureFeatures

    feats = TextureFeatures(periods=(2.5, 5.0), stride=4, scale=3.0)
    red_blue = ((0.9, 0.1, 0.1), (0.1, 0.1, 0.9))
    green_grey = ((0.2, 0.8, 0.2), (0.5, 0.5, 0.5))
    fine = feats(torch.stack([_stripes(2.5, red_blue), _stripes(2.5, green_grey, angle=1.0)]))
    coarse = feats(torch.stack([_stripes(5.0, red_blue), _stripes(5.0, green_grey, angle=1.0)]))
    assert fine.shape == (2, 2, 8, 8) and (fine >= 0).all() and feats.out_channels == 2
    inner = (slice(None), slice(None), slice(2, 6), slice(2, 6))  # away from the replicate-padded border
    f, c = fine[inner].mean(dim=(-2, -1)), coarse[inner].mean(dim=(-2, -1))
    # the channel of the image's own period wins, for either colour pair and orientation
    assert (f[:, 0] > 2 * f[:, 1]).all() and (c[:, 1] > 2 * c[:, 0]).all()
    # colours drop out: the same stripes in another colour pair (here of equal brightness: red and blue) give the
    # same energies
    same = feats(torch.stack([_stripes(5.0, red_blue), _stripes(5.0, green_grey)]))[inner].mean(dim=(-2, -1))
    assert torch.allclose(same[0], same[1], rtol=0.1)
    assert feats(torch.full((1, 3, 32, 32), 40.0)).abs().max() < 1e-5  # no texture, no energy
    assert not any(p.requires_grad for p in feats.parameters())
    with pytest.raises(ValueError, match="periods must be positive"):
        TextureFeatures(periods=(0.0, 2.0))
