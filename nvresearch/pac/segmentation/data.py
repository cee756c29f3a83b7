"""Data for semantic segmentation with PAC-CRF (PAC paper Sec. 5.3; official ``task_semanticSegmentation/datasets.py``).

- :class:`SyntheticSegmentation`: the embedded default, procedural label maps whose objects have colour edges.
- :class:`VOCSegmentation`: PASCAL VOC 2012 and SBD in their shipped layouts (``VOCdevkit/VOC2012``,
  ``benchmark_RELEASE/dataset``), with the derived splits of the reference (``train_aug``, ...).
- :class:`SegmentationDataset`: crops, flips and input normalisation (RGB minus the VOC mean, reversed to BGR).
- :func:`voc_palette`, :func:`colorize_labels`: the VOC colour palette for pictures.
- :func:`write_voc_png`, :func:`read_voc_png`, :func:`export_voc_predictions`: predictions as VOC palette PNGs in
  the folder layout of the VOC evaluation server (``results/VOC2012/Segmentation/comp6_test_cls/<id>.png``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from nvresearch.core.data import DatasetLayoutError, MemoryCache, split_epoch_key, split_seed
from nvresearch.core.utils.color import hsv_to_rgb

__all__ = [
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "VOC_MEAN_RGB",
    "VOC_RESULTS_DIR",
    "SegmentationDataset",
    "SyntheticSegmentation",
    "VOCSegmentation",
    "colorize_labels",
    "export_voc_predictions",
    "from_network_input",
    "read_voc_png",
    "to_network_input",
    "voc_palette",
    "write_voc_png",
]

IGNORE_INDEX = 255
"""Label of void pixels (object boundaries in VOC, padding); ignored by the loss and the metrics."""
VOC_MEAN_RGB: tuple[float, float, float] = (122.675, 116.669, 104.008)
"""Mean colour subtracted from the 0-255 RGB input (the Caffe FCN convention)."""
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def to_network_input(image: Tensor) -> Tensor:
    """RGB in [0, 1] -> the network input: 0-255 scale, minus :data:`VOC_MEAN_RGB`, channels reversed to BGR.

    Shape:
        - image: :math:`(3, H, W)` or :math:`(B, 3, H, W)`; output alike.
    """
    mean = torch.tensor(VOC_MEAN_RGB, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * 255.0 - mean).flip(-3)


def from_network_input(x: Tensor) -> Tensor:
    """Inverse of :func:`to_network_input` (for pictures), clamped to [0, 1].

    Shape:
        - x: :math:`(3, H, W)` or :math:`(B, 3, H, W)`; output alike.
    """
    mean = torch.tensor(VOC_MEAN_RGB, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return ((x.flip(-3) + mean) / 255.0).clamp(0, 1)


def voc_palette(num_colors: int = 256) -> Tensor:
    """The VOC colour palette: the bits of the label index spread over the high bits of R, G and B.

    Shape:
        - output: uint8 :math:`(N, 3)`.
    """
    out = torch.zeros(num_colors, 3, dtype=torch.uint8)
    for i in range(num_colors):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = torch.tensor([r, g, b], dtype=torch.uint8)
    return out


def colorize_labels(labels: Tensor) -> Tensor:
    """Label map -> RGB picture in [0, 1] with the VOC palette (void 255 is drawn in cream, as in VOC).

    Shape:
        - labels: :math:`(H, W)` or :math:`(B, H, W)`; output :math:`(3, H, W)` or :math:`(B, 3, H, W)`.
    """
    palette = voc_palette().float() / 255.0
    palette[IGNORE_INDEX] = torch.tensor([224.0, 224.0, 192.0]) / 255.0
    rgb = palette[labels.detach().long().cpu().clamp(0, 255)]
    return rgb.movedim(-1, -3).contiguous()


VOC_RESULTS_DIR = os.path.join("results", "VOC2012", "Segmentation", "comp6_test_cls")
"""Where the VOC evaluation server expects segmentation results (``comp6``: trained with data beyond VOC, i.e.
SBD), relative to the folder that is archived and uploaded; one ``<image id>.png`` per test image."""


def write_voc_png(path: str | os.PathLike[str], labels: Tensor) -> None:
    """Write a label map as a VOC-style palette PNG: mode ``P``, pixel values = class indices, VOC colour map.

    Shape:
        - labels: :math:`(H, W)` integer class indices in [0, 255] (255 = void).
    """
    from PIL import Image

    if labels.dim() != 2:
        raise ValueError(f"labels must be an (H, W) map of class indices, got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi > 255:
        raise ValueError(f"class indices must lie in [0, 255] for a palette PNG, got [{lo}, {hi}]")
    image = Image.fromarray(labels.detach().cpu().numpy().astype(np.uint8))  # mode L
    image.putpalette(voc_palette().flatten().tolist())  # mode P with the VOC colour map
    image.save(os.fspath(path), format="PNG")


def read_voc_png(path: str | os.PathLike[str]) -> Tensor:
    """Read a VOC palette (or grey) PNG of class indices, as ``SegmentationClass`` ships them.

    Shape:
        - output: int64 :math:`(H, W)`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such label PNG: {path}")
    return torch.from_numpy(_read_palette_png(path).astype(np.int64))


