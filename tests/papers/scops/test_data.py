"""SCOPS readers on tiny fixtures written in the official layouts (spec C.1, C.4), with their one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nvresearch.core.data import DatasetLayoutError
from nvresearch.scops.data import CelebAWild, CUBParts, PartImageFolder, resize_bilinear

MEAN = torch.tensor([122.67891434, 116.66876762, 104.00698793]).view(3, 1, 1)  # R, G, B: the official order


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _celeba(root: Path) -> Path:
    """Three 20 x 16 (W x H) images; 000003's face box covers less than 30 % of the image."""
    colours = {"000001.jpg": (200, 100, 50), "000002.jpg": (10, 20, 30), "000003.jpg": (0, 0, 0)}
    for name, rgb in colours.items():
        _save(root / "img_celeba" / name, np.full((16, 20, 3), rgb, np.uint8))
        _save(root / "Saliency_Wild" / name.replace(".jpg", ".png"), np.full((8, 10), 255, np.uint8))
    (root / "list_landmarks_celeba.txt").write_text(
        "3\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y\n"
        "000001.jpg 3 5 15 5 10 9 6 13 14 13\n000002.jpg 1 1 2 2 3 3 4 4 19 15\n000003.jpg 1 1 2 2 3 3 4 4 5 5\n"
    )
    (root / "list_bbox_celeba.txt").write_text(
        "3\nimage_id x_1 y_1 width height\n000001.jpg 0 0 10 10\n000002.jpg 2 2 20 16\n000003.jpg 0 0 5 5\n"
    )
    (root / "list_imsize_celeba.txt").write_text("000001.jpg 16 20\n000002.jpg 16 20\n000003.jpg 16 20\n")
    (root / "MAFL").mkdir()
    (root / "MAFL" / "training.txt").write_text("000001.jpg\n000002.jpg\n000003.jpg\n")
    (root / "MAFL" / "testing.txt").write_text("000002.jpg\n")
    return root


def test_celeba_wild_layout_filter_and_sample(tmp_path: Path) -> None:
    ds = CelebAWild(_celeba(tmp_path), split="train", image_size=32)
    assert ds.num_listed == 3 and len(ds) == 2  # 000003: 5 * 5 < 0.3 * 16 * 20
    s = ds[0]
    assert s["name"] == "000001.jpg" and s["image"].shape == (3, 32, 32) and s["saliency"].shape == (32, 32)
    # a uniform colour minus the RGB-ordered Caffe mean (JPEG may move a value by a few levels)
    torch.testing.assert_close(s["image"], torch.tensor([200.0, 100.0, 50.0]).view(3, 1, 1) - MEAN.expand(3, 32, 32),
                               atol=3.0, rtol=0)  # fmt: skip
    assert torch.allclose(s["saliency"], torch.ones(32, 32))
    # x * 32 / 20, y * 32 / 16, truncated: (3, 5) -> (4.8, 10) -> (4, 10); (15, 5) -> (24, 10); (6, 13) -> (9.6, 26)
    assert s["landmarks"].tolist() == [[4, 10], [24, 10], [16, 18], [9, 26], [22, 26]]
    assert len(CelebAWild(tmp_path, split="train", image_size=32, face_area_threshold=0.0)) == 3
    assert [x["name"] for x in CelebAWild(tmp_path, split="test", image_size=32)] == ["000002.jpg"]


