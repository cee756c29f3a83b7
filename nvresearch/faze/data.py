"""FAZE data: the preprocessed HDF5 layout, the person split, pair sampling, and the
embedded procedural eye-strip world written in the same layout.

Layout of a preprocessed file (``GazeCapture.h5``, ``MPIIGaze.h5``; written by the FAZE preprocessing scripts):
one group per person (``"00002"`` ..., ``"p00"`` ...), each with ``pixels`` uint8 ``(N, 64, 256, 3)`` RGB and
``labels`` float32 ``(N, 4)`` = gaze pitch, gaze yaw, head pitch, head yaw in radians (normalised camera frame).
The GazeCapture person split is a JSON file with lists under ``train``, ``val`` and ``test``.

``h5py`` and OpenCV are imported inside the functions that use them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from nvresearch.core.data import DatasetLayoutError, split_epoch_key
from nvresearch.core.geometry import pitchyaw_to_rotation

__all__ = [
    "H5_LAYOUT",
    "SPLIT_LAYOUT",
    "FazeFiles",
    "FazeH5",
    "PairDataset",
    "SampleDataset",
    "apparent_rotation",
    "ensure_eye_strip_world",
    "eye_strip_files",
    "faze_files",
    "kappa_rotation",
    "load_split",
    "optical_axis",
    "preprocess_pixels",
    "render_person",
    "write_eye_strip_world",
]

H5_LAYOUT = (
    "an HDF5 file with one group per person, each holding 'pixels' uint8 (N, H, W, 3) RGB and 'labels' float32 "
    "(N, 4) = [gaze_pitch, gaze_yaw, head_pitch, head_yaw] in radians (the FAZE preprocessing output)"
)
SPLIT_LAYOUT = "a JSON object with lists of person ids under 'train', 'val' and 'test' (gazecapture_split.json)"


# ----------------------------------------------------------------------------------------------------------------------
# Preprocessed HDF5 files
# ----------------------------------------------------------------------------------------------------------------------
class FazeH5:
    """Read-only view of a preprocessed FAZE HDF5 file (official preprocessing), opened lazily once per process.

    The layout is validated when the object is made: a missing file, a group without ``pixels``/``labels``, wrong
    dtypes/shapes or mismatched lengths raise :class:`DatasetLayoutError` naming the file, the group and the expected
    layout.

    Args:
        path: the ``.h5`` file.
        in_memory: read each person's arrays whole on first use and keep them (per process), instead of reading
            sample by sample from the file; for files that fit in memory (the embedded world: about 40 MB).

    Attributes:
        persons: group names in file order.
        sizes: person -> number of samples.
        image_size: ``(H, W)`` of the patches.
    """

    def __init__(self, path: str | os.PathLike, in_memory: bool = False) -> None:
        import h5py

        self.path = Path(path)
        self.in_memory = bool(in_memory)
        self._rotations: dict[str, Tensor] = {}
        if not self.path.is_file():
            raise DatasetLayoutError(f"no FAZE HDF5 file at '{self.path}'; expected {H5_LAYOUT}")
        self.persons: list[str] = []
        self.sizes: dict[str, int] = {}
        self.image_size: tuple[int, int] | None = None
        try:
            with h5py.File(self.path, "r") as f:
                for pid in f.keys():
                    group = f[pid]
                    where = f"'{self.path}' group '{pid}'"
                    if not isinstance(group, h5py.Group) or "pixels" not in group or "labels" not in group:
                        raise DatasetLayoutError(f"{where} lacks 'pixels' or 'labels'; expected {H5_LAYOUT}")
                    pixels, labels = group["pixels"], group["labels"]
                    if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
                        raise DatasetLayoutError(
                            f"{where}: 'pixels' is {pixels.dtype} {pixels.shape}; expected {H5_LAYOUT}"
                        )
                    if labels.ndim != 2 or labels.shape[1] != 4 or labels.shape[0] != pixels.shape[0]:
                        raise DatasetLayoutError(
                            f"{where}: 'labels' is {labels.shape} for {pixels.shape[0]} images; expected {H5_LAYOUT}"
                        )
                    size = (int(pixels.shape[1]), int(pixels.shape[2]))
                    if self.image_size is None:
                        self.image_size = size
                    elif size != self.image_size:
                        raise DatasetLayoutError(f"{where}: patches are {size}, other persons' are {self.image_size}")
                    self.persons.append(pid)
                    self.sizes[pid] = int(pixels.shape[0])
        except OSError as err:
            raise DatasetLayoutError(f"cannot read '{self.path}' as HDF5 ({err}); expected {H5_LAYOUT}") from err
        if not self.persons:
            raise DatasetLayoutError(f"'{self.path}' holds no person groups; expected {H5_LAYOUT}")
        self._file: Any = None
        self._pid = -1

    def _h5(self) -> Any:
        if self._file is None or self._pid != os.getpid():  # one handle per data-loader worker process
            import h5py

            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._datasets: dict[str, tuple[Any, Any]] = {}
        return self._file

    def _person(self, person: str) -> tuple[Any, Any]:
        f = self._h5()
        if person not in self._datasets:
            pixels, labels = f[person]["pixels"], f[person]["labels"]
            if self.in_memory:
                try:
                    pixels, labels = np.asarray(pixels[:]), np.asarray(labels[:], dtype=np.float32)
                except (OSError, ValueError) as err:
                    raise DatasetLayoutError(f"corrupt data of person '{person}' in '{self.path}': {err}") from err
            self._datasets[person] = (pixels, labels)
        return self._datasets[person]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"], state["_datasets"] = None, -1, {}
        return state

    def read(self, person: str, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One sample: ``(pixels (H, W, 3) uint8, labels (4,) float32)``."""
        pixels, labels = self._person(person)
        try:
            return np.asarray(pixels[index]), np.asarray(labels[index], dtype=np.float32)
        except (OSError, ValueError) as err:
            raise DatasetLayoutError(f"corrupt sample {index} of person '{person}' in '{self.path}': {err}") from err

    def labels(self, person: str) -> np.ndarray:
        """All labels of one person, ``(N, 4)`` float32."""
        try:
            return np.asarray(self._person(person)[1][:], dtype=np.float32)
        except (OSError, ValueError) as err:
            raise DatasetLayoutError(f"corrupt labels of person '{person}' in '{self.path}': {err}") from err

    def rotations(self, person: str) -> Tensor:
        """Gaze and head rotations of every sample of one person, ``(N, 2, 3, 3)`` (:func:`pitchyaw_to_rotation`
        of the label pairs), computed once per person: per sample, the small tensor operations cost more than
        reading the image."""
        if person not in self._rotations:
            labels = torch.from_numpy(self.labels(person))
            self._rotations[person] = pitchyaw_to_rotation(labels.view(-1, 2, 2))
        return self._rotations[person]

    def select(self, persons: Sequence[str] | None, min_samples: int = 0) -> list[str]:
        """``persons`` (default: all, in file order) that exist here and have at least ``min_samples`` samples.

        Raises:
            DatasetLayoutError: when a requested person is not in the file.
        """
        if persons is None:
            persons = self.persons
        missing = [p for p in persons if p not in self.sizes]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DatasetLayoutError(f"persons {shown} of the split are not groups of '{self.path}'")
        return [p for p in persons if self.sizes[p] >= min_samples]


