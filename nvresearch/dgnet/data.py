"""Re-id datasets in their released layouts and in the tree of the official preparation script (torch-only).

Layouts (the datasets as released; the official `prepare-market.py`):

- **Market-1501** (``Market-1501-v15.09.15/``): ``bounding_box_train/``, ``bounding_box_test/`` (gallery),
  ``query/``, ``gt_bbox/`` (multi-query); names ``PPPP_cCsS_FFFFFF_BB.jpg`` (person, camera 1-6, sequence, frame,
  box), person ``0000`` = distractor, ``-1`` = junk.
- **DukeMTMC-reID**: the same folders without ``gt_bbox``; names ``PPPP_cC_fFFFFFFF.jpg`` (cameras 1-8).
- **MSMT17 (V1)**: ``train/`` and ``test/`` with ``<pid>/`` folders and list files ``list_{train,val,query,gallery}
  .txt`` (``<relative path> <pid>`` per line); names ``PPPP_III_CC_<date><time>_FFFF_X.jpg`` with a **two-digit**
  camera (1-15), which the official one-character camera parsing gets wrong.
- **prepared** (``prepare-market.py``'s ``pytorch/`` tree, also the simplest layout for one's own data):
  ``train_all/``, ``train/``, ``val/``, ``query/``, ``gallery/``, ``multi-query/``, each with one folder per person;
  cameras from the file names (Market, Duke or MSMT17 naming).

Every reader lists ``(path, person, camera)`` records sorted by path. Training splits relabel persons to
``0..K-1`` in sorted order (torchvision ``ImageFolder``'s labels, as the official loaders use); evaluation splits
keep the person ids of the file names (0 and -1 included) for the Market protocol.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms

from nvresearch.core.data import DatasetLayoutError
from nvresearch.core.data.samplers import split_epoch_key

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DukeMTMCReID",
    "MSMT17",
    "Market1501",
    "PreparedReid",
    "ReidImages",
    "ReidRecord",
    "parse_name",
    "random_erasing",
    "eval_transform",
    "train_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

NAMINGS = {
    "market": (
        re.compile(r"^(-1|\d+)_c(\d)s(\d+)_(\d+)_(\d+)\.jpg$"),
        "PPPP_cCsS_FFFFFF_BB.jpg (e.g. 0002_c1s1_000451_03.jpg)",
    ),
    "duke": (re.compile(r"^(\d+)_c(\d+)_f(\d+)\.jpg$"), "PPPP_cC_fFFFFFFF.jpg (e.g. 0005_c2_f0046985.jpg)"),
    "msmt": (re.compile(r"^(\d+)_(\d+)_(\d+)_[^_]+_(\d+)_.*\.jpg$"), "PPPP_III_CC_<date><time>_FFFF_X.jpg"),
}


def parse_name(name: str, naming: str) -> tuple[int, int]:
    """``(person, camera)`` from a file name in a dataset's naming (``market``, ``duke`` or ``msmt``).

    Raises:
        ValueError: the name does not follow the naming (the message names the file and the pattern).
    """
    if naming not in NAMINGS:
        raise ValueError(f"unknown naming {naming!r}; choose one of {sorted(NAMINGS)}")
    pattern, example = NAMINGS[naming]
    m = pattern.match(name)
    if m is None:
        raise ValueError(f"file name {name!r} does not follow the {naming} naming {example}")
    groups = m.groups()
    cam_group = 2 if naming == "msmt" else 1
    return int(groups[0]), int(groups[cam_group])


@dataclass(frozen=True)
class ReidRecord:
    """One image: its file, person id (as in the dataset) and camera."""

    path: Path
    person: int
    camera: int


def eval_transform(height: int = 256, width: int = 128) -> Callable:
    """Official test pre-processing: bicubic resize to ``height x width``, tensor, ImageNet normalisation."""
    return transforms.Compose(
        [
            transforms.Resize((height, width), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def train_transform(height: int = 256, width: int = 128, pad: int = 10) -> Callable:
    """Official training pre-processing: random flip, bicubic resize, edge padding by ``pad``, random crop back,
    tensor, ImageNet normalisation (random erasing comes later, on the re-id inputs only)."""
    return transforms.Compose(
        [
            transforms.RandomHorizontalFlip(),
            transforms.Resize((height, width), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.Pad(pad, padding_mode="edge"),
            transforms.RandomCrop((height, width)),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class ReidImages(Dataset):
    """Images with person labels and cameras; item ``i`` is ``(image, label, camera)``.

    Args:
        records: the images (see the readers below).
        relabel: map persons to ``0..K-1`` in sorted order (training); otherwise the label is the person id.
        transform: PIL image -> tensor (default :func:`eval_transform`).

    Shape:
        image: ``(3, H, W)``; label and camera: Python ints.
    """

    def __init__(
        self, records: list[ReidRecord], relabel: bool = False, transform: Callable | None = None, name: str = ""
    ) -> None:
        if not records:
            raise DatasetLayoutError(f"{name or 'the dataset'} has no images")
        self.records = records
        self.persons = sorted({r.person for r in records})
        self.relabel = relabel
        self._label = {p: i for i, p in enumerate(self.persons)} if relabel else None
        self.transform = transform if transform is not None else eval_transform()
        self._by_label: dict[int, list[int]] | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.persons)

    def label(self, i: int) -> int:
        p = self.records[i].person
        return self._label[p] if self._label is not None else p

    @property
    def labels(self) -> list[int]:
        return [self.label(i) for i in range(len(self))]

    @property
    def cameras(self) -> list[int]:
        return [r.camera for r in self.records]

    def load(self, i: int):  # noqa: ANN201 - a PIL image
        from PIL import Image, UnidentifiedImageError

        path = self.records[i].path
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise OSError(f"cannot read image '{path}': {err}") from err

    def __getitem__(self, i: int) -> tuple[Tensor, int, int]:
        return self.transform(self.load(i)), self.label(i), self.records[i].camera

    def positive(self, i: int, rng: random.Random) -> int:
        """A random *other* image of the same person (any camera), or ``i`` itself if it is the only one (the
        official ``ReIDFolder``'s positive)."""
        if self._by_label is None:
            self._by_label = {}
            for j in range(len(self)):
                self._by_label.setdefault(self.label(j), []).append(j)
        others = [j for j in self._by_label[self.label(i)] if j != i]
        return rng.choice(others) if others else i


def _root(root: str | os.PathLike, layout: str) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise DatasetLayoutError(f"dataset root '{path}' does not exist; expected {layout}")
    return path


def _scan_folder(folder: Path, naming: str, layout: str, recursive: bool = False) -> list[ReidRecord]:
    if not folder.is_dir():
        raise DatasetLayoutError(f"missing folder '{folder}'; expected {layout}")
    files = folder.rglob("*") if recursive else folder.iterdir()
    records = []
    for f in sorted(files):
        if f.suffix.lower() not in IMAGE_SUFFIXES or not f.is_file():
            continue  # Market ships a Thumbs.db in some folders
        try:
            person, camera = parse_name(f.name, naming)
        except ValueError as err:
            raise DatasetLayoutError(f"'{f}': {err}") from err
        records.append(ReidRecord(f, person, camera))
    if not records:
        raise DatasetLayoutError(f"no images in '{folder}'; expected {layout}")
    return records


class _FolderDataset:
    """Market-1501 / DukeMTMC-reID: one flat folder per split."""

    FOLDERS = {
        "train": "bounding_box_train",
        "query": "query",
        "gallery": "bounding_box_test",
        "multi_query": "gt_bbox",
    }
    NAMING = "market"
    LAYOUT = ""

    @classmethod
    def records(cls, root: str | os.PathLike, split: str) -> list[ReidRecord]:
        if split not in cls.FOLDERS:
            raise ValueError(f"{cls.__name__} has no split {split!r}; choose one of {sorted(cls.FOLDERS)}")
        return _scan_folder(_root(root, cls.LAYOUT) / cls.FOLDERS[split], cls.NAMING, cls.LAYOUT)

    @classmethod
    def for_split(
        cls, split: str, root: str | os.PathLike, transform: Callable | None = None, relabel: bool | None = None
    ) -> ReidImages:
        """The images of ``split`` (``train``, ``query``, ``gallery``, ``multi_query`` where the dataset has it);
        the training split is relabelled to ``0..K-1`` unless ``relabel`` says otherwise."""
        relabel = split == "train" if relabel is None else relabel
        return ReidImages(cls.records(root, split), relabel, transform, f"{cls.__name__} {split} ({root})")


class Market1501(_FolderDataset):
    """Market-1501 as released (12,936 training images of 751 persons; 3,368 queries; 19,732 gallery images)."""

    LAYOUT = "Market-1501-v15.09.15/{bounding_box_train,bounding_box_test,query,gt_bbox}/PPPP_cCsS_FFFFFF_BB.jpg"


class DukeMTMCReID(_FolderDataset):
    """DukeMTMC-reID as released (16,522 training images of 702 persons; 2,228 queries; 17,661 gallery images);
    no ``gt_bbox``, so no multi-query."""

    FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    NAMING = "duke"
    LAYOUT = "DukeMTMC-reID/{bounding_box_train,bounding_box_test,query}/PPPP_cC_fFFFFFFF.jpg"


class MSMT17:
    """MSMT17 (V1) as released: ``train/`` and ``test/`` image trees indexed by list files.

    Splits: ``train`` = ``list_train.txt`` + ``list_val.txt`` (32,621 images of 1,041 persons, the DG-Net training
    set), ``query`` = ``list_query.txt``, ``gallery`` = ``list_gallery.txt`` (in ``test/``). The person is the
    list file's label, the camera the two-digit third field of the file name.
    """

    LISTS = {
        "train": (("train", "list_train.txt"), ("train", "list_val.txt")),
        "query": (("test", "list_query.txt"),),
        "gallery": (("test", "list_gallery.txt"),),
    }
    LAYOUT = "MSMT17_V1/{train,test}/<pid>/<name>.jpg with MSMT17_V1/list_{train,val,query,gallery}.txt"

    @classmethod
    def records(cls, root: str | os.PathLike, split: str) -> list[ReidRecord]:
        if split not in cls.LISTS:
            raise ValueError(f"MSMT17 has no split {split!r}; choose one of {sorted(cls.LISTS)}")
        base = _root(root, cls.LAYOUT)
        records = []
        for folder, list_name in cls.LISTS[split]:
            list_file = base / list_name
            if not list_file.is_file():
                raise DatasetLayoutError(f"missing list file '{list_file}'; expected {cls.LAYOUT}")
            for n, line in enumerate(list_file.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.split()
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise DatasetLayoutError(f"'{list_file}' line {n}: expected '<relative path> <pid>', got {line!r}")
                path = base / folder / parts[0]
                try:
                    _, camera = parse_name(path.name, "msmt")
                except ValueError as err:
                    raise DatasetLayoutError(f"'{list_file}' line {n}: {err}") from err
                records.append(ReidRecord(path, int(parts[1]), camera))
        records.sort(key=lambda r: str(r.path))
        missing = [r.path for r in records if not r.path.is_file()]
        if missing:
            raise DatasetLayoutError(f"{len(missing)} listed image(s) missing, e.g. '{missing[0]}'")
        return records

    @classmethod
    def for_split(
        cls, split: str, root: str | os.PathLike, transform: Callable | None = None, relabel: bool | None = None
    ) -> ReidImages:
        """As :meth:`Market1501.for_split`."""
        relabel = split == "train" if relabel is None else relabel
        return ReidImages(cls.records(root, split), relabel, transform, f"MSMT17 {split} ({root})")


class PreparedReid:
    """The tree written by the official ``prepare-market.py`` (``<data>/pytorch/``), one folder per person per
    split; also the layout for one's own data (any ``<split>/<person>/<file>`` tree whose file names follow the
    Market, Duke or MSMT17 naming, so that cameras are known).

    Splits: ``train_all`` (DG-Net's training set), ``train``, ``val``, ``query``, ``gallery``, ``multi-query``.
    The person is the folder name (``0000`` and ``-1`` in the gallery); it must agree with the file name.
    """

    SPLITS = ("train_all", "train", "val", "query", "gallery", "multi-query")
    LAYOUT = "pytorch/{train_all,query,gallery,...}/<pid>/<file named PPPP_c...>.jpg (prepare-market.py)"

    @classmethod
    def records(cls, root: str | os.PathLike, split: str, naming: str = "market") -> list[ReidRecord]:
        if split not in cls.SPLITS:
            raise ValueError(f"prepared re-id tree has no split {split!r}; choose one of {cls.SPLITS}")
        folder = _root(root, cls.LAYOUT) / split
        records = _scan_folder(folder, naming, cls.LAYOUT, recursive=True)
        for r in records:
            if r.path.parent.parent != folder:
                raise DatasetLayoutError(f"'{r.path}' is not in a person folder directly under '{folder}'")
            if r.path.parent.name.lstrip("-").isdigit() and int(r.path.parent.name) != r.person:
                raise DatasetLayoutError(f"'{r.path}' names person {r.person} but lies in '{r.path.parent.name}'")
        return records

    @classmethod
    def for_split(
        cls,
        split: str,
        root: str | os.PathLike,
        naming: str = "market",
        transform: Callable | None = None,
        relabel: bool | None = None,
    ) -> ReidImages:
        """As :meth:`Market1501.for_split`; ``train_all``, ``train`` and ``val`` are relabelled by default."""
        relabel = split in ("train_all", "train", "val") if relabel is None else relabel
        return ReidImages(cls.records(root, split, naming), relabel, transform, f"prepared {split} ({root})")


def random_erasing(
    images: Tensor,
    generator: torch.Generator,
    probability: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4),
    min_aspect: float = 0.3,
    value: float = 0.0,
) -> Tensor:
    """Random erasing (Zhong et al. 2020) as the official ``random_erasing.py`` applies it to the re-id inputs only:
    each image independently, with ``probability``, gets one rectangle set to ``value`` (0 in the normalised space,
    official ``mean=[0, 0, 0]``); up to 100 draws of an area fraction in ``area`` and an aspect ratio (height / width)
    in ``[min_aspect, 1 / min_aspect]`` until the rectangle fits strictly inside the image.

    Returns a new tensor (the input is not modified) without gradient history, as the official ``to_re``.

    Shape:
        images: ``(B, C, H, W)``; returns the same shape.
    """
    out = images.detach().clone()
    _, _, h_img, w_img = out.shape
    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=generator))  # noqa: E731
    for b in range(out.shape[0]):
        if u(0.0, 1.0) > probability:
            continue
        for _ in range(100):
            target = u(*area) * h_img * w_img
            aspect = u(min_aspect, 1 / min_aspect)
            h, w = round((target * aspect) ** 0.5), round((target / aspect) ** 0.5)
            if w < w_img and h < h_img:
                top = int(torch.randint(0, h_img - h + 1, (), generator=generator))
                left = int(torch.randint(0, w_img - w + 1, (), generator=generator))
                out[b, :, top : top + h, left : left + w] = value
                break
    return out


