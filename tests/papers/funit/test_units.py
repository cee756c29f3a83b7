"""FUNIT networks, losses, data and metrics: reference sizes, hand-computed losses, list-file fixtures."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from nvresearch.core.data import DatasetLayoutError
from nvresearch.funit import (
    FewShotGenerator,
    ListFileDataset,
    MultiTaskDiscriminator,
    SyntheticCreatures,
    TranslationPairs,
    cluster_mean_se,
    colour_transfer,
    creature_palettes,
    creature_species,
    discriminator_losses,
    estimate_pose,
    extract_animal_faces,
    generator_losses,
    gradient_penalty,
    mean_code_translation,
    nested_kshot_sets,
    pose_error,
    read_list_file,
    render_creatures,
    write_list_file,
)
from nvresearch.funit.data import unseen_split

TINY_G = {"nf": 8, "num_downs_content": 2, "num_downs_class": 3, "num_res": 1, "latent_dim": 8, "mlp_dim": 16}
TINY_D = {"num_classes": 5, "nf": 8, "num_res": 4, "num_stages": 2, "max_channels": 64}


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_reference_parameter_counts():
    """Spec B.2: the official FewShotGen / GPPatchMcResDis at configs/funit_animals.yaml (built on the meta device:
    sizes only, no memory or initialisation cost)."""
    with torch.device("meta"):
        _reference_counts()


def _reference_counts():
    g = FewShotGenerator()
    assert _count(g) == 29_866_435
    assert _count(g.class_encoder) == 2_779_328
    assert _count(g.content_encoder) == 12_202_112
    assert _count(g.decoder) == 13_749_891
    assert _count(g.mlp) == 1_135_104
    assert _count(MultiTaskDiscriminator(119)) == 54_252_599
    assert _count(MultiTaskDiscriminator(149)) == 54_283_349
    assert _count(MultiTaskDiscriminator(119, reference_inplace=False)) == 54_252_599


def test_generator_shapes_and_kshot_mean_in_latent_space():
    torch.manual_seed(0)
    g = FewShotGenerator(**TINY_G).eval()
    x = torch.randn(2, 3, 32, 32)
    shots = torch.randn(2, 4, 3, 32, 32)
    assert g.encode_content(x).shape == (2, 32, 8, 8)
    assert g.mlp.model[-1].fc.out_features == 2 * 2 * 32  # 2 AdaIN layers of 32 channels, [beta, gamma] each
    code = g.encode_class(shots)
    torch.testing.assert_close(code, torch.stack([g.encode_class(shots[i]).mean(0) for i in range(2)]))
    # permutation invariance of the K-shot code, and the translation uses it
    torch.testing.assert_close(g(x, shots), g(x, shots[:, [3, 1, 0, 2]]), atol=1e-5, rtol=1e-5)
    out = g(x, shots)
    assert out.shape == x.shape and out.abs().max() <= 1
    adaptive_up = FewShotGenerator(**TINY_G, adain_upsampling=True)
    assert adaptive_up.mlp.model[-1].fc.out_features == 2 * (2 * 32 + 16 + 8)
    assert adaptive_up(x, shots).shape == x.shape
    with pytest.raises(ValueError, match="multiples of 8"):
        g(torch.randn(1, 3, 20, 20), torch.randn(1, 3, 20, 20))


def test_kaiming_init_and_zero_bias():
    g = FewShotGenerator(**TINY_G)
    conv = g.content_encoder.model[1].conv
    assert (conv.bias == 0).all()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (12 * 8 * 16 / 12)), rel=0.2)


def test_discriminator_layout_matches_the_official_one():
    """The official GPPatchMcResDis with nf 8 and 5 classes (its channel cap of 1024 never reached) has 16,509 /
    64,957 / 1,029,437 parameters at n_res_blks 4 / 6 / 10 and features of 32 / 64 / 256 channels at 16 / 8 / 2 px
    for 32-px inputs (measured by instantiating the official networks.py on CPU): its last block doubles the width."""
    x, labels = torch.zeros(2, 3, 32, 32), torch.tensor([0, 4])
    for num_res, count, channels, side in ((4, 16_509, 32, 16), (6, 64_957, 64, 8), (10, 1_029_437, 256, 2)):
        d = MultiTaskDiscriminator(5, 8, num_res, num_res // 2 - 1, 1024)
        assert _count(d) == count
        assert d(x, labels)[1].shape == (2, channels, side, side) and d.out_channels == channels


def test_discriminator_reference_and_clean_variants():
    torch.manual_seed(0)
    ref = MultiTaskDiscriminator(**TINY_D)
    clean = MultiTaskDiscriminator(**TINY_D, reference_inplace=False)
    clean.load_state_dict(ref.state_dict())
    x, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 4, 2])
    logits, feats = ref(x, labels)
    assert logits.shape == (3, 8, 8) and feats.shape == (3, 32, 8, 8)
    logits_c, feats_c = clean(x, labels)
    assert not torch.allclose(logits, logits_c)
    # the reference's feature-matching features are taken after the head's LeakyReLU
    torch.testing.assert_close(feats, torch.nn.functional.leaky_relu(ref.trunk(x), 0.2))
    torch.testing.assert_close(feats_c, clean.trunk(x))
    # logits are those of the label's channel
    full = ref.head.conv(ref.head.activation(ref.trunk(x)))
    torch.testing.assert_close(logits, full[torch.arange(3), labels])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        ref(x, torch.tensor([0, 5, 1]))


class _LinearD(torch.nn.Module):
    """D_b(x) at each of 4 positions = w . x (all classes alike), features = x's channel means."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x, labels):
        s = (x.flatten(1) * self.w).sum(1)
        return s[:, None, None].expand(-1, 2, 2), x.mean((2, 3), keepdim=True)