def load_split(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a person split file (official ``gazecapture_split.json``); returns at least ``train``/``val``/``test``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"no person split file at '{path}'; expected {SPLIT_LAYOUT}")
    try:
        split = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetLayoutError(f"'{path}' is not valid JSON ({err}); expected {SPLIT_LAYOUT}") from err
    if not isinstance(split, dict) or any(not isinstance(split.get(k), list) for k in ("train", "val", "test")):
        raise DatasetLayoutError(f"'{path}' lacks a list under 'train', 'val' or 'test'; expected {SPLIT_LAYOUT}")
    return {k: [str(p) for p in v] for k, v in split.items() if isinstance(v, list)}


def preprocess_pixels(pixels: np.ndarray, equalize: bool = True) -> Tensor:
    """Training-time preprocessing (official ``data.py``): histogram-equalise luma (Y of YCrCb), then ``2 x / 255 - 1``.

    Shape:
        pixels: ``(H, W, 3)`` uint8 RGB; returns float32 ``(3, H, W)`` in [-1, 1].
    """
    if equalize:
        import cv2

        ycrcb = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2YCrCb)
        ycrcb[..., 0] = cv2.equalizeHist(ycrcb[..., 0])
        pixels = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float()
    return x * (2.0 / 255.0) - 1.0


