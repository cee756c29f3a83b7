"""FUNIT data: the reference's list-file layout (Animal Faces, Birds, Flowers, Foods) and embedded creatures.

List-file layout (FUNIT ``data.py``): a UTF-8 text file with one image path per line, relative to a root folder;
the class is the first path component, and class indices are the ranks of the class names in the sorted set of
names occurring in that list (so train and test lists have independent index spaces)::

    <root>/n02085620/n02085620_10074.JPEG_23_31_311_323.jpg
    <list>: n02085620/n02085620_10074.JPEG_23_31_311_323.jpg

The embedded default (:class:`SyntheticCreatures`) draws "species" of creatures procedurally: the class fixes the
texture of the fur (type and period), while colours come from palettes shared by all species; the content is the
layout (ears, head proportions) and the pose (position, rotation, size), drawn per image, the pose returned as ground
truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from nvresearch.core.data import DatasetLayoutError, split_epoch_key
from nvresearch.core.data.images import read_image
from nvresearch.core.utils.color import hsv_to_rgb

LIST_LAYOUT = (
    "expected a list file with one '<class>/<image file>' path per line, relative to the image root, "
    "e.g. 'n02085620/n02085620_10074.JPEG_23_31_311_323.jpg' under '<root>/'"
)


def read_list_file(list_file: str | Path) -> tuple[list[str], list[int], list[str]]:
    """Parse a FUNIT list file. Returns ``(relative paths, labels, sorted class names)``."""
    p = Path(list_file).expanduser()
    if not p.is_file():
        raise DatasetLayoutError(f"FUNIT list file not found: '{p}'; {LIST_LAYOUT}")
    lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    paths = [ln for ln in lines if ln]
    if not paths:
        raise DatasetLayoutError(f"FUNIT list file '{p}' is empty; {LIST_LAYOUT}")
    bad = [ln for ln in paths if "/" not in ln.replace("\\", "/")]
    if bad:
        raise DatasetLayoutError(f"'{p}': line '{bad[0]}' has no class folder; {LIST_LAYOUT}")
    classes = sorted({ln.replace("\\", "/").split("/")[0] for ln in paths})
    index = {c: i for i, c in enumerate(classes)}
    labels = [index[ln.replace("\\", "/").split("/")[0]] for ln in paths]
    return paths, labels, classes


def write_list_file(root: str | Path, list_file: str | Path, classes: Sequence[str] | None = None) -> int:
    """Write a list file for a folder-per-class dataset (how Birds, Flowers and Foods are prepared).

    Args:
        root: folder with one sub-folder per class holding its images (``.jpg``, ``.jpeg``, ``.png``).
        list_file: output path.
        classes: the class folders to include (e.g. the source or the target split); all when ``None``.

    Returns:
        The number of images listed.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"image root not found: '{root}'; expected one sub-folder of images per class")
    names = sorted(d.name for d in root.iterdir() if d.is_dir()) if classes is None else list(classes)
    lines = []
    for c in names:
        folder = root / c
        if not folder.is_dir():
            raise DatasetLayoutError(f"class folder not found: '{folder}'")
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
        lines += [f"{c}/{f.name}" for f in files]
    Path(list_file).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def extract_animal_faces(imagenet_train: str | Path, coordinates_file: str | Path, out_root: str | Path) -> int:
    """Crop the Animal Faces images out of ImageNet ILSVRC2012 train (what FUNIT's extraction script does).

    Each line of ``coordinates_file`` is ``<wnid>/<file>.JPEG x1 y1 x2 y2`` (corner coordinates, although the
    reference script calls them x, y, w, h). The crop ``(x1, y1, x2, y2)`` is written to
    ``<out_root>/<wnid>/<file>.JPEG_<x1>_<y1>_<x2>_<y2>.jpg``, the names that ``animals_list_*.txt`` use.

    Returns:
        The number of crops written.
    """
    from PIL import Image

    src, out = Path(imagenet_train).expanduser(), Path(out_root).expanduser()
    coords = Path(coordinates_file).expanduser()
    if not coords.is_file():
        raise DatasetLayoutError(f"coordinate file not found: '{coords}'; expected lines '<wnid>/<file> x1 y1 x2 y2'")
    count = 0
    for n, line in enumerate(coords.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise DatasetLayoutError(f"'{coords}' line {n}: expected '<wnid>/<file> x1 y1 x2 y2', got '{line}'")
        rel, box = parts[0], tuple(int(v) for v in parts[1:])
        image_path = src / rel
        if not image_path.is_file():
            raise DatasetLayoutError(
                f"ImageNet image not found: '{image_path}' (ILSVRC2012 train layout '<wnid>/<file>')"
            )
        target = out / f"{rel}_{box[0]}_{box[1]}_{box[2]}_{box[3]}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(image_path) as im:
            im.convert("RGB").crop(box).save(target)
        count += 1
    return count


def load_image(path: str | Path) -> Tensor:
    """Read an RGB image as a float tensor in [0, 1]. Shape: returns ``(3, H, W)``."""
    return read_image(path, missing="image listed but not found").float() / 255.0


def resize_shorter(img: Tensor, size: int) -> Tensor:
    """Resize so that the shorter side is ``size`` (bilinear, antialiased). Shape: ``(3, H, W)`` -> ``(3, H', W')``."""
    h, w = img.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    return F.interpolate(img[None], size=new, mode="bilinear", align_corners=False, antialias=True)[0]


class ListFileDataset(Dataset):
    """Images of a FUNIT list file with the reference pre-processing, scaled to [-1, 1].

    Training: random horizontal flip, shorter side to ``resize`` (140), random ``image_size`` crop (128), seeded by
    ``(seed, epoch, index)`` so that resumed runs see the same crops. Evaluation: resize and centre crop.

    Keys are indices or ``(epoch, index)`` pairs (:class:`~nvresearch.core.data.EpochSampler`); items are dicts
    with ``image`` ``(3, S, S)`` and ``label`` (int).
    """

    def __init__(
        self,
        root: str | Path,
        list_file: str | Path,
        image_size: int = 128,
        resize: int = 140,
        train: bool = True,
        seed: int = 0,
    ) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetLayoutError(f"FUNIT image root not found: '{self.root}'; {LIST_LAYOUT}")
        self.paths, self.labels, self.classes = read_list_file(list_file)
        self.image_size, self.resize, self.train, self.seed = int(image_size), int(resize), train, int(seed)
        if self.resize < self.image_size:
            raise ValueError(f"resize ({resize}) must be >= image_size ({image_size})")

    @classmethod
    def for_part(
        cls,
        part: str,
        count: int | None = None,
        *,
        root: str | Path,
        train_list: str | Path,
        test_list: str | Path,
        image_size: int = 128,
        resize: int | None = None,
        seed: int = 0,
    ) -> ListFileDataset:
        """One part of a list-file dataset (a data config's dataset component; see :func:`creature_part`).

        ``train``: the source classes of ``train_list`` with training augmentation; ``eval``: the same images
        without it (the data module draws its validation and test subsets from them); ``unseen``: the target classes
        of ``test_list``, unaugmented. ``count`` is not used (the data module subsets these parts itself);
        ``resize`` (the shorter side before cropping) defaults to ``image_size``.
        """
        _check_part(part)
        list_file = test_list if part == "unseen" else train_list
        size = int(image_size)
        return cls(root, list_file, size, int(resize) if resize else size, train=part == "train", seed=seed)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor | int]:
        epoch, index = split_epoch_key(key)
        img = resize_shorter(load_image(self.root / self.paths[index]), self.resize)
        h, w = img.shape[-2:]
        s = self.image_size
        if self.train:
            g = torch.Generator().manual_seed(hash((self.seed, epoch, index)) % (2**63))
            if torch.rand((), generator=g) < 0.5:
                img = img.flip(-1)
            top = int(torch.randint(0, h - s + 1, (), generator=g))
            left = int(torch.randint(0, w - s + 1, (), generator=g))
        else:
            top, left = (h - s) // 2, (w - s) // 2
        img = img[:, top : top + s, left : left + s]
        return {"image": img * 2 - 1, "label": self.labels[index]}


