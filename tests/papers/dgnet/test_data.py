"""Re-id readers on tiny fixtures written in the released layouts (Market-1501, DukeMTMC-reID, MSMT17) and in the
official preparation script's tree; one-line errors that name the path."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from nvresearch.core.data import DatasetLayoutError
from nvresearch.dgnet.data import (
    MSMT17,
    DukeMTMCReID,
    Market1501,
    PreparedReid,
    eval_transform,
    parse_name,
    stack,
)

SMALL = eval_transform(16, 8)


def _jpg(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 12), (value, 255 - value, 30)).save(path)


def _market(root: Path) -> Path:
    for folder, names in {
        "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s3_012345_02.jpg"],
        "bounding_box_test": ["0000_c1s1_000001_00.jpg", "-1_c2s1_000002_00.jpg", "0002_c4s2_000003_01.jpg"],
        "query": ["0002_c1s1_000451_04.jpg"],
        "gt_bbox": ["0002_c1s1_000451_00.jpg", "0002_c1s1_000461_00.jpg"],
    }.items():
        for i, name in enumerate(names):
            _jpg(root / folder / name, 40 * i)
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"\0")  # shipped in some releases, ignored
    return root


def test_parse_names():
    assert parse_name("0002_c1s1_000451_03.jpg", "market") == (2, 1)
    assert parse_name("-1_c6s2_000003_01.jpg", "market") == (-1, 6)
    assert parse_name("0005_c2_f0046985.jpg", "duke") == (5, 2)
    assert parse_name("0000_000_12_0303morning_0015_0.jpg", "msmt") == (0, 12)  # two-digit camera
    with pytest.raises(ValueError, match=r"'0005_c2_f0046985.jpg' does not follow the market naming"):
        parse_name("0005_c2_f0046985.jpg", "market")


def test_market_splits_labels_and_items(tmp_path):
    root = _market(tmp_path / "Market-1501-v15.09.15")
    train = Market1501.for_split("train", root, transform=SMALL)
    assert len(train) == 3 and train.num_classes == 2
    assert train.labels == [0, 0, 1] and train.cameras == [1, 2, 3]  # sorted persons 2, 7 -> 0, 1
    image, label, cam = train[2]
    assert image.shape == (3, 16, 8) and (label, cam) == (1, 3)
    gallery = Market1501.for_split("gallery", root, transform=SMALL)
    assert sorted(gallery.labels) == [-1, 0, 2]  # distractor and junk ids kept for the protocol
    assert len(Market1501.for_split("multi_query", root)) == 2
    rng = random.Random(0)
    assert train.positive(0, rng) == 1 and train.positive(1, rng) == 0
    assert train.positive(2, rng) == 2  # the only image of its person
    images, labels, cams = stack(train, [0, 2])
    assert images.shape == (2, 3, 16, 8) and labels.tolist() == [0, 1] and cams.tolist() == [1, 3]
    # ImageNet normalisation: a grey 128 pixel is (128/255 - mean) / std
    assert torch.allclose(images[0, 2], torch.full((16, 8), (30 / 255 - 0.406) / 0.225), atol=0.02)


def test_market_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"'.*nowhere' does not exist; expected Market-1501"):
        Market1501.for_split("train", tmp_path / "nowhere")
    root = _market(tmp_path / "m")
    (root / "query" / "0002_c1s1_000451_04.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match=r"no images in '.*query'"):
        Market1501.for_split("query", root)
    _jpg(root / "query" / "person2_cam1.jpg")
    with pytest.raises(DatasetLayoutError, match=r"person2_cam1.jpg.*market naming"):
        Market1501.for_split("query", root)
    with pytest.raises(ValueError, match="no split 'val'"):
        Market1501.for_split("val", root)
    (root / "bounding_box_test" / "0000_c1s1_000001_00.jpg").write_bytes(b"not a jpeg")
    gallery = Market1501.for_split("gallery", root)
    corrupt = [r.path.name for r in gallery.records].index("0000_c1s1_000001_00.jpg")
    with pytest.raises(OSError, match=r"cannot read image '.*0000_c1s1_000001_00.jpg'"):
        gallery[corrupt]


def test_duke_layout(tmp_path):
    root = tmp_path / "DukeMTMC-reID"
    for name in ("0005_c2_f0046985.jpg", "0005_c8_f0000001.jpg", "0012_c1_f0000002.jpg"):
        _jpg(root / "bounding_box_train" / name)
    train = DukeMTMCReID.for_split("train", root, transform=SMALL)
    assert train.labels == [0, 0, 1] and train.cameras == [2, 8, 1]
    with pytest.raises(ValueError, match="no split 'multi_query'"):
        DukeMTMCReID.for_split("multi_query", root)
    with pytest.raises(DatasetLayoutError, match=r"missing folder '.*query'"):
        DukeMTMCReID.for_split("query", root)


def test_msmt17_lists_and_two_digit_cameras(tmp_path):
    root = tmp_path / "MSMT17_V1"
    train = ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0001/0001_004_12_0303noon_0101_1.jpg 1"]
    val = ["0000/0000_003_15_0303afternoon_0200_0.jpg 0"]
    for line in train + val:
        _jpg(root / "train" / line.split()[0])
    (root / "list_train.txt").write_text("\n".join(train) + "\n")
    (root / "list_val.txt").write_text("\n".join(val) + "\n")
    ds = MSMT17.for_split("train", root, transform=SMALL)
    assert len(ds) == 3 and sorted(ds.cameras) == [1, 12, 15]
    assert ds.num_classes == 2 and ds.labels == [0, 0, 1]
    with pytest.raises(DatasetLayoutError, match=r"missing list file '.*list_query.txt'"):
        MSMT17.for_split("query", root)
    (root / "list_val.txt").write_text("0000/0000_003_15_0303afternoon_0200_0.jpg\n")
    with pytest.raises(DatasetLayoutError, match=r"list_val.txt' line 1: expected '<relative path> <pid>'"):
        MSMT17.for_split("train", root)
    (root / "list_val.txt").write_text("0000/0000_009_03_0303morning_0001_0.jpg 0\n")
    with pytest.raises(DatasetLayoutError, match=r"1 listed image\(s\) missing, e.g. '.*0000_009_03"):
        MSMT17.for_split("train", root)


def test_prepared_tree(tmp_path):
    """prepare-market.py's output: one folder per person in every split, gallery folders 0000 and -1 included."""
    root = tmp_path / "pytorch"
    for split, names in {
        "train_all": ["0002/0002_c1s1_000451_03.jpg", "0007/0007_c3s3_012345_02.jpg"],
        "gallery": ["-1/-1_c2s1_000002_00.jpg", "0000/0000_c1s1_000001_00.jpg"],
    }.items():
        for name in names:
            _jpg(root / split / name)
    train = PreparedReid.for_split("train_all", root, transform=SMALL)
    assert train.labels == [0, 1] and train.cameras == [1, 3]
    assert sorted(PreparedReid.for_split("gallery", root).labels) == [-1, 0]
    _jpg(root / "train_all" / "0009" / "0002_c2s1_000551_01.jpg")
    with pytest.raises(DatasetLayoutError, match=r"names person 2 but lies in '0009'"):
        PreparedReid.for_split("train_all", root)
    with pytest.raises(DatasetLayoutError, match=r"missing folder '.*query'"):
        PreparedReid.for_split("query", root)