def stack(dataset: ReidImages, indices: list[int] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Load images (all, or ``indices``) into one batch with their labels and cameras.

    Shape:
        returns ``(N, 3, H, W)``, ``(N,)``, ``(N,)``.
    """
    idx = range(len(dataset)) if indices is None else indices
    items = [dataset[i] for i in idx]
    return (
        torch.stack([x for x, _, _ in items]),
        torch.tensor([y for _, y, _ in items]),
        torch.tensor([c for _, _, c in items]),
    )


class ReidTrainPairs(Dataset):
    """A training split for DG-Net: item ``i`` is ``{"image", "label", "positive"}``, the positive being another
    image of the same person (official ``ReIDFolder``'s ``pos``), drawn anew each epoch from ``(seed, epoch, i)``
    (the training sampler's ``(epoch, index)`` keys), so that a resumed run or another worker draws the same.

    Args:
        base: any dataset whose items are ``(image, label, camera)`` and that has ``labels`` (a list or tensor).
        seed: seeds the choice of the positives.

    Shape:
        image, positive: ``(3, H, W)``; label: a Python int.
    """

    def __init__(self, base: Dataset, seed: int = 0) -> None:
        self.base, self.seed = base, int(seed)
        labels = [int(v) for v in base.labels]
        self.num_classes = len(set(labels))
        self._by_label: dict[int, list[int]] = {}
        for j, y in enumerate(labels):
            self._by_label.setdefault(y, []).append(j)
        self._labels = labels

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor | int]:
        epoch, i = split_epoch_key(key)
        image, label, _ = self.base[i]
        others = [j for j in self._by_label[self._labels[i]] if j != i] or [i]
        j = others[random.Random(f"{self.seed}/{epoch}/{i}").randrange(len(others))]
        return {"image": image, "label": int(label), "positive": self.base[j][0]}


class ReidEvalSet(Dataset):
    """Query then gallery images in one dataset for the Market protocol: item ``i`` is ``{"image", "label",
    "camera", "is_query"}`` (and ``"mask"``, the part masks, when both sets have ``masks``, as the embedded world
    does); :attr:`num_query` is the number of queries (they come first).

    Shape:
        image: ``(3, H, W)``; label, camera: Python ints; is_query: a bool; mask: ``(3, H, W)`` bool.
    """

    def __init__(self, query: Dataset, gallery: Dataset) -> None:
        self.query, self.gallery = query, gallery
        self.num_query = len(query)
        self.has_masks = hasattr(query, "masks") and hasattr(gallery, "masks")

    def __len__(self) -> int:
        return self.num_query + len(self.gallery)

    def __getitem__(self, i: int) -> dict[str, Tensor | int | bool]:
        is_query = i < self.num_query
        ds, k = (self.query, i) if is_query else (self.gallery, i - self.num_query)
        image, label, camera = ds[k]
        item = {"image": image, "label": int(label), "camera": int(camera), "is_query": is_query}
        if self.has_masks:  # the embedded world's part masks, for the person-pixel probe and the swap scores
            item["mask"] = ds.masks[k]
        return item


#: the layouts :func:`reid_split` reads.
LAYOUTS = {"market": Market1501, "duke": DukeMTMCReID, "msmt17": MSMT17}


def reid_split(
    split: str, root: str, layout: str = "market", height: int = 256, width: int = 128, seed: int = 0
) -> Dataset:
    """The data-module factory for a released dataset: ``train`` the relabelled training images as
    :class:`ReidTrainPairs` with the official training transform, ``val`` / ``test`` query + gallery as
    :class:`ReidEvalSet` with the evaluation transform (the official code has no validation split: ``val`` is the
    test protocol, for monitoring only).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown re-id layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    cls = LAYOUTS[layout]
    if split == "train":
        return ReidTrainPairs(cls.for_split("train", root, train_transform(height, width)), seed)
    if split in ("val", "test"):
        tf = eval_transform(height, width)
        return ReidEvalSet(cls.for_split("query", root, tf), cls.for_split("gallery", root, tf))
    raise ValueError(f"reid_split has no split {split!r}; choose train, val or test")


def persons_split(
    split: str,
    num_ids: int = 60,
    num_cameras: int = 4,
    train_cameras: int = 2,
    images_per_camera: int = 3,
    height: int = 64,
    width: int = 32,
    palette: int = 4,
    colour_shift: float = 0.25,
    world_seed: int = 0,
    seed: int = 0,
) -> Dataset:
    """The data-module factory for the embedded persons world (:class:`~nvresearch.dgnet.world.SyntheticPersons`):
    ``train`` as :class:`ReidTrainPairs`, ``val`` / ``test`` the world's query + gallery as :class:`ReidEvalSet`
    (the same images: the world has one set of test identities, and the run monitors nothing by default)."""
    from nvresearch.dgnet.world import SyntheticPersons

    kw = dict(
        num_ids=num_ids, num_cameras=num_cameras, train_cameras=train_cameras, images_per_camera=images_per_camera,
        height=height, width=width, palette=palette, colour_shift=colour_shift, world_seed=world_seed, seed=seed,
    )  # fmt: skip
    if split == "train":
        return ReidTrainPairs(SyntheticPersons("train", **kw), seed)
    if split in ("val", "test"):
        return ReidEvalSet(SyntheticPersons("query", **kw), SyntheticPersons("gallery", **kw))
    raise ValueError(f"persons_split has no split {split!r}; choose train, val or test")
