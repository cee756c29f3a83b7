"""PAC semantic segmentation: FCN-8s / PAC-FCN / PAC-CRF networks, VOC + SBD loaders, loss, mIoU, the claim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nvresearch.pac.segmentation.data import (
    IGNORE_INDEX,
    VOC_RESULTS_DIR,
    SegmentationDataset,
    SyntheticSegmentation,
    VOCSegmentation,
    colorize_labels,
    export_voc_predictions,
    from_network_input,
    read_voc_png,
    to_network_input,
    voc_palette,
    write_voc_png,
)
from nvresearch.pac.segmentation.losses import segmentation_loss
from nvresearch.pac.segmentation.metrics import confusion_matrix, segmentation_scores
from nvresearch.pac.segmentation.models import FCN8s, FCNWithCRF, create_model, load_weights, parse_model_name

TINY = dict(widths=(4, 8, 8, 8, 8), fc_channels=8, dropout=0.0)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("fcn8s", 134_489_759),  # VGG-16 convs 14,714,688 + fc6/fc7 119,545,856 + scores and deconvs
        ("fcn8spac", 134_489_759),  # same names and shapes: loads fcn8s_from_caffe.pth
        ("fcn8s_crfi5p4d5641p4d5161", 134_489_759 + 22_057),  # unary weight + 2 x 21x21x5x5 + 2 colour scales
        ("fcn8s_crfi5lp4d5641p4d5161", 134_489_759 + 5 * 22_051 + 6),  # loose: 5 untied steps
        ("fcn8s_crfi5p4d5321", 134_489_759 + 11_029),  # PacCRF-32
        ("fcn8sfrozen_crfi5p4d5641p4d5161", 22_057),  # stage 1: only the CRF trains
    ],
)
def test_full_scale_parameter_counts(name: str, count: int) -> None:
    with torch.device("meta"):
        assert _count(create_model(name, 21)) == count


def test_parse_model_name() -> None:
    spec = parse_model_name("fcn8sfrozen_crfi5lp4d5641p2ds31281")
    assert spec["backbone"] == "fcn8s" and spec["frozen"] and spec["loose"] and spec["crf_steps"] == 5
    assert spec["pairwise"] == [
        {"kernel_size": 5, "dilation": 64, "blur": 1, "compat_type": "4d", "spatial_filter": True},
        {"kernel_size": 3, "dilation": 128, "blur": 1, "compat_type": "2d", "spatial_filter": True},
    ]
    assert parse_model_name("fcn8s_crfp4d5161")["crf_steps"] == 5  # 5 steps when no 'i' is given
    assert parse_model_name("fcn8spac")["crf_steps"] == 0
    for bad in ("resnet", "fcn8s_crf", "fcn8s_crfi5p9x5641", "fcn8s_crfi5p4d5"):
        with pytest.raises(ValueError, match="cannot parse"):
            parse_model_name(bad)


@pytest.mark.parametrize(("padding", "pac"), [("caffe", False), ("alt", False), ("alt", True)])
@pytest.mark.parametrize("size", [(32, 32), (37, 50), (5, 3)])
def test_fcn_output_has_the_input_size(padding: str, pac: bool, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = FCN8s(3, padding=padding, pac=pac, fc6_kernel=7 if padding == "caffe" else 3, **TINY)
    with torch.no_grad():  # the score layers start at zero, which would stop every gradient below them
        for m in (net.score_fr, net.score_pool3, net.score_pool4):
            m.weight.normal_()
    out = net(torch.randn(2, 3, *size))
    assert out.shape == (2, 3, *size)
    out.sum().backward()
    if pac:  # the hot-swapped layers learn, and so does conv2_2 through their guidance
        assert net.conv4_3.weight.grad.abs().sum() > 0 and net.conv2_2.weight.grad.abs().sum() > 0


def test_fcn_input_errors() -> None:
    with pytest.raises(ValueError, match="padding='alt'"):
        FCN8s(21, padding="caffe", pac=True)
    with pytest.raises(ValueError, match="fc6_kernel=7"):
        FCN8s(21, padding="caffe", fc6_kernel=3)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        FCN8s(2, padding="alt", fc6_kernel=3, **TINY)(torch.randn(1, 1, 8, 8))


def test_fcn_starts_with_bilinear_upsampling_and_zero_scores() -> None:
    net = FCN8s(2, padding="alt", fc6_kernel=3, **TINY)
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(1, 2, 1, 1)
    up = net.upscore8(x)[..., 8:-8, 8:-8]  # interior, away from the zero padding of the transposed conv
    ref = F.interpolate(x, scale_factor=8, mode="bilinear", align_corners=False)[..., 8:-8, 8:-8]
    torch.testing.assert_close(up, ref)
    assert torch.all(net(torch.randn(1, 3, 32, 32)) == 0)


def test_hot_swap_starts_as_the_plain_fcn() -> None:
    """PAC-FCN with the plain FCN's weights: conv2_2 x 1e-4 guidance makes every kernel ~1 (spec A.11)."""
    torch.manual_seed(0)
    plain = FCN8s(3, padding="alt", fc6_kernel=3, **TINY).eval()
    with torch.no_grad():
        for m in (plain.score_fr, plain.score_pool3, plain.score_pool4):
            m.weight.normal_(0, 0.5)
    pac = FCN8s(3, padding="alt", pac=True, fc6_kernel=3, **TINY).eval()
    assert pac.load_state_dict(plain.state_dict()).missing_keys == []
    x = torch.randn(1, 3, 64, 64) * 50
    with torch.no_grad():
        a, b = plain(x), pac(x)
    inner = (..., slice(8, -8), slice(8, -8))  # bilinear x8 vs the bilinear-initialised deconv differ at the border
    torch.testing.assert_close(b[inner], a[inner], rtol=1e-3, atol=1e-3 * float(a.abs().max()))
    # built with the core hot-swap: the three layers share one guidance, which forward() sets only while it runs
    from nvresearch.core.layers.pac.swap import SwappedPacConv2d

    swapped = [n for n, m in pac.named_modules() if isinstance(m, SwappedPacConv2d)]
    assert swapped == ["conv3_3", "conv4_3", "conv5_3"]
    assert all(getattr(pac, n).guidance is pac.hot_swap_guidance for n in swapped)
    assert list(pac.state_dict()) == list(plain.state_dict()) and pac.hot_swap_guidance.value is None
    for n in swapped:  # a larger guidance scale makes the kernels edge-aware: the output moves away from the FCN's
        getattr(pac, n).guidance_scale = 0.05
    with torch.no_grad():
        assert not torch.allclose(pac(x)[inner], a[inner], rtol=1e-3, atol=1e-3 * float(a.abs().max()))