def _sample(h5: FazeH5, person: str, index: int, equalize: bool) -> dict[str, Tensor]:
    pixels, labels = h5.read(person, index)
    lab = torch.from_numpy(labels)
    rot = h5.rotations(person)[index]
    return {
        "image": preprocess_pixels(pixels, equalize),
        "gaze": lab[:2],
        "head": lab[2:],
        "R_gaze": rot[0],
        "R_head": rot[1],
    }


class PairDataset(Dataset):
    """DT-ED training pairs (as the official ``data.py``): item ``(person P, sample i)`` is ``a``; ``b`` is drawn
    uniformly from P's other samples, seeded by ``(seed, epoch, index)`` (keys from
    :class:`~nvresearch.core.data.EpochSampler`).

    Args:
        h5: the preprocessed file.
        persons: persons to use (kept only with at least ``min_samples`` samples; 400 in the reference).
        min_samples: minimum samples per person.
        seed: seeds the choice of ``b``.
        equalize: histogram-equalise the luma channel (the reference preprocessing).

    Each item holds ``image_a/b`` ``(3, H, W)`` in [-1, 1], ``gaze_a/b`` and ``head_a/b`` ``(2,)`` radians,
    ``R_gaze_a/b`` and ``R_head_a/b`` ``(3, 3)``, and ``person`` (index into :attr:`persons`).
    """

    def __init__(
        self, h5: FazeH5, persons: Sequence[str] | None, min_samples: int = 400, seed: int = 0, equalize: bool = True
    ) -> None:
        self.h5, self.seed, self.equalize = h5, int(seed), equalize
        self.persons = h5.select(persons, max(2, int(min_samples)))
        if not self.persons:
            raise DatasetLayoutError(f"no person in '{h5.path}' has at least {max(2, min_samples)} samples")
        self.index = [(p, i) for p, person in enumerate(self.persons) for i in range(h5.sizes[person])]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor]:
        epoch, index = split_epoch_key(key)
        p, i = self.index[index]
        person = self.persons[p]
        rng = np.random.default_rng((self.seed, epoch, index))
        j = int(rng.integers(self.h5.sizes[person] - 1))
        j += j >= i  # uniform over the other samples
        a, b = _sample(self.h5, person, i, self.equalize), _sample(self.h5, person, j, self.equalize)
        out = {f"{k}_a": v for k, v in a.items()} | {f"{k}_b": v for k, v in b.items()}
        out["person"] = torch.tensor(p)
        return out


class SampleDataset(Dataset):
    """Every sample of the given persons in file order (person by person), for validation and code export.

    Args:
        h5: the preprocessed file.
        persons: persons to use (after ``min_samples`` filtering); ``max_per_person`` keeps the *last* samples
            of each person when set, so that the positional test split (last samples) is covered.
        min_samples: minimum samples per person.
        max_per_person: optional cap.
        equalize: histogram-equalise the luma channel.

    Each item holds ``image``, ``gaze``, ``head``, ``R_gaze``, ``R_head``, ``person`` and ``sample`` (its position).
    """

    def __init__(
        self,
        h5: FazeH5,
        persons: Sequence[str] | None,
        min_samples: int = 0,
        max_per_person: int | None = None,
        equalize: bool = True,
    ) -> None:
        self.h5, self.equalize = h5, equalize
        self.persons = h5.select(persons, min_samples)
        self.index = []
        for p, person in enumerate(self.persons):
            n = h5.sizes[person]
            start = 0 if max_per_person is None else max(0, n - int(max_per_person))
            self.index += [(p, i) for i in range(start, n)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor]:
        _, index = split_epoch_key(key)
        p, i = self.index[index]
        out = _sample(self.h5, self.persons[p], i, self.equalize)
        out["person"], out["sample"] = torch.tensor(p), torch.tensor(i)
        return out


