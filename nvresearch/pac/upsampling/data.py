"""Data for joint depth and optical-flow upsampling (PAC paper, Sec. 5.1).

- :class:`SyntheticRGBD`: the embedded default dataset, procedural RGB-D scenes generated on the fly.
- :class:`NYUDepthV2`: the labeled NYU Depth v2 subset in its shipped ``.mat`` (HDF5) layout.
- :func:`lowres` and :func:`normalize_lowres`: low-resolution generation and per-sample min-max normalisation.
- :class:`JointUpsamplingDataset`: wraps a base dataset into ``guide`` / ``lowres`` / ``target`` training samples.
- :func:`read_flo` / :func:`write_flo`: the Middlebury ``.flo`` format that MPI Sintel ships.
- :class:`SintelFlow`: MPI Sintel (``MPI-Sintel-complete``) in its shipped layout, with the official train/val split.
- :class:`SyntheticFlow`: the embedded flow default, procedural frames with piecewise-affine flow.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from nvresearch.core.data import DatasetLayoutError, MemoryCache, split_epoch_key, split_seed

__all__ = [
    "FLO_MAGIC",
    "JointUpsamplingDataset",
    "lowres",
    "LOWRES_MODES",
    "normalize_lowres",
    "NYUDepthV2",
    "read_flo",
    "SINTEL_VAL_SCENES",
    "SintelFlow",
    "SyntheticFlow",
    "SyntheticRGBD",
    "write_flo",
]

LOWRES_MODES: tuple[str, ...] = ("center", "last", "bilinear", "bicubic", "nearest")


# ----------------------------------------------------------------------------------------------------------------------
# Embedded procedural dataset
# ----------------------------------------------------------------------------------------------------------------------
class SyntheticRGBD(Dataset):
    """Deterministic procedural RGB-D scenes: the embedded default dataset for joint depth upsampling.

    Each scene is a back wall (a slanted plane), usually a floor that meets it in a crease, and 4-9 occluding
    surfaces (rotated rectangles, ellipses, polygons; planar and slanted, some curved: bulges and cylinders) with
    depths in metres in [1, 10], composited with a z-buffer so nearer surfaces occlude farther ones. Every surface
    has its own colour texture (base colour plus a gradient, smooth waves or painted stripes, and shading); some
    carry painted decals (colour edges without depth edges), and some share the colour of the surface behind them
    (depth edges without colour edges). Sensor-like noise is added to the colour only; depth is clean, like the
    in-painted NYU depth.

    Item ``i`` is drawn from ``numpy.random.default_rng((seed, i))`` alone, so any index is reproducible and
    independent of the others and of the worker that builds it.

    Args:
        num_scenes: Number of scenes (the dataset length).
        height: Image height in pixels.
        width: Image width in pixels.
        seed: Dataset seed; different seeds give different scenes.

    Shape:
        - ``image``: float32 :math:`(3, H, W)` in [0, 1].
        - ``depth``: float32 :math:`(1, H, W)` in metres, in [1, 10].
    """

    def __init__(self, num_scenes: int, height: int = 128, width: int = 128, seed: int = 0) -> None:
        if num_scenes < 0:
            raise ValueError(f"num_scenes must be >= 0, got {num_scenes}")
        if height < 8 or width < 8:
            raise ValueError(f"scenes must be at least 8x8 pixels, got {height}x{width}")
        self.num_scenes = int(num_scenes)
        self.height = int(height)
        self.width = int(width)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.num_scenes

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not -self.num_scenes <= index < self.num_scenes:
            raise IndexError(f"scene index {index} out of range for {self.num_scenes} scenes")
        index = index % self.num_scenes
        image, depth = render_scene(np.random.default_rng((self.seed, index)), self.height, self.width)
        return {"image": torch.from_numpy(image), "depth": torch.from_numpy(depth)}

    @classmethod
    def for_split(
        cls,
        split: str,
        train_size: int = 512,
        val_size: int = 16,
        test_size: int = 64,
        height: int = 128,
        width: int = 128,
        seed: int = 0,
        cache: bool = True,
    ) -> Dataset:
        """The scenes of one split (a data config's dataset component).

        Args:
            split: ``train``, ``val`` or ``test``; each split draws from its own seed (``seed * 10 + 0/1/2``).
            train_size / val_size / test_size: scenes per split.
            height / width: scene size in pixels.
            seed: the data seed.
            cache: keep the scenes in memory once rendered (:class:`~nvresearch.core.data.MemoryCache`), so that
                each is rendered once instead of once per epoch.
        """
        sizes = {"train": train_size, "val": val_size, "test": test_size}
        return _synthetic_split(cls, split, sizes, height, width, seed, cache)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A random, mostly muted RGB colour (indoor scenes are rarely saturated)."""
    grey = rng.uniform(0.15, 0.85)
    tint = rng.normal(0.0, 0.18, size=3)
    return np.clip(grey + tint, 0.03, 0.97)


def _appearance(rng: np.random.Generator) -> dict[str, Any]:
    """Parameters of one surface texture; applied later on the pixels that the surface owns."""
    kind = rng.choice(["flat", "gradient", "waves", "stripes"], p=[0.25, 0.35, 0.2, 0.2])
    angle = rng.uniform(0.0, np.pi)
    return {
        "base": _random_colour(rng),
        "second": _random_colour(rng),
        "kind": str(kind),
        "direction": np.array([np.cos(angle), np.sin(angle)]),
        "frequency": rng.uniform(4.0, 14.0),  # periods per image side
        "phase": rng.uniform(0.0, 2 * np.pi),
        "amplitude": rng.uniform(0.05, 0.2) if kind in ("gradient", "waves") else rng.uniform(0.3, 0.7),
        "duty": rng.uniform(0.3, 0.7),
    }


def _texture(app: dict[str, Any], u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Evaluate a texture on coordinate arrays ``u``, ``v`` of shape ``(H, W)``; returns ``(3, H, W)``."""
    base = app["base"].astype(np.float32)[:, None, None]
    if app["kind"] == "flat":
        return np.broadcast_to(base, (3, *u.shape))
    t = np.float32(app["direction"][0]) * u + np.float32(app["direction"][1]) * v
    if app["kind"] == "gradient":
        mix = np.float32(2.0 * app["amplitude"]) * (t - np.float32(0.5))
    elif app["kind"] == "waves":
        angle = np.float32(2 * np.pi * app["frequency"]) * t + np.float32(app["phase"])
        mix = np.float32(app["amplitude"]) * np.sin(angle)
    else:  # painted stripes: hard colour edges on one continuous surface
        frac = (np.float32(app["frequency"]) * t + np.float32(app["phase"] / (2 * np.pi))) % np.float32(1.0)
        mix = np.float32(app["amplitude"]) * (frac < app["duty"])
    return base + mix[None] * (app["second"].astype(np.float32)[:, None, None] - base)


def _shape_mask(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray, float]:
    """Mask of one random shape, its normalised radial coordinate (0 at the centre, 1 at the rim), its centre row."""
    cu, cv = rng.uniform(-0.1, 1.1), rng.uniform(-0.1, 1.1)
    a, b = rng.uniform(0.06, 0.35), rng.uniform(0.06, 0.35)
    theta = rng.uniform(0.0, np.pi)
    du, dv = u - np.float32(cu), v - np.float32(cv)
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    ru = (c * du + s * dv) * np.float32(1.0 / a)
    rv = (c * dv - s * du) * np.float32(1.0 / b)
    if kind == "ellipse":
        rho = np.sqrt(ru * ru + rv * rv)
        return rho < 1.0, rho, cv
    if kind == "rectangle":
        return (np.abs(ru) < 1.0) & (np.abs(rv) < 1.0), np.abs(ru), cv
    # polygon: 3-7 vertices on a jittered circle, point-in-polygon by the even-odd rule over its edges
    n = int(rng.integers(3, 8))
    angles = np.sort(rng.uniform(0.0, 2 * np.pi, size=n))
    radii = rng.uniform(0.5, 1.0, size=n)
    pu, pv = radii * np.cos(angles), radii * np.sin(angles)
    inside = np.zeros(u.shape, dtype=bool)
    for k in range(n):
        u0, v0, u1, v1 = pu[k], pv[k], pu[(k + 1) % n], pv[(k + 1) % n]
        crosses = (rv < v0) != (rv < v1)
        at = np.float32(u0) + (rv - np.float32(v0)) * np.float32((u1 - u0) / (v1 - v0 + 1e-12))
        inside ^= crosses & (ru < at)
    return inside, np.sqrt(ru * ru + rv * rv), cv


def render_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one scene of :class:`SyntheticRGBD`.

    Returns:
        ``(image, depth)``: float32 arrays of shapes ``(3, H, W)`` in [0, 1] and ``(1, H, W)`` in metres.
    """
    side = float(max(height, width))
    # Coordinates in units of the longer image side, so scenes look alike at any resolution.
    ys = ((np.arange(height, dtype=np.float32) + 0.5) / side)[:, None]
    xs = ((np.arange(width, dtype=np.float32) + 0.5) / side)[None, :]
    u, v = np.broadcast_to(xs, (height, width)), np.broadcast_to(ys, (height, width))
    f32 = np.float32

    # Back wall: a gently slanted plane far away. ``owner`` records which surface each pixel shows (z-buffer).
    depth_map = (
        f32(rng.uniform(5.0, 9.5))
        + f32(rng.uniform(-1.5, 1.5)) * (u - f32(0.5))
        + f32(rng.uniform(-1.0, 1.0)) * (v - f32(0.5))
    )
    owner = np.zeros((height, width), dtype=np.int16)
    appearances: list[dict[str, Any]] = [_appearance(rng)]
    shadings: list[Any] = [f32(1.0)]

    def add(mask: np.ndarray, depth: np.ndarray, app: dict[str, Any], shading: Any) -> None:
        closer = mask & (depth < depth_map)
        np.copyto(depth_map, depth, where=closer)
        owner[closer] = len(appearances)
        appearances.append(app)
        shadings.append(shading)

    # Floor seen by a roughly level camera: depth ~ 1 / (v - horizon); it meets the wall in a crease, a colour edge
    # without a depth discontinuity.
    floor_scale, horizon = 0.0, 2.0
    if rng.random() < 0.6:
        floor_scale, horizon = rng.uniform(0.4, 1.0), rng.uniform(0.25, 0.6) * height / side
        below = v > f32(horizon + 1e-3)
        floor = f32(floor_scale) / np.maximum(v - f32(horizon), f32(1e-3))
        add(below, floor, _appearance(rng), f32(rng.uniform(0.75, 0.95)))

    for _ in range(int(rng.integers(4, 10))):
        kind = str(rng.choice(["rectangle", "ellipse", "polygon"], p=[0.4, 0.3, 0.3]))
        mask, rho, centre_row = _shape_mask(rng, u, v, kind)
        # Objects seen against the floor mostly stand in front of it: keep their centre nearer than the floor there.
        far = 8.0 if centre_row <= horizon + 0.05 else float(np.clip(floor_scale / (centre_row - horizon), 1.5, 8.0))
        depth = (
            f32(rng.uniform(1.2, far))
            + f32(rng.uniform(-1.0, 1.0)) * (u - f32(0.5))
            + f32(rng.uniform(-1.0, 1.0)) * (v - f32(0.5))
        )
        shading: Any = f32(1.0)
        if kind != "polygon" and rng.random() < 0.3:
            # Curved surface: a bulge (ellipse) or a cylinder (rectangle) towards the camera, shaded by its slope.
            cap = np.sqrt(np.clip(f32(1.0) - rho * rho, f32(0.0), f32(1.0)))
            depth = depth - f32(rng.uniform(0.2, 0.8)) * cap
            shading = f32(0.75) + f32(0.25) * cap
        if rng.random() < 0.15:
            # Same paint as an earlier surface: a depth edge without a colour edge.
            app = appearances[int(rng.integers(len(appearances)))]
        else:
            app = _appearance(rng)
        add(mask, depth, app, shading)

    image = np.empty((3, height, width), dtype=np.float32)
    for k, (app, shading) in enumerate(zip(appearances, shadings, strict=True)):
        sel = owner == k
        if sel.any():
            np.copyto(image, _texture(app, u, v) * shading, where=sel[None])

    # Painted decals (posters, labels) on whichever surface lies under their centre: colour edges, no depth edge.
    for _ in range(int(rng.integers(0, 4))):
        mask, _, _ = _shape_mask(rng, u, v, str(rng.choice(["rectangle", "ellipse"])))
        row, col = int(rng.uniform(0.1, 0.9) * height), int(rng.uniform(0.1, 0.9) * width)
        host = owner[min(row, height - 1), min(col, width - 1)]
        sel = mask & (owner == host)
        if sel.any():
            np.copyto(image, _texture(_appearance(rng), u, v), where=sel[None])

    # Smooth illumination falloff plus sensor noise, on colour only.
    lu, lv = f32(rng.uniform(0, 1)), f32(rng.uniform(0, 1))
    light = f32(1.0) - f32(rng.uniform(0.0, 0.25)) * ((u - lu) ** 2 + (v - lv) ** 2)
    image *= light[None]
    image += f32(rng.uniform(0.005, 0.02)) * rng.standard_normal(size=image.shape, dtype=np.float32)
    np.clip(image, 0.0, 1.0, out=image)
    return image, np.clip(depth_map, 1.0, 10.0)[None]


# ----------------------------------------------------------------------------------------------------------------------
# NYU Depth v2 (labeled subset), as the official task_jointUpsampling/datasets.py reads it
# ----------------------------------------------------------------------------------------------------------------------
NYU_FILE = "nyu_depth_v2_labeled.mat"
NYU_NUM_IMAGES = 1449
NYU_NUM_TRAIN = 1000
NYU_URL = "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
_NYU_LAYOUT = (
    f"Expected layout: <root>/{NYU_FILE} (MATLAB v7.3 / HDF5, about 2.8 GB, md5 a3a66613390119e6d46827a7aaa3c132, "
    f"from {NYU_URL}) holding dataset 'images' of shape ({NYU_NUM_IMAGES}, 3, 640, 480) uint8 and dataset 'depths' "
    f"of shape ({NYU_NUM_IMAGES}, 640, 480) float32 in metres (stored width-major; rows and columns are swapped on "
    "load)."
)


class NYUDepthV2(Dataset):
    """The labeled NYU Depth v2 subset read from its shipped ``nyu_depth_v2_labeled.mat`` (official ``datasets.py``).

    Splits follow the reference: ``train`` = images 0-999 minus the last ``round(val_ratio * 1000)`` (those form
    ``val``), ``test`` = images 1000-1448 (449 images). The HDF5 file is opened lazily in each process that reads it,
    so the dataset pickles into DataLoader workers.

    Args:
        root: Folder holding ``nyu_depth_v2_labeled.mat``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        val_ratio: Fraction of the 1000 training images held out as ``val``.

    Shape:
        - ``image``: float32 :math:`(3, 480, 640)` in [0, 1].
        - ``depth``: float32 :math:`(1, 480, 640)` in metres.

    Raises:
        DatasetLayoutError: A ``FileNotFoundError``, if the file is missing (the message gives the expected layout
            and download URL).
        ValueError: If the file lacks a dataset, has the wrong shapes, or too few images.
    """

    @classmethod
    def for_split(cls, split: str, root: str | os.PathLike[str], val_ratio: float = 0.0) -> NYUDepthV2:
        """One split (a data config's dataset component); ``val`` needs ``val_ratio > 0``."""
        if split == "val" and val_ratio <= 0:
            raise ValueError("NYU validation needs val_ratio > 0 (a held-out part of the 1000 training images)")
        return cls(root, split=split, val_ratio=val_ratio)

    def __init__(self, root: str | os.PathLike[str], split: str = "train", val_ratio: float = 0.0) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        if not 0.0 <= val_ratio < 1.0:
            raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
        self.path = os.path.join(os.fspath(root), NYU_FILE)
        self.split = split
        self._check_file()
        n_val = int(round(val_ratio * NYU_NUM_TRAIN))
        if split == "train":
            self.indices = list(range(NYU_NUM_TRAIN - n_val))
        elif split == "val":
            self.indices = list(range(NYU_NUM_TRAIN - n_val, NYU_NUM_TRAIN))
        else:
            self.indices = list(range(NYU_NUM_TRAIN, NYU_NUM_IMAGES))
        self._file: Any = None  # h5py.File, opened on first access in the process that reads

    def _check_file(self) -> None:
        if not os.path.isfile(self.path):
            raise DatasetLayoutError(f"NYU Depth v2 file not found: {self.path}. {_NYU_LAYOUT}")
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                problems = []
                for name in ("images", "depths"):
                    if name not in f or not isinstance(f[name], h5py.Dataset):
                        problems.append(f"missing dataset '{name}'")
                if not problems:
                    images, depths = f["images"].shape, f["depths"].shape
                    if len(images) != 4 or images[1] != 3:
                        problems.append(f"'images' has shape {images}, expected (N, 3, W, H)")
                    if len(depths) != 3:
                        problems.append(f"'depths' has shape {depths}, expected (N, W, H)")
                    if not problems and (images[0] != depths[0] or images[2:] != depths[1:]):
                        problems.append(f"'images' {images} and 'depths' {depths} disagree")
                    if not problems and images[0] < NYU_NUM_IMAGES:
                        problems.append(f"only {images[0]} images, the fixed splits need {NYU_NUM_IMAGES}")
        except OSError as err:  # not an HDF5 file (e.g. an old MATLAB v5 .mat or a truncated download)
            raise ValueError(f"cannot read {self.path} as HDF5 ({err}). {_NYU_LAYOUT}") from err
        if problems:
            raise ValueError(f"malformed NYU Depth v2 file {self.path}: {'; '.join(problems)}. {_NYU_LAYOUT}")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # an open h5py handle cannot be pickled into workers
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if self._file is None:
            import h5py

            self._file = h5py.File(self.path, "r")
        i = self.indices[index]
        image = np.asarray(self._file["images"][i]).transpose(0, 2, 1)  # stored (3, W, H)
        depth = np.asarray(self._file["depths"][i], dtype=np.float32).T  # stored (W, H)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0),
            "depth": torch.from_numpy(np.ascontiguousarray(depth))[None],
        }


# ----------------------------------------------------------------------------------------------------------------------
# Low-resolution generation and normalisation, as the official task_jointUpsampling/datasets.py
# ----------------------------------------------------------------------------------------------------------------------
def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with reflect padding, the anti-aliasing prefilter that skimage uses."""
    radius = max(1, int(math.ceil(4 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    y = F.pad(y, (radius, radius, 0, 0), mode="reflect" if w > radius else "replicate")
    y = F.conv2d(y, g.view(1, 1, 1, -1))
    y = F.pad(y, (0, 0, radius, radius), mode="reflect" if h > radius else "replicate")
    y = F.conv2d(y, g.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


def lowres(hr: Tensor, factor: int, mode: str = "center") -> Tensor:
    """Make the low-resolution input from a high-resolution map (official ``get_lowres``).

    - ``center`` (the NYU protocol): point subsampling, every ``factor``-th pixel from offset ``(factor - 1) // 2``.
    - ``last``: point subsampling from offset ``factor - 1``.
    - ``bilinear`` / ``bicubic`` (the Sintel protocol uses ``bilinear``): anti-aliased resizing with
      ``F.interpolate(..., antialias=True)``. The reference uses skimage (Gaussian prefilter, then interpolation), so
      values differ slightly; the geometry (pixel-centre alignment) is the same.
    - ``nearest``: a Gaussian prefilter with skimage's default sigma ``(factor - 1) / 2``, then the sample nearest
      each low-resolution pixel centre (offset ``factor // 2``).

    If the size is not a multiple of ``factor`` the map is first resized (anti-aliased bilinear) to
    ``ceil(H / factor) * factor`` by ``ceil(W / factor) * factor``, as the reference does.

    Args:
        hr: High-resolution map.
        factor: Integer downsampling factor (>= 1).
        mode: One of :data:`LOWRES_MODES`.

    Shape:
        - hr: :math:`(C, H, W)` or :math:`(B, C, H, W)`.
        - output: :math:`(C, \\lceil H/f \\rceil, \\lceil W/f \\rceil)` or with the batch dimension.
    """
    if mode not in LOWRES_MODES:
        raise ValueError(f"unknown lowres mode {mode!r}; expected one of {LOWRES_MODES}")
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    if hr.dim() not in (3, 4):
        raise ValueError(f"expected a (C, H, W) or (B, C, H, W) tensor, got shape {tuple(hr.shape)}")
    factor = int(factor)
    unbatched = hr.dim() == 3
    x = hr[None] if unbatched else hr
    if not x.is_floating_point():
        x = x.float()
    h, w = x.shape[-2:]
    hh, ww = math.ceil(h / factor) * factor, math.ceil(w / factor) * factor
    if (hh, ww) != (h, w):
        x = F.interpolate(x, size=(hh, ww), mode="bilinear", align_corners=False, antialias=True)
    if mode in ("center", "last"):
        offset = (factor - 1) // 2 if mode == "center" else factor - 1
        out = x[..., offset::factor, offset::factor]
    elif mode == "nearest":
        blurred = _gaussian_blur(x, (factor - 1) / 2) if factor > 1 else x
        out = blurred[..., factor // 2 :: factor, factor // 2 :: factor]
    else:
        out = F.interpolate(x, size=(hh // factor, ww // factor), mode=mode, align_corners=False, antialias=True)
    out = out.contiguous()
    return out[0] if unbatched else out


def normalize_lowres(lr: Tensor, flat_eps: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """Min-max normalise a low-resolution map per sample and channel to [0, 1], as the reference.

    A flat patch (range below ``flat_eps``) gets its range widened by 0.5 on each side, so it maps to 0.5 with
    scale ~1 instead of dividing by zero.

    Args:
        lr: Low-resolution map in data units.
        flat_eps: Ranges below this count as flat.

    Returns:
        ``(normalised, lr_min, lr_scale)`` with ``lr = normalised * lr_scale + lr_min``.

    Shape:
        - lr: :math:`(C, h, w)` or :math:`(B, C, h, w)`.
        - lr_min, lr_scale: :math:`(C, 1, 1)` or :math:`(B, C, 1, 1)`.
    """
    lo = lr.amin(dim=(-2, -1), keepdim=True)
    hi = lr.amax(dim=(-2, -1), keepdim=True)
    flat = (hi - lo) < flat_eps
    lo = torch.where(flat, lo - 0.5, lo)
    hi = torch.where(flat, hi + 0.5, hi)
    scale = hi - lo
    return (lr - lo) / scale, lo, scale


# ----------------------------------------------------------------------------------------------------------------------
# Training/evaluation samples
# ----------------------------------------------------------------------------------------------------------------------
class JointUpsamplingDataset(Dataset):
    """Turn an RGB-D dataset into joint-upsampling samples, as the official ``datasets.py``.

    Training: a random ``crop`` x ``crop`` window and a horizontal flip with p = 0.5, drawn from
    ``numpy.random.default_rng((seed, epoch, index))`` so that a run is reproducible and each epoch differs. The epoch
    comes from the key when it is an ``(epoch, index)`` pair (as :class:`nvresearch.core.data.EpochSampler` yields),
    else from :meth:`set_epoch`. Evaluation: a centre crop to ``crop`` if given, else a centre crop to the largest
    multiple of ``factor``. The low-resolution input is then made from the (augmented) target with :func:`lowres` and
    min-max normalised per channel with :func:`normalize_lowres`.

    Args:
        base: Dataset returning dicts with ``image`` :math:`(3, H, W)` in [0, 1] and ``target_key`` :math:`(C, H, W)`.
        factor: Upsampling factor.
        crop: Crop size (a multiple of ``factor``); required for training.
        train: Random crops and flips if True, deterministic centre crops otherwise.
        lowres_mode: See :func:`lowres` (``center`` for NYU, ``bilinear`` for Sintel).
        seed: Seed of the augmentation.
        target_key: Key of the target map in the base samples (``depth``, or ``flow`` for optical flow).
        eval_full_size: Evaluation keeps the whole image even if its size is not a multiple of ``factor`` (the
            Sintel protocol: the low-resolution input is made from the whole map, and the model's output is resized
            back, see :func:`nvresearch.pac.upsampling.inference.upsample`).

    Shape:
        - ``guide``: float32 :math:`(3, H, W)` in [0, 1].
        - ``lowres``: float32 :math:`(C, H/f, W/f)`, normalised to [0, 1].
        - ``target``: float32 :math:`(C, H, W)` in data units (metres for depth).
        - ``lr_min``, ``lr_scale``: float32 :math:`(C, 1, 1)`; ``lowres * lr_scale + lr_min`` gives data units.
    """

    def __init__(
        self,
        base: Dataset,
        factor: int,
        crop: int | None = None,
        train: bool = False,
        lowres_mode: str = "center",
        seed: int = 0,
        target_key: str = "depth",
        eval_full_size: bool = False,
    ) -> None:
        if int(factor) != factor or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        if lowres_mode not in LOWRES_MODES:
            raise ValueError(f"unknown lowres mode {lowres_mode!r}; expected one of {LOWRES_MODES}")
        if crop is not None and (crop <= 0 or crop % factor != 0):
            raise ValueError(f"crop must be a positive multiple of the factor {factor}, got {crop}")
        if train and crop is None:
            raise ValueError("training needs a crop size (a multiple of the factor)")
        self.base = base
        self.factor = int(factor)
        self.crop = crop
        self.train = train
        self.lowres_mode = lowres_mode
        self.seed = int(seed)
        self.target_key = target_key
        self.eval_full_size = eval_full_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops and flips integer keys draw (``(epoch, index)`` keys carry their own)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor]:
        # ``(epoch, index)`` keys come from nvresearch.core.data.EpochSampler; plain indices use set_epoch's epoch.
        epoch, index = split_epoch_key(key, default_epoch=self.epoch)
        sample: Mapping[str, Tensor] = self.base[index]
        guide, target = sample["image"], sample[self.target_key]
        h, w = target.shape[-2:]
        if guide.shape[-2:] != (h, w):
            raise ValueError(f"sample {index}: image {tuple(guide.shape)} and target {tuple(target.shape)} differ")
        if self.train:
            assert self.crop is not None
            if self.crop > min(h, w):
                raise ValueError(f"sample {index}: crop {self.crop} larger than the {h}x{w} image")
            rng = np.random.default_rng((self.seed, epoch, index))
            top = int(rng.integers(0, h - self.crop + 1))
            left = int(rng.integers(0, w - self.crop + 1))
            ch, cw = self.crop, self.crop
            flip = bool(rng.random() < 0.5)
        else:
            f = self.factor
            if self.crop:
                ch, cw = self.crop, self.crop
            else:
                ch, cw = (h, w) if self.eval_full_size else (h // f * f, w // f * f)
            if ch > h or cw > w:
                raise ValueError(f"sample {index}: crop {self.crop} larger than the {h}x{w} image")
            top, left, flip = (h - ch) // 2, (w - cw) // 2, False
        guide = guide[:, top : top + ch, left : left + cw]
        target = target[:, top : top + ch, left : left + cw]
        if flip:
            guide, target = guide.flip(-1), target.flip(-1)
        lr, lr_min, lr_scale = normalize_lowres(lowres(target.float(), self.factor, self.lowres_mode))
        return {
            "guide": guide.float().contiguous(),
            "lowres": lr.float(),
            "target": target.float().contiguous(),
            "lr_min": lr_min.float(),
            "lr_scale": lr_scale.float(),
        }


# ----------------------------------------------------------------------------------------------------------------------
# Joint optical-flow upsampling: the .flo format, MPI Sintel, and the embedded flow scenes
# ----------------------------------------------------------------------------------------------------------------------
FLO_MAGIC = 202021.25
"""The float32 tag at the start of every ``.flo`` file (the bytes read ``PIEH``)."""


def read_flo(path: str | os.PathLike[str]) -> Tensor:
    """Read a Middlebury ``.flo`` file: float32 magic 202021.25, int32 width, int32 height, then ``H*W*2`` float32
    ``(u, v)`` interleaved, little-endian (official ``tools/flowlib.py``).

    Shape:
        - output: float32 :math:`(2, H, W)`, channels ``(u, v)`` in pixels.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such .flo file: {path}")
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12:
            raise ValueError(f"{path}: truncated .flo header ({len(header)} of 12 bytes)")
        magic = np.frombuffer(header[:4], dtype="<f4")[0]
        if magic != np.float32(FLO_MAGIC):
            raise ValueError(f"{path}: not a .flo file (magic {magic}, expected {FLO_MAGIC})")
        w, h = (int(v) for v in np.frombuffer(header[4:], dtype="<i4"))
        if w <= 0 or h <= 0 or w * h > 1 << 28:
            raise ValueError(f"{path}: invalid .flo size {w}x{h}")
        data = np.frombuffer(f.read(), dtype="<f4")
    if data.size != 2 * w * h:
        raise ValueError(f"{path}: expected {2 * w * h} flow values for {w}x{h}, found {data.size}")
    return torch.from_numpy(data.reshape(h, w, 2).transpose(2, 0, 1).astype(np.float32))


def write_flo(path: str | os.PathLike[str], flow: Tensor) -> None:
    """Write a flow field as a ``.flo`` file (the inverse of :func:`read_flo`).

    Shape:
        - flow: :math:`(2, H, W)`.
    """
    if flow.dim() != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must have shape (2, H, W), got {tuple(flow.shape)}")
    _, h, w = flow.shape
    data = flow.detach().cpu().float().numpy().transpose(1, 2, 0).astype("<f4")
    with open(os.fspath(path), "wb") as f:
        f.write(np.array([FLO_MAGIC], dtype="<f4").tobytes())
        f.write(np.array([w, h], dtype="<i4").tobytes())
        f.write(np.ascontiguousarray(data).tobytes())


# ----------------------------------------------------------------------------------------------------------------------
# MPI Sintel, as the official task_jointUpsampling/datasets.py reads it
# ----------------------------------------------------------------------------------------------------------------------
SINTEL_VAL_SCENES: dict[str, int | None] = {
    "ambush_6": None,
    "bamboo_2": 25,
    "cave_4": 25,
    "market_6": None,
    "temple_2": 25,
}
"""The reference's validation pairs per scene: all of them (None) or the last N (133 pairs in all)."""
_SINTEL_PASSES = ("clean", "final", "albedo")
_SINTEL_LAYOUT = (
    "Expected layout: <root>/training/{clean,final,albedo}/<scene>/frame_XXXX.png and "
    "<root>/training/flow/<scene>/frame_XXXX.flo (MPI-Sintel-complete.zip extracted, md5 "
    "2d2836c2c6b4fb6c9d2d2d58189eb014), one .flo per frame except each scene's last"
)


class SintelFlow(Dataset):
    """MPI Sintel training set, first frame of each pair with its forward flow (official ``datasets.py``).

    Scenes are sorted by name; per scene the first frame of each pair is the sorted frame list minus its last
    frame, paired with the sorted ``.flo`` files (1041 pairs). The split is the reference's: ``val`` = all of
    ``ambush_6`` and ``market_6`` plus the last 25 pairs of ``bamboo_2``, ``cave_4`` and ``temple_2`` (133);
    ``train`` = the rest (908); ``all`` = both. ``split_file`` (the reference's ``Sintel_train_val.txt``: one line
    per pair, ``1`` = train, ``2`` = val) overrides that rule.

    Args:
        root: The extracted ``MPI-Sintel-complete`` folder.
        split: ``train``, ``val`` or ``all``.
        pass_name: ``clean`` (the paper's ``Sintel``), ``final`` or ``albedo``.
        split_file: Optional train/val list.

    Shape:
        - ``image``: float32 :math:`(3, 436, 1024)` RGB in [0, 1].
        - ``flow``: float32 :math:`(2, 436, 1024)` in pixels.
    """

    @classmethod
    def for_split(
        cls,
        split: str,
        root: str | os.PathLike[str],
        pass_name: str = "clean",
        split_file: str | os.PathLike[str] | None = None,
    ) -> SintelFlow:
        """One split (a data config's dataset component): the reference validates and tests on the same 133 pairs,
        so ``val`` and ``test`` both read ``val``."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return cls(root, "train" if split == "train" else "val", pass_name, split_file)

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        pass_name: str = "clean",
        split_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        if pass_name not in _SINTEL_PASSES:
            raise ValueError(f"pass_name must be one of {_SINTEL_PASSES}, got {pass_name!r}")
        self.root = os.fspath(root)
        image_dir = os.path.join(self.root, "training", pass_name)
        flow_dir = os.path.join(self.root, "training", "flow")
        for d in (image_dir, flow_dir):
            if not os.path.isdir(d):
                raise DatasetLayoutError(f"Sintel folder not found: {d}. {_SINTEL_LAYOUT}")
        pairs: list[tuple[str, str, str, int, int]] = []  # image, flow, scene, position, scene length
        for scene in sorted(os.listdir(flow_dir)):
            frames = (
                sorted(f for f in os.listdir(os.path.join(image_dir, scene)) if f.endswith(".png"))
                if (os.path.isdir(os.path.join(image_dir, scene)))
                else []
            )
            flows = sorted(f for f in os.listdir(os.path.join(flow_dir, scene)) if f.endswith(".flo"))
            if len(frames) != len(flows) + 1:
                raise DatasetLayoutError(
                    f"scene {scene!r}: {len(frames)} frames in {os.path.join(image_dir, scene)} but {len(flows)} "
                    f"flows in {os.path.join(flow_dir, scene)}; expected one flow per frame except the last. "
                    f"{_SINTEL_LAYOUT}"
                )
            for k, (frame, flo) in enumerate(zip(frames[:-1], flows)):
                pairs.append(
                    (os.path.join(image_dir, scene, frame), os.path.join(flow_dir, scene, flo), scene, k, len(flows))
                )
        if not pairs:
            raise DatasetLayoutError(f"no flow files under {flow_dir}. {_SINTEL_LAYOUT}")
        if split_file is not None:
            with open(os.fspath(split_file)) as f:
                tags = [line.strip() for line in f if line.strip()]
            if len(tags) != len(pairs):
                raise ValueError(f"{os.fspath(split_file)} has {len(tags)} lines for {len(pairs)} Sintel pairs")
            is_val = [t == "2" for t in tags]
        else:
            is_val = []
            for _, _, scene, k, n in pairs:
                last = SINTEL_VAL_SCENES.get(scene, 0)
                is_val.append(scene in SINTEL_VAL_SCENES and (last is None or k >= n - last))
        self.items = [p[:2] for p, v in zip(pairs, is_val) if split == "all" or v == (split == "val")]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        import cv2

        image_path, flow_path = self.items[index]
        bgr = cv2.imread(image_path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image {image_path}")
        flow = read_flo(flow_path)
        if tuple(flow.shape[-2:]) != bgr.shape[:2]:
            raise ValueError(f"{flow_path}: flow {tuple(flow.shape[-2:])} and image {bgr.shape[:2]} sizes differ")
        rgb = np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1))
        return {"image": torch.from_numpy(rgb).float().div_(255.0), "flow": flow}


# ----------------------------------------------------------------------------------------------------------------------
# Embedded procedural flow
# ----------------------------------------------------------------------------------------------------------------------
class SyntheticFlow(Dataset):
    """Deterministic procedural frames with piecewise-affine optical flow: the embedded flow task.

    A textured background moves with a small affine motion (camera pan and zoom); 3-7 occluding objects (ellipses,
    rectangles, diamonds), each with its own colour texture, translate (about 6 pixels, Gaussian), rotate and scale.
    The flow of each pixel is its surface's affine motion, so flow discontinuities coincide with colour edges
    (as on Sintel's object boundaries), while textures inside a surface make colour edges without flow edges.

    Args:
        num_scenes: Dataset length.
        height: Image height.
        width: Image width.
        seed: Seed; item ``i`` uses ``numpy.random.default_rng((seed, i))``.

    Shape:
        - ``image``: float32 :math:`(3, H, W)` in [0, 1].
        - ``flow``: float32 :math:`(2, H, W)` in pixels, ``(u, v)``.
    """

    def __init__(self, num_scenes: int, height: int = 96, width: int = 128, seed: int = 0) -> None:
        if num_scenes < 0:
            raise ValueError(f"num_scenes must be >= 0, got {num_scenes}")
        if height < 8 or width < 8:
            raise ValueError(f"scenes must be at least 8x8 pixels, got {height}x{width}")
        self.num_scenes, self.height, self.width, self.seed = int(num_scenes), int(height), int(width), int(seed)

    def __len__(self) -> int:
        return self.num_scenes

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not -self.num_scenes <= index < self.num_scenes:
            raise IndexError(f"scene index {index} out of range for {self.num_scenes} scenes")
        index %= self.num_scenes
        image, flow = _render_flow_scene(np.random.default_rng((self.seed, index)), self.height, self.width)
        return {"image": torch.from_numpy(image), "flow": torch.from_numpy(flow)}

    @classmethod
    def for_split(
        cls,
        split: str,
        train_size: int = 256,
        val_size: int = 16,
        test_size: int = 64,
        height: int = 96,
        width: int = 128,
        seed: int = 0,
        cache: bool = True,
    ) -> Dataset:
        """The scenes of one split (a data config's dataset component).

        Args:
            split: ``train``, ``val`` or ``test``; each split draws from its own seed (``seed * 10 + 0/1/2``).
            train_size / val_size / test_size: scenes per split.
            height / width: scene size in pixels.
            seed: the data seed.
            cache: keep the scenes in memory once rendered (:class:`~nvresearch.core.data.MemoryCache`), so that
                each is rendered once instead of once per epoch.
        """
        sizes = {"train": train_size, "val": val_size, "test": test_size}
        return _synthetic_split(cls, split, sizes, height, width, seed, cache)


def _affine_flow(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, big: bool
) -> np.ndarray:
    """Flow of a random similarity motion about ``(cy, cx)``: translation, rotation and scaling."""
    t = rng.normal(0, 6.0, size=2) if big else rng.normal(0, 1.0, size=2)
    angle = rng.normal(0, 0.03 if big else 0.005)
    scale = rng.normal(0, 0.03 if big else 0.005)
    dy, dx = yy - np.float32(cy), xx - np.float32(cx)
    c, s = np.cos(angle) * (1 + scale), np.sin(angle) * (1 + scale)
    u = np.float32(t[0]) + np.float32(c - 1) * dx - np.float32(s) * dy
    v = np.float32(t[1]) + np.float32(s) * dx + np.float32(c - 1) * dy
    return np.stack([u, v]).astype(np.float32)


def _flow_texture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: float) -> np.ndarray:
    base = np.clip(rng.uniform(0.1, 0.9) + rng.normal(0, 0.2, size=3), 0.02, 0.98).astype(np.float32)
    second = np.clip(base + rng.normal(0, 0.25, size=3), 0.0, 1.0).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy) / np.float32(size)
    kind = rng.integers(3)
    if kind == 0:  # smooth gradient
        mix = np.float32(rng.uniform(0.1, 0.5)) * t
    elif kind == 1:  # waves
        mix = 0.5 + 0.5 * np.sin(np.float32(2 * np.pi * rng.uniform(2, 8)) * t + np.float32(rng.uniform(0, 6.3)))
        mix = mix * np.float32(rng.uniform(0.2, 0.6))
    else:  # stripes: colour edges without flow edges
        mix = ((np.float32(rng.uniform(2, 8)) * t) % 1.0 < 0.5).astype(np.float32) * np.float32(rng.uniform(0.3, 0.8))
    return base[:, None, None] + mix[None] * (second - base)[:, None, None]


def _render_flow_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    side = float(max(height, width))
    yy, xx = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    image = _flow_texture(rng, yy, xx, side)
    flow = _affine_flow(rng, yy, xx, height / 2, width / 2, big=False)
    for _ in range(int(rng.integers(3, 8))):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        a, b = rng.uniform(0.06, 0.25) * side, rng.uniform(0.06, 0.25) * side
        theta = rng.uniform(0, np.pi)
        c, s = np.cos(theta), np.sin(theta)
        u = (c * (xx - cx) + s * (yy - cy)) / np.float32(a)
        v = (-s * (xx - cx) + c * (yy - cy)) / np.float32(b)
        kind = rng.integers(3)
        if kind == 0:
            mask = u * u + v * v < 1
        elif kind == 1:
            mask = (np.abs(u) < 1) & (np.abs(v) < 1)
        else:
            mask = np.abs(u) + np.abs(v) < 1
        if not mask.any():
            continue
        np.copyto(image, _flow_texture(rng, yy, xx, side), where=mask[None])
        np.copyto(flow, _affine_flow(rng, yy, xx, cy, cx, big=True), where=mask[None])
    image = image + rng.normal(0, 0.01, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 1).astype(np.float32), flow


# Scene seeds per split: disjoint, so no scene is both trained on and evaluated.


def _synthetic_split(
    scenes: type[SyntheticRGBD] | type[SyntheticFlow],
    split: str,
    sizes: dict[str, int],
    height: int,
    width: int,
    seed: int,
    cache: bool,
) -> Dataset:
    seed = split_seed(seed, split)
    base = scenes(int(sizes[split]), height=int(height), width=int(width), seed=seed)
    return MemoryCache(base) if cache else base
