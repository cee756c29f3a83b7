"""Data for joint optical-flow upsampling (PAC paper Sec. 5.1; spec B.1, B.2, C.2).

- :func:`read_flo` / :func:`write_flo`: the Middlebury ``.flo`` format that MPI Sintel ships.
- :class:`SintelFlow`: MPI Sintel (``MPI-Sintel-complete``) in its shipped folder layout, with the reference's
  train/val split (1041 pairs: 908 / 133).
- :class:`SyntheticFlow`: the embedded default, procedural frames with piecewise-affine flow whose discontinuities
  lie on colour edges.

Samples are ``{"image": (3, H, W) in [0, 1], "flow": (2, H, W) in pixels}``; wrap them in
:class:`~nvresearch.pac.data.JointUpsamplingDataset` with ``target_key="flow"`` and ``lowres_mode="bilinear"``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from nvresearch.core.data import DatasetLayoutError

__all__ = [
    "FLO_MAGIC",
    "SINTEL_VAL_SCENES",
    "SintelFlow",
    "SyntheticFlow",
    "read_flo",
    "write_flo",
]

FLO_MAGIC = 202021.25
"""The float32 tag at the start of every ``.flo`` file (the bytes read ``PIEH``)."""


def read_flo(path: str | os.PathLike[str]) -> Tensor:
    """Read a Middlebury ``.flo`` file: float32 magic 202021.25, int32 width, int32 height, then ``H*W*2`` float32
    ``(u, v)`` interleaved, little-endian (spec C.2).

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
# MPI Sintel, spec C.2
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
    """MPI Sintel training set, first frame of each pair with its forward flow (spec C.2).

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


def _texture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: float) -> np.ndarray:
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
    image = _texture(rng, yy, xx, side)
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
        np.copyto(image, _texture(rng, yy, xx, side), where=mask[None])
        np.copyto(flow, _affine_flow(rng, yy, xx, cy, cx, big=True), where=mask[None])
    image = image + rng.normal(0, 0.01, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 1).astype(np.float32), flow