# ----------------------------------------------------------------------------------------------------------------------
# Embedded procedural eye-strip world (ours: a CPU-sized stand-in for GazeCapture)
# ----------------------------------------------------------------------------------------------------------------------
def _soft(signed: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (positive inside)."""
    return np.clip(signed + 0.5, 0.0, 1.0)


def kappa_rotation(kappa: np.ndarray) -> np.ndarray:
    """The fixed rotation from a person's optical to visual axis, ``R_kappa = R_y(yaw) R_x(-pitch)``.

    It maps the optical axis straight ahead, ``v(0, 0)``, to ``v(kappa)`` in FAZE's vector convention
    (``v = (cos p sin y, sin p, cos p cos y)``; the pitch sign follows from ``R_x(t) e_z = v(-t, 0)``), and every other
    direction by the same rotation, so the visual axis is ``R_kappa v(o)``: not ``o + kappa`` away from straight ahead.

    Shape:
        kappa: ``(2,)`` (pitch, yaw) radians; returns ``(3, 3)``.
    """
    p, y = float(kappa[0]), float(kappa[1])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(-p), -math.sin(-p)], [0.0, math.sin(-p), math.cos(-p)]])
    ry = np.array([[math.cos(y), 0.0, math.sin(y)], [0.0, 1.0, 0.0], [-math.sin(y), 0.0, math.cos(y)]])
    return ry @ rx


def _vector(py: np.ndarray) -> np.ndarray:
    p, y = py[..., 0], py[..., 1]
    return np.stack([np.cos(p) * np.sin(y), np.sin(p), np.cos(p) * np.cos(y)], axis=-1)


def _pitchyaw(v: np.ndarray) -> np.ndarray:
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.stack([np.arcsin(np.clip(v[..., 1], -1.0, 1.0)), np.arctan2(v[..., 0], v[..., 2])], axis=-1)


def optical_axis(visual: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """The optical axis ``o`` whose rotation by ``R_kappa`` is the visual axis (``v(g) = R_kappa v(o)``).

    Shape:
        visual: ``(N, 2)`` (pitch, yaw) radians; kappa ``(2,)``; returns ``(N, 2)``.
    """
    return _pitchyaw(_vector(visual) @ kappa_rotation(kappa))  # row vectors: v R = (R^T v^T)^T


def apparent_rotation(optical: np.ndarray, gain: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """The eye rotation a person's eye *shows* for an optical axis ``o``: ``o (1 + gain) + curve o |o|`` per angle.

    A person-specific eye shape (eyeball radius, corneal magnification, nasal/temporal asymmetry of the lids): the
    iris, its foreshortening and the lid all follow the apparent rotation, so an estimator that reads the image
    sees only it. The difference to the true axis is zero looking straight ahead and grows with the angle (``gain``
    linearly, ``curve`` quadratically), so no constant offset removes it.

    Shape:
        optical: ``(N, 2)`` radians; gain ``(2,)`` (dimensionless); curve ``(2,)`` (1/radian); returns ``(N, 2)``.
    """
    return optical * (1.0 + gain) + curve * optical * np.abs(optical)


def render_person(
    rng: np.random.Generator,
    num_samples: int,
    height: int = 32,
    width: int = 64,
    kappa_std_deg: Sequence[float] = (1.5, 3.0),
    gaze_range_deg: Sequence[float] = (20.0, 25.0),
    head_range_deg: Sequence[float] = (20.0, 20.0),
    noise: float = 0.02,
    eye_gain_std: Sequence[float] = (0.0, 0.0),
    eye_curve_std: Sequence[float] = (0.0, 0.0),
    brightness_range: Sequence[float] = (0.85, 1.15),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one synthetic person of the eye-strip world.

    The person has its own skin, sclera and iris colours, eye size and spacing, lighting gradient, a fixed rotation
    ``R_kappa`` between the optical and the visual axis (:func:`kappa_rotation`, ``kappa ~ N(0, kappa_std)``), and a
    hidden eye shape that changes the shown eye rotation with the gaze direction (:func:`apparent_rotation`:
    ``gain ~ N(0, eye_gain_std)``, ``curve ~ N(0, eye_curve_std)`` per pitch and yaw). Each image draws a gaze
    (visual axis) ``g ~ U(+-gaze_range)`` (pitch, yaw) and a head pose ``h ~ U(+-head_range)``. The two eyes are
    placed and squeezed by the head pose, the strip is shaded by it, and each iris (with pupil) sits where the
    eyeball, rotated by the apparent optical axis relative to the head, projects; the upper lid follows the pitch.
    Labels are the visual axis, so a person-independent estimator cannot know ``kappa`` or the eye shape:
    personalisation can, and the eye shape's error grows with the angle, so a constant offset cannot. Each image is
    then scaled by a brightness ``~ U(brightness_range)`` and gets Gaussian sensor noise of std ``noise`` (in units
    of the full 0..1 range) before it is rounded to 8 bits; both are our choices, not the paper's.

    Returns:
        ``(pixels (N, H, W, 3) uint8 RGB, labels (N, 4) float32 radians, person (6,) float32)``: ``person`` is
        ``kappa`` (pitch, yaw, radians), ``gain`` (pitch, yaw) and ``curve`` (pitch, yaw, 1/radian).
    """
    n, h_img, w_img = int(num_samples), int(height), int(width)
    deg = math.pi / 180.0
    skin = np.array([rng.uniform(0.45, 0.95), 0.0, 0.0])
    skin[1] = skin[0] * rng.uniform(0.6, 0.85)
    skin[2] = skin[1] * rng.uniform(0.6, 0.9)
    sclera = rng.uniform(0.82, 0.98) - rng.uniform(0.0, 0.08, size=3)
    iris = rng.uniform(0.08, 0.6, size=3)
    half_gap = rng.uniform(0.22, 0.27) * w_img
    eye_w = rng.uniform(0.15, 0.19) * w_img
    eye_h = rng.uniform(0.26, 0.34) * h_img
    ball = 0.95 * eye_w  # the shown rotation's scale is the eye shape's (gain), not an unseen radius
    iris_r = eye_h * rng.uniform(0.6, 0.75)
    light = rng.uniform(-0.25, 0.25, size=2)
    kappa = rng.normal(0.0, 1.0, size=2) * np.asarray(kappa_std_deg, dtype=np.float64) * deg
    gain = rng.normal(0.0, 1.0, size=2) * np.asarray(eye_gain_std, dtype=np.float64)
    curve = rng.normal(0.0, 1.0, size=2) * np.asarray(eye_curve_std, dtype=np.float64)

    g = rng.uniform(-1.0, 1.0, size=(n, 2)) * np.asarray(gaze_range_deg) * deg
    hp = rng.uniform(-1.0, 1.0, size=(n, 2)) * np.asarray(head_range_deg) * deg
    o = apparent_rotation(optical_axis(g, kappa), gain, curve)  # what the eye shows
    rel = o - hp  # eyeball rotation relative to the head
    bright = rng.uniform(float(brightness_range[0]), float(brightness_range[1]), size=n)

    ys = np.arange(h_img, dtype=np.float64)[None, :, None] + 0.5
    xs = np.arange(w_img, dtype=np.float64)[None, None, :] + 0.5
    sy, sx = np.sin(hp[:, 0])[:, None, None], np.sin(hp[:, 1])[:, None, None]
    shade = 1.0 + light[0] * (xs / w_img - 0.5) + light[1] * (ys / h_img - 0.5) + 0.5 * sx * (xs / w_img - 0.5)
    shade = shade - 0.3 * sy * (ys / h_img - 0.5)
    img = np.broadcast_to(skin, (n, h_img, w_img, 3)) * shade[..., None]

    cy = h_img / 2 - 0.4 * h_img * sy
    cx_mid = w_img / 2 - 0.18 * w_img * sx
    for side in (-1.0, 1.0):
        cx = cx_mid + side * half_gap * np.cos(hp[:, 1])[:, None, None]
        ew = eye_w * (1.0 + side * 0.3 * sx)
        t = (xs - cx) / ew  # -1..1 across the eye
        profile = np.clip(1.0 - t * t, 0.0, None)
        open_up = 0.8 + 0.6 * np.sin(rel[:, 0])[:, None, None]
        top = cy - eye_h * open_up * profile
        bottom = cy + 0.75 * eye_h * profile
        inside = _soft(np.minimum(ys - top, bottom - ys)) * (np.abs(t) < 1.0)
        ix = cx + ball * np.cos(rel[:, 0])[:, None, None] * np.sin(rel[:, 1])[:, None, None] * (1.0 + side * 0.3 * sx)
        iy = cy - ball * 0.8 * np.sin(rel[:, 0])[:, None, None]
        squash = np.clip(np.cos(rel[:, 1]), 0.3, 1.0)[:, None, None]
        dist = np.sqrt(((xs - ix) / squash) ** 2 + (ys - iy) ** 2)
        iris_cov = _soft(iris_r - dist) * inside
        pupil_cov = _soft(0.45 * iris_r - dist) * inside
        eye = sclera * (1.0 - iris_cov[..., None]) + iris * iris_cov[..., None]
        eye = eye * (1.0 - 0.85 * pupil_cov[..., None])
        lid_shadow = 1.0 - 0.25 * _soft(2.0 - (ys - top))[..., None]
        eye = eye * lid_shadow * shade[..., None]
        img = img * (1.0 - inside[..., None]) + eye * inside[..., None]
    img = img * bright[:, None, None, None] + rng.normal(0.0, noise, size=img.shape)
    pixels = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    labels = np.concatenate([g, hp], axis=1).astype(np.float32)
    return pixels, labels, np.concatenate([kappa, gain, curve]).astype(np.float32)


def write_eye_strip_world(
    root: str | os.PathLike,
    num_persons: Mapping[str, int],
    samples: Mapping[str, int],
    height: int = 32,
    width: int = 64,
    kappa_std_deg: Sequence[float] = (1.5, 3.0),
    seed: int = 0,
    eye_gain_std: Sequence[float] = (0.0, 0.0),
    eye_curve_std: Sequence[float] = (0.0, 0.0),
    head_range_deg: Sequence[float] = (20.0, 20.0),
    noise: float = 0.02,
    brightness_range: Sequence[float] = (0.85, 1.15),
) -> tuple[Path, Path]:
    """Write the eye-strip world in the preprocessed FAZE layout: ``<root>/EyeStrip.h5`` and ``<root>/split.json``.

    Args:
        root: output folder.
        num_persons / samples: persons and samples per person for each of ``train``, ``val``, ``test``.
        height / width: patch size (the reference patches are 64x256; both must suit the DT-ED, i.e. divisible by 32).
        kappa_std_deg: standard deviation of the per-person kappa (pitch, yaw) in degrees (default 1.5, 3).
        seed: person ``p`` of the world is drawn from ``numpy.random.default_rng((seed, p))``.
        eye_gain_std / eye_curve_std: standard deviations of the per-person eye shape (pitch, yaw), see
            :func:`render_person`.
        head_range_deg: head poses are drawn from U(+-head_range_deg) (pitch, yaw).
        noise / brightness_range: per-pixel sensor noise std and per-image brightness range, see
            :func:`render_person`.

    Returns:
        ``(h5 path, split path)``. The file also stores each person's ``kappa`` (radians), ``eye_gain`` and
        ``eye_curve`` as group attributes.
    """
    import h5py

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    h5_path, split_path = root / "EyeStrip.h5", root / "split.json"
    split: dict[str, list[str]] = {}
    p = 0
    tmp = h5_path.with_suffix(f".tmp{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        for name in ("train", "val", "test"):
            split[name] = []
            for _ in range(int(num_persons[name])):
                pixels, labels, person = render_person(
                    np.random.default_rng((seed, p)),
                    int(samples[name]),
                    height,
                    width,
                    kappa_std_deg,
                    head_range_deg=head_range_deg,
                    eye_gain_std=eye_gain_std,
                    eye_curve_std=eye_curve_std,
                    noise=noise,
                    brightness_range=brightness_range,
                )
                pid = f"{p:05d}"
                group = f.create_group(pid)
                group.create_dataset("pixels", data=pixels, chunks=(1, *pixels.shape[1:]), compression="lzf")
                group.create_dataset("labels", data=labels, chunks=(1, 4), compression="lzf")
                group.attrs["kappa"] = person[:2]
                group.attrs["eye_gain"] = person[2:4]
                group.attrs["eye_curve"] = person[4:]
                split[name].append(pid)
                p += 1
    os.replace(tmp, h5_path)
    split_path.write_text(json.dumps(split, indent=1) + "\n")
    return h5_path, split_path


def ensure_eye_strip_world(cache_dir: str | os.PathLike, **params: Any) -> tuple[Path, Path]:
    """Write the eye-strip world once per parameter set under ``cache_dir/eyestrip_<hash>/``; returns its paths.

    ``params`` are those of :func:`write_eye_strip_world` (except ``root``). The world is a pure function of them,
    so a cached copy is reused.
    """
    canonical = json.dumps(
        {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in sorted(params.items())},
        sort_keys=True,
        default=lambda v: dict(v),
    )
    digest = hashlib.sha1(canonical.encode()).hexdigest()[:12]
    root = Path(cache_dir) / f"eyestrip_{digest}"
    h5_path, split_path = root / "EyeStrip.h5", root / "split.json"
    if not (h5_path.is_file() and split_path.is_file()):
        write_eye_strip_world(root, **params)
    return h5_path, split_path


class FazeFiles(NamedTuple):
    """The opened files of a FAZE data config: the train/val/test file, its person split, and an optional separate
    test file (MPIIGaze) whose every person is a test person."""

    h5: FazeH5
    split: dict[str, list[str]]
    test_h5: FazeH5 | None


def faze_files(
    root: str | os.PathLike,
    h5_file: str = "GazeCapture.h5",
    split_file: str = "gazecapture_split.json",
    test_h5_file: str | None = None,
    in_memory: bool = False,
) -> FazeFiles:
    """Preprocessed FAZE files under ``root`` (a data config's dataset component).

    Args:
        root: folder holding ``h5_file`` and ``split_file`` (and ``test_h5_file``).
        h5_file / split_file: the training file and its person split (``GazeCapture.h5``, ``gazecapture_split.json``).
        test_h5_file: a separate test file (``MPIIGaze.h5``), or None to test on the split's ``test`` persons.
        in_memory: read the HDF5 arrays whole into memory (the real files are tens of GB: off by default).

    Raises:
        DatasetLayoutError: if ``root`` is not a folder.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise DatasetLayoutError(f"no FAZE data folder at '{folder}'; expected {h5_file} and {split_file} in it")
    test_h5 = FazeH5(folder / test_h5_file, in_memory=in_memory) if test_h5_file else None
    return FazeFiles(FazeH5(folder / h5_file, in_memory=in_memory), load_split(folder / split_file), test_h5)


def eye_strip_files(
    num_persons: Mapping[str, int],
    samples: Mapping[str, int],
    height: int = 32,
    width: int = 64,
    kappa_std_deg: Sequence[float] = (1.5, 3.0),
    seed: int = 0,
    cache_dir: str | None = None,
    in_memory: bool = True,
    eye_gain_std: Sequence[float] = (0.0, 0.0),
    eye_curve_std: Sequence[float] = (0.0, 0.0),
    head_range_deg: Sequence[float] = (20.0, 20.0),
    noise: float = 0.02,
    brightness_range: Sequence[float] = (0.85, 1.15),
) -> FazeFiles:
    """The embedded eye-strip world (a data config's dataset component), written once per parameter set.

    Args:
        num_persons / samples / height / width / kappa_std_deg / seed / eye_gain_std / eye_curve_std /
            head_range_deg / noise / brightness_range: see :func:`write_eye_strip_world`.
        cache_dir: where the world is written (default: ``<tempdir>/nvresearch_faze``), see
            :func:`ensure_eye_strip_world`.
        in_memory: read the HDF5 arrays whole into memory (the world is small: on by default).
    """
    cache = cache_dir or str(Path(tempfile.gettempdir()) / "nvresearch_faze")
    h5_path, split_path = ensure_eye_strip_world(
        cache,
        num_persons=dict(num_persons),
        samples=dict(samples),
        height=height,
        width=width,
        kappa_std_deg=kappa_std_deg,
        seed=seed,
        eye_gain_std=list(eye_gain_std),
        eye_curve_std=list(eye_curve_std),
        head_range_deg=list(head_range_deg),
        noise=float(noise),
        brightness_range=list(brightness_range),
    )
    return FazeFiles(FazeH5(h5_path, in_memory=in_memory), load_split(split_path), None)
