"""The embedded default for DG-Net: a procedural world of persons seen by a few cameras (torch-only, deterministic).

What decides what (issue 17): the **identity** decides the clothing colours (upper and lower garment, from a small
shared palette), the garment pattern (plain, horizontal or vertical stripes, stripe period), the body shape (width,
height, head size) and a bag (none, left, right); the **camera** decides the background (a two-colour gradient with
a texture), the lighting (a per-channel gain: cameras shift colour), the viewpoint (a side view narrows the body)
and the typical pose (leg spread, arm raise); each image adds pose and position jitter and pixel noise.

Colour alone cannot identify a person: identities share palette pairs (``num_ids / palette**2`` identities per pair
within each split) and every camera tints the colours, so a colour-histogram matcher confuses the identities of a pair,
while the pattern, body shape and bag separate them (:func:`colour_histogram_features` is that matcher).

Identities ``1..num_ids`` train, ``num_ids + 1..2 num_ids`` test (disjoint); every image has a Market-1501 name
``PPPP_cCs1_FFFFFF_00.jpg``; the test identities give one query per camera they appear in, the rest is the
gallery. :func:`write_market_layout` writes a world as a Market-1501 folder tree for the real-data readers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "PersonWorld",
    "SyntheticPersons",
    "colour_histogram_features",
    "person_colour_features",
    "render_persons",
    "swap_pairs",
    "swap_scores",
    "write_market_layout",
]

# Garment palette: distinct hues of similar brightness, so that the grey structure input carries little colour.
PALETTE = torch.tensor(
    [
        [0.80, 0.25, 0.25],
        [0.25, 0.60, 0.30],
        [0.30, 0.40, 0.85],
        [0.75, 0.65, 0.20],
        [0.65, 0.30, 0.70],
        [0.20, 0.65, 0.70],
    ]
)
SKIN = torch.tensor([0.85, 0.70, 0.55])
BAG = torch.tensor([0.25, 0.22, 0.20])


@dataclass(frozen=True)
class PersonWorld:
    """Identity and camera tables of one world (drawn from ``world_seed``).

    Attributes (one row per identity, index ``pid - 1``): ``upper``, ``lower`` palette indices, ``pattern`` (0 plain,
    1 horizontal, 2 vertical stripes), ``period`` (pixels at 64 rows), ``width``, ``height``, ``head`` factors,
    ``bag`` (0 none, 1 left, 2 right); per camera: ``bg_top``, ``bg_bottom`` colours, ``gain`` (3,), ``view``
    (torso width factor), ``spread`` and ``raise_`` (mean pose).
    """

    upper: Tensor
    lower: Tensor
    pattern: Tensor
    period: Tensor
    width: Tensor
    height: Tensor
    head: Tensor
    bag: Tensor
    bg_top: Tensor
    bg_bottom: Tensor
    gain: Tensor
    view: Tensor
    spread: Tensor
    raise_: Tensor

    @classmethod
    def draw(
        cls, num_ids: int, num_cameras: int, palette: int = 4, world_seed: int = 0, colour_shift: float = 0.25
    ) -> PersonWorld:
        """Identities ``1..num_ids`` (train and test together: the first half trains) and ``num_cameras`` cameras.

        Args:
            palette: how many palette colours are used (``palette**2`` garment pairs, shared by the identities).
            colour_shift: the largest per-channel deviation of a camera's gain from 1.
        """
        if not 1 <= palette <= len(PALETTE):
            raise ValueError(f"palette must lie in [1, {len(PALETTE)}], got {palette}")
        g = torch.Generator().manual_seed(7919 * world_seed + 1)
        n, c = num_ids, num_cameras
        # garment pairs dealt out separately to each half (train, test ids), so that within each split every pair
        # is worn by ~(n / 2) / palette^2 identities
        halves = (n // 2, n - n // 2)
        pairs = torch.cat([torch.randperm(k, generator=g) % (palette * palette) for k in halves])
        u = lambda lo, hi, size: lo + (hi - lo) * torch.rand(size, generator=g)  # noqa: E731
        return cls(
            upper=pairs // palette,
            lower=pairs % palette,
            pattern=torch.randint(0, 3, (n,), generator=g),
            period=torch.randint(3, 7, (n,), generator=g),
            width=u(0.8, 1.25, n),
            height=u(0.88, 1.0, n),
            head=u(0.8, 1.25, n),
            bag=torch.randint(0, 3, (n,), generator=g),
            bg_top=u(0.1, 0.9, (c, 3)),
            bg_bottom=u(0.1, 0.9, (c, 3)),
            gain=1 + colour_shift * (2 * torch.rand(c, 3, generator=g) - 1),
            view=torch.where(torch.arange(c) % 2 == 1, 0.75, 1.0),
            spread=u(0.0, 0.12, c),
            raise_=u(0.0, 0.5, c),
        )


def render_persons(
    world: PersonWorld,
    pids: Tensor,
    cams: Tensor,
    generator: torch.Generator,
    height: int = 64,
    width: int = 32,
    noise: float = 0.02,
) -> tuple[Tensor, Tensor]:
    """Render one image per ``(pid, camera)`` pair (1-based ids and cameras).

    Returns:
        images in [0, 1] ``(N, 3, H, W)`` and part masks ``(N, 3, H, W)`` bool: upper garment (torso and arms),
        lower garment (legs), whole person (with head and bag), before lighting and noise.
    """
    n = pids.numel()
    i, c = pids.long() - 1, cams.long() - 1
    rnd = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    y = torch.arange(height, dtype=torch.float32).view(1, -1, 1)
    x = torch.arange(width, dtype=torch.float32).view(1, 1, -1)
    h = height * 0.92 * world.height[i] * (0.95 + 0.05 * rnd(n))
    top = (height - h) * (0.3 + 0.4 * rnd(n))
    cx = width / 2 + width * 0.12 * (2 * rnd(n) - 1)
    col = lambda v: v.view(-1, 1, 1)  # noqa: E731
    h_, top_, cx_ = col(h), col(top), col(cx)
    half = col(0.16 * width * world.width[i] * world.view[c])
    # head
    r = col(0.075 * height * world.head[i] * (h / height / 0.92))
    head = (y - (top_ + 1.1 * r)) ** 2 + ((x - cx_) * 1.4) ** 2 <= r**2
    # torso and arms
    t0, t1 = top_ + 0.2 * h_, top_ + 0.55 * h_
    torso = (y >= t0) & (y < t1) & ((x - cx_).abs() <= half)
    arm_w = 0.07 * width
    lift = col((world.raise_[c] + 0.3 * (2 * rnd(n) - 1)).clamp(0, 1)) * 0.15 * h_
    arm_y = (y >= t0 + 0.02 * h_ - lift) & (y < t0 + 0.32 * h_ - lift)
    arms = arm_y & (
        ((x - (cx_ - half - arm_w / 2)).abs() <= arm_w / 2) | ((x - (cx_ + half + arm_w / 2)).abs() <= arm_w / 2)
    )
    # legs
    spread = col((world.spread[c] + 0.06 * (2 * rnd(n) - 1)).clamp(0, 0.2)) * width
    leg_half = 0.065 * width
    leg_y = (y >= t1) & (y < top_ + h_)
    legs = leg_y & (
        ((x - (cx_ - leg_half - spread)).abs() <= leg_half) | ((x - (cx_ + leg_half + spread)).abs() <= leg_half)
    )
    # bag: a box against the hip on one side
    side = col(torch.where(world.bag[i] == 1, -1.0, 1.0))
    bag_x = cx_ + side * (half + 0.08 * width)
    bag = (col(world.bag[i]) > 0) & ((x - bag_x).abs() <= 0.09 * width) & (y >= t0 + 0.25 * h_) & (y < t1 + 0.05 * h_)
    # pattern on the upper garment: stripes darken every other band
    period = col(world.period[i].float() * height / 64)
    pat = col(world.pattern[i])
    band_y = torch.floor((y - t0) / period) % 2 == 1
    band_x = torch.floor((x - cx_ + 100 * period) / period) % 2 == 1
    stripe = ((pat == 1) & band_y) | ((pat == 2) & band_x)

    frac = (y / (height - 1)).unsqueeze(1)  # (1, 1, H, 1)
    bg = world.bg_top[c].view(n, 3, 1, 1) * (1 - frac) + world.bg_bottom[c].view(n, 3, 1, 1) * frac
    texture = 0.06 * torch.sin(x * (0.9 + col(c.float()) * 0.35) + y * 0.3 * col(c.float())).unsqueeze(1)
    img = (bg + texture).expand(n, 3, height, width).clone()

    def paint(mask: Tensor, colour: Tensor) -> None:
        m = mask.unsqueeze(1).expand(n, 3, height, width)
        img[m] = colour.view(-1, 3, 1, 1).expand(n, 3, height, width)[m]

    upper, lower = PALETTE[world.upper[i]], PALETTE[world.lower[i]]
    paint(legs, lower)
    upper_mask = torso | arms
    paint(upper_mask, upper)
    paint(torso & stripe, upper * 0.55)
    paint(head, SKIN.expand(n, 3))
    paint(bag, BAG.expand(n, 3))
    gain = world.gain[c] * (1 + 0.05 * (2 * rnd(n, 3) - 1))
    img = (img * gain.view(n, 3, 1, 1) + noise * torch.randn(img.shape, generator=generator)).clamp(0, 1)
    person = upper_mask | legs | head | bag
    masks = torch.stack([upper_mask & ~bag & ~head, legs & ~bag, person], 1)
    return img, masks


class SyntheticPersons(Dataset):
    """One split of the embedded persons world; item ``i`` is ``(image, label, camera)`` like
    :class:`~nvresearch.dgnet.data.ReidImages` (ImageNet-normalised image; training labels ``0..num_ids-1``,
    query/gallery labels the person ids).

    Training identities appear in ``train_cameras`` of the ``num_cameras`` cameras (few, so that camera and
    identity are confounded as in real data), test identities in all; ``images_per_camera`` images per identity and
    camera. Query: the first image of each test identity in each camera; gallery: the others.

    Attributes:
        images ``(N, 3, H, W)`` in [0, 1]; masks ``(N, 3, H, W)`` (upper, lower, person); names (Market-1501);
        persons, cameras, labels ``(N,)``.
    """

    SPLITS = ("train", "query", "gallery")

    def __init__(
        self,
        split: str = "train",
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
    ) -> None:
        if split not in self.SPLITS:
            raise ValueError(f"SyntheticPersons has no split {split!r}; choose one of {self.SPLITS}")
        if not 1 <= train_cameras <= num_cameras:
            raise ValueError(f"train_cameras must lie in [1, {num_cameras}], got {train_cameras}")
        if split != "train" and images_per_camera < 2:
            raise ValueError("query and gallery need at least 2 images per identity and camera")
        self.split = split
        world = PersonWorld.draw(2 * num_ids, num_cameras, palette, world_seed, colour_shift)
        g = torch.Generator().manual_seed(104_729 * seed + 17 * world_seed + 3)
        pids, cams, frames = [], [], []
        if split == "train":
            for pid in range(1, num_ids + 1):
                seen = torch.randperm(num_cameras, generator=g)[:train_cameras].sort().values + 1
                for cam in seen.tolist():
                    pids += [pid] * images_per_camera
                    cams += [cam] * images_per_camera
                    frames += list(range(images_per_camera))
        else:
            for pid in range(num_ids + 1, 2 * num_ids + 1):
                for cam in range(1, num_cameras + 1):
                    keep = range(1) if split == "query" else range(1, images_per_camera)
                    pids += [pid] * len(keep)
                    cams += [cam] * len(keep)
                    frames += list(keep)
        self.persons, self.cameras = torch.tensor(pids), torch.tensor(cams)
        # one generator per split, seeded apart, so that query and gallery images are different draws
        rg = torch.Generator().manual_seed(
            int(torch.randint(0, 2**31 - 1, (1,), generator=g)) + self.SPLITS.index(split)
        )
        self.images, self.masks = render_persons(world, self.persons, self.cameras, rg, height, width)
        self.names = [f"{p:04d}_c{c}s1_{f + 1:06d}_00.jpg" for p, c, f in zip(pids, cams, frames, strict=True)]
        self.labels = self.persons - 1 if split == "train" else self.persons.clone()
        self.world = world
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        self._normalised = (self.images - mean) / std

    @classmethod
    def for_split(cls, split: str, **kwargs: object) -> SyntheticPersons:
        """The data-module factory (``split`` first, the world's parameters as keywords)."""
        return cls(split, **kwargs)  # type: ignore[arg-type]

    @property
    def num_classes(self) -> int:
        return int(self.persons.unique().numel())

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, int, int]:
        return self._normalised[i], int(self.labels[i]), int(self.cameras[i])