# ---------------------------------------------------------------------------------------------------- creatures
PARTS = ("train", "eval", "unseen")


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")


def unseen_split(num_species: int, num_unseen: int) -> tuple[list[int], list[int]]:
    """Source and unseen species ids: the unseen ones evenly spaced (so that they wear different textures)."""
    if not 0 < num_unseen < num_species:
        raise ValueError(f"need 0 < num_unseen < num_species, got {num_unseen} and {num_species}")
    step = num_species / num_unseen
    unseen = sorted({int(step * i + step / 2) for i in range(num_unseen)})
    return [c for c in range(num_species) if c not in unseen], unseen


TEXTURES = (
    "stripes across",
    "stripes along",
    "checker",
    "dark spots",
    "light spots",
    "rings",
    "grid",
    "dark lower face",
)
TEXTURE_PERIODS_PX = (3.5, 4.25, 5.0, 5.75)
SPECIES_COLUMNS = ("texture", "period")
LAYOUT_COLUMNS = ("ear", "ear_length", "aspect")
PALETTE_COLUMNS = ("body hue", "body sat", "body value", "pattern hue", "pattern sat", "pattern value")


def creature_species(num_classes: int) -> Tensor:
    """Colour-free, layout-free traits of ``num_classes`` species, one row each (columns :data:`SPECIES_COLUMNS`):
    ``[texture (index into TEXTURES), period (pixels at 32 px, one of TEXTURE_PERIODS_PX)]``.

    A species is an appearance: the texture of its fur (its type, drawn in the creature's own frame, and its period),
    what FUNIT's class code can carry (a globally pooled encoder modulating the decoder's channels through AdaIN, Sec.
    3). The 8 textures go to 8 contiguous blocks of species and the period cycles within a block, offset per block,
    so that evenly spaced held-out species (:func:`unseen_split`) have 8 different textures, each also worn by source
    species at other periods. Colour is not a trait of the species (:func:`creature_palettes`, drawn per image), nor
    is the layout: ears, head proportions and pose are drawn per image (:class:`SyntheticCreatures`), so they are
    the content.
    """
    i = torch.arange(num_classes)
    texture = (i * 8 // max(num_classes, 1)) % 8
    period = torch.tensor(TEXTURE_PERIODS_PX)[(i + texture) % len(TEXTURE_PERIODS_PX)]
    return torch.stack([texture.float(), period], 1)


def creature_palettes(num_palettes: int, seed: int = 0) -> Tensor:
    """Colour palettes shared by all species, one row each (columns :data:`PALETTE_COLUMNS`, HSV in [0, 1]).

    Body hues are spread evenly around the colour wheel; the pattern colour is a darker, saturated colour of
    another hue, so that textures stay visible without colour and every part of a creature is far from the grey
    background in chroma (the pose estimate's foreground).
    """
    g = torch.Generator().manual_seed(20_011 * seed + 3)
    n = num_palettes
    hue = (torch.arange(n) + 0.5 * torch.rand(n, generator=g)) / n
    return torch.stack(
        [
            hue,
            0.7 + 0.25 * torch.rand(n, generator=g),
            0.85 + 0.15 * torch.rand(n, generator=g),
            (hue + 0.3 + 0.4 * torch.rand(n, generator=g)) % 1.0,
            0.85 + 0.15 * torch.rand(n, generator=g),
            0.45 + 0.1 * torch.rand(n, generator=g),
        ],
        1,
    )


def creature_layouts(n: int, generator: torch.Generator) -> Tensor:
    """Per-image head layouts, independent of the species (columns :data:`LAYOUT_COLUMNS`): ear shape (0 round,
    1 pointed), ear length, head aspect. Shape: returns ``(n, 3)``."""
    return torch.stack(
        [
            (torch.rand(n, generator=generator) < 0.5).float(),
            0.35 + 0.3 * torch.rand(n, generator=generator),
            0.7 + 0.25 * torch.rand(n, generator=generator),
        ],
        1,
    )


def render_creatures(
    species: Tensor, palette: Tensor, pose: Tensor, background: Tensor, size: int, layout: Tensor
) -> Tensor:
    """Draw one creature per row of ``species`` (:func:`creature_species`) in the colours of ``palette``
    (:func:`creature_palettes`) with the head ``layout`` (:func:`creature_layouts`) at ``pose`` over ``background``.

    Pose rows are ``[centre x, centre y (pixels), rotation (radians), scale]``. The texture is drawn in the
    creature's frame (it turns and scales with the creature; its phase is fixed at the head's centre) in the
    palette's pattern colour over its body colour.

    Shape:
        species: ``(N, 2)``; palette: ``(N, 6)``; pose: ``(N, 4)``; background: ``(N, 3, S, S)``; layout:
        ``(N, 3)``; returns ``(N, 3, S, S)`` in [0, 1].
    """
    n = species.shape[0]
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    cx, cy, th, sc = (pose[:, i, None, None] for i in range(4))
    unit = 0.22 * size * sc
    dx, dy = xs[None] - cx, ys[None] - cy
    u = (torch.cos(th) * dx + torch.sin(th) * dy) / unit  # creature frame: u right, v down, head radius ~1
    v = (-torch.sin(th) * dx + torch.cos(th) * dy) / unit
    sharp = 0.12 * size / 32 * unit.new_ones(())

    def soft(dist: Tensor) -> Tensor:  # dist < 0 inside
        return torch.sigmoid(-dist * unit / (sharp * 2.0))

    ear_type, ear_len, aspect = (layout[:, i, None, None] for i in range(3))
    head = soft(torch.sqrt((u / aspect) ** 2 + v**2) - 1.0)
    ears = torch.zeros_like(u)
    for side in (-1.0, 1.0):
        eu, ev = u - side * 0.6 * aspect, v + 0.75
        round_ear = torch.sqrt(eu**2 + (ev + 0.1) ** 2) - 0.55 * ear_len / 0.5
        # pointed ear: a triangle with its tip ear_len above the base, approximated by an L1 "diamond" top
        pointed = torch.maximum(eu.abs() * 1.6 + (ev + ear_len * 1.6), -(ev + 0.3) - 0.2) - 0.55
        ears = torch.maximum(ears, soft(torch.where(ear_type > 0.5, pointed, round_ear)))
    body = torch.maximum(head, ears)
    texture, period_px = species[:, 0].long(), species[:, 1, None, None]
    f = 2 * math.pi * 0.22 * 32 / period_px  # angular frequency in creature units (unit = 0.22 * 32 px at scale 1)
    cu, cv = torch.cos(f * u), torch.cos(f * v)
    patterns = [
        torch.sin(f * v) > 0,
        torch.sin(f * u) > 0,
        torch.sin(f * u) * torch.sin(f * v) > 0,
        cu + cv > 1.0,
        cu + cv < 1.0,
        torch.sin(f * torch.sqrt(u**2 + v**2)) > 0,
        (cu > 0.6) | (cv > 0.6),
        v > (period_px - 4.625) / 3.75,  # the face below a line set by the period (-0.3 .. 0.3 head radii)
    ]
    pattern = torch.stack(patterns, 1).float()
    pattern = pattern.gather(1, texture.clamp(0, len(TEXTURES) - 1)[:, None, None, None].expand(-1, 1, size, size))
    pattern = pattern[:, 0]
    eyes = torch.maximum(
        soft(torch.sqrt((u + 0.38) ** 2 + (v + 0.1) ** 2) / 0.17 - 1.0),
        soft(torch.sqrt((u - 0.38) ** 2 + (v + 0.1) ** 2) / 0.17 - 1.0),
    )
    body_rgb = hsv_to_rgb(palette[:, 0], palette[:, 1], palette[:, 2])[:, :, None, None]
    pat_rgb = hsv_to_rgb(palette[:, 3], palette[:, 4], palette[:, 5])[:, :, None, None]
    skin = body_rgb * (1 - pattern[:, None]) + pat_rgb * pattern[:, None]
    skin = skin * (1 - eyes[:, None]) + 0.05 * eyes[:, None]
    img = background * (1 - body[:, None]) + skin * body[:, None]
    return img.clamp(0, 1).view(n, 3, size, size)


def smooth_backgrounds(n: int, size: int, generator: torch.Generator) -> Tensor:
    """Class-independent grey backgrounds: low-frequency noise around mid grey. Shape: returns ``(n, 3, S, S)``."""
    coarse = 0.5 + 0.12 * torch.randn(n, 1, 4, 4, generator=generator)
    grey = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0.2, 0.8)
    return grey.expand(n, 3, size, size).contiguous()


