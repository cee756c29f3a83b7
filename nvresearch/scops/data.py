"""SCOPS data: readers for the dataset layouts of the official code (``dataset/celeba_wild_dataset.py``,
``dataset/cub.py``, ``dataset/base.py``) and for the user's own images.

Every reader returns samples as dicts of tensors at ``image_size x image_size``:

- ``image``: ``(3, S, S)`` float, RGB minus the per-channel Caffe mean (R - 122.68, G - 116.67, B - 104.01), which is
  what the official network sees (the official loader subtracts the BGR mean from the BGR image, then reverses the
  channels);
- ``saliency``: ``(S, S)`` in [0, 1], the foreground prior that masks the semantic features (CelebA: the shipped
  saliency maps; CUB: the ground-truth silhouette, as the released CUB model was trained; own images: a saliency map
  beside the image, or ones);
- ``landmarks`` / ``keypoints`` where the dataset has them, and ``name``.

Layouts (a missing or malformed piece raises :class:`~nvresearch.core.data.DatasetLayoutError` naming the path):

CelebA "in the wild" (unaligned; :class:`CelebAWild`)::

    <root>/img_celeba/<name>.jpg                 original unaligned CelebA images
    <root>/Saliency_Wild/<stem>.png              one grayscale saliency map per image
    <root>/list_landmarks_celeba.txt             <name> lefteye_x lefteye_y righteye_x ... rightmouth_y (11 tokens)
    <root>/list_bbox_celeba.txt                  <name> x_1 y_1 width height
    <root>/list_imsize_celeba.txt                <name> <int> <int> (the authors' tarball; the product is the area)
    <root>/MAFL/{training,testing,celebA_training}.txt   one <name> per line

CUB-200-2011 with the CMR annotation cache (:class:`CUBParts`; needs scipy)::

    <cub_root>/images/<class dir>/<file>.jpg
    <cache_dir>/data/<split>_cub_cleaned.mat     struct array 'images': rel_path, bbox.{x1,y1,x2,y2} (1-based),
                                                 mask (H x W), parts (3 x 15: x, y, visibility; 1-based)

Own images (:class:`PartImageFolder`)::

    <root>/<name>.{jpg,jpeg,png,bmp}             any number of images
    <root>/saliency/<stem>.png                   optional grayscale foreground maps (all or none)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from nvresearch.core.data import DatasetLayoutError, split_epoch_key
from nvresearch.core.data.images import read_image
from nvresearch.core.data.samplers import split_seed
from nvresearch.core.utils.color import hsv_to_rgb

__all__ = [
    "CAFFE_MEAN_RGB",
    "CELEBA_LAYOUT",
    "CUB_LAYOUT",
    "LANDMARK_NAMES",
    "PART_NAMES",
    "AFLWLandmarks",
    "CelebAWild",
    "CUBParts",
    "PartImageFolder",
    "PascalParts",
    "aflw_split",
    "pascal_part_split",
    "PartObjects",
    "celeba_split",
    "part_objects_split",
    "render_part_object",
    "caffe_normalize",
    "load_gray",
    "load_rgb",
    "resize_bilinear",
]

CAFFE_MEAN_RGB: tuple[float, float, float] = (122.67891434, 116.66876762, 104.00698793)
"""The Caffe ImageNet mean the official loaders subtract, in RGB order (the official ``IMG_MEAN`` is its BGR form)."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

CELEBA_LAYOUT = (
    "expected <root>/img_celeba/<name>.jpg, <root>/Saliency_Wild/<stem>.png, <root>/list_landmarks_celeba.txt, "
    "<root>/list_bbox_celeba.txt, <root>/list_imsize_celeba.txt and <root>/MAFL/<split>.txt"
)
CUB_LAYOUT = (
    "expected <cub_root>/images/<class dir>/<file>.jpg and the CMR cache <cache_dir>/data/<split>_cub_cleaned.mat "
    "(struct array 'images' with rel_path, bbox.x1/y1/x2/y2, mask, parts 3x15)"
)
CELEBA_SPLITS = {"train": "training.txt", "test": "testing.txt", "scops_train": "celebA_training.txt"}
"""MAFL split files: the regression's train / test split, and the list the official SCOPS training reads."""


# ------------------------------------------------------------------------------------------------- image helpers
def load_rgb(path: str | os.PathLike) -> Tensor:
    """Read an image as RGB ``uint8`` (grayscale images are repeated to 3 channels).

    Shape:
        returns ``(3, H, W)`` uint8.
    """
    return read_image(path)


def load_gray(path: str | os.PathLike) -> Tensor:
    """Read a grayscale map (saliency) as float in [0, 1] (value / 255).

    Shape:
        returns ``(H, W)`` float32.
    """
    return read_image(path, "L", "saliency map").float() / 255.0


