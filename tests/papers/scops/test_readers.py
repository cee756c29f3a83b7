"""AFLW and PASCAL-Part readers on tiny fixtures written in their released layouts, with their one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nvresearch.core.data import DatasetLayoutError
from nvresearch.scops.data import (
    CAFFE_MEAN_RGB,
    PASCAL_PART_GROUPS,
    AFLWLandmarks,
    PascalParts,
    aflw_split,
    pascal_part_split,
)

MEAN = torch.tensor(CAFFE_MEAN_RGB).view(3, 1, 1)
HEADER = "image_file,face_id,x,y,lex,ley,rex,rey,nx,ny,lmx,lmy,rmx,rmy,set,crop_file"


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _aflw(root: Path) -> Path:
    """Train: two csv rows (set 1 and set 2); test: one MTFL line with a Windows path and the 4 attributes."""
    crop = root / "aflw_cropped"
    _save(crop / "cropped" / "100.jpg", np.full((20, 40, 3), 90, np.uint8))  # 40 wide, 20 high
    _save(crop / "cropped" / "101.jpg", np.full((20, 40, 3), 90, np.uint8))
    rows = [
        HEADER,
        "image100.jpg,1,0,0,11,6,31,6,21,11,13,16,29,16,1,cropped/100.jpg",
        "image101.jpg,2,0,0,1,1,2,2,3,3,4,4,5,5,2,cropped/101.jpg",  # set 2: not a training face
    ]
    (crop / "facedata_cropped.csv").write_text("\n".join(rows) + "\n")
    _save(root / "MTFL" / "AFLW" / "0001-image7.jpg", np.full((50, 50, 3), 30, np.uint8))
    (root / "MTFL" / "testing.txt").write_text(" AFLW\\0001-image7.jpg 11 41 26 16 36 11 11 26 41 41 1 2 2 3\n")
    return root


def test_aflw_train_and_test_layouts(tmp_path: Path) -> None:
    root = _aflw(tmp_path / "AFLW")
    train = AFLWLandmarks(root, "train", image_size=80)
    assert len(train) == 1 and train.samples[0][0] == "cropped/100.jpg"  # the set-2 row is left out
    s = train[0]
    assert s["image"].shape == (3, 80, 80) and s["saliency"].shape == (80, 80) and torch.all(s["saliency"] == 1)
    torch.testing.assert_close(s["image"][:, 5, 5], torch.full((3,), 90.0) - MEAN.view(3))
    # 1-based (x, y) pairs -> 0-based, x scaled by 80 / 40, y by 80 / 20; the eyes first (points 0, 1)
    expected = (torch.tensor([[11, 6], [31, 6], [21, 11], [13, 16], [29, 16]], dtype=torch.float32) - 1) * torch.tensor(
        [2.0, 4.0]
    )
    torch.testing.assert_close(s["landmarks"], expected)
    test = AFLWLandmarks(root, "test", image_size=100)
    assert len(test) == 1 and test[0]["name"] == "AFLW/0001-image7.jpg"  # Windows separators read
    # MTFL: x1..x5 then y1..y5
    xs, ys = torch.tensor([11.0, 41, 26, 16, 36]), torch.tensor([11.0, 11, 26, 41, 41])
    expected = (torch.stack([xs, ys], dim=1) - 1) * 2  # 50 px -> 100 px
    torch.testing.assert_close(test[0]["landmarks"], expected)
    assert len(aflw_split("val", root, image_size=32)) == 1  # the data module's val is the test list


def test_aflw_saliency_folder(tmp_path: Path) -> None:
    root = _aflw(tmp_path / "AFLW")
    sal = np.zeros((20, 40), np.uint8)
    sal[:, 20:] = 255
    _save(root / "sal" / "100.png", sal)
    s = AFLWLandmarks(root, "train", image_size=40, saliency_dir="sal")[0]
    assert s["saliency"][10, 5] == 0 and s["saliency"][10, 35] == 1
    with pytest.raises(DatasetLayoutError, match="AFLW saliency folder not found: '.*nope'"):
        AFLWLandmarks(root, "train", saliency_dir="nope")
    with pytest.raises(DatasetLayoutError, match="saliency map not found: '.*0001-image7.png'"):
        AFLWLandmarks(root, "test", saliency_dir="sal")[0]


def test_aflw_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="AFLW train list not found: '.*facedata_cropped.csv'.*expected"):
        AFLWLandmarks(tmp_path / "nothing", "train")
    with pytest.raises(ValueError, match="AFLW split must be one of \\('train', 'test'\\), got 'val'"):
        AFLWLandmarks(tmp_path, "val")
    root = _aflw(tmp_path / "AFLW")
    (root / "aflw_cropped" / "cropped" / "100.jpg").unlink()
    with pytest.raises(
        DatasetLayoutError, match="1 image\\(s\\) of '.*facedata_cropped.csv' not found, e.g. '.*100.jpg'"
    ):
        AFLWLandmarks(root, "train")
    (root / "MTFL" / "testing.txt").write_text("AFLW\\0001-image7.jpg 1 2 3\n")
    with pytest.raises(DatasetLayoutError, match="testing.txt' line 1: 4 fields, need '<path> x1..x5 y1..y5'"):
        AFLWLandmarks(root, "test")
    (root / "aflw_cropped" / "facedata_cropped.csv").write_text("image_file,crop_file\nx,y\n")
    with pytest.raises(DatasetLayoutError, match="header \\['image_file', 'crop_file'\\] lacks \\['set'\\]"):
        AFLWLandmarks(root, "train")


# ------------------------------------------------------------------------------------------------- PASCAL-Part
def _objects(entries: list[tuple[str, np.ndarray, list[tuple[str, np.ndarray]]]]) -> np.ndarray:
    objs = np.zeros((len(entries),), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    for i, (cls, mask, parts) in enumerate(entries):
        part_arr = np.zeros((len(parts),), dtype=[("part_name", "O"), ("mask", "O")])
        for j, (name, pmask) in enumerate(parts):
            part_arr[j] = (name, pmask.astype(np.uint8))
        objs[i] = (cls, 13, mask.astype(np.uint8), part_arr if parts else np.zeros((0, 0)))
    return objs


def _pascal(tmp_path: Path) -> tuple[Path, Path]:
    """One image (20 x 30) with a small horse, a large horse (head, torso, a leg, an unknown part) and a person."""
    from scipy.io import savemat

    voc, part = tmp_path / "VOC2010", tmp_path / "PASCAL-Part"
    img = np.zeros((20, 30, 3), np.uint8)
    img[4:16, 5:25] = (200, 100, 50)
    _save(voc / "JPEGImages" / "2008_000001.jpg", img)
    _save(voc / "JPEGImages" / "2008_000002.jpg", img)
    big = np.zeros((20, 30), bool)
    big[4:16, 5:25] = True  # x 5..24, y 4..15
    head, torso, leg, other = (np.zeros((20, 30), bool) for _ in range(4))
    head[4:10, 5:10] = True
    torso[4:12, 10:25] = True
    leg[12:16, 20:23] = True
    other[14:16, 5:7] = True
    small = np.zeros((20, 30), bool)
    small[0:2, 0:2] = True
    objects = _objects(
        [
            ("horse", small, [("head", small)]),
            ("horse", big, [("head", head), ("torso", torso), ("lfuleg", leg), ("saddle", other)]),
            ("person", big, []),
        ]
    )
    (part / "Annotations_Part").mkdir(parents=True)
    savemat(str(part / "Annotations_Part" / "2008_000001.mat"), {"anno": {"imname": "2008_000001", "objects": objects}})
    only_person = _objects([("person", big, [])])
    savemat(str(part / "Annotations_Part" / "2008_000002.mat"), {"anno": {"imname": "x", "objects": only_person}})
    main = voc / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "horse_train.txt").write_text("2008_000001  1\n2008_000003 -1\n")
    (main / "horse_val.txt").write_text("2008_000002  1\n")
    return voc, part


def test_pascal_part_crop_labels_and_saliency(tmp_path: Path) -> None:
    voc, part = _pascal(tmp_path)
    ds = PascalParts(voc, part, "horse", "train", image_size=20, padding=0.0)
    assert len(ds) == 1 and ds.label_names == ("background", "head", "neck", "torso", "legs", "tail", "wings", "other")
    s = ds[0]
    assert s["image"].shape == (3, 20, 20) and s["labels"].shape == (20, 20) and s["labels"].dtype == torch.long
    # the large horse's box x 5..24, y 4..15 squared to x 5..24, y 0..19: no rescale at side 20
    lab = s["labels"]
    assert lab[5, 0] == 1 and lab[5, 10] == 3 and lab[13, 16] == 4 and lab[15, 0] == 7  # head, torso, leg, "other"
    assert lab[1, 5] == 0 and lab[13, 5] == 0  # outside the object; inside it but in no part
    assert s["saliency"][10, 10] == 1 and s["saliency"][1, 10] == 0
    torch.testing.assert_close(
        s["image"][:, 10, 10], torch.tensor([200.0, 100.0, 50.0]) - MEAN.view(3), atol=10, rtol=0
    )  # JPEG
    big = PascalParts(voc, part, "horse", "train", image_size=40, padding=0.5)[0]
    assert big["labels"].shape == (40, 40) and set(big["labels"].unique().tolist()) == {0, 1, 3, 4, 7}
    # a box beyond the picture: the mean colour there, i.e. 0 after normalisation
    torch.testing.assert_close(big["image"][:, 0, 0], torch.zeros(3))


def test_pascal_part_groups_and_split(tmp_path: Path) -> None:
    voc, part = _pascal(tmp_path)
    groups = (("front", ("head", "lf*")), ("body", ("torso",)))
    s = PascalParts(voc, part, "horse", "train", image_size=20, padding=0.0, part_groups=groups)[0]
    assert s["labels"][5, 0] == 1 and s["labels"][13, 16] == 1 and s["labels"][5, 10] == 2 and s["labels"][15, 0] == 3
    assert len(pascal_part_split("test", voc, part, image_size=16)) == 1  # the val list
    assert dict(PASCAL_PART_GROUPS)["legs"][0] == "lf*"


def test_pascal_part_errors_name_the_path(tmp_path: Path) -> None:
    voc, part = _pascal(tmp_path)
    with pytest.raises(DatasetLayoutError, match="PASCAL-Part folder not found: '.*nope/Annotations_Part'"):
        PascalParts(voc, tmp_path / "nope")
    with pytest.raises(DatasetLayoutError, match="PASCAL list not found: '.*cow_train.txt'"):
        PascalParts(voc, part, "cow")
    with pytest.raises(DatasetLayoutError, match="'.*2008_000002.mat' has no 'horse' object"):
        PascalParts(voc, part, "horse", "val")[0]
    (voc / "ImageSets" / "Main" / "horse_val.txt").write_text("2008_000009 1\n")
    with pytest.raises(
        DatasetLayoutError, match="1 listed image\\(s\\) .* no part annotation, e.g. '.*2008_000009.mat'"
    ):
        PascalParts(voc, part, "horse", "val")
    (part / "Annotations_Part" / "2008_000001.mat").write_bytes(b"junk")
    with pytest.raises(DatasetLayoutError, match="cannot read anno.objects from '.*2008_000001.mat'"):
        PascalParts(voc, part, "horse", "train")[0]