def test_gradient_penalty_reference_scaling():
    """R1 of the batch mean (reference) = per-image R1 / chunk^2, averaged over chunks of the per-GPU batch."""
    w = torch.randn(3 * 8 * 8)
    d = _LinearD(w)
    x = torch.randn(16, 3, 8, 8, requires_grad=True)
    logits, _ = d(x, None)
    wn = float(w.pow(2).sum())
    assert gradient_penalty(logits, x, "clean").item() == pytest.approx(wn, rel=1e-5)
    assert gradient_penalty(logits, x, "reference", chunk=8).item() == pytest.approx(wn / 64, rel=1e-5)
    assert gradient_penalty(logits, x, "reference", chunk=16).item() == pytest.approx(wn / 256, rel=1e-5)
    with pytest.raises(ValueError, match="gp mode"):
        gradient_penalty(logits, x, "wgan")


class _ConstG(torch.nn.Module):
    """G(x_a, y) = 0.5 * y everywhere (so translations and reconstructions are known in closed form)."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def encode_content(self, x):
        return x

    def encode_class(self, y):
        return y

    def decode(self, content, code):
        return 0.5 * code + self.p

    def forward(self, x, y):
        return self.decode(x, y)


def test_losses_by_hand():
    torch.manual_seed(0)
    w = torch.full((3 * 2 * 2,), 0.25)
    d, g = _LinearD(w), _ConstG()
    x_a = torch.full((2, 3, 2, 2), 0.4)
    x_b = torch.full((2, 3, 2, 2), -0.8)
    la, lb = torch.tensor([0, 1]), torch.tensor([1, 0])
    # D: real logit 0.25 * 12 * -0.8 = -2.4 -> relu(1 + 2.4) = 3.4; fake x_t = -0.4: logit -1.2 -> relu(1 - 1.2) = 0
    terms = discriminator_losses(g, d, x_a, x_b, lb, gp_w=10.0, gp_mode="clean")
    assert terms["real"].item() == pytest.approx(3.4)
    assert terms["fake"].item() == pytest.approx(0.0)
    # R1: d logit / dx = w (per position, mean over 4 positions) -> |w|^2 = 12 / 16
    assert terms["gp"].item() == pytest.approx(0.75)
    assert terms["loss"].item() == pytest.approx(3.4 + 7.5)
    # G: x_t = -0.4 (logit -1.2), x_r = 0.2 (logit 0.6): adv = 0.5 (1.2 - 0.6) = 0.3; recon = |0.2 - 0.4| = 0.2;
    # features are channel means: fm_c = |0.2 - 0.4| = 0.2, fm_m = |-0.4 + 0.8| = 0.4
    terms = generator_losses(g, d, x_a, la, x_b, lb, gan_w=1.0, recon_w=0.1, fm_w=1.0)
    assert terms["adv"].item() == pytest.approx(0.3)
    assert terms["recon"].item() == pytest.approx(0.2)
    assert terms["fm_content"].item() == pytest.approx(0.2)
    assert terms["fm_class"].item() == pytest.approx(0.4)
    assert terms["loss"].item() == pytest.approx(0.3 + 0.02 + 0.6)


def test_real_losses_backpropagate_to_both_networks():
    torch.manual_seed(0)
    g, d = FewShotGenerator(**TINY_G), MultiTaskDiscriminator(**TINY_D)
    x_a, x_b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    la, lb = torch.tensor([0, 3]), torch.tensor([1, 4])
    discriminator_losses(g, d, x_a, x_b, lb)["loss"].backward()
    assert all(p.grad is not None for p in d.parameters()) and all(p.grad is None for p in g.parameters())
    d.zero_grad()
    generator_losses(g, d, x_a, la, x_b, lb)["loss"].backward()
    assert all(p.grad is not None for p in g.parameters())


# ---------------------------------------------------------------------------------------------------- data
def _write_fixture(root, classes=("n02085620", "n02086240"), per_class=3, size=(40, 30)):
    from PIL import Image

    lines = []
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            name = f"{c}_{i:04d}.JPEG_1_2_41_32.jpg"
            Image.new("RGB", size, (40 * ci, 100, 20 * i)).save(root / c / name)
            lines.append(f"{c}/{name}")
    return lines


def test_list_file_layout(tmp_path):
    root = tmp_path / "animals"
    lines = _write_fixture(root, classes=("n02086240", "n02085620"))
    lst = tmp_path / "animals_list_train.txt"
    lst.write_text("\n".join(lines) + "\n")
    paths, labels, classes = read_list_file(lst)
    assert classes == ["n02085620", "n02086240"]  # sorted names -> indices
    assert labels == [1, 1, 1, 0, 0, 0]
    train = ListFileDataset(root, lst, image_size=16, resize=20, train=True, seed=3)
    item = train[(2, 4)]
    assert item["image"].shape == (3, 16, 16) and item["label"] == 0
    assert item["image"].min() >= -1 and item["image"].max() <= 1
    torch.testing.assert_close(train[(2, 4)]["image"], item["image"])  # seeded by (seed, epoch, index)
    ev = ListFileDataset(root, lst, image_size=16, resize=20, train=False)
    assert ev[0]["image"].shape == (3, 16, 16)
    pairs = TranslationPairs(ev, seed=0)
    p = pairs[(0, 1)]
    assert set(p) == {"content", "content_label", "class_image", "class_label"}


def test_list_file_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetLayoutError, match="list file not found.*one '<class>/<image file>' path per line"):
        read_list_file(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("no_class_folder.jpg\n")
    with pytest.raises(DatasetLayoutError, match="no class folder"):
        read_list_file(bad)
    root = tmp_path / "r"
    root.mkdir()
    lst = tmp_path / "l.txt"
    lst.write_text("c0/a.jpg\n")
    with pytest.raises(DatasetLayoutError, match=r"image listed but not found: '.*c0/a.jpg'"):
        ListFileDataset(root, lst)[0]
    (root / "c0").mkdir()
    (root / "c0" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetLayoutError, match="corrupt or unreadable image: '.*a.jpg'"):
        ListFileDataset(root, lst)[0]
    with pytest.raises(DatasetLayoutError, match="image root not found"):
        ListFileDataset(tmp_path / "nowhere", lst)


def test_animal_faces_extraction_and_folder_lists(tmp_path):
    from PIL import Image

    imagenet = tmp_path / "ILSVRC2012_train"
    (imagenet / "n02085620").mkdir(parents=True)
    Image.new("RGB", (64, 48), (10, 200, 30)).save(imagenet / "n02085620" / "n02085620_7.JPEG", format="JPEG")
    coords = tmp_path / "animalface_coordinates.txt"
    coords.write_text("n02085620/n02085620_7.JPEG 4 6 36 30\n")
    out = tmp_path / "animals"
    assert extract_animal_faces(imagenet, coords, out) == 1
    crop = out / "n02085620" / "n02085620_7.JPEG_4_6_36_30.jpg"
    assert Image.open(crop).size == (32, 24)
    lst = tmp_path / "list.txt"
    assert write_list_file(out, lst) == 1
    assert lst.read_text().strip() == "n02085620/n02085620_7.JPEG_4_6_36_30.jpg"
    coords.write_text("n02085620/missing.JPEG 1 2 3 4\n")
    with pytest.raises(DatasetLayoutError, match="ImageNet image not found: '.*missing.JPEG'"):
        extract_animal_faces(imagenet, coords, out)


def test_synthetic_creatures_are_deterministic_and_class_independent_in_pose_colour_and_layout():
    a = SyntheticCreatures([0, 5, 9], images_per_class=6, image_size=32, seed=1)
    b = SyntheticCreatures([0, 5, 9], images_per_class=6, image_size=32, seed=1)
    torch.testing.assert_close(a.images, b.images)
    c = SyntheticCreatures([0, 5, 9], images_per_class=6, image_size=32, seed=2)
    assert not torch.allclose(a.images, c.images)
    assert a.images.shape == (18, 3, 32, 32) and a.images.min() >= -1 and a.images.max() <= 1
    assert a[7]["label"] == 1 and a[7]["pose"].shape == (4,)
    # colour and head layout are drawn per image, shared by all species: no species owns a colour or an ear shape
    many = SyntheticCreatures([2, 6], images_per_class=64, image_size=32, seed=1)
    for species in range(2):
        assert many.palette_ids[many.labels == species].unique().numel() == 8
        assert many.layouts[many.labels == species, 0].unique().tolist() == [0.0, 1.0]
    # the species is the texture: the 8 held-out species wear 8 different textures, each also worn by source species
    # at another period, so every unseen species is a new (texture, period) combination of traits seen in training
    table = creature_species(16)
    source, unseen = unseen_split(16, 8)
    assert len({int(table[i, 0]) for i in unseen}) == 8
    seen = {(int(r[0]), float(r[1])) for r in table[source]}
    assert {t for t, _ in seen} == set(range(8))
    assert all((int(table[i, 0]), float(table[i, 1])) not in seen for i in unseen)
    # two species of different textures, same everything else: the pixels differ inside the body
    pose, palette = torch.tensor([[16.0, 16.0, 0.0, 1.0]]), creature_palettes(8)[:1]
    layout, bg = torch.tensor([[0.0, 0.5, 0.8]]), torch.full((1, 3, 32, 32), 0.5)
    stripes = render_creatures(table[:1], palette, pose, bg, 32, layout)
    spots = render_creatures(table[6:7], palette, pose, bg, 32, layout)
    assert (stripes - spots).abs().amax(1)[0, 10:22, 10:22].gt(0.2).float().mean() > 0.2


def test_colour_transfer_paints_the_content_foreground_with_the_shots_colour():
    content = _ellipse(16, 16, 10)[None]  # red on grey
    blue = torch.tensor([0.1, 0.2, 0.9])
    shots = torch.stack([_ellipse(12, 18, 0), _ellipse(20, 14, 40)])  # red creatures repainted blue
    shots = torch.where((shots[:, :1] > 0.5), (blue * 2 - 1)[None, :, None, None].expand_as(shots), shots)[None]
    out = colour_transfer(content, shots)
    fg = estimate_pose(content)  # the foreground is where it was, now blue; the background is untouched
    torch.testing.assert_close(estimate_pose(out), fg, atol=1e-4, rtol=0)
    inside = content[0, 0] > 0.5
    torch.testing.assert_close(out[0, :, inside].mean(1), blue * 2 - 1, atol=1e-3, rtol=0)
    torch.testing.assert_close(out[0, :, ~inside], content[0, :, ~inside])
    with pytest.raises(ValueError, match="shots must be"):
        colour_transfer(content, shots[0])


def test_mean_code_translation_does_not_depend_on_the_target_class():
    """The ablation decodes with one code for all targets (their mean), not any target's own code."""
    torch.manual_seed(0)
    gen = FewShotGenerator(**TINY_G).eval()
    content, shots = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(3, 5, 3, 32, 32) * 2 - 1
    codes, code = gen.encode_class(shots), gen.encode_content(content)
    out = mean_code_translation(gen, code, codes)
    assert out.shape == content.shape
    torch.testing.assert_close(out, gen.decode(code, codes.mean(0).expand(2, -1)))
    own = gen.decode(code, codes[0].expand(2, -1))  # what a conditioned translation into target 0 gives
    assert (out - own).abs().max() > 1e-3
    with pytest.raises(ValueError, match="class_codes must be"):
        mean_code_translation(gen, code, codes[None])