def test_load_weights_vgg_layout_reference_names_and_loose_expansion(tmp_path: Path) -> None:
    torch.manual_seed(0)
    fcn = FCN8s(3, padding="alt", fc6_kernel=3, **TINY)
    # torchvision vgg16 layout: convs at features.{0,2,5,...}, fc6/fc7 as Linear layers classifier.0 / classifier.3
    ids = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    names = [n for n, m in fcn.named_children() if n.startswith("conv")]
    vgg = {}
    for i, n in zip(ids, names):
        w = getattr(fcn, n).weight
        vgg[f"features.{i}.weight"], vgg[f"features.{i}.bias"] = torch.randn_like(w), torch.randn(w.shape[0])
    vgg["classifier.0.weight"], vgg["classifier.0.bias"] = torch.randn(8, 8 * 3 * 3), torch.randn(8)
    vgg["classifier.3.weight"], vgg["classifier.3.bias"] = torch.randn(8, 8), torch.randn(8)
    torch.save(vgg, tmp_path / "vgg16.pth")
    load_weights(fcn, tmp_path / "vgg16.pth")
    torch.testing.assert_close(fcn.conv3_2.weight, vgg["features.12.weight"])
    torch.testing.assert_close(fcn.fc6.weight, vgg["classifier.0.weight"].view(8, 8, 3, 3))

    pairwise = [{"kernel_size": 3, "dilation": 2, "compat_type": "4d"}]
    tied = FCNWithCRF(fcn, 3, crf_steps=2, pairwise=pairwise)
    with torch.no_grad():
        tied.crf.messengers[0].weight.normal_()
        tied.crf.unary_weight.fill_(0.7)
    torch.save({"state_dict": {f"net.{k}": v for k, v in tied.state_dict().items()}}, tmp_path / "stage1.ckpt")
    loose = FCNWithCRF(FCN8s(3, padding="alt", fc6_kernel=3, **TINY), 3, crf_steps=2, loose=True, pairwise=pairwise)
    assert load_weights(loose, tmp_path / "stage1.ckpt") == []
    for step in loose.crf.steps:
        torch.testing.assert_close(step.messengers[0].weight, tied.crf.messengers[0].weight)
        assert float(step.unary_weight.detach()) == pytest.approx(0.7)
    torch.testing.assert_close(loose.backbone.fc6.weight, fcn.fc6.weight)

    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        load_weights(fcn, tmp_path / "nothere.pth")
    torch.save({"conv1_1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="conv1_1.weight"):
        load_weights(fcn, tmp_path / "bad.pth")


def test_frozen_backbone_trains_only_the_crf() -> None:
    net = create_model("fcn8salt_crfi2p4d331", 3, fc6_kernel=3, **TINY)
    net.frozen_backbone = True
    net.backbone.requires_grad_(False)
    net.train()
    assert net.backbone.training and net.crf.training  # the reference only stops gradients: dropout stays on
    net(torch.randn(2, 3, 16, 16)).sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert net.crf.messengers[0].weight.grad is not None and net.feat_scales[0].grad is not None


def test_frozen_backbone_keeps_dropout_active_like_the_reference() -> None:
    """``fcn8sfrozen_*`` (stage 1) stops the backbone's gradients only: in training, its dropout still drops."""
    torch.manual_seed(0)
    net = create_model("fcn8saltfrozen_crfi2p4d331", 3, fc6_kernel=3, **{**TINY, "dropout": 0.5})
    assert net.frozen_backbone
    with torch.no_grad():
        for p in net.backbone.parameters():  # the score layers start at zero: give the logits something to drop
            p.normal_(0.0, 0.3)
    x = torch.randn(1, 3, 16, 16)
    net.train()
    with torch.no_grad():
        a, b = net.unary(x), net.unary(x)
    assert (a - b).abs().max() > 1e-6  # two dropout draws differ
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.unary(x), net.unary(x))
    net.frozen_backbone_eval = True  # the opt-out
    net.train()
    assert not net.backbone.training and net.crf.training


def _blurry_unary(label: torch.Tensor, num_classes: int, stride: int = 8) -> torch.Tensor:
    """Logits as a stride-8 network sees them: the one-hot labels averaged over 8x8 cells, upsampled bilinearly."""
    onehot = F.one_hot(label, num_classes).permute(0, 3, 1, 2).float()
    coarse = F.avg_pool2d(onehot, stride)
    return 4.0 * F.interpolate(coarse, scale_factor=stride, mode="bilinear", align_corners=False)


def test_paccrf_at_initialisation_sharpens_blurry_unaries() -> None:
    """Training-free version of the claim (spec H.4): colour-guided mean field snaps blurry labels to edges."""
    torch.manual_seed(0)
    data = SyntheticSegmentation(16, size=64, num_classes=5, seed=3)
    image = torch.stack([to_network_input(data[i]["image"]) for i in range(16)])
    label = torch.stack([data[i]["label"] for i in range(16)])
    unary = _blurry_unary(label, 5)
    net = FCNWithCRF(torch.nn.Identity(), 5, crf_steps=5, pairwise=[{"kernel_size": 5, "dilation": 2}])
    with torch.no_grad():
        refined = net.refine(unary, image)
    before = segmentation_scores(confusion_matrix(unary.argmax(1), label, 5))["miou"]
    after = segmentation_scores(confusion_matrix(refined.argmax(1), label, 5))["miou"]
    assert after > before + 0.05, (before, after)


# ----------------------------------------------------------------------------------------------------------------------
# Loss and metrics
# ----------------------------------------------------------------------------------------------------------------------
def test_segmentation_loss_by_hand() -> None:
    logits = torch.tensor([[[[0.0, 2.0, 1.0]], [[1.0, 0.0, 1.0]]]])  # (1, 2, 1, 3)
    labels = torch.tensor([[[1, 0, IGNORE_INDEX]]])
    # pixel 0: -log(e^1 / (1 + e^1)) = log(1 + e^-1); pixel 1: log(1 + e^-2); pixel 2 is void
    expected = (np.log1p(np.exp(-1)) + np.log1p(np.exp(-2))) / 2
    assert float(segmentation_loss(logits, labels)) == pytest.approx(expected, rel=1e-6)
    # fce_0.8: pixel 1 has p = 0.881 > 0.8, so its loss (0.127 < -log 0.8 = 0.223) is zeroed; still 2 valid pixels
    assert float(segmentation_loss(logits, labels, focus=0.8)) == pytest.approx(np.log1p(np.exp(-1)) / 2, rel=1e-6)
    assert float(segmentation_loss(logits, torch.full((1, 1, 3), IGNORE_INDEX))) == 0.0
    with pytest.raises(ValueError, match="labels"):
        segmentation_loss(logits, labels[0])


def test_confusion_matrix_and_scores_known_answer() -> None:
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 1]])
    conf = confusion_matrix(pred, target, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    s = segmentation_scores(conf)
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 3 / (3 + 4 - 3) = 3/4; class 2: 1 / (2 + 1 - 1) = 1/2
    assert float(s["miou"]) == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert float(s["acc"]) == pytest.approx(5 / 7)
    assert float(s["macc"]) == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    # a class absent from prediction and ground truth makes the mean NaN, as in the reference
    assert torch.isnan(segmentation_scores(confusion_matrix(pred, target, 4))["miou"])


def test_confusion_matrix_matches_torchmetrics_dataset_level() -> None:
    from torchmetrics.classification import MulticlassJaccardIndex

    g = torch.Generator().manual_seed(0)
    metric = MulticlassJaccardIndex(6, average="macro", ignore_index=IGNORE_INDEX)
    conf = torch.zeros(6, 6, dtype=torch.long)
    for _ in range(3):  # accumulated over batches: one dataset-level matrix, not a mean of per-image scores
        target = torch.randint(0, 6, (2, 9, 7), generator=g)
        target[:, 0] = IGNORE_INDEX
        pred = torch.randint(0, 6, (2, 9, 7), generator=g)
        metric.update(pred, target)
        conf += confusion_matrix(pred, target, 6)
    assert float(metric.compute()) == pytest.approx(float(segmentation_scores(conf)["miou"]), rel=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------------
def test_network_input_normalisation_and_palette() -> None:
    rgb = torch.rand(3, 4, 5)
    x = to_network_input(rgb)
    assert float(x[0, 0, 0]) == pytest.approx(float(rgb[2, 0, 0]) * 255 - 104.008, rel=1e-5)  # BGR, mean removed
    torch.testing.assert_close(from_network_input(x), rgb)
    pal = voc_palette()
    assert (
        pal[1].tolist() == [128, 0, 0] and pal[15].tolist() == [192, 128, 128] and pal[255].tolist() == [224, 224, 192]
    )
    assert colorize_labels(torch.tensor([[0, 1]])).shape == (3, 1, 2)


def test_synthetic_segmentation_is_deterministic_and_covers_classes() -> None:
    a, b = SyntheticSegmentation(8, 48, 5, seed=1), SyntheticSegmentation(8, 48, 5, seed=1)
    torch.testing.assert_close(a[3]["image"], b[3]["image"])
    assert torch.equal(a[3]["label"], b[3]["label"])
    assert not torch.equal(a[3]["label"], SyntheticSegmentation(8, 48, 5, seed=2)[3]["label"])
    labels = torch.stack([a[i]["label"] for i in range(8)])
    assert labels.min() == 0 and labels.max() == 4 and len(labels.unique()) == 5
    assert a[0]["image"].shape == (3, 48, 48) and 0 <= float(a[0]["image"].min()) <= float(a[0]["image"].max()) <= 1
    with pytest.raises(IndexError):
        a[8]


def test_segmentation_dataset_pads_crops_and_flips() -> None:
    base = [{"image": torch.rand(3, 10, 12), "label": torch.randint(0, 3, (10, 12))}]
    train = SegmentationDataset(base, crop=16, train=True, seed=0)
    s = train[(0, 0)]
    assert s["image"].shape == (3, 16, 16) and s["label"].shape == (16, 16)
    assert (s["label"] == IGNORE_INDEX).sum() == 16 * 16 - 10 * 12  # padded with void
    assert torch.equal(train[(0, 0)]["label"], s["label"])  # seeded by (seed, epoch, index)
    flips = {bool(train[(e, 0)]["label"][0, 0] == IGNORE_INDEX) for e in range(12)}
    assert flips == {True, False}  # the padding lands on the left after a flip
    whole = SegmentationDataset(base)[0]
    torch.testing.assert_close(whole["image"], to_network_input(base[0]["image"]))
    with pytest.raises(ValueError, match="crop"):
        SegmentationDataset(base, train=True)


def _write_voc_fixture(root: Path) -> dict[str, np.ndarray]:
    """VOC 2012 (ids a, b, c) and SBD (ids c, d, e) in their shipped layouts, with 12x16 images."""
    import cv2
    from PIL import Image
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    labels = {}
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True)
    palette = voc_palette().numpy().flatten().tolist()
    for i in ("a", "b", "c"):
        cv2.imwrite(str(voc / "JPEGImages" / f"{i}.jpg"), rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
        lab = rng.integers(0, 21, (12, 16)).astype(np.uint8)
        lab[0, :3] = 255
        img = Image.fromarray(lab, mode="P")
        img.putpalette(palette)
        img.save(voc / "SegmentationClass" / f"{i}.png")
        labels[i] = lab
    (voc / "ImageSets/Segmentation/train.txt").write_text("a\nb\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("c\n")
    sbd = root / "benchmark_RELEASE" / "dataset"
    for d in ("img", "cls"):
        (sbd / d).mkdir(parents=True)
    for i in ("c", "d", "e"):
        cv2.imwrite(str(sbd / "img" / f"{i}.jpg"), rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
        lab = rng.integers(0, 21, (12, 16)).astype(np.uint8)
        savemat(sbd / "cls" / f"{i}.mat", {"GTcls": {"Segmentation": lab, "CategoriesPresent": np.unique(lab)}})
        labels.setdefault(i, lab)  # c: VOC's label wins
    (sbd / "train.txt").write_text("d\nc\n")
    (sbd / "val.txt").write_text("e\n")
    return labels


def test_voc_and_sbd_loaders_read_the_shipped_layouts(tmp_path: Path) -> None:
    labels = _write_voc_fixture(tmp_path)
    train = VOCSegmentation(tmp_path, "train")
    assert train.ids == ["a", "b"]
    s = train[1]
    assert s["image"].shape == (3, 12, 16) and s["label"].dtype == torch.int64
    assert np.array_equal(s["label"].numpy(), labels["b"]) and int(s["label"][0, 0]) == IGNORE_INDEX
    assert VOCSegmentation(tmp_path, "sbd_train").ids == ["d", "c"]
    aug = VOCSegmentation(tmp_path, "train_aug")  # VOC train + SBD train/val - VOC val
    assert aug.ids == ["a", "b", "d", "e"]
    assert np.array_equal(aug[2]["label"].numpy(), labels["d"])  # read from SBD's cls/d.mat
    assert VOCSegmentation(tmp_path, "trainval_aug").ids == ["a", "b", "c", "d", "e"]
    (tmp_path / "seg11valid.txt").write_text("c\ne\n")
    custom = VOCSegmentation(tmp_path, str(tmp_path / "seg11valid.txt"))
    assert np.array_equal(custom[0]["label"].numpy(), labels["c"])  # c has a VOC label: VOC wins


def test_voc_loader_errors_name_the_path_and_layout(tmp_path: Path) -> None:
    from nvresearch.core.data import DatasetLayoutError

    with pytest.raises(DatasetLayoutError, match=r"(?s)nowhere.*VOCdevkit/VOC2012"):
        VOCSegmentation(tmp_path / "nowhere", "train")
    _write_voc_fixture(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"trainval\.txt"):
        VOCSegmentation(tmp_path, "trainval")
    (tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").write_text("c\nzz\n")
    with pytest.raises(DatasetLayoutError, match=r"'zz'.*cls/zz\.mat"):
        VOCSegmentation(tmp_path, "val")
    with pytest.raises(ValueError, match="unknown split"):
        VOCSegmentation(tmp_path, "test2007")


# The official VOC colour map (VOCdevkit VOClabelcolormap.m; class index -> RGB).
VOC_KNOWN_COLOURS = {
    0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128), 5: (128, 0, 128),
    6: (0, 128, 128), 7: (128, 128, 128), 8: (64, 0, 0), 9: (192, 0, 0), 12: (64, 0, 128), 15: (192, 128, 128),
    19: (128, 192, 0), 20: (0, 64, 128), 255: (224, 224, 192),
}  # fmt: skip


def test_voc_prediction_png_palette_and_roundtrip(tmp_path: Path) -> None:
    import cv2
    from PIL import Image

    pal = voc_palette()
    for index, rgb in VOC_KNOWN_COLOURS.items():
        assert tuple(pal[index].tolist()) == rgb, index
    labels = torch.randint(0, 21, (2, 7, 9))
    labels[0, 0, :] = torch.arange(9) * 2  # 0, 2, ..., 16
    labels[1, 0, 0] = 20
    paths = export_voc_predictions(tmp_path, ["2008_000006", "2008_000011"], labels)
    folder = tmp_path / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    assert VOC_RESULTS_DIR == str(Path("results/VOC2012/Segmentation/comp6_test_cls"))
    assert paths == [str(folder / "2008_000006.png"), str(folder / "2008_000011.png")]
    for path, label in zip(paths, labels):
        with Image.open(path) as img:  # a palette PNG whose pixel values are the class indices
            assert img.mode == "P" and img.size == (9, 7)
            assert img.getpalette()[: 3 * 21] == pal[:21].flatten().tolist()
            assert np.array_equal(np.array(img), label.numpy())
        assert torch.equal(read_voc_png(path), label)
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)  # OpenCV applies the palette: the VOC colours, in BGR
        assert np.array_equal(bgr[:, :, ::-1], pal[label].numpy())
    assert tuple(cv2.imread(paths[1])[0, 0, ::-1].tolist()) == VOC_KNOWN_COLOURS[20]
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        write_voc_png(tmp_path / "x.png", labels)
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        write_voc_png(tmp_path / "x.png", torch.tensor([[0, 300]]))
    with pytest.raises(ValueError, match="2 ids for 1"):
        export_voc_predictions(tmp_path, ["a", "b"], labels[:1])


def test_voc_test_split_without_labels_and_ids(tmp_path: Path) -> None:
    import cv2

    _write_voc_fixture(tmp_path)
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    cv2.imwrite(str(voc / "JPEGImages" / "t1.jpg"), np.zeros((10, 14, 3), dtype=np.uint8))
    (voc / "ImageSets/Segmentation/test.txt").write_text("t1\n")
    s = VOCSegmentation(tmp_path, "test")[0]
    assert s["id"] == "t1" and s["label"].shape == (10, 14) and bool((s["label"] == IGNORE_INDEX).all())
    padded = SegmentationDataset(VOCSegmentation(tmp_path, "test"), crop=16)[0]
    assert padded["image"].shape == (3, 16, 16) and padded["size"].tolist() == [10, 14] and padded["id"] == "t1"
    assert SegmentationDataset([{"image": torch.rand(3, 4, 4), "label": torch.zeros(4, 4)}])[0]["id"] == "000000"


def test_module_exports_test_predictions_at_the_image_size(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    from nvresearch.pac.segmentation.module import SegmentationModule

    torch.manual_seed(0)
    net = create_model("fcn8salt", 3, widths=(4, 8, 8, 8, 8), fc_channels=8, fc6_kernel=3, dropout=0.0)
    with torch.no_grad():
        net.backbone.score_fr.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))  # predicts class 2 everywhere
    module = SegmentationModule(net, num_classes=3, export_dir=str(tmp_path / "export")).eval()
    base = [{"image": torch.rand(3, 10, 13), "label": torch.zeros(10, 13, dtype=torch.long), "id": "img_a"}]
    batch = next(iter(DataLoader(SegmentationDataset(base, crop=16), batch_size=1)))
    with torch.no_grad():
        out = module.predict_step(batch, 0)
    assert out["id"] == ["img_a"] and out["pred"][0].shape == (10, 13)
    written = read_voc_png(tmp_path / "export" / VOC_RESULTS_DIR / "img_a.png")
    assert torch.equal(written, torch.full((10, 13), 2))
    small = next(iter(DataLoader(SegmentationDataset(base, crop=8), batch_size=1)))
    with pytest.raises(ValueError, match="evaluation crop cut it"), torch.no_grad():
        module.predict_step(small, 0)


# ----------------------------------------------------------------------------------------------------------------------
# Training module
# ----------------------------------------------------------------------------------------------------------------------
def test_module_phases_route_gradients(compose) -> None:
    from nvresearch.core.utils import instantiate

    cfg = compose(["experiment=pac/seg_synthetic", "data.dataset.train_size=8", "data.dataset.size=32", "data.crop=32"])
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    module.log = lambda *a, **k: None
    epoch = {"value": 0}
    type(module).current_epoch = property(lambda self: epoch["value"])  # type: ignore[assignment]
    try:
        module.training_step(batch, 0).backward()  # phase 1: the backbone alone
        assert module.net.backbone.conv1_1.weight.grad is not None
        assert all(p.grad is None for p in module.net.crf_parameters())
        module.zero_grad(set_to_none=True)
        epoch["value"] = cfg.model.unary_epochs  # phase 2: the CRF on the frozen backbone
        module.train()
        module.training_step(batch, 0).backward()
        assert module.net.backbone.training  # dropout stays on, as in the reference
        assert module.net.backbone.conv1_1.weight.grad is None
        assert all(p.grad is not None for p in module.net.crf_parameters())
    finally:
        del type(module).current_epoch