def test_celeba_wild_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="CelebA root not found: '.*nowhere'"):
        CelebAWild(tmp_path / "nowhere")
    root = _celeba(tmp_path / "c")
    with pytest.raises(DatasetLayoutError, match="celebA_training.txt"):
        CelebAWild(root, split="scops_train")
    (root / "MAFL" / "testing.txt").write_text("000009.jpg\n")
    with pytest.raises(DatasetLayoutError, match="'000009.jpg' of .*testing.txt' has no line in .*landmarks"):
        CelebAWild(root, split="test")
    (root / "Saliency_Wild" / "000002.png").unlink()
    ds = CelebAWild(root, split="train", image_size=8)
    with pytest.raises(DatasetLayoutError, match="saliency map not found: '.*Saliency_Wild/000002.png'"):
        ds[1]
    (root / "img_celeba" / "000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetLayoutError, match="corrupt or unreadable image: '.*000001.jpg'"):
        ds[0]
    (root / "list_bbox_celeba.txt").write_text("000001.jpg 0 0 x 10\n000002.jpg 0 0 1 1\n000003.jpg 0 0 1 1\n")
    with pytest.raises(DatasetLayoutError, match="list_bbox_celeba.txt': the line of '000001.jpg' has a non-integer"):
        CelebAWild(root, split="train")
    (root / "Saliency_Wild" / "000001.png").unlink()
    for p in (root / "Saliency_Wild").iterdir():
        p.unlink()
    (root / "Saliency_Wild").rmdir()
    with pytest.raises(DatasetLayoutError, match="missing folder '.*Saliency_Wild'"):
        CelebAWild(root)


def _cub(tmp_path: Path) -> tuple[Path, Path]:
    from scipy.io import savemat

    cub, cache = tmp_path / "CUB_200_2011", tmp_path / "cachedir"
    _save(cub / "images" / "001.Albatross" / "a.jpg", np.full((30, 40, 3), (200, 0, 0), np.uint8))
    _save(cub / "images" / "001.Albatross" / "b.png", np.full((30, 40, 3), (200, 0, 0), np.uint8))
    parts = np.zeros((3, 15))
    parts[:, 0] = (21, 16, 1)  # 1-based (21, 16) visible; the rest invisible
    parts[:, 1] = (5, 5, 0)
    mask = np.zeros((30, 40), np.uint8)
    mask[5:25, 10:30] = 1
    images = np.zeros((2,), dtype=[("rel_path", "O"), ("bbox", "O"), ("mask", "O"), ("parts", "O")])
    images[0] = ("001.Albatross/a.jpg", {"x1": 11, "y1": 6, "x2": 30, "y2": 25}, mask, parts)
    images[1] = ("001.Albatross/b.png", {"x1": 1, "y1": 1, "x2": 20, "y2": 20}, mask, parts)
    (cache / "data").mkdir(parents=True)
    savemat(str(cache / "data" / "test_cub_cleaned.mat"), {"images": images})
    return cub, cache


def test_cub_crop_scale_keypoints_and_silhouette(tmp_path: Path) -> None:
    cub, cache = _cub(tmp_path)
    ds = CUBParts(cub, cache, split="test", image_size=256)
    assert len(ds) == 2
    s = ds[0]
    assert s["image"].shape == (3, 256, 256) and s["saliency"].shape == (256, 256)
    # box (10, 5, 29, 24) 0-based, padded by 1 px to a 22 px square at (9, 4); the keypoint (20, 15) -> (11, 11) in
    # the crop -> the centre of the 256 px output -> (0, 0) normalised; invisible keypoints are zeroed
    torch.testing.assert_close(s["keypoints"][0], torch.tensor([0.0, 0.0, 1.0]))
    assert s["keypoints"][1:].abs().sum() == 0
    assert s["saliency"][128, 128] == 1 and s["saliency"][2, 2] == 0  # the silhouette, 0 outside the box content
    # the second box leaves the image: the crop is white there (official bgval 1), the silhouette 0
    t = ds[1]
    torch.testing.assert_close(t["image"][:, 128, 0], torch.tensor([255.0, 255.0, 255.0]) - MEAN.view(3))
    torch.testing.assert_close(
        t["image"][:, 128, 128], torch.tensor([200.0, 0.0, 0.0]) - MEAN.view(3), atol=3.0, rtol=0
    )
    jittered = CUBParts(cub, cache, split="test", image_size=64, jitter=0.05, seed=3)
    assert torch.equal(jittered[0]["image"], jittered[0]["image"])  # deterministic per (seed, index)
    with pytest.raises(DatasetLayoutError, match="train_cub_cleaned.mat"):
        CUBParts(cub, cache, split="train")
    with pytest.raises(DatasetLayoutError, match="CUB image folder not found: '.*nope/images'"):
        CUBParts(tmp_path / "nope", cache)


def test_part_image_folder(tmp_path: Path) -> None:
    _save(tmp_path / "b.png", np.full((10, 12, 3), 7, np.uint8))
    _save(tmp_path / "a.jpg", np.full((12, 10, 3), 7, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    ds = PartImageFolder(tmp_path, image_size=16)
    assert [ds[i]["name"] for i in range(len(ds))] == ["a.jpg", "b.png"]
    assert torch.equal(ds[0]["saliency"], torch.ones(16, 16))
    _save(tmp_path / "saliency" / "a.png", np.zeros((6, 5), np.uint8))
    with pytest.raises(DatasetLayoutError, match="lacks the saliency map of 1 image.*saliency/b.png"):
        PartImageFolder(tmp_path)
    _save(tmp_path / "saliency" / "b.png", np.full((5, 6), 255, np.uint8))
    ds = PartImageFolder(tmp_path, image_size=16)
    assert ds[0]["saliency"].max() == 0 and ds[1]["saliency"].min() == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no image .* in '.*empty'"):
        PartImageFolder(tmp_path / "empty")
    with pytest.raises(DatasetLayoutError, match="image folder not found: '.*missing'"):
        PartImageFolder(tmp_path / "missing")


def test_resize_matches_opencv_bilinear() -> None:
    cv2 = pytest.importorskip("cv2")
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 13, 17), generator=g, dtype=torch.uint8)
    ours = resize_bilinear(img, (32, 24)).permute(1, 2, 0).numpy()
    ref = cv2.resize(img.permute(1, 2, 0).numpy(), (24, 32), interpolation=cv2.INTER_LINEAR)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


# ------------------------------------------------------------------------------------------------ embedded world
def test_part_objects_deterministic_and_consistent() -> None:
    from nvresearch.scops.data import PartObjects

    a, b = PartObjects(3, size=32, seed=1), PartObjects(5, size=32, seed=1)
    assert torch.equal(a.images, b.images[:3]) and torch.equal(a.labels, b.labels[:3])  # image i depends on (seed, i)
    assert not torch.equal(a.images, PartObjects(3, size=32, seed=2).images)
    s = a[0]
    assert s["image"].shape == (3, 32, 32) and s["labels"].shape == (32, 32) and s["landmarks"].shape == (5, 2)
    assert set(a.labels.unique().tolist()) == {0, 1, 2, 3, 4}
    assert torch.equal(a.saliency, (a.labels > 0).float())
    torch.testing.assert_close(s["image"], a.images[0] * 255 - MEAN)
    for i in range(3):  # the head-centre landmark lies on the head, the torso centre on the torso
        (hx, hy), (tx, ty) = a.landmarks[i, :2].round().long().tolist()
        assert a.labels[i, hy, hx] == 2 and a.labels[i, ty, tx] == 1
    blurred = PartObjects(2, size=32, seed=1, saliency_blur=3).saliency
    assert ((blurred > 0) & (blurred < 1)).any() and blurred.shape == (2, 32, 32)


def test_colour_is_no_part_cue_in_the_world() -> None:
    """All parts of an image share its two colours: colour k-means finds the parts of a world with a colour per part
    (FG-NMI 1) but not of the embedded one (measured 0.002-0.03 FG-NMI over seeds 0-2, 64 images)."""
    from nvresearch.scops.data import PartObjects
    from nvresearch.scops.metrics import colour_kmeans_parts, part_agreement

    ds = PartObjects(16, size=32, seed=0)
    fg = ds.labels > 0
    g = torch.Generator().manual_seed(0)
    for per_image in (False, True):
        pred = colour_kmeans_parts(ds.images, fg, 4, per_image=per_image, generator=g)
        assert part_agreement(pred, ds.labels, fg)["nmi"] < 0.1
    palette = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.float32)
    painted = palette[ds.labels].permute(0, 3, 1, 2)  # a colour per part: the probe succeeds
    pred = colour_kmeans_parts(painted, fg, 4, generator=g)
    assert part_agreement(pred, ds.labels, fg)["nmi"] > 0.99


def test_part_objects_split_gives_disjoint_worlds_and_reads_epoch_keys() -> None:
    from nvresearch.scops.data import part_objects_split

    train = part_objects_split("train", train_images=3, size=32, seed=1)
    val = part_objects_split("val", val_images=3, size=32, seed=1)
    assert len(train) == 3 and train.images.shape == (3, 3, 32, 32)
    assert not torch.equal(train.images[0], val.images[0])  # own seeds per split
    assert torch.equal(train[(5, 2)]["image"], train[2]["image"])  # the training sampler's (epoch, index) key
    with pytest.raises(ValueError, match="split must be one of"):
        part_objects_split("holdout")