# ---------------------------------------------------------------------------------------------------- metrics
def _ellipse(cx, cy, angle_deg, size=32):
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    t = math.radians(angle_deg)
    u = math.cos(t) * (xs - cx) + math.sin(t) * (ys - cy)
    v = -math.sin(t) * (xs - cx) + math.cos(t) * (ys - cy)
    mask = ((u / 4) ** 2 + (v / 9) ** 2 <= 1).float()
    grey = torch.full((3, size, size), 0.5)
    red = torch.tensor([0.9, 0.1, 0.1])[:, None, None].expand(3, size, size)
    return (grey * (1 - mask) + red * mask) * 2 - 1


def test_pose_estimate_known_answers():
    imgs = torch.stack([_ellipse(16, 16, 0), _ellipse(12, 18, 30), _ellipse(20, 14, -25)])
    pose = estimate_pose(imgs)
    torch.testing.assert_close(pose[:, :2], torch.tensor([[16.0, 16.0], [12.0, 18.0], [20.0, 14.0]]), atol=0.05, rtol=0)
    angles = torch.rad2deg(pose[:, 2])
    torch.testing.assert_close(angles, torch.tensor([0.0, 30.0, -25.0]), atol=2.0, rtol=0)
    dist, ang = pose_error(pose[1:2], pose[2:3])
    assert dist.item() == pytest.approx(math.hypot(8, 4), abs=0.1) and ang.item() == pytest.approx(55, abs=3)
    # angles are compared modulo 180 degrees
    _, wrap = pose_error(torch.tensor([[0.0, 0.0, math.radians(85)]]), torch.tensor([[0.0, 0.0, math.radians(-85)]]))
    assert wrap.item() == pytest.approx(10.0, abs=1e-3)