def resize_bilinear(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize with half-pixel centres and no anti-aliasing (what OpenCV's ``INTER_LINEAR`` does, which the
    official loaders use). A ``uint8`` input is rounded back to ``uint8``, as OpenCV returns it.

    Shape:
        x: ``(C, H, W)`` or ``(H, W)``; returns the same with ``(H, W) = size``.
    """
    squeeze = x.dim() == 2
    y = x[None, None] if squeeze else x[None]
    out = F.interpolate(y.double(), size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)
    out = out[0, 0] if squeeze else out[0]
    if x.dtype == torch.uint8:
        return out.round().clamp(0, 255).to(torch.uint8)
    return out.to(x.dtype)


def caffe_normalize(rgb: Tensor) -> Tensor:
    """RGB in [0, 255] minus :data:`CAFFE_MEAN_RGB` per channel (the network input of the official code).

    Shape:
        rgb: ``(3, H, W)`` or ``(B, 3, H, W)``; returns float32 of the same shape.
    """
    mean = torch.tensor(CAFFE_MEAN_RGB, dtype=torch.float32).view(3, 1, 1)
    return rgb.float() - mean


def _read_table(path: Path, tokens: int, what: str) -> dict[str, list[str]]:
    """``name -> fields`` of a whitespace-separated CelebA list file, keeping the lines with ``tokens`` tokens (the
    official filter: the count line and the header line are skipped that way)."""
    if not path.is_file():
        raise DatasetLayoutError(f"{what} not found: '{path}'; {CELEBA_LAYOUT}")
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == tokens and parts[0] != "image_id":
            table[parts[0]] = parts[1:]
    if not table:
        raise DatasetLayoutError(f"'{path}' has no line of {tokens} fields ('<name> ...'); {CELEBA_LAYOUT}")
    return table


def _ints(path: Path, name: str, fields: list[str]) -> list[int]:
    try:
        return [int(v) for v in fields]
    except ValueError as err:
        raise DatasetLayoutError(f"'{path}': the line of '{name}' has a non-integer field: {fields}") from err


# --------------------------------------------------------------------------------------------------- CelebA wild
class CelebAWild(Dataset):
    """Unaligned CelebA as the official SCOPS code reads it (``celeba_wild_dataset.py``): the MAFL split, the images
    whose face box covers at least ``face_area_threshold`` of the image (0.3), resized without keeping the aspect
    ratio to ``image_size`` (bilinear, uint8), the saliency map resized to the image and then to ``image_size``, and
    the 5 landmarks (eyes, nose, mouth corners) scaled into the resized frame and truncated to integers.

    Args:
        root: the CelebA folder (layout in the module docstring).
        split: ``"train"`` / ``"test"`` (MAFL ``training.txt`` / ``testing.txt``, the regression splits) or
            ``"scops_train"`` (``celebA_training.txt``, the official SCOPS training list), or a path to a list file.
        image_size: side of the square output.
        face_area_threshold: keep an image iff ``bbox_w * bbox_h >= threshold * area`` (0 keeps all).
        with_saliency: read the saliency maps (required by the official loader, also for evaluation).

    Shape:
        sample: ``image (3, S, S)``, ``saliency (S, S)``, ``landmarks (5, 2)`` as ``(x, y)`` pixels, ``name``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        image_size: int = 256,
        face_area_threshold: float = 0.3,
        with_saliency: bool = True,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetLayoutError(f"CelebA root not found: '{self.root}'; {CELEBA_LAYOUT}")
        for sub in ("img_celeba",) + (("Saliency_Wild",) if with_saliency else ()):
            if not (self.root / sub).is_dir():
                raise DatasetLayoutError(f"missing folder '{self.root / sub}'; {CELEBA_LAYOUT}")
        list_path = self.root / "MAFL" / CELEBA_SPLITS[split] if split in CELEBA_SPLITS else Path(split)
        if not list_path.is_file():
            raise DatasetLayoutError(
                f"split list not found: '{list_path}' (split '{split}': one of {sorted(CELEBA_SPLITS)} or a list "
                f"file); {CELEBA_LAYOUT}"
            )
        self.image_size = int(image_size)
        self.with_saliency = bool(with_saliency)
        lm_path = self.root / "list_landmarks_celeba.txt"
        landmarks = _read_table(lm_path, 11, "landmark list")
        boxes = sizes = {}
        if face_area_threshold > 0:
            boxes = _read_table(self.root / "list_bbox_celeba.txt", 5, "bounding-box list")
            sizes = _read_table(self.root / "list_imsize_celeba.txt", 3, "image-size list")
        names = [line.strip() for line in list_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not names:
            raise DatasetLayoutError(f"split list '{list_path}' is empty")
        self.samples: list[tuple[str, Tensor]] = []
        for name in names:
            if name not in landmarks:
                raise DatasetLayoutError(f"'{name}' of '{list_path}' has no line in '{lm_path}'")
            if face_area_threshold > 0:
                for table, file in ((boxes, "list_bbox_celeba.txt"), (sizes, "list_imsize_celeba.txt")):
                    if name not in table:
                        raise DatasetLayoutError(f"'{name}' of '{list_path}' has no line in '{self.root / file}'")
                box = _ints(self.root / "list_bbox_celeba.txt", name, boxes[name])
                size = _ints(self.root / "list_imsize_celeba.txt", name, sizes[name])
                if box[2] * box[3] < size[0] * size[1] * face_area_threshold:
                    continue
            points = _ints(lm_path, name, landmarks[name])
            self.samples.append((name, torch.tensor(points, dtype=torch.float64).view(5, 2)))
        self.num_listed = len(names)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, object]:
        index = split_epoch_key(index)[1]  # the training sampler's (epoch, index) keys
        name, points = self.samples[index]
        rgb = load_rgb(self.root / "img_celeba" / name)
        h, w = rgb.shape[-2:]
        s = self.image_size
        out: dict[str, object] = {"image": caffe_normalize(resize_bilinear(rgb, (s, s))), "name": name}
        if self.with_saliency:
            sal = load_gray(self.root / "Saliency_Wild" / f"{Path(name).stem}.png")
            out["saliency"] = resize_bilinear(resize_bilinear(sal, (h, w)), (s, s)).clamp(0, 1)
        # official: int(x * S / W) per coordinate, i.e. truncation toward zero
        scale = torch.tensor([s / w, s / h], dtype=torch.float64)
        out["landmarks"] = (points * scale).trunc().float()
        return out


# ---------------------------------------------------------------------------------------------------------- CUB
def _perturb_square_box(box: Sequence[float], padding: float, jitter: float, rng: np.random.Generator) -> list[int]:
    """Pad (and jitter) a 0-based ``x1 y1 x2 y2`` box, then square it around its centre (CMR ``image_utils``)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1 + 1, y2 - y1 + 1
    j = [(1 - 2 * rng.random()) * jitter for _ in range(4)] if jitter > 0 else [0.0] * 4
    x1 -= padding * bw + j[0] * bw
    y1 -= padding * bh + j[1] * bh
    x2 += padding * bw + j[2] * bw
    y2 += padding * bh + j[3] * bh
    sq = [int(round(v)) for v in (x1, y1, x2, y2)]
    bw, bh = sq[2] - sq[0] + 1, sq[3] - sq[1] + 1
    side = max(bw, bh)
    sq[0] -= int(round((side - bw) / 2.0))
    sq[1] -= int(round((side - bh) / 2.0))
    return [sq[0], sq[1], sq[0] + side - 1, sq[1] + side - 1]


def _crop(x: Tensor, box: Sequence[int], fill: float) -> Tensor:
    """Crop ``(C, H, W)`` to an inclusive box that may leave the image; outside pixels get ``fill``."""
    c, h, w = x.shape
    x1, y1, x2, y2 = box
    out = torch.full((c, y2 - y1 + 1, x2 - x1 + 1), float(fill), dtype=x.dtype)
    sx1, sy1, sx2, sy2 = max(0, x1), max(0, y1), min(w, x2 + 1), min(h, y2 + 1)
    if sx2 > sx1 and sy2 > sy1:
        out[:, sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = x[:, sy1:sy2, sx1:sx2]
    return out


class CUBParts(Dataset):
    """CUB-200-2011 with the CMR annotation cache, as the official CUB code reads it (``dataset/cub.py``,
    ``dataset/base.py``): the box padded by 5 % (plus an optional jitter), made square, the image cropped with a
    white fill outside the picture (the silhouette with 0), scaled so that the side is ``image_size``, keypoints
    normalised to [-1, 1] with their visibility. The silhouette is returned as the saliency (the released CUB model
    was trained with ground-truth silhouettes instead of saliency maps).

    Args:
        cub_root: the ``CUB_200_2011`` folder.
        cache_dir: the CMR cache folder holding ``data/<split>_cub_cleaned.mat``.
        split: ``"train"``, ``"val"`` or ``"test"`` (the file name's prefix).
        image_size: side of the square output.
        padding: box padding fraction (0.05).
        jitter: box jitter fraction (the official code applies 0.05 everywhere; 0 here by default, so evaluation is
            deterministic); drawn from ``numpy.random.default_rng((seed, index))``.
        seed: seed of the jitter.

    Shape:
        sample: ``image (3, S, S)``, ``saliency (S, S)`` (silhouette), ``keypoints (15, 3)`` as ``(x, y, visible)``
        with invisible points zeroed, ``name``.
    """

    def __init__(
        self,
        cub_root: str | os.PathLike,
        cache_dir: str | os.PathLike,
        split: str = "test",
        image_size: int = 256,
        padding: float = 0.05,
        jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.image_dir = Path(cub_root) / "images"
        if not self.image_dir.is_dir():
            raise DatasetLayoutError(f"CUB image folder not found: '{self.image_dir}'; {CUB_LAYOUT}")
        self.anno_path = Path(cache_dir) / "data" / f"{split}_cub_cleaned.mat"
        if not self.anno_path.is_file():
            raise DatasetLayoutError(f"CUB annotation cache not found: '{self.anno_path}'; {CUB_LAYOUT}")
        from scipy.io import loadmat

        try:
            images = loadmat(str(self.anno_path), struct_as_record=False, squeeze_me=True)["images"]
        except (KeyError, ValueError, OSError) as err:
            raise DatasetLayoutError(f"cannot read 'images' from '{self.anno_path}' ({err}); {CUB_LAYOUT}") from err
        self.anno = list(np.atleast_1d(images))
        for i, a in enumerate(self.anno):
            for field in ("rel_path", "bbox", "mask", "parts"):
                if not hasattr(a, field):
                    raise DatasetLayoutError(f"'{self.anno_path}': entry {i} lacks '{field}'; {CUB_LAYOUT}")
        self.image_size, self.padding, self.jitter, self.seed = int(image_size), float(padding), float(jitter), seed

    def __len__(self) -> int:
        return len(self.anno)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, object]:
        index = split_epoch_key(index)[1]  # the training sampler's (epoch, index) keys
        a = self.anno[index]
        rel = str(a.rel_path)
        rgb = load_rgb(self.image_dir / rel).double() / 255.0
        mask = torch.as_tensor(np.asarray(a.mask, dtype=np.float64))[None]
        if mask.shape[-2:] != rgb.shape[-2:]:
            raise DatasetLayoutError(
                f"'{self.anno_path}': the mask of '{rel}' is {tuple(mask.shape[-2:])}, "
                f"the image {tuple(rgb.shape[-2:])}"
            )
        b = a.bbox
        box0 = [float(b.x1) - 1, float(b.y1) - 1, float(b.x2) - 1, float(b.y2) - 1]  # 0-based
        parts = torch.as_tensor(np.asarray(a.parts, dtype=np.float64)).t().clone()  # (15, 3)
        visible = parts[:, 2] > 0
        parts[visible, :2] -= 1
        rng = np.random.default_rng((int(self.seed), int(index)))
        box = _perturb_square_box(box0, self.padding, self.jitter, rng)
        img = _crop(rgb, box, 1.0)
        sil = _crop(mask, box, 0.0)
        parts[visible, 0] -= box[0]
        parts[visible, 1] -= box[1]
        scale = self.image_size / float(max(img.shape[-2:]))
        new = [int(round(img.shape[-2] * scale)), int(round(img.shape[-1] * scale))]
        img, sil = resize_bilinear(img, new), resize_bilinear(sil, new)
        parts[visible, :2] *= scale
        h, w = img.shape[-2:]
        kp = torch.stack([2 * parts[:, 0] / w - 1, 2 * parts[:, 1] / h - 1, parts[:, 2]], dim=1)
        kp = kp * visible[:, None]
        return {
            "image": caffe_normalize(img * 255.0),
            "saliency": sil[0].float(),
            "keypoints": kp.float(),
            "name": rel,
        }


# -------------------------------------------------------------------------------------------------- own images
class PartImageFolder(Dataset):
    """The user's own images of one category (the simplest layout: a folder of images, optional saliency maps in
    ``<root>/saliency/<stem>.png``), resized to ``image_size`` squared and normalised like the official input.

    Args:
        root: folder holding the images (not recursive).
        image_size: side of the square output.
        saliency_dir: sub-folder of the saliency maps; when it exists every image needs one, else the saliency is ones.

    Shape:
        sample: ``image (3, S, S)``, ``saliency (S, S)``, ``name`` (the file name).
    """

    def __init__(self, root: str | os.PathLike, image_size: int = 256, saliency_dir: str = "saliency") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetLayoutError(f"image folder not found: '{self.root}'")
        self.files = sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise DatasetLayoutError(f"no image ({', '.join(IMAGE_SUFFIXES)}) in '{self.root}'")
        self.saliency_root = self.root / saliency_dir
        self.has_saliency = self.saliency_root.is_dir()
        if self.has_saliency:
            missing = [p.name for p in self.files if not (self.saliency_root / f"{p.stem}.png").is_file()]
            if missing:
                raise DatasetLayoutError(
                    f"'{self.saliency_root}' lacks the saliency map of {len(missing)} image(s), e.g. "
                    f"'{self.saliency_root / (Path(missing[0]).stem + '.png')}'"
                )
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, object]:
        index = split_epoch_key(index)[1]  # the training sampler's (epoch, index) keys
        path = self.files[index]
        s = (self.image_size, self.image_size)
        rgb = load_rgb(path)
        if self.has_saliency:
            sal = load_gray(self.saliency_root / f"{path.stem}.png")
            saliency = resize_bilinear(resize_bilinear(sal, rgb.shape[-2:]), s).clamp(0, 1)
        else:
            saliency = torch.ones(s)
        return {"image": caffe_normalize(resize_bilinear(rgb, s)), "saliency": saliency, "name": path.name}


# ------------------------------------------------------------------------------------------ embedded part objects
PART_NAMES: tuple[str, ...] = ("background", "torso", "head", "upper limb", "lower limb")
"""Labels of the embedded world's part maps (0 = background)."""

LANDMARK_NAMES: tuple[str, ...] = ("head centre", "torso centre", "upper limb tip", "lower limb tip", "tail")
"""The 5 landmarks of the embedded world; the first two give the normalising distance (the IOD analogue)."""

# part geometry in the object frame at 64 px (x forward, y down): ellipse semi-axes, anchor on the torso, direction
# of the part from its anchor and the distance of its centre from the anchor
_TORSO_AXES = (12.0, 7.0)
_HEAD_RADIUS = 6.0
_LIMB_AXES = (10.0, 3.0)
_HEAD_ANCHOR, _HEAD_OFFSET = (11.0, 0.0), 5.0
_LIMB_ANCHORS = ((-2.0, -6.0), (-2.0, 6.0))
_LIMB_DIRECTIONS_DEG = (-110.0, 110.0)
_LIMB_OFFSET = 9.0


def _rot(angle: Tensor) -> Tensor:
    c, s = angle.cos(), angle.sin()
    return torch.stack([torch.stack([c, -s]), torch.stack([s, c])])


def render_part_object(
    generator: torch.Generator,
    size: int = 64,
    rotation_deg: float = 180.0,
    scale_range: Sequence[float] = (0.8, 1.2),
    shift: float = 8.0,
    articulation_deg: float = 15.0,
    clutter: int = 3,
) -> dict[str, Tensor]:
    """One image of the embedded world (ours, a CPU-sized stand-in for the paper's datasets): an object of 4 rigid parts
    (torso ellipse, head disc, two elongated limbs attached at fixed anchors) under a random similarity pose (rotation,
    scale, position) with a small articulation of the head and limbs, on a low-frequency background with clutter blobs.

    Each part has its own texture family (torso: stripes across its axis, head: dots, upper limb: checker, lower limb:
    stripes along its axis) with per-instance period and phase, drawn in the part's own frame so that it turns with
    the part. All parts of one image share the same two colours, drawn per image: colour says nothing about the part
    (a fixed colour per part made colour k-means perfect in a pilot), texture, shape and layout do.

    Returns:
        ``image (3, S, S)`` in [0, 1], ``labels (S, S)`` long (0 = background, 1..4 = :data:`PART_NAMES`),
        ``landmarks (5, 2)`` ``(x, y)`` pixels (:data:`LANDMARK_NAMES`).
    """
    g = generator
    s = int(size)
    unit = s / 64.0

    def u(low: float, high: float, *shape: int) -> Tensor:
        return torch.rand(shape or (), generator=g, dtype=torch.float64) * (high - low) + low

    angle = u(-rotation_deg, rotation_deg) * math.pi / 180
    scale = u(float(scale_range[0]), float(scale_range[1])) * unit
    centre = torch.tensor([s / 2.0, s / 2.0], dtype=torch.float64) + u(-shift, shift, 2) * unit
    rot = _rot(angle)
    ys, xs = torch.meshgrid(torch.arange(s, dtype=torch.float64), torch.arange(s, dtype=torch.float64), indexing="ij")
    pix = torch.stack([xs + 0.5, ys + 0.5], -1) - centre  # pixel centres relative to the object centre
    obj = pix @ rot / scale  # object frame: inverse rotation (row vectors times R), inverse scale

    def to_image(p: Tensor) -> Tensor:
        return centre + scale * (rot @ p)

    # parts: (label, centre in the object frame, orientation in the object frame, semi-axes)
    parts = []
    for k, (anchor, direction) in enumerate(zip(_LIMB_ANCHORS, _LIMB_DIRECTIONS_DEG, strict=True)):
        theta = (direction + float(u(-articulation_deg, articulation_deg))) * math.pi / 180
        axis = torch.tensor([math.cos(theta), math.sin(theta)], dtype=torch.float64)
        parts.append((3 + k, torch.tensor(anchor, dtype=torch.float64) + _LIMB_OFFSET * axis, theta, _LIMB_AXES))
    parts.append((1, torch.zeros(2, dtype=torch.float64), 0.0, _TORSO_AXES))
    theta = float(u(-articulation_deg, articulation_deg)) * math.pi / 180
    head_axis = torch.tensor([math.cos(theta), math.sin(theta)], dtype=torch.float64)
    head_centre = torch.tensor(_HEAD_ANCHOR, dtype=torch.float64) + _HEAD_OFFSET * head_axis
    parts.append((2, head_centre, theta, (_HEAD_RADIUS, _HEAD_RADIUS)))

    # two colours per image, shared by all parts; well apart in hue
    hue = u(0.0, 1.0)
    colours = hsv_to_rgb(
        torch.stack([hue, (hue + u(0.3, 0.7)) % 1.0]), torch.stack([u(0.5, 1.0), u(0.5, 1.0)]), u(0.5, 1.0, 2)
    )  # (2, 3)

    # background: a 4 x 4 grid of random colours up-sampled, plus clutter ellipses of random colours
    grid = torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64)
    image = F.interpolate(grid, size=(s, s), mode="bicubic", align_corners=True)[0].clamp(0, 1)
    for _ in range(int(clutter)):
        c = u(0, s, 2)
        axes = u(3, 8, 2) * unit
        a = u(0, math.pi)
        local = (torch.stack([xs + 0.5, ys + 0.5], -1) - c) @ _rot(a)
        inside = (local[..., 0] / axes[0]) ** 2 + (local[..., 1] / axes[1]) ** 2 <= 1
        image[:, inside] = torch.rand(3, 1, generator=g, dtype=torch.float64)

    labels = torch.zeros(s, s, dtype=torch.long)
    period = {1: u(3.5, 5.0), 2: u(2.5, 3.5), 3: u(2.0, 3.0), 4: u(2.0, 3.0)}
    phase = u(0.0, 2 * math.pi, 5)
    for label, pc, theta, (ax, ay) in parts:
        local = (obj - pc) @ _rot(torch.tensor(theta, dtype=torch.float64))
        lx, ly = local[..., 0], local[..., 1]
        inside = (lx / ax) ** 2 + (ly / ay) ** 2 <= 1
        p = period[label]
        if label == 1:  # stripes across the torso's axis
            t = 0.5 + 0.5 * torch.sin(2 * math.pi * lx / p + phase[1])
        elif label == 2:  # dots
            t = ((torch.sin(2 * math.pi * lx / p + phase[2]) * torch.sin(2 * math.pi * ly / p)) > 0.25).double()
        elif label == 3:  # checker
            t = ((torch.floor(lx / p + phase[3]) + torch.floor(ly / p)) % 2).double()
        else:  # stripes along the limb's axis
            t = 0.5 + 0.5 * torch.sin(2 * math.pi * ly / (p / 2) + phase[4])
        texture = colours[0][:, None] * t[inside] + colours[1][:, None] * (1 - t[inside])
        image[:, inside] = texture
        labels[inside] = label

    ends = [
        head_centre,
        torch.zeros(2, dtype=torch.float64),
        parts[0][1] + _LIMB_AXES[0] * torch.tensor([math.cos(parts[0][2]), math.sin(parts[0][2])], dtype=torch.float64),
        parts[1][1] + _LIMB_AXES[0] * torch.tensor([math.cos(parts[1][2]), math.sin(parts[1][2])], dtype=torch.float64),
        torch.tensor([-_TORSO_AXES[0], 0.0], dtype=torch.float64),
    ]
    landmarks = torch.stack([to_image(p) for p in ends]) - 0.5  # pixel-centre convention: pixel j spans [j, j+1)
    return {"image": image.float(), "labels": labels, "landmarks": landmarks.float()}