def test_random_erasing_one_rectangle_per_erased_image():
    from nvresearch.dgnet.data import random_erasing

    x = torch.rand(64, 3, 32, 16) + 1.0  # never 0, so erased pixels are exactly the zeros
    x0 = x.clone()
    g = torch.Generator().manual_seed(0)
    out = random_erasing(x, g, probability=1.0)
    assert torch.equal(x, x0) and not torch.equal(out, x)  # the input is left alone
    for b in range(64):
        zero = (out[b] == 0).all(0)
        assert torch.equal(out[b][:, ~zero], x[b][:, ~zero])
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        h, w = rows.numel(), cols.numel()
        assert zero.sum() == h * w and h < 32 and w < 16  # one solid rectangle, strictly inside
        assert 0.02 * 512 * 0.5 <= h * w <= 0.4 * 512 * 1.5  # area fraction in [0.02, 0.4] up to rounding
        assert torch.equal(zero[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], torch.ones(h, w, dtype=torch.bool))
    assert torch.equal(random_erasing(x, torch.Generator().manual_seed(0), probability=1.0), out)  # seeded
    assert torch.equal(random_erasing(x, g, probability=0.0), x)
    half = random_erasing(x, torch.Generator().manual_seed(1), probability=0.5)
    erased = sum(bool((half[b] == 0).any()) for b in range(64))
    assert 16 < erased < 48