def write_market_layout(root: str | os.PathLike, splits: dict[str, SyntheticPersons]) -> Path:
    """Write worlds as a Market-1501 tree (``bounding_box_train``, ``query``, ``bounding_box_test``; JPEG files with
    Market names), readable by :class:`~nvresearch.dgnet.data.Market1501`.

    Args:
        splits: ``{"train": ..., "query": ..., "gallery": ...}`` (any subset).
    """
    from PIL import Image

    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    root = Path(root)
    for split, ds in splits.items():
        folder = root / folders[split]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (ds.images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for name, arr in zip(ds.names, pixels, strict=True):
            Image.fromarray(arr).save(folder / name, quality=95)
    return root


def colour_histogram_features(images: Tensor, bins: int = 4) -> Tensor:
    """The trivial probe: a joint RGB histogram (``bins^3``) of each image, square-rooted (Hellinger) and
    L2-normalised, so that a dot product compares colour distributions.

    Shape:
        images: ``(N, 3, H, W)`` in [0, 1]; returns ``(N, bins^3)``.
    """
    q = (images.clamp(0, 1 - 1e-6) * bins).long()
    index = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    hist = torch.zeros(images.shape[0], bins**3)
    hist.scatter_add_(1, index.flatten(1), torch.ones(index.flatten(1).shape))
    return torch.nn.functional.normalize(hist.sqrt(), dim=1)


def person_colour_features(images: Tensor, person_masks: Tensor, bins: int = 4) -> Tensor:
    """The strongest colour probe of the world: :func:`colour_histogram_features` of the true person pixels only
    (the background painted black), so that the camera's background cannot help or hurt it.

    Shape:
        images: ``(N, 3, H, W)`` in [0, 1]; person_masks: ``(N, 1, H, W)`` bool; returns ``(N, bins^3)``.
    """
    return colour_histogram_features(torch.where(person_masks, images, torch.zeros((), dtype=images.dtype)), bins)


def _garment_colours(images: Tensor, masks: Tensor) -> Tensor:
    """Mean colour of each image in the upper and the lower garment masks ``(N, 2, 3)`` (masks ``(N, 3, H, W)``)."""
    parts = masks[:, :2].unsqueeze(2).to(images.dtype)  # (N, 2, 1, H, W)
    return (images.unsqueeze(1) * parts).sum((-1, -2)) / parts.sum((-1, -2)).clamp_min(1)


def swap_scores(
    swapped: Tensor, appearance: Tensor, structure: Tensor, appearance_masks: Tensor, structure_masks: Tensor
) -> dict[str, float]:
    """How well appearance/structure swaps transfer clothing and keep pose, on the world's ground truth.

    ``swapped[i]`` should wear the clothes of ``appearance[i]`` in the pose of ``structure[i]`` (other identities,
    other cameras). Clothing: the swap's mean colour in the structure donor's upper and lower garment masks (where
    its clothes must be) against each donor's own garment colours (RGB distance, averaged over the two garments).
    Pose: the swap's grey-level mean absolute difference to each donor on the union of the two donors' person masks
    (where the silhouettes differ; outside both the background decides, not the pose).

    Returns:
        ``colour_to_appearance``, ``colour_to_structure`` (mean distances), ``colour_win`` (fraction of pairs nearer
        the appearance donor's clothes), ``pose_to_structure``, ``pose_to_appearance``, ``pose_win`` (fraction of
        pairs nearer the structure donor's grey image).

    Shape:
        swapped, appearance, structure: ``(N, 3, H, W)`` in [0, 1]; masks: ``(N, 3, H, W)`` bool (upper, lower,
        person) as :func:`render_persons` returns them.
    """
    worn = _garment_colours(swapped, structure_masks)
    to_app = (worn - _garment_colours(appearance, appearance_masks)).norm(dim=-1).mean(1)
    to_str = (worn - _garment_colours(structure, structure_masks)).norm(dim=-1).mean(1)
    region = (appearance_masks[:, 2] | structure_masks[:, 2]).to(swapped.dtype)
    grey = lambda x: x.mean(1)  # noqa: E731
    area = region.sum((-1, -2)).clamp_min(1)
    pose_str = ((grey(swapped) - grey(structure)).abs() * region).sum((-1, -2)) / area
    pose_app = ((grey(swapped) - grey(appearance)).abs() * region).sum((-1, -2)) / area
    return {
        "colour_to_appearance": float(to_app.mean()),
        "colour_to_structure": float(to_str.mean()),
        "colour_win": float((to_app < to_str).float().mean()),
        "pose_to_structure": float(pose_str.mean()),
        "pose_to_appearance": float(pose_app.mean()),
        "pose_win": float((pose_str < pose_app).float().mean()),
    }


def swap_pairs(persons: Tensor, cameras: Tensor, images: Tensor, masks: Tensor, min_colour: float = 0.2) -> Tensor:
    """Pairs ``(appearance, structure)`` of indices for :func:`swap_scores`: each image with the next image (in a
    fixed cyclic order) of another person seen by another camera whose garment colours differ by at least
    ``min_colour`` (so that transferred clothing is visible). Deterministic.

    Shape:
        persons, cameras: ``(N,)``; images ``(N, 3, H, W)`` in [0, 1]; masks ``(N, 3, H, W)``; returns ``(P, 2)``.
    """
    colours = _garment_colours(images, masks)
    n, pairs = persons.numel(), []
    for i in range(n):
        for step in range(1, n):
            j = (i + 7 * step) % n  # a stride, so that the partner is not the neighbour in the query order
            far = (colours[i] - colours[j]).norm(dim=-1).mean() >= min_colour
            if persons[j] != persons[i] and cameras[j] != cameras[i] and far:
                pairs.append((i, j))
                break
    return torch.tensor(pairs, dtype=torch.long).view(-1, 2)