class SyntheticCreatures(Dataset):
    """Procedural few-shot translation data: ``images_per_class`` creatures of each species in ``classes``.

    The species of :func:`creature_species` (``num_species`` of them) are split by the data module into source
    classes (training) and unseen target classes. A species fixes the texture of the fur (type and period), not
    colour: each image draws one of ``num_palettes`` colour palettes shared by all species (:func:`creature_palettes`,
    fixed by ``species_seed``), so colour does not tell species apart. The layout is the content, drawn per image
    independently of the class: the head (ear shape and length, aspect: :func:`creature_layouts`) and the pose
    (centre within the middle of the canvas, rotation in +-``max_angle`` degrees, scale in [0.8, 1.15]). Images are
    rendered once at construction (deterministic given ``seed``).

    Items are dicts with ``image`` ``(3, S, S)`` in [-1, 1], ``label`` (index into ``classes``) and ``pose``
    ``(4,)`` = (centre x, centre y, rotation, scale).
    """

    def __init__(
        self,
        classes: Sequence[int],
        images_per_class: int = 64,
        image_size: int = 32,
        num_species: int = 16,
        species_seed: int = 0,
        seed: int = 0,
        max_angle: float = 35.0,
        num_palettes: int = 8,
    ) -> None:
        if not classes:
            raise ValueError("SyntheticCreatures needs at least one class")
        if max(classes) >= num_species or min(classes) < 0:
            raise ValueError(f"classes must lie in [0, {num_species}), got {list(classes)}")
        self.classes, self.image_size = list(classes), int(image_size)
        table = creature_species(num_species)
        g = torch.Generator().manual_seed(1_000_003 * seed + 7)
        n = len(self.classes) * images_per_class
        self.labels = torch.arange(len(self.classes)).repeat_interleave(images_per_class)
        s = float(image_size)
        pose = torch.stack(
            [
                s * (0.32 + 0.36 * torch.rand(n, generator=g)),
                s * (0.4 + 0.22 * torch.rand(n, generator=g)),
                math.radians(max_angle) * (2 * torch.rand(n, generator=g) - 1),
                0.8 + 0.35 * torch.rand(n, generator=g),
            ],
            1,
        )
        species = table[torch.tensor(self.classes)][self.labels]
        bg = smooth_backgrounds(n, self.image_size, g)
        self.palette_ids = torch.randint(0, int(num_palettes), (n,), generator=g)
        palette = creature_palettes(int(num_palettes), species_seed)[self.palette_ids]
        layout = creature_layouts(n, g)
        self.layouts = layout
        imgs = torch.cat(
            [
                render_creatures(
                    species[i : i + 256],
                    palette[i : i + 256],
                    pose[i : i + 256],
                    bg[i : i + 256],
                    self.image_size,
                    layout[i : i + 256],
                )
                for i in range(0, n, 256)
            ]
        )
        self.images = imgs * 2 - 1
        self.poses = pose

    @classmethod
    def for_part(
        cls,
        part: str,
        count: int | None = None,
        *,
        image_size: int = 32,
        num_species: int = 16,
        num_unseen: int = 8,
        images_per_class: int = 144,
        num_palettes: int = 8,
        seed: int = 0,
    ) -> SyntheticCreatures:
        """One part of the embedded creatures (a data config's dataset component).

        Of the ``num_species`` species (:func:`creature_species`; the palettes fixed by ``seed``), ``num_unseen``
        evenly spaced ones are held out (:func:`unseen_split`). ``train``: ``images_per_class`` images of each
        source species; ``eval``: fresh images of the source species, at least ``count`` in all (the data module
        draws its validation and test subsets from them); ``unseen``: ``count`` images of each unseen species
        (None: ``images_per_class``).
        Each part draws from its own seed (``seed * 10 + 0/1/3``).
        """
        _check_part(part)
        source, unseen = unseen_split(num_species, num_unseen)
        if part == "train":
            classes, per_class, offset = source, int(images_per_class), 0
        elif part == "eval":
            classes, per_class, offset = source, max(1, -(-int(count or 0) // len(source))), 1
        else:
            classes, per_class, offset = unseen, int(count or images_per_class), 3
        return cls(
            classes,
            per_class,
            image_size,
            num_species,
            species_seed=seed,
            seed=seed * 10 + offset,
            num_palettes=num_palettes,
        )

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor | int]:
        _, index = split_epoch_key(key)
        return {"image": self.images[index], "label": int(self.labels[index]), "pose": self.poses[index]}


class TranslationPairs(Dataset):
    """Pairs a content image with an independently drawn class image, as the reference's two shuffled loaders do.

    Key ``(epoch, index)``: the content image is ``base[index]``; the class image is ``base[j]`` with ``j`` drawn
    from a generator seeded by ``(seed, epoch, index)``, so the pairing is fixed by the seed and resumes exactly.
    Items: ``content``, ``content_label``, ``class_image``, ``class_label`` (and ``pose`` when the base has one).
    """

    def __init__(self, base: Dataset, seed: int = 0) -> None:
        self.base, self.seed = base, int(seed)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor | int]:
        epoch, index = split_epoch_key(key)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
        j = int(torch.randint(0, len(self), (), generator=g))
        a, b = self.base[(epoch, index)], self.base[(epoch + 7_919, j)]
        out = {"content": a["image"], "content_label": a["label"], "class_image": b["image"], "class_label": b["label"]}
        if "pose" in a:
            out["pose"] = a["pose"]
        return out