def export_voc_predictions(
    out_dir: str | os.PathLike[str], ids: list[str] | tuple[str, ...], labels: Tensor
) -> list[str]:
    """Write predicted label maps for the VOC evaluation server: ``<out_dir>/`` :data:`VOC_RESULTS_DIR`
    ``/<id>.png``, one palette PNG per image id (archive ``<out_dir>/results`` and upload it).

    Args:
        out_dir: Folder that receives ``results/VOC2012/Segmentation/comp6_test_cls/``.
        ids: Image ids (e.g. ``2008_000006``), one per map.
        labels: Predicted class indices, each map at its image's original size.

    Returns:
        The paths written.

    Shape:
        - labels: :math:`(B, H, W)`, or a list of :math:`(H, W)` maps of different sizes.
    """
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} ids for {len(labels)} label maps")
    folder = os.path.join(os.fspath(out_dir), VOC_RESULTS_DIR)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for image_id, label in zip(ids, labels):
        if not image_id or os.sep in image_id or (os.altsep and os.altsep in image_id):
            raise ValueError(f"invalid image id {image_id!r} for a file name")
        path = os.path.join(folder, f"{image_id}.png")
        write_voc_png(path, label)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------------------------------
# Embedded procedural dataset
# ----------------------------------------------------------------------------------------------------------------------
class SyntheticSegmentation(Dataset):
    """Deterministic procedural segmentation scenes: the embedded default of the PAC-CRF task.

    Each image shows 4-9 objects (rectangles, ellipses, thin bars and triangles, 5-30 pixels across, so that a
    large part of every object lies near its boundary) on a textured background. Object class ``c`` (1 to
    ``num_classes - 1``) has its own hue, fixed for the dataset seed; each object jitters it, and every surface
    carries a smooth shading and pixel noise. Objects occlude one another. So the class of a pixel is easy to
    recognise at low resolution, while the exact boundary is only visible as a colour edge in the image, the case
    where a stride-8 FCN is blurry and PAC-CRF, guided by the image, can sharpen it.

    Item ``i`` is drawn from ``numpy.random.default_rng((seed, i))`` alone; the class hues come from
    ``default_rng(palette_seed)``, so splits with different ``seed`` share them.

    Args:
        num_images: Dataset length.
        size: Image height and width.
        num_classes: Classes including background (label 0).
        seed: Seed of the scenes.
        palette_seed: Seed of the class hues (shared by all splits).

    Shape:
        - ``image``: float32 :math:`(3, H, W)` RGB in [0, 1].
        - ``label``: int64 :math:`(H, W)` in ``[0, num_classes)``.
    """

    def __init__(
        self, num_images: int, size: int = 64, num_classes: int = 5, seed: int = 0, palette_seed: int = 12345
    ) -> None:
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        if size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {size}")
        if not 2 <= num_classes <= 21:
            raise ValueError(f"num_classes must be in [2, 21], got {num_classes}")
        self.num_images, self.size, self.num_classes = int(num_images), int(size), int(num_classes)
        self.seed, self.palette_seed = int(seed), int(palette_seed)
        rng = np.random.default_rng(self.palette_seed)
        hues = (rng.uniform(0, 1) + np.arange(num_classes - 1) / (num_classes - 1)) % 1.0
        self.class_colours = hsv_to_rgb(torch.from_numpy(hues), 0.75, 0.85).numpy().astype(np.float32)

    @classmethod
    def for_split(
        cls,
        split: str,
        num_classes: int = 5,
        train_size: int = 256,
        val_size: int = 32,
        test_size: int = 64,
        size: int = 64,
        seed: int = 0,
        cache: bool = True,
    ) -> Dataset:
        """The images of one split (a data config's dataset component).

        Args:
            split: ``train``, ``val`` or ``test``; each split draws from its own seed (``seed * 10 + 0/1/2``).
            num_classes: classes including background.
            train_size / val_size / test_size: images per split.
            size: image side in pixels.
            seed: the data seed.
            cache: keep the images in memory once rendered (:class:`~nvresearch.core.data.MemoryCache`), so that
                each is rendered once instead of once per epoch.
        """
        seed = split_seed(seed, split)
        sizes = {"train": train_size, "val": val_size, "test": test_size}
        base = cls(int(sizes[split]), int(size), int(num_classes), seed=seed)
        return MemoryCache(base) if cache else base

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"image index {index} out of range for {self.num_images} images")
        index %= self.num_images
        image, label = self._render(np.random.default_rng((self.seed, index)))
        return {"image": torch.from_numpy(image), "label": torch.from_numpy(label)}

    def _render(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s = self.size
        yy, xx = np.meshgrid(np.arange(s, dtype=np.float32), np.arange(s, dtype=np.float32), indexing="ij")
        # Background: a low-saturation colour with a gradient and soft blobs.
        grey = rng.uniform(0.25, 0.75)
        base = np.clip(grey + rng.normal(0, 0.05, size=3), 0, 1).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / s
        image = base[:, None, None] + np.float32(rng.uniform(0.05, 0.2)) * (ramp[None] - 0.5)
        label = np.zeros((s, s), dtype=np.int64)
        for _ in range(int(rng.integers(4, 10))):
            cls = int(rng.integers(1, self.num_classes))
            mask = self._shape(rng, yy, xx)
            if not mask.any():
                continue
            colour = np.clip(self.class_colours[cls - 1] + rng.normal(0, 0.06, size=3), 0, 1).astype(np.float32)
            shade = 1.0 + np.float32(rng.uniform(-0.15, 0.15)) * ((xx - xx[mask].mean()) / s)
            np.copyto(image, colour[:, None, None] * shade[None], where=mask[None])
            label[mask] = cls
        image = image + rng.normal(0, 0.03, size=image.shape).astype(np.float32)
        return np.clip(image, 0, 1).astype(np.float32), label

    def _shape(self, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        s = self.size
        cy, cx = rng.uniform(0, s, size=2)
        kind = rng.choice(["rectangle", "ellipse", "bar", "triangle"], p=[0.3, 0.3, 0.2, 0.2])
        theta = rng.uniform(0, np.pi)
        c, sn = np.cos(theta), np.sin(theta)
        u = c * (xx - cx) + sn * (yy - cy)
        v = -sn * (xx - cx) + c * (yy - cy)
        if kind == "bar":
            a, b = rng.uniform(0.15, 0.45) * s, rng.uniform(1.5, 3.5)
            return (np.abs(u) < a) & (np.abs(v) < b)
        a, b = rng.uniform(0.04, 0.22) * s, rng.uniform(0.04, 0.22) * s
        if kind == "rectangle":
            return (np.abs(u) < a) & (np.abs(v) < b)
        if kind == "ellipse":
            return (u / a) ** 2 + (v / b) ** 2 < 1
        return (v > -b) & (v < b * (1 - 2 * np.abs(u) / (2 * a)))  # isosceles triangle


# ----------------------------------------------------------------------------------------------------------------------
# PASCAL VOC 2012 + SBD, as the official task_semanticSegmentation/datasets.py reads them
# ----------------------------------------------------------------------------------------------------------------------
VOC_DIR = os.path.join("VOCdevkit", "VOC2012")
SBD_DIR = os.path.join("benchmark_RELEASE", "dataset")
_VOC_SPLITS = ("train", "val", "trainval", "test")
_SBD_SPLITS = ("sbd_train", "sbd_val")
_DERIVED_SPLITS = ("train_aug", "trainval_aug")
_LAYOUT = (
    "Expected layout under the root: VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette "
    "PNG, 255 = void), ImageSets/Segmentation/{train,val,trainval}.txt} (VOCtrainval_11-May-2012.tar) and, for the "
    "SBD splits, benchmark_RELEASE/dataset/{img/<id>.jpg, cls/<id>.mat (GTcls.Segmentation) or cls_png/<id>.png, "
    "train.txt, val.txt} (benchmark.tgz)"
)


def _read_ids(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise DatasetLayoutError(f"split file not found: {path}. {_LAYOUT}")
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def _read_palette_png(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        if img.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette (or grey) PNG of class indices, got mode {img.mode}")
        return np.array(img, dtype=np.uint8)


def _read_sbd_mat(path: str) -> np.ndarray:
    from scipy.io import loadmat

    try:
        data = loadmat(path, squeeze_me=True, struct_as_record=False)
        return np.asarray(data["GTcls"].Segmentation, dtype=np.uint8)
    except (KeyError, AttributeError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: expected a MATLAB file with GTcls.Segmentation (SBD cls/*.mat): {err}") from err


class VOCSegmentation(Dataset):
    """PASCAL VOC 2012 segmentation and the SBD annotations, in their shipped layouts (official ``datasets.py``).

    Splits:

    - ``train`` (1464), ``val`` (1449), ``trainval`` (2913): VOC's ``ImageSets/Segmentation/<split>.txt``.
    - ``test`` (1456): the VOC 2012 test images (``VOC2012test.tar`` extracted into the same ``VOCdevkit``), which
      ship without labels: their ``label`` is all void, for exporting predictions to the evaluation server.
    - ``sbd_train`` (8498), ``sbd_val`` (2857): SBD's ``train.txt`` / ``val.txt``, labels from ``cls_png`` if it
      exists (written by the reference's ``prepare_sbd``) else from ``cls/*.mat``.
    - ``train_aug`` (10582) = VOC train ∪ SBD train ∪ SBD val − VOC val; ``trainval_aug`` (12031) adds VOC val.
    - A path to a ``.txt`` file of ids (e.g. the FCN ``seg11valid.txt``, the 736-image ``val11_sbd`` split).

    As in the reference, an id with a VOC ``SegmentationClass`` label uses VOC's image and label, others SBD's.

    Args:
        root: Folder holding ``VOCdevkit/`` and/or ``benchmark_RELEASE/``.
        split: A split name above or a path to an id list.

    Shape:
        - ``image``: float32 :math:`(3, H, W)` RGB in [0, 1].
        - ``label``: int64 :math:`(H, W)`, 0-20 and 255 (void).
        - ``id``: the image id (a string).
    """

    @classmethod
    def for_split(
        cls,
        split: str,
        root: str | os.PathLike[str],
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "val",
    ) -> VOCSegmentation:
        """One split of the data module (a data config's dataset component): ``train``/``val``/``test`` read the
        VOC split (a name above or an id file) that ``train_split``/``val_split``/``test_split`` name."""
        names = {"train": train_split, "val": val_split, "test": test_split}
        if split not in names:
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return cls(root, names[split])

    def __init__(self, root: str | os.PathLike[str], split: str = "train") -> None:
        self.root = os.fspath(root)
        self.split = split
        self.voc = os.path.join(self.root, VOC_DIR)
        self.sbd = os.path.join(self.root, SBD_DIR)
        if not os.path.isdir(self.root):
            raise DatasetLayoutError(f"dataset root not found: {self.root}. {_LAYOUT}")
        voc_list = os.path.join(self.voc, "ImageSets", "Segmentation", "{}.txt")
        sbd_list = os.path.join(self.sbd, "{}.txt")
        if split in _VOC_SPLITS:
            ids = _read_ids(voc_list.format(split))
        elif split in _SBD_SPLITS:
            ids = _read_ids(sbd_list.format(split[4:]))
        elif split in _DERIVED_SPLITS:
            val = set(_read_ids(voc_list.format("val")))
            ids = _read_ids(voc_list.format("train"))
            if split == "trainval_aug":
                ids += sorted(val)
            seen = set(ids)
            for part in ("train", "val"):
                for i in _read_ids(sbd_list.format(part)):
                    if i not in seen and (split == "trainval_aug" or i not in val):
                        ids.append(i)
                        seen.add(i)
        elif split.endswith(".txt"):
            ids = _read_ids(split)
        else:
            raise ValueError(
                f"unknown split {split!r}; expected one of {_VOC_SPLITS + _SBD_SPLITS + _DERIVED_SPLITS} or a .txt file"
            )
        if not ids:
            raise ValueError(f"split {split!r} of {self.root} is empty")
        self.ids = ids
        self.items = [self._locate(i) for i in ids]

    def _locate(self, image_id: str) -> tuple[str, str]:
        voc_label = os.path.join(self.voc, "SegmentationClass", f"{image_id}.png")
        if os.path.isfile(voc_label):
            return os.path.join(self.voc, "JPEGImages", f"{image_id}.jpg"), voc_label
        image = os.path.join(self.sbd, "img", f"{image_id}.jpg")
        png = os.path.join(self.sbd, "cls_png", f"{image_id}.png")
        mat = os.path.join(self.sbd, "cls", f"{image_id}.mat")
        label = png if os.path.isfile(png) else mat
        test_image = os.path.join(self.voc, "JPEGImages", f"{image_id}.jpg")
        if self.split == "test" and not os.path.isfile(label) and os.path.isfile(test_image):
            return test_image, ""  # VOC test images have no public labels
        if not os.path.isfile(label):
            raise DatasetLayoutError(
                f"no label for image id {image_id!r}: neither {voc_label} nor {png} nor {mat} exists. {_LAYOUT}"
            )
        return image, label

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        import cv2

        image_path, label_path = self.items[index]
        bgr = cv2.imread(image_path, cv2.IMREAD_COLOR) if os.path.isfile(image_path) else None
        if bgr is None:
            raise DatasetLayoutError(f"cannot read image {image_path}. {_LAYOUT}")
        if not label_path:
            label = np.full(bgr.shape[:2], IGNORE_INDEX, dtype=np.uint8)
        elif label_path.endswith(".mat"):
            label = _read_sbd_mat(label_path)
        else:
            label = _read_palette_png(label_path)
        if label.shape != bgr.shape[:2]:
            raise ValueError(f"{label_path}: label {label.shape} and image {bgr.shape[:2]} sizes differ")
        rgb = np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1))
        return {
            "image": torch.from_numpy(rgb).float().div_(255.0),
            "label": torch.from_numpy(label.astype(np.int64)),
            "id": self.ids[index],
        }


# ----------------------------------------------------------------------------------------------------------------------
# Training / evaluation samples
# ----------------------------------------------------------------------------------------------------------------------
def _pad_to(x: Tensor, h: int, w: int, value: float) -> Tensor:
    ph, pw = max(0, h - x.shape[-2]), max(0, w - x.shape[-1])
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), value=value)


class SegmentationDataset(Dataset):
    """Segmentation samples as the reference prepares them (official ``datasets.py``).

    Training: the image is zero-padded (after normalisation, i.e. with the mean colour) and the label padded with
    255 at the bottom/right up to ``crop``, then a random ``crop`` x ``crop`` window is taken and flipped with
    p = 0.5, drawn from ``numpy.random.default_rng((seed, epoch, index))``. Evaluation: with ``crop`` the image is
    padded the same way and its top-left ``crop`` x ``crop`` window kept (the reference's test crop 513); without,
    the whole image (batch size 1 for images of different sizes).

    Args:
        base: Dataset of ``{"image": (3, H, W) in [0, 1], "label": (H, W)}``.
        crop: Crop size (None: whole images; required for training).
        train: Random crops and flips.
        seed: Augmentation seed.

    Shape:
        - ``image``: float32 :math:`(3, h, w)`, the network input (:func:`to_network_input`).
        - ``label``: int64 :math:`(h, w)`.
        - ``size``: int64 :math:`(2,)`, the image's height and width before padding or cropping.
        - ``id``: the base sample's ``id``, else the index as six digits.
    """

    def __init__(self, base: Dataset, crop: int | None = None, train: bool = False, seed: int = 0) -> None:
        if crop is not None and crop < 1:
            raise ValueError(f"crop must be positive, got {crop}")
        if train and crop is None:
            raise ValueError("training needs a crop size")
        self.base, self.crop, self.train, self.seed = base, crop, train, int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch used by plain integer keys (``(epoch, index)`` keys carry their own)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor]:
        epoch, index = split_epoch_key(key, default_epoch=self.epoch)
        sample: dict[str, Any] = self.base[index]
        image, label = to_network_input(sample["image"].float()), sample["label"].long()
        if image.shape[-2:] != label.shape[-2:]:
            raise ValueError(f"sample {index}: image {tuple(image.shape)} and label {tuple(label.shape)} differ")
        size = torch.tensor(image.shape[-2:], dtype=torch.int64)
        image_id = str(sample.get("id", f"{index:06d}"))
        if self.crop is not None:
            c = self.crop
            image = _pad_to(image, c, c, 0.0)
            label = _pad_to(label, c, c, IGNORE_INDEX)
            top = left = 0
            flip = False
            if self.train:
                rng = np.random.default_rng((self.seed, epoch, index))
                top = int(rng.integers(0, image.shape[-2] - c + 1))
                left = int(rng.integers(0, image.shape[-1] - c + 1))
                flip = bool(rng.random() < 0.5)
            image = image[:, top : top + c, left : left + c]
            label = label[top : top + c, left : left + c]
            if flip:
                image, label = image.flip(-1), label.flip(-1)
        return {"image": image.contiguous(), "label": label.contiguous(), "size": size, "id": image_id}


def class_frequencies(dataset: Dataset, num_classes: int, limit: int | None = None) -> Tensor:
    """Pixel frequency of each class over (the first ``limit`` items of) a dataset, ignoring void.

    Shape:
        - output: :math:`(C,)`, sums to 1.
    """
    counts = torch.zeros(num_classes, dtype=torch.float64)
    n = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]
    for i in range(n):
        lab = dataset[i]["label"].flatten()
        lab = lab[lab != IGNORE_INDEX]
        counts += torch.bincount(lab, minlength=num_classes)[:num_classes].double()
    return counts / counts.sum().clamp_min(1)