def test_nested_kshot_sets_pair_the_shot_counts():
    sets = nested_kshot_sets([12, 7], [5, 1, 3], torch.Generator().manual_seed(0), repeats=3)
    assert sorted(sets) == [1, 3, 5] and len(sets[1]) == 2 and all(len(r) == 3 for r in sets[5])
    for t, n in enumerate([12, 7]):
        for r in range(3):
            big = sets[5][t][r]
            assert len(set(big.tolist())) == 5 and 0 <= big.min() and big.max() < n  # without replacement
            assert torch.equal(sets[1][t][r], big[:1]) and torch.equal(sets[3][t][r], big[:3])  # nested
    assert not torch.equal(sets[5][0][0], sets[5][0][1])  # repeats are different draws
    # each K-set is still a uniform draw: every image of a 7-image pool is the K = 1 shot sometimes
    many = nested_kshot_sets([7], [1, 5], torch.Generator().manual_seed(1), repeats=400)
    assert torch.stack(many[1][0]).flatten().bincount(minlength=7).min() > 30
    with pytest.raises(ValueError, match="fewer than K = 5"):
        nested_kshot_sets([4], [1, 5], torch.Generator())


def test_cluster_mean_se_by_hand():
    # two clusters of 4 items with means 0.5 and 0.0, one of 4 with mean -0.25, one empty (ignored)
    sums, counts = torch.tensor([2.0, 0.0, -1.0, 0.0]), torch.tensor([4.0, 4.0, 4.0, 0.0])
    mean, se = cluster_mean_se(sums, counts)
    m = torch.tensor([0.5, 0.0, -0.25], dtype=torch.float64)
    assert mean == pytest.approx(0.25 / 3)
    assert se == pytest.approx(float(m.std() / math.sqrt(3)))  # equal sizes: the plain SE of the cluster means
    assert cluster_mean_se(torch.tensor([1.0]), torch.tensor([2.0])) == (0.5, pytest.approx(float("nan"), nan_ok=True))


def test_colour_augmented_judge_recognises_shapes_in_unseen_colours():
    """A judge trained on red shapes only: with channel permutations it also recognises them in green and blue."""
    from nvresearch.funit import train_classifier

    g = torch.Generator().manual_seed(0)
    square = torch.zeros(16, 16)
    square[4:12, 4:12] = 1
    ring = square.clone()
    ring[6:10, 6:10] = 0
    shapes = torch.stack([square, ring]).repeat_interleave(16, 0)  # (32, 16, 16)
    labels = torch.arange(2).repeat_interleave(16)

    def paint(channel: int) -> Tensor:
        x = -torch.ones(32, 3, 16, 16)
        x[:, channel] = 2 * shapes - 1
        return x + 0.05 * torch.randn(x.shape, generator=g)

    accuracy = {}
    for augment in (False, True):
        judge = train_classifier(paint(0), labels, 2, steps=60, batch_size=32, seed=0, width=8, colour_augment=augment)
        with torch.no_grad():
            accuracy[augment] = [(judge(paint(c)).argmax(1) == labels).float().mean().item() for c in (1, 2)]
    assert min(accuracy[True]) == 1.0 and min(accuracy[False]) < 0.9, accuracy  # plain: blue at chance
