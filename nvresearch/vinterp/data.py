"""vinterp data: frame-folder videos in the layouts the official code reads, and the samplers of its
three modes (supervised windows, cycle triplets, evaluation windows).

Generic layout (official ``datasets/VideoInterp.py``): ``root`` is walked recursively (following symlinks); every
folder that directly holds image files (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``; hidden files skipped) is one
video, its frames in natural order of their names (``2.png`` before ``10.png``); folders are in natural order too.
Adobe-240fps, SlowFlow and Sintel (after their frame extraction / RAW conversion) are such trees, one per split
(``<root>/train``, ``<root>/test``). The fixed-layout sets have their own readers: UCF101 (DVF test set),
Vimeo-90K triplets and Middlebury (:func:`ucf101_windows`, :func:`vimeo_triplet_windows`,
:func:`middlebury_windows`). Videos given as files are decoded with OpenCV (:func:`extract_video_frames`).

A sample is a dict: ``frames`` float32 ``(K, 3, H, W)`` in 0-255 (K = 3 for training, N + 2 for evaluation),
``index`` the intermediate index k (1..N; the target is ``frames[1]`` in training), ``size`` ``(H, W)`` before any
crop, ``files`` the frame paths. Training samples draw k, the crop and the flips from ``(seed, epoch, index)``
(:class:`~nvresearch.core.data.EpochSampler` keys), so a run is a function of its seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from nvresearch.core.data import DatasetLayoutError, split_epoch_key
from nvresearch.core.data.images import read_image

__all__ = [
    "FRAME_LAYOUT",
    "IMAGE_EXTENSIONS",
    "DOMAINS",
    "SOURCE_DOMAIN",
    "TARGET_DOMAIN",
    "CycleTriplets",
    "EvalWindows",
    "SpriteDomain",
    "SupervisedWindows",
    "ensure_sprite_world",
    "extract_video_frames",
    "find_videos",
    "load_frame",
    "middlebury_windows",
    "natural_key",
    "render_sprite_clip",
    "ucf101_windows",
    "vimeo_triplet_windows",
    "window_count",
    "write_sprite_world",
    "AdaptationPairs",
    "sprite_world_split",
    "EVAL_FORMATS",
    "video_split",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
FRAME_LAYOUT = (
    "folders of video frames ('<root>/<video>/00000.png', ...; any depth, natural order of names, "
    f"extensions {', '.join(IMAGE_EXTENSIONS)})"
)


def natural_key(text: str) -> list[Any]:
    """Sort key that orders digit runs by value (``frame_2`` < ``frame_10``), as ``natsort`` does."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _is_frame(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def find_videos(root: str | os.PathLike) -> list[list[Path]]:
    """Every folder under ``root`` (itself included) that directly holds frames, as its naturally sorted frames.

    Raises:
        DatasetLayoutError: ``root`` is not a folder, or holds no frames anywhere.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"no video folder at '{root}'; expected {FRAME_LAYOUT}")
    folders = sorted((Path(d) for d, _, _ in os.walk(root, followlinks=True)), key=lambda p: natural_key(str(p)))
    videos = []
    for folder in folders:
        if any(part.startswith(".") for part in folder.relative_to(root).parts):
            continue
        frames = sorted((p for p in folder.iterdir() if _is_frame(p)), key=lambda p: natural_key(p.name))
        if frames:
            videos.append(frames)
    if not videos:
        raise DatasetLayoutError(f"no frames under '{root}'; expected {FRAME_LAYOUT}")
    return videos


def load_frame(path: str | os.PathLike) -> Tensor:
    """Read an image as RGB float32 in 0-255 (alpha dropped, as the official ``imread(...)[:, :, :3]``).

    Shape:
        returns ``(3, H, W)``.

    Raises:
        DatasetLayoutError: the file is missing or not a readable image (the message names it).
    """
    return read_image(path, name="frame").float()


def window_count(num_frames: int, num_interp: int, sample_rate: int, step_size: int) -> int:
    """Windows in one video (official ``calc_subseq_len``): ``(n - max(1, (N + 1) s) - 1) // step + 1``, at least 0."""
    return max(0, (num_frames - max(1, (num_interp + 1) * sample_rate) - 1) // step_size + 1)


class _Windows(Dataset):
    """Fixed-index windows over frame-folder videos; subclasses say which frames a window reads."""

    def __init__(
        self,
        videos: Sequence[Sequence[str | os.PathLike]],
        num_interp: int,
        sample_rate: int,
        step_size: int,
        source: str,
    ) -> None:
        if num_interp < 1 or step_size < 1 or sample_rate < 0:
            raise ValueError(
                f"need num_interp >= 1, step_size >= 1, sample_rate >= 0; got {num_interp}, {step_size}, {sample_rate}"
            )
        self.videos = [[Path(f) for f in v] for v in videos]
        self.num_interp, self.sample_rate, self.step_size = int(num_interp), int(sample_rate), int(step_size)
        self.starts: list[tuple[int, int]] = []
        for vi, video in enumerate(self.videos):
            for j in range(self._count(len(video))):
                self.starts.append((vi, j * self.step_size))
        if not self.starts:
            longest = max((len(v) for v in self.videos), default=0)
            raise DatasetLayoutError(
                f"no {type(self).__name__} sample in '{source}': the longest video has {longest} frames, too few for "
                f"num_interp={num_interp}, sample_rate={sample_rate}"
            )
        self.source = source

    def _count(self, n: int) -> int:
        return window_count(n, self.num_interp, self.sample_rate, self.step_size)

    def __len__(self) -> int:
        return len(self.starts)

    def _read(self, video: int, indices: Sequence[int]) -> tuple[Tensor, list[Path]]:
        files = [self.videos[video][i] for i in indices]
        frames = [load_frame(f) for f in files]
        if len({tuple(f.shape) for f in frames}) != 1:
            raise DatasetLayoutError(f"frames of different sizes in one window: {[str(f) for f in files]}")
        return torch.stack(frames), files


class EvalWindows(_Windows):
    """Evaluation windows (official ``VideoInterp.py``): ``N + 2`` frames ``i, i + s, ..., i + (N + 1) s``; the first
    and last are the inputs and the N between them the targets of ``k = 1..N``. With ``sample_rate`` 0 (no ground truth)
    the window is ``(i, ..., i, i + 1)``, as the official code.

    Args:
        videos: frame lists (:func:`find_videos`). num_interp: N. sample_rate: s. step_size: start stride
            (default N + 1: disjoint windows). source: the root, for messages.
    """

    def __init__(
        self,
        videos: Sequence[Sequence[str | os.PathLike]],
        num_interp: int = 7,
        sample_rate: int = 1,
        step_size: int | None = None,
        source: str = "<videos>",
    ) -> None:
        super().__init__(videos, num_interp, sample_rate, step_size or num_interp + 1, source)

    @classmethod
    def from_root(
        cls, root: str | os.PathLike, num_interp: int = 7, sample_rate: int = 1, step_size: int | None = None
    ) -> EvalWindows:
        """Windows over every video under ``root`` (generic frame-folder layout)."""
        return cls(find_videos(root), num_interp, sample_rate, step_size, str(root))

    def indices(self, start: int) -> list[int]:
        idx = [start + i * self.sample_rate for i in range(self.num_interp + 2)]
        if self.sample_rate == 0:
            idx[-1] += 1
        return idx

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        _, index = split_epoch_key(key)
        video, start = self.starts[index]
        frames, files = self._read(video, self.indices(start))
        return {"frames": frames, "index": 0, "size": tuple(frames.shape[-2:]), "files": [str(f) for f in files]}


class SupervisedWindows(_Windows):
    """Supervised training samples (official ``VideoInterp``): ``(I_i, I_{i + s k}, I_{i + s (N + 1)})`` with k uniform
    in 1..N, then the official ``--skip_aug`` augmentation: with probability 1/2 the triplet is reversed and
    ``k -> N + 1 - k``; a random crop of ``crop`` (same on all frames); vertical and horizontal flips with
    probability 1/2 each.

    Args:
        videos: frame lists of high-frame-rate video. num_interp: N (7). sample_rate: s (1 for 240 fps data).
        step_size: start stride (official default N + 1). crop: ``(H, W)`` or None. flip / reverse: the augmentations.
        seed: seed of the per-sample draws. source: the root, for messages.
    """

    def __init__(
        self,
        videos: Sequence[Sequence[str | os.PathLike]],
        num_interp: int = 7,
        sample_rate: int = 1,
        step_size: int | None = None,
        crop: tuple[int, int] | None = None,
        flip: bool = True,
        reverse: bool = True,
        seed: int = 0,
        source: str = "<videos>",
    ) -> None:
        super().__init__(videos, num_interp, sample_rate, step_size or num_interp + 1, source)
        self.crop = tuple(crop) if crop is not None else None
        self.flip, self.reverse, self.seed = bool(flip), bool(reverse), int(seed)

    @classmethod
    def from_root(cls, root: str | os.PathLike, **kwargs: Any) -> SupervisedWindows:
        """Samples over every video under ``root``; ``kwargs`` as the constructor."""
        return cls(find_videos(root), source=str(root), **kwargs)

    def indices(self, start: int, k: int) -> list[int]:
        s = self.sample_rate
        return [start, start + s * k, start + s * (self.num_interp + 1)]

    def _generator(self, epoch: int, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(hash((self.seed, epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF)

    def _augment(self, frames: Tensor, g: torch.Generator) -> Tensor:
        if self.crop is not None:
            h, w = frames.shape[-2:]
            ch, cw = self.crop
            if ch > h or cw > w:
                raise ValueError(f"crop {self.crop} is larger than the frames ({h}, {w}) of '{self.source}'")
            y = int(torch.randint(0, h - ch + 1, (1,), generator=g))
            x = int(torch.randint(0, w - cw + 1, (1,), generator=g))
            frames = frames[..., y : y + ch, x : x + cw]
        if self.flip:
            if torch.rand(1, generator=g).item() < 0.5:
                frames = frames.flip(-2)
            if torch.rand(1, generator=g).item() < 0.5:
                frames = frames.flip(-1)
        return frames.contiguous()

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = split_epoch_key(key)
        g = self._generator(epoch, index)
        video, start = self.starts[index]
        k = 1 + int(torch.randint(0, self.num_interp, (1,), generator=g))
        idx = self.indices(start, k)
        if self.reverse and torch.rand(1, generator=g).item() < 0.5:
            idx, k = idx[::-1], self.num_interp + 1 - k
        frames, files = self._read(video, idx)
        size = tuple(frames.shape[-2:])
        return {"frames": self._augment(frames, g), "index": k, "size": size, "files": [str(f) for f in files]}


class CycleTriplets(SupervisedWindows):
    """Cycle-consistency training triplets (official ``CycleVideoInterp``): ``(I_i, I_{i + o}, I_{i + 2 o})`` with
    ``o = max(1, s) + s N`` (``sample_rate`` 0: consecutive frames of low-frame-rate video, the README setting), one
    triplet fewer per video than :class:`SupervisedWindows`; ``index`` is the cycle's k (t = k / (N + 1)), drawn and
    augmented as there (reversal maps k -> N + 1 - k).
    """

    def __init__(
        self,
        videos: Sequence[Sequence[str | os.PathLike]],
        num_interp: int = 7,
        sample_rate: int = 0,
        step_size: int = 1,
        crop: tuple[int, int] | None = None,
        flip: bool = True,
        reverse: bool = True,
        seed: int = 0,
        source: str = "<videos>",
    ) -> None:
        super().__init__(videos, num_interp, sample_rate, step_size, crop, flip, reverse, seed, source)

    def _offset(self) -> int:
        return max(1, self.sample_rate) + self.sample_rate * self.num_interp

    def _count(self, n: int) -> int:
        # The official count (one fewer than VideoInterp's) is right for sample_rate 0 only: with s >= 1 its last
        # triplets would read past the video. Count the triplets that fit, which is the same number for s = 0.
        return max(0, (n - 2 * self._offset() - 1) // self.step_size + 1)

    def indices(self, start: int, k: int) -> list[int]:
        o = self._offset()
        return [start, start + o, start + 2 * o]


# ---------------------------------------------------------------------------------------------- fixed-layout sets
UCF101_LAYOUT = "'<root>/<clip>/frame_00.png, frame_01_gt.png, frame_02.png' (the DVF/SuperSloMo UCF101 test set)"
VIMEO_LAYOUT = (
    "'<root>/sequences/<5-digit>/<4-digit>/im1.png, im2.png, im3.png' with '<root>/tri_<split>list.txt' listing "
    "'<5-digit>/<4-digit>' per line"
)
MIDDLEBURY_LAYOUT = (
    "'<root>/other-data/<seq>/frame10.png, frame11.png' with the ground truth at "
    "'<root>/other-gt-interp/<seq>/frame10i11.png'"
)


def ucf101_windows(root: str | os.PathLike) -> EvalWindows:
    """The UCF101 interpolation test set: one folder per clip with exactly ``frame_00.png``,
    ``frame_01_gt.png``, ``frame_02.png`` (natural order puts the ground truth in the middle); N = 1.

    Raises:
        DatasetLayoutError: a clip folder lacks one of the three files or holds other images (which would shift the
            official sampler), naming the folder.
    """
    videos = find_videos(root)
    expected = ["frame_00.png", "frame_01_gt.png", "frame_02.png"]
    for frames in videos:
        names = [f.name for f in frames]
        if names != expected:
            raise DatasetLayoutError(
                f"'{frames[0].parent}' holds {names}, expected exactly {expected}; layout {UCF101_LAYOUT}"
            )
    return EvalWindows(videos, num_interp=1, sample_rate=1, step_size=2, source=str(root))


def vimeo_triplet_windows(root: str | os.PathLike, split: str = "test") -> EvalWindows:
    """Vimeo-90K triplets (not used by the official code): the sequences of ``tri_<split>list.txt``, each
    ``(im1, im2, im3)`` with im2 the ground truth at t = 1/2; N = 1.

    Raises:
        DatasetLayoutError: missing list file, listed sequence or frame, or a malformed line (naming it).
    """
    if split not in ("train", "test"):
        raise ValueError(f"Vimeo-90K split must be 'train' or 'test', got {split!r}")
    root = Path(root).expanduser()
    listing = root / f"tri_{split}list.txt"
    if not listing.is_file():
        raise DatasetLayoutError(f"no list file '{listing}'; expected {VIMEO_LAYOUT}")
    videos = []
    for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not re.fullmatch(r"\d{5}/\d{4}", line):
            raise DatasetLayoutError(f"'{listing}' line {n}: expected '<5-digit>/<4-digit>', got '{line}'")
        folder = root / "sequences" / line
        frames = [folder / f"im{i}.png" for i in (1, 2, 3)]
        missing = [str(f) for f in frames if not f.is_file()]
        if missing:
            raise DatasetLayoutError(f"Vimeo-90K sequence '{line}' lacks {missing}; expected {VIMEO_LAYOUT}")
        videos.append(frames)
    if not videos:
        raise DatasetLayoutError(f"'{listing}' lists no sequence; expected {VIMEO_LAYOUT}")
    return EvalWindows(videos, num_interp=1, sample_rate=1, step_size=2, source=str(root))


def middlebury_windows(root: str | os.PathLike) -> EvalWindows:
    """Middlebury ``other`` sequences with interpolation ground truth: ``(frame10, frame10i11, frame11)``
    for every sequence of ``other-gt-interp``; N = 1.

    Raises:
        DatasetLayoutError: a missing folder or frame (naming it).
    """
    root = Path(root).expanduser()
    gt_root, data_root = root / "other-gt-interp", root / "other-data"
    for folder in (gt_root, data_root):
        if not folder.is_dir():
            raise DatasetLayoutError(f"no folder '{folder}'; expected {MIDDLEBURY_LAYOUT}")
    videos = []
    for seq in sorted((p for p in gt_root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        frames = [data_root / seq.name / "frame10.png", seq / "frame10i11.png", data_root / seq.name / "frame11.png"]
        missing = [str(f) for f in frames if not f.is_file()]
        if missing:
            raise DatasetLayoutError(f"Middlebury sequence '{seq.name}' lacks {missing}; expected {MIDDLEBURY_LAYOUT}")
        videos.append(frames)
    if not videos:
        raise DatasetLayoutError(f"no sequence folder in '{gt_root}'; expected {MIDDLEBURY_LAYOUT}")
    return EvalWindows(videos, num_interp=1, sample_rate=1, step_size=2, source=str(root))


def extract_video_frames(video: str | os.PathLike, out_dir: str | os.PathLike, every: int = 1) -> int:
    """Decode a video file with OpenCV into ``<out_dir>/00000.png, 00001.png, ...``, keeping every ``every``-th
    frame (8 turns 240 fps into 30 fps), so that it reads as a frame folder (Adobe-240fps ships videos).

    Returns:
        the number of frames written.

    Raises:
        DatasetLayoutError: the file is missing or OpenCV cannot decode it.
    """
    import cv2

    video = Path(video).expanduser()
    if not video.is_file():
        raise DatasetLayoutError(f"no video file at '{video}'")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise DatasetLayoutError(f"OpenCV cannot open '{video}' as a video")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    read = written = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if read % every == 0:
                cv2.imwrite(str(out / f"{written:05d}.png"), frame)  # BGR in, BGR out: the PNG has the right colours
                written += 1
            read += 1
    finally:
        cap.release()
    if written == 0:
        raise DatasetLayoutError(f"OpenCV decoded no frame from '{video}'")
    return written


# ---------------------------------------------------------------------------------------------- embedded world
@dataclass(frozen=True)
class SpriteDomain:
    """Statistics of one domain of the embedded sprite videos.

    Attributes:
        sprite_speed: range of a sprite's speed in pixels per high-frame-rate frame.
        background_speed: range of the background's translation speed (pixels per frame), so that no pixel is
            static and a frame blend cannot fake the metric.
        acceleration: largest |a| of a sprite (pixels per frame^2): non-linear motion.
        texture: ``stripes`` (sinusoid gratings) or ``checker`` (checkerboards) on the sprites.
        texture_frequency: range of the texture frequencies (cycles per pixel).
        background_frequency: range of the background's sinusoid frequencies (cycles per pixel).
        sprites: range of the number of sprites per clip.
        radius: range of the sprite radii in pixels.
    """

    sprite_speed: tuple[float, float]
    background_speed: tuple[float, float]
    acceleration: float
    texture: str
    texture_frequency: tuple[float, float]
    background_frequency: tuple[float, float]
    sprites: tuple[int, int] = (2, 4)
    radius: tuple[float, float] = (5.0, 12.0)


# Source ("Adobe-240fps"): small motion, gratings; target ("SlowFlow"): 2-3x larger motion with acceleration,
# checkerboards, busier background.
SOURCE_DOMAIN = SpriteDomain((0.25, 1.0), (0.2, 0.5), 0.0, "stripes", (0.04, 0.10), (0.015, 0.04))
TARGET_DOMAIN = SpriteDomain((1.5, 3.0), (0.5, 1.0), 0.04, "checker", (0.06, 0.14), (0.03, 0.07))
DOMAINS = {"source": SOURCE_DOMAIN, "target": TARGET_DOMAIN}


def _uniform(g: torch.Generator, lo: float, hi: float, n: int = 1) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _direction(g: torch.Generator, speed: Tensor) -> Tensor:
    angle = _uniform(g, 0.0, 2 * torch.pi)
    return torch.cat((torch.cos(angle), torch.sin(angle))) * speed


def render_sprite_clip(
    domain: SpriteDomain, seed: int, times: Sequence[float], size: int = 64, supersample: int = 4
) -> Tensor:
    """Frames of one procedural clip at arbitrary times (exact at every intermediate time).

    A translating background of summed sinusoids and 2-4 textured sprites (disc, square, triangle; fixed depth order)
    moving as ``p(tau) = p0 + v tau + a tau^2 / 2``, with the texture attached to the sprite; rendered at
    ``supersample`` x the resolution and box-filtered (sub-pixel motion, anti-aliasing). ``tau`` is in
    high-frame-rate frames; a sprite is centred in the canvas at ``tau = 8``.

    Args:
        domain: motion and texture statistics. seed: the clip's seed. times: the ``tau`` of each frame.
        size: canvas side in pixels. supersample: rendering factor.

    Shape:
        returns float32 ``(T, 3, size, size)`` in 0-255.
    """
    g = torch.Generator().manual_seed(int(seed))
    hi = size * supersample
    coords = (torch.arange(hi, dtype=torch.float64) + 0.5) / supersample - 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    # background: 5 oriented sinusoids per channel around a random base colour, translating at one velocity
    n_waves = 5
    freqs = _uniform(g, *domain.background_frequency, n_waves)
    angles = _uniform(g, 0, torch.pi, n_waves)
    phases = _uniform(g, 0, 2 * torch.pi, n_waves)
    amps = _uniform(g, 10, 30, 3 * n_waves).view(3, n_waves)
    base = _uniform(g, 80, 170, 3)
    v_bg = _direction(g, _uniform(g, *domain.background_speed))
    n_sprites = int(torch.randint(domain.sprites[0], domain.sprites[1] + 1, (1,), generator=g))
    sprites = []
    for _ in range(n_sprites):
        sprites.append(
            {
                "shape": int(torch.randint(0, 3, (1,), generator=g)),
                "radius": float(_uniform(g, *domain.radius)),
                "centre": _uniform(g, 0.2 * size, 0.8 * size, 2),
                "velocity": _direction(g, _uniform(g, *domain.sprite_speed)),
                "accel": _uniform(g, -domain.acceleration, domain.acceleration, 2),
                "freq": _uniform(g, *domain.texture_frequency, 2),
                "phase": _uniform(g, 0, 2 * torch.pi, 2),
                "colours": _uniform(g, 20, 235, 6).view(2, 3),
            }
        )
    frames = []
    for tau in times:
        x, y = xx - v_bg[0] * tau, yy - v_bg[1] * tau
        pattern = torch.stack(
            [
                torch.sin(2 * torch.pi * f * (x * torch.cos(a) + y * torch.sin(a)) + p)
                for f, a, p in zip(freqs, angles, phases, strict=True)
            ]
        )
        img = (base.view(3, 1, 1) + torch.einsum("cw,whx->chx", amps, pattern)).clamp(30, 225)
        for s in sprites:
            dt = tau - 8.0
            cx, cy = s["centre"] + s["velocity"] * dt + 0.5 * s["accel"] * dt * dt
            lx, ly = xx - cx, yy - cy
            r = s["radius"]
            if s["shape"] == 0:
                mask = lx**2 + ly**2 <= r**2
            elif s["shape"] == 1:
                mask = (lx.abs() <= 0.8 * r) & (ly.abs() <= 0.8 * r)
            else:  # an upward triangle inside the radius
                mask = (ly <= 0.5 * r) & (ly >= -r + 2 * lx.abs() * 0.9)
            if domain.texture == "stripes":
                w = 0.5 + 0.5 * torch.sin(2 * torch.pi * s["freq"][0] * (lx + 0.7 * ly) + s["phase"][0])
            else:
                w = (
                    torch.sin(2 * torch.pi * s["freq"][0] * lx + s["phase"][0])
                    * torch.sin(2 * torch.pi * s["freq"][1] * ly + s["phase"][1])
                    > 0
                ).double()
            tex = s["colours"][0].view(3, 1, 1) * w + s["colours"][1].view(3, 1, 1) * (1 - w)
            img = torch.where(mask, tex, img)
        frames.append(F.avg_pool2d(img[None], supersample)[0])
    return torch.stack(frames).float()


def _save_png(frame: Tensor, path: Path) -> None:
    from PIL import Image

    arr = frame.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    Image.fromarray(arr).save(path)


# Which frames each part of the world holds: high-frame-rate source clips (tau 0..16), low-frame-rate target video
# (every 8th frame: the unlabelled triplets), and 9-frame evaluation windows (tau 0..8: inputs 0 and 8, 7 targets).
_WORLD_PARTS = {
    ("source", "train"): list(range(17)),
    ("source", "test"): list(range(9)),
    ("target", "train"): [0, 8, 16, 24, 32],
    ("target", "test"): list(range(9)),
    ("target", "val"): list(range(9)),
}


def write_sprite_world(
    root: str | os.PathLike, clips: Mapping[str, int], size: int = 64, seed: int = 0, supersample: int = 4
) -> Path:
    """Write the embedded two-domain sprite world in the frame-folder layout (``<root>/<domain>/<split>/<clip>/``).

    ``source/train``: high-frame-rate clips of 17 frames (supervised pretraining with 7 intermediate targets);
    ``target/train``: low-frame-rate clips of 5 frames (tau 0, 8, ..., 32: 3 unlabelled triplets each);
    ``source/test``, ``target/test`` and ``target/val``: 9-frame windows at high frame rate (inputs tau 0 and 8,
    targets 1..7).

    Args:
        root: output folder. clips: number of clips per part, keys ``source_train``, ``source_test``,
            ``target_train``, ``target_test``, ``target_val`` (missing keys: 0 clips). size: frame side.
            seed: world seed (clip c of part p is seeded from (seed, part, c)). supersample: rendering factor.

    Returns:
        ``root``.
    """
    root = Path(root)
    for part_id, ((domain, split), times) in enumerate(_WORLD_PARTS.items()):
        for c in range(int(clips.get(f"{domain}_{split}", 0))):
            folder = root / domain / split / f"clip_{c:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            clip_seed = (int(seed) * 1_000_003 + part_id * 100_003 + c) & 0x7FFF_FFFF
            frames = render_sprite_clip(DOMAINS[domain], clip_seed, times, size, supersample)
            for i, frame in enumerate(frames):
                _save_png(frame, folder / f"{i:05d}.png")
    return root


def ensure_sprite_world(cache_dir: str | os.PathLike, **params: Any) -> Path:
    """Write the sprite world once per parameter set under ``cache_dir/sprites_<hash>/`` and return its root.

    ``params`` are those of :func:`write_sprite_world` (except ``root``); the world is a pure function of them.
    A finished world holds ``done.json``; a partial one (interrupted) is written again.
    """
    canonical = json.dumps(params, sort_keys=True, default=dict)
    root = Path(cache_dir).expanduser() / f"sprites_{hashlib.sha1(canonical.encode()).hexdigest()[:12]}"
    if not (root / "done.json").is_file():
        tmp = Path(tempfile.mkdtemp(prefix=f"{root.name}.tmp", dir=root.parent if root.parent.exists() else None))
        write_sprite_world(tmp, **params)
        (tmp / "done.json").write_text(canonical)
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, root)
        except OSError:  # another process finished first: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
    return root


class AdaptationPairs(Dataset):
    """Training items of a run: a supervised window of the source domain and an unlabelled cycle triplet of the
    target domain, side by side (``{"source": ..., "target": ...}``); the module uses the first while it pretrains and
    the second while it adapts. Either side may be None (a supervised-only or an adaptation-only run): its key is then
    absent. Length: the longer of the two, the shorter one cycled."""

    def __init__(self, source: Dataset | None, target: Dataset | None) -> None:
        if source is None and target is None:
            raise ValueError("AdaptationPairs needs source windows, target triplets or both; got neither")
        self.parts = {name: ds for name, ds in (("source", source), ("target", target)) if ds is not None}

    @property
    def source(self) -> Dataset | None:
        return self.parts.get("source")

    @property
    def target(self) -> Dataset | None:
        return self.parts.get("target")

    def __len__(self) -> int:
        return max(len(ds) for ds in self.parts.values())  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = split_epoch_key(key)
        return {name: ds[(epoch, index % len(ds))] for name, ds in self.parts.items()}  # type: ignore[arg-type]


def sprite_world_split(
    split: str,
    clips: Mapping[str, int],
    size: int = 64,
    supersample: int = 4,
    num_interp: int = 7,
    source_step: int = 1,
    seed: int = 0,
    cache_dir: str | None = None,
) -> Dataset:
    """One split of the embedded sprite world (written once under ``cache_dir``, default
    ``<tempdir>/nvresearch_vinterp``): ``train`` gives :class:`AdaptationPairs` of source supervised windows
    (``sample_rate`` 1, a window at every ``source_step``-th frame) and target cycle triplets (consecutive
    low-frame-rate frames, ``sample_rate`` 0), with flips and time reversal; ``val`` / ``test`` the target domain's
    evaluation windows (N = ``num_interp``)."""
    cache = cache_dir or os.path.join(tempfile.gettempdir(), "nvresearch_vinterp")
    root = ensure_sprite_world(cache, clips=dict(clips), size=size, seed=seed, supersample=supersample)
    if split == "train":
        source = SupervisedWindows.from_root(
            root / "source" / "train", num_interp=num_interp, step_size=source_step, seed=seed
        )
        target = CycleTriplets(
            find_videos(root / "target" / "train"), num_interp, 0, 1, seed=seed + 1, source=str(root)
        )
        return AdaptationPairs(source, target)
    if split in ("val", "test"):
        return EvalWindows.from_root(root / "target" / split, num_interp=num_interp)
    raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")


# ------------------------------------------------------------------------------------------------ real-data splits
EVAL_FORMATS = ("frames", "ucf101", "vimeo", "middlebury")


def _eval_windows(root: str, eval_format: str, num_interp: int) -> EvalWindows:
    if eval_format == "frames":
        return EvalWindows.from_root(root, num_interp=num_interp)
    if eval_format == "ucf101":
        return ucf101_windows(root)
    if eval_format == "vimeo":
        return vimeo_triplet_windows(root, "test")
    return middlebury_windows(root)


def video_split(
    split: str,
    source_root: str | None = None,
    target_root: str | None = None,
    val_root: str | None = None,
    test_root: str | None = None,
    eval_format: str = "frames",
    num_interp: int = 7,
    eval_num_interp: int = 7,
    source_sample_rate: int = 1,
    source_step: int | None = None,
    target_sample_rate: int = 0,
    crop: Sequence[int] | None = None,
    seed: int = 0,
) -> Dataset:
    """One split of a real-data run in the paper's layouts (official README, ``VideoInterp.py``).

    ``train`` gives :class:`AdaptationPairs` of supervised windows over the high-frame-rate videos under
    ``source_root`` (Adobe-240fps: ``sample_rate`` s, target frame ``i + s k``) and cycle triplets over the
    low-frame-rate videos under ``target_root`` (SlowFlow / Sintel train: consecutive frames with ``sample_rate`` 0,
    no ground truth used), each with the official ``--skip_aug`` augmentation and ``crop``; either root may be null
    (supervised-only or adaptation-only run). ``val`` / ``test`` give the evaluation windows under ``val_root`` /
    ``test_root`` in ``eval_format``: ``frames`` (frame-folder tree, windows of ``eval_num_interp + 2`` frames: 9 for
    SlowFlow / Adobe, 43 for Sintel), ``ucf101``, ``vimeo`` (the root holding ``sequences/`` and the test list) or
    ``middlebury`` (the root holding ``other-data/`` and ``other-gt-interp/``), the last three with N = 1.

    Args:
        split: ``train``, ``val`` or ``test``. source_root / target_root / val_root / test_root: folders or null.
        eval_format: one of ``frames``, ``ucf101``, ``vimeo``, ``middlebury``.
        num_interp: N of the training time grid (7). eval_num_interp: N of the ``frames`` evaluation windows.
        source_sample_rate: s of the supervised windows (1 for 240 fps frames). source_step: start stride of the
            supervised windows (None: the official N + 1). target_sample_rate: s of the cycle triplets (0: the
            README's consecutive low-frame-rate frames).
        crop: training crop ``[H, W]`` (official 384 x 384 with flow_scale 2) or null (whole frames).
        seed: seed of the per-sample draws.

    Raises:
        ValueError: an unknown split or eval format, or the split's root is null (the message names the key).
    """
    if eval_format not in EVAL_FORMATS:
        raise ValueError(f"eval_format must be one of {EVAL_FORMATS}, got {eval_format!r}")
    crop_hw = (int(crop[0]), int(crop[1])) if crop is not None else None
    if split == "train":
        if source_root is None and target_root is None:
            raise ValueError(
                "video_split: a training run needs source_root (supervised) or target_root (cycle); both are null"
            )
        source = None
        if source_root is not None:
            source = SupervisedWindows.from_root(
                source_root,
                num_interp=num_interp,
                sample_rate=source_sample_rate,
                step_size=source_step,
                crop=crop_hw,
                seed=seed,
            )
        target = None
        if target_root is not None:
            target = CycleTriplets(
                find_videos(target_root), num_interp, target_sample_rate, 1, crop_hw, seed=seed + 1, source=target_root
            )
        return AdaptationPairs(source, target)
    if split in ("val", "test"):
        root = val_root if split == "val" else test_root
        if root is None:
            raise ValueError(f"video_split: {split}_root is null, so this data config has no {split!r} split")
        return _eval_windows(root, eval_format, eval_num_interp)
    raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