class PartObjects(Dataset):
    """The embedded default: :func:`render_part_object` images, deterministic per ``(seed, index)``, rendered once.

    Samples follow the readers' format: ``image`` (RGB x 255 minus the Caffe mean), ``saliency`` (the ground-truth
    foreground, box-blurred over ``saliency_blur`` pixels when > 0, a stand-in for a saliency detector), and the
    ground truth ``labels (S, S)`` and ``landmarks (5, 2)``.

    Args:
        num_images: how many images.
        size: image side (the geometry scales with it; 64 in the default world).
        seed: the world's seed; image ``i`` depends on ``(seed, i)`` only.
        saliency_blur: box-blur width of the saliency map (0: the exact foreground).
        **render: passed to :func:`render_part_object` (rotation_deg, scale_range, shift, articulation_deg, clutter).
    """

    def __init__(
        self, num_images: int, size: int = 64, seed: int = 0, saliency_blur: int = 0, **render: object
    ) -> None:
        self.size, self.seed = int(size), int(seed)
        images, labels, landmarks = [], [], []
        for i in range(int(num_images)):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
            out = render_part_object(g, self.size, **render)  # type: ignore[arg-type]
            images.append(out["image"])
            labels.append(out["labels"])
            landmarks.append(out["landmarks"])
        self.images = torch.stack(images)
        self.labels = torch.stack(labels)
        self.landmarks = torch.stack(landmarks)
        fg = (self.labels > 0).float()[:, None]
        if saliency_blur > 0:
            k = int(saliency_blur)
            fg = F.avg_pool2d(F.pad(fg, (k // 2, (k - 1) // 2, k // 2, (k - 1) // 2), mode="replicate"), k, stride=1)
        self.saliency = fg[:, 0]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, object]:
        index = split_epoch_key(index)[1]  # the training sampler's (epoch, index) keys
        return {
            "image": caffe_normalize(self.images[index] * 255.0),
            "saliency": self.saliency[index],
            "labels": self.labels[index],
            "landmarks": self.landmarks[index],
        }


def part_objects_split(
    split: str,
    train_images: int = 600,
    val_images: int = 200,
    test_images: int = 200,
    size: int = 64,
    seed: int = 0,
    saliency_blur: int = 0,
    rotation_deg: float = 180.0,
    scale_range: Sequence[float] = (0.8, 1.2),
    shift: float = 8.0,
    articulation_deg: float = 15.0,
    clutter: int = 3,
) -> PartObjects:
    """One split of the embedded world (the data module's dataset component): ``train`` / ``val`` / ``test`` are
    :class:`PartObjects` of their own world seeds ``10 * seed + (0, 1, 2)`` (``split_seed``), so no image is shared
    between splits.
    """
    counts = {"train": train_images, "val": val_images, "test": test_images}
    if split not in counts:
        raise ValueError(f"split must be one of {sorted(counts)}, got {split!r}")
    count = counts[split]
    return PartObjects(
        int(count),
        size=size,
        seed=split_seed(seed, split),
        saliency_blur=saliency_blur,
        rotation_deg=rotation_deg,
        scale_range=tuple(scale_range),
        shift=shift,
        articulation_deg=articulation_deg,
        clutter=clutter,
    )


def _list_for_split(split: str, train_list: str, val_list: str, test_list: str) -> str:
    """The dataset's own list (or list file) that a data-module split reads; an unknown split is an error."""
    lists = {"train": train_list, "val": val_list, "test": test_list}
    if split not in lists:
        raise ValueError(f"split must be one of {sorted(lists)}, got {split!r}")
    return lists[split]


def celeba_split(
    split: str,
    root: str | os.PathLike,
    train_list: str = "scops_train",
    val_list: str = "test",
    test_list: str = "test",
    image_size: int = 256,
    face_area_threshold: float = 0.3,
) -> CelebAWild:
    """One split of unaligned CelebA for the data module: training on the official SCOPS list, validation and test on
    the MAFL test list (the landmark regressor is fitted inside the evaluation; see the module's docs). The list
    names are :class:`CelebAWild` splits or list files."""
    listed = _list_for_split(split, train_list, val_list, test_list)
    return CelebAWild(root, split=listed, image_size=image_size, face_area_threshold=face_area_threshold)


# --------------------------------------------------------------------------------------------------------- AFLW
AFLW_LAYOUT = (
    "expected the AFLW release of the unsupervised-landmark protocol (Thewlis et al. 2017; train: 10,122 crops, "
    "test: the 2,995 MTFL faces): <root>/aflw_cropped/facedata_cropped.csv (a header line; columns image_file, set "
    "(1 = train), crop_file; the 5 landmarks as x, y pairs in columns 5-14, 1-based pixels), "
    "<root>/aflw_cropped/<crop_file>, <root>/MTFL/testing.txt (<path> x1..x5 y1..y5 [attributes]) and "
    "<root>/MTFL/<path>"
)
AFLW_SPLITS = ("train", "test")


def _aflw_train_rows(csv_path: Path) -> list[tuple[str, list[float]]]:
    import csv

    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DatasetLayoutError(f"'{csv_path}' is empty; {AFLW_LAYOUT}")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in ("set", "crop_file") if c not in header]
    if missing or len(header) < 14:
        raise DatasetLayoutError(f"'{csv_path}': header {header} lacks {missing or 'landmark columns'}; {AFLW_LAYOUT}")
    col_set, col_file = header.index("set"), header.index("crop_file")
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            if int(float(row[col_set])) != 1:
                continue
            points = [float(v) for v in row[4:14]]
        except (ValueError, IndexError) as err:
            raise DatasetLayoutError(f"'{csv_path}' line {n}: not a landmark row ({err}); {AFLW_LAYOUT}") from err
        out.append((row[col_file].strip(), points))  # x1, y1, x2, y2, ... (pairs)
    return out


def _aflw_test_rows(txt_path: Path) -> list[tuple[str, list[float]]]:
    out = []
    for n, line in enumerate(txt_path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            xs, ys = [float(v) for v in fields[1:6]], [float(v) for v in fields[6:11]]
        except ValueError as err:
            raise DatasetLayoutError(f"'{txt_path}' line {n}: not '<path> x1..x5 y1..y5' ({err})") from err
        if len(ys) != 5:
            raise DatasetLayoutError(f"'{txt_path}' line {n}: {len(fields)} fields, need '<path> x1..x5 y1..y5'")
        # MTFL writes Windows paths (AFLW\0001-image20056.jpg)
        out.append((fields[0].replace("\\", "/"), [v for xy in zip(xs, ys, strict=True) for v in xy]))
    return out


class AFLWLandmarks(Dataset):
    """AFLW faces with 5 landmarks in the layout of the unsupervised-landmark protocol that SCOPS' AFLW table follows
    (Thewlis et al. 2017, Zhang et al. 2018): training on the 10,122 cropped faces of ``facedata_cropped.csv``
    (``set == 1``), testing on the 2,995 AFLW faces of MTFL. The official SCOPS code imports an ``AFLWDataset`` its
    repository does not contain, so this reader follows that release (as shipped by the DVE / Thewlis data archives)
    and preprocesses as :class:`CelebAWild` does: bilinear resize to ``image_size`` squared, RGB minus the Caffe
    mean, landmarks scaled into the resized frame (0-based: the files' 1-based MATLAB pixels minus 1; not truncated).

    Landmark order: left eye, right eye, nose, left mouth corner, right mouth corner (the CelebA order, so the
    inter-ocular distance is points 0 and 1). AFLW ships no saliency maps: put your own as
    ``<root>/<saliency_dir>/<image stem>.png`` (every image needs one), else the saliency is ones.

    Args:
        root: the folder holding ``aflw_cropped/`` and ``MTFL/`` (layout: :data:`AFLW_LAYOUT`).
        split: ``"train"`` or ``"test"``.
        image_size: side of the square output.
        saliency_dir: sub-folder of ``root`` with saliency maps, or ``None``.

    Shape:
        sample: ``image (3, S, S)``, ``saliency (S, S)``, ``landmarks (5, 2)`` as ``(x, y)`` pixels, ``name``.
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "train", image_size: int = 256, saliency_dir: str | None = None
    ) -> None:
        self.root = Path(root)
        if split not in AFLW_SPLITS:
            raise ValueError(f"AFLW split must be one of {AFLW_SPLITS}, got {split!r}")
        if split == "train":
            self.image_root = self.root / "aflw_cropped"
            index = self.image_root / "facedata_cropped.csv"
        else:
            self.image_root = self.root / "MTFL"
            index = self.image_root / "testing.txt"
        if not index.is_file():
            raise DatasetLayoutError(f"AFLW {split} list not found: '{index}'; {AFLW_LAYOUT}")
        rows = _aflw_train_rows(index) if split == "train" else _aflw_test_rows(index)
        if not rows:
            raise DatasetLayoutError(f"'{index}' lists no {split} image; {AFLW_LAYOUT}")
        missing = [rel for rel, _ in rows if not (self.image_root / rel).is_file()]
        if missing:
            raise DatasetLayoutError(
                f"{len(missing)} image(s) of '{index}' not found, e.g. '{self.image_root / missing[0]}'; {AFLW_LAYOUT}"
            )
        self.saliency_root = self.root / saliency_dir if saliency_dir else None
        if self.saliency_root is not None and not self.saliency_root.is_dir():
            raise DatasetLayoutError(f"AFLW saliency folder not found: '{self.saliency_root}'")
        self.samples = [(rel, torch.tensor(p, dtype=torch.float64).view(5, 2) - 1.0) for rel, p in rows]
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, object]:
        index = split_epoch_key(index)[1]  # the training sampler's (epoch, index) keys
        rel, points = self.samples[index]
        rgb = load_rgb(self.image_root / rel)
        h, w = rgb.shape[-2:]
        s = (self.image_size, self.image_size)
        if self.saliency_root is not None:
            sal = load_gray(self.saliency_root / f"{Path(rel).stem}.png")
            saliency = resize_bilinear(resize_bilinear(sal, (h, w)), s).clamp(0, 1)
        else:
            saliency = torch.ones(s)
        scale = torch.tensor([self.image_size / w, self.image_size / h], dtype=torch.float64)
        return {
            "image": caffe_normalize(resize_bilinear(rgb, s)),
            "saliency": saliency,
            "landmarks": (points * scale).float(),
            "name": rel,
        }


def aflw_split(
    split: str,
    root: str | os.PathLike,
    train_list: str = "train",
    val_list: str = "test",
    test_list: str = "test",
    image_size: int = 256,
    saliency_dir: str | None = None,
) -> AFLWLandmarks:
    """One split of AFLW for the data module (:class:`AFLWLandmarks` ``train`` / ``test`` per data-module split)."""
    listed = _list_for_split(split, train_list, val_list, test_list)
    return AFLWLandmarks(root, split=listed, image_size=image_size, saliency_dir=saliency_dir)


# -------------------------------------------------------------------------------------------------- PASCAL-Part
PASCAL_PART_LAYOUT = (
    "expected PASCAL VOC 2010 <voc_root>/JPEGImages/<id>.jpg and <voc_root>/ImageSets/Main/<category>_<split>.txt "
    "('<id> 1' where the category is present), and the PASCAL-Part annotations <part_root>/Annotations_Part/<id>.mat "
    "(struct 'anno' with 'objects': class, mask, parts (part_name, mask))"
)

PASCAL_PART_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("head", ("head", "leye", "reye", "lear", "rear", "muzzle", "nose", "lhorn", "rhorn", "beak", "mouth", "hair",
              "lebrow", "rebrow")),
    ("neck", ("neck",)),
    ("torso", ("torso",)),
    ("legs", ("lf*", "rf*", "lb*", "rb*", "lleg", "rleg", "lfoot", "rfoot", "ll*", "lu*", "rl*", "ru*")),
    ("tail", ("tail",)),
    ("wings", ("lwing", "rwing")),
)  # fmt: skip
"""Default grouping of PASCAL-Part's fine part names into coarse parts (labels 1..6 in this order; a name ending in
``*`` is a prefix; part names of no group get label 7, "other"). Covers the animal categories (horse, cow, sheep, dog,
cat, bird) that part-discovery papers evaluate."""


def _pascal_group_names(groups: Sequence[tuple[str, Sequence[str]]]) -> tuple[str, ...]:
    return ("background", *(g for g, _ in groups), "other")


def _pascal_label(name: str, groups: Sequence[tuple[str, Sequence[str]]]) -> int:
    for i, (_, names) in enumerate(groups, start=1):
        for pattern in names:
            if name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1])):
                return i
    return len(groups) + 1


class PascalParts(Dataset):
    """PASCAL-Part (Chen et al. 2014) objects of one category, for part discovery: each sample is the largest object
    of ``category`` in a listed image, cropped to its mask's box padded by ``padding`` and made square (pixels outside
    the picture take the mean colour, i.e. 0 after normalisation), resized to ``image_size``. The object mask is the
    saliency (as the CUB model uses the silhouette); ``labels`` give the coarse parts of :data:`PASCAL_PART_GROUPS`
    (0 outside every part). The official SCOPS code ships no PASCAL loader, list or config (its issue #3), so this
    reader follows the released annotation files (``Annotations_Part/<id>.mat``) over the VOC 2010 images and lists.

    Args:
        voc_root: the ``VOC2010`` folder (``JPEGImages/``, ``ImageSets/Main/``).
        part_root: the folder holding ``Annotations_Part/`` (PASCAL-Part's ``trainval`` archive).
        category: a VOC class name (``horse``, ``cow``, ``sheep``, ``dog``, ``cat``, ``bird``, ...).
        split: ``"train"``, ``"val"`` (the VOC lists ``<category>_<split>.txt``) or a path to a list of ids.
        image_size: side of the square output.
        padding: box padding fraction on each side.
        part_groups: ``(label name, part names)`` pairs; ``None`` takes :data:`PASCAL_PART_GROUPS`.

    Shape:
        sample: ``image (3, S, S)``, ``saliency (S, S)`` (the object mask), ``labels (S, S)`` long, ``name``.
    """

    def __init__(
        self,
        voc_root: str | os.PathLike,
        part_root: str | os.PathLike,
        category: str = "horse",
        split: str = "train",
        image_size: int = 256,
        padding: float = 0.05,
        part_groups: Sequence[tuple[str, Sequence[str]]] | None = None,
    ) -> None:
        self.image_dir = Path(voc_root) / "JPEGImages"
        self.anno_dir = Path(part_root) / "Annotations_Part"
        for folder in (self.image_dir, self.anno_dir):
            if not folder.is_dir():
                raise DatasetLayoutError(f"PASCAL-Part folder not found: '{folder}'; {PASCAL_PART_LAYOUT}")
        list_path = Path(voc_root) / "ImageSets" / "Main" / f"{category}_{split}.txt"
        if split not in ("train", "val", "trainval"):
            list_path = Path(split)
        if not list_path.is_file():
            raise DatasetLayoutError(f"PASCAL list not found: '{list_path}'; {PASCAL_PART_LAYOUT}")
        ids = []
        for line in list_path.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if fields and (len(fields) == 1 or fields[1] == "1"):  # a plain id list, or VOC's '<id> 1' (present)
                ids.append(fields[0])
        missing = [i for i in ids if not (self.anno_dir / f"{i}.mat").is_file()]
        if missing:
            raise DatasetLayoutError(
                f"{len(missing)} listed image(s) of '{list_path}' have no part annotation, e.g. "
                f"'{self.anno_dir / (missing[0] + '.mat')}'; {PASCAL_PART_LAYOUT}"
            )
        if not ids:
            raise DatasetLayoutError(f"'{list_path}' lists no image with a '{category}'")
        self.ids, self.category = ids, category
        self.groups = tuple((str(g), tuple(n)) for g, n in (part_groups or PASCAL_PART_GROUPS))
        self.label_names = _pascal_group_names(self.groups)
        self.image_size, self.padding = int(image_size), float(padding)

    def __len__(self) -> int:
        return len(self.ids)

    def _objects(self, path: Path) -> list:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError

        try:
            anno = loadmat(str(path), struct_as_record=False, squeeze_me=True)["anno"]
            objects = list(np.atleast_1d(anno.objects))
        except (KeyError, AttributeError, ValueError, OSError, MatReadError) as err:
            raise DatasetLayoutError(f"cannot read anno.objects from '{path}' ({err}); {PASCAL_PART_LAYOUT}") from err
        return [o for o in objects if str(getattr(o, "class", "")) == self.category]

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, object]:
        index = split_epoch_key(index)[1]  # the training sampler's (epoch, index) keys
        name = self.ids[index]
        anno_path = self.anno_dir / f"{name}.mat"
        objects = self._objects(anno_path)
        if not objects:
            raise DatasetLayoutError(f"'{anno_path}' has no '{self.category}' object")
        masks = [np.asarray(o.mask, dtype=bool) for o in objects]
        best = int(np.argmax([m.sum() for m in masks]))
        obj, mask = objects[best], masks[best]
        rgb = load_rgb(self.image_dir / f"{name}.jpg").double()
        if mask.shape != tuple(rgb.shape[-2:]):
            raise DatasetLayoutError(
                f"'{anno_path}': the object mask is {mask.shape}, the image {tuple(rgb.shape[-2:])}"
            )
        labels = np.zeros(mask.shape, dtype=np.int64)
        parts = getattr(obj, "parts", None)
        for part in np.atleast_1d(parts) if parts is not None else []:
            if hasattr(part, "part_name"):
                labels[np.asarray(part.mask, dtype=bool)] = _pascal_label(str(part.part_name), self.groups)
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            raise DatasetLayoutError(f"'{anno_path}': the largest '{self.category}' object has an empty mask")
        box = _perturb_square_box([xs.min(), ys.min(), xs.max(), ys.max()], self.padding, 0.0, np.random.default_rng(0))
        mean = torch.tensor(CAFFE_MEAN_RGB, dtype=torch.float64).view(3, 1, 1)
        img = _crop(rgb - mean, box, 0.0)  # outside the picture: the mean colour
        sil = _crop(torch.as_tensor(mask, dtype=torch.float64)[None], box, 0.0)
        lab = _crop(torch.as_tensor(labels, dtype=torch.float64)[None], box, 0.0)
        s = (self.image_size, self.image_size)
        return {
            "image": resize_bilinear(img, s).float(),
            "saliency": resize_bilinear(sil, s)[0].clamp(0, 1).float(),
            "labels": F.interpolate(lab[None], size=s, mode="nearest")[0, 0].long(),
            "name": name,
        }


def pascal_part_split(
    split: str,
    voc_root: str | os.PathLike,
    part_root: str | os.PathLike,
    category: str = "horse",
    train_list: str = "train",
    val_list: str = "val",
    test_list: str = "val",
    image_size: int = 256,
    padding: float = 0.05,
) -> PascalParts:
    """One split of a PASCAL-Part category for the data module (VOC ``train`` to train, ``val`` to evaluate)."""
    listed = _list_for_split(split, train_list, val_list, test_list)
    return PascalParts(voc_root, part_root, category, listed, image_size, padding)
