"""Apply a joint upsampling model to arbitrary images (as the official ``apply_model``), and read user files."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvresearch.pac.upsampling.data import normalize_lowres
from nvresearch.pac.upsampling.metrics import denormalize

__all__ = ["fill_invalid", "infer_factor", "invalid_mask", "read_depth", "read_image", "upsample"]


def infer_factor(lowres_size: tuple[int, int], guide_size: tuple[int, int]) -> int:
    """The power of two closest (in log scale) to the size ratio of the guide and the low-resolution map."""
    (h, w), (hh, ww) = lowres_size, guide_size
    ratio = math.sqrt((hh / h) * (ww / w))
    if ratio < 1.5:
        raise ValueError(f"the guide {guide_size} must be larger than the low-resolution map {lowres_size}")
    return 2 ** round(math.log2(ratio))


def invalid_mask(lowres: Tensor, zero_invalid: bool = True) -> Tensor:
    """Pixels of a depth or disparity map that hold no measurement: ``inf`` or NaN, and 0 if ``zero_invalid``.

    Real maps mark holes this way: Middlebury disparities with infinities, Kinect and KITTI depth with zeros.

    Shape:
        - lowres: :math:`(*, h, w)`; output: bool, like ``lowres``.
    """
    bad = ~torch.isfinite(lowres)
    if zero_invalid:
        bad |= lowres == 0
    return bad


def fill_invalid(lowres: Tensor, invalid: Tensor) -> Tensor:
    """Fill invalid pixels from their valid neighbours, growing inwards ring by ring.

    Each pass gives every invalid pixel next to a valid or already filled one the mean of those 3x3 neighbours, so a
    hole takes the values around it and the filled map stays within the range of the valid values (the
    min-max normalisation therefore sees only the valid range).

    Args:
        lowres: Map in data units.
        invalid: True where ``lowres`` has no value (see :func:`invalid_mask`).

    Returns:
        The map with every invalid pixel filled; valid pixels are unchanged.

    Raises:
        ValueError: if a sample and channel has no valid pixel at all.

    Shape:
        - lowres, invalid: :math:`(B, C, h, w)`; output: :math:`(B, C, h, w)`.
    """
    if lowres.shape != invalid.shape or lowres.dim() != 4:
        raise ValueError(f"expected (B, C, h, w) map and mask of one shape, got {tuple(lowres.shape)}, {invalid.shape}")
    known = (~invalid).to(lowres.dtype)
    if (known.sum(dim=(-2, -1)) == 0).any():
        raise ValueError("the depth map has no valid pixel (all inf, NaN or 0)")
    b, c, h, w = lowres.shape
    x = torch.where(invalid, torch.zeros_like(lowres), lowres).reshape(b * c, 1, h, w)
    known = known.reshape(b * c, 1, h, w)
    ones = torch.ones(1, 1, 3, 3, dtype=lowres.dtype, device=lowres.device)
    while bool((known == 0).any()):
        total = F.conv2d(x * known, ones, padding=1)
        count = F.conv2d(known, ones, padding=1)
        grow = (known == 0) & (count > 0)
        x = torch.where(grow, total / count.clamp_min(1), x)
        known = torch.where(grow, torch.ones_like(known), known)
    return x.reshape(b, c, h, w)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def upsample(
    model: nn.Module, guide: Tensor, lowres: Tensor, factor: int | None = None, invalid: Tensor | None = None
) -> Tensor:
    """Upsample a low-resolution map guided by an image, in the map's own units (as the official ``apply_model``).

    The map is min-max normalised per sample and channel like the training data, passed through ``model`` and
    de-normalised. If ``lowres`` times ``factor`` is not the guide's size (e.g. Sintel's 436 rows at x8), the guide is
    bilinearly resized to ``lowres * factor`` for the model and the output resized back to the guide's size. Runs
    without gradients on the model's device; the model's train/eval mode is left as it is (call ``model.eval()``).

    Invalid pixels (``invalid``, by default the non-finite ones) are filled from their valid neighbours
    (:func:`fill_invalid`) before the normalisation and the network, so they neither stretch the min-max range nor
    reach the network as ``inf``; the output is dense.

    Args:
        model: A joint upsampling model called as ``model(target_lr, guide)``.
        guide: RGB guide in [0, 1].
        lowres: Low-resolution map in data units (e.g. metres, or disparity).
        factor: Upsampling factor of the model. If None, ``model.factor`` if the model has one, else the power of two
            closest to the size ratio.
        invalid: True where ``lowres`` holds no value (e.g. :func:`invalid_mask`); None: the non-finite pixels.

    Shape:
        - guide: :math:`(3, H, W)` or :math:`(B, 3, H, W)`.
        - lowres: :math:`(C, h, w)` or :math:`(B, C, h, w)`.
        - output: :math:`(C, H, W)` or :math:`(B, C, H, W)`, batched like ``lowres``.
    """
    if guide.dim() not in (3, 4) or lowres.dim() not in (3, 4):
        raise ValueError(
            f"expected (3, H, W) / (C, h, w) tensors, optionally batched; got {tuple(guide.shape)} and "
            f"{tuple(lowres.shape)}"
        )
    unbatched = lowres.dim() == 3
    guide4 = guide[None] if guide.dim() == 3 else guide
    lr4 = lowres[None] if unbatched else lowres
    bad = ~torch.isfinite(lr4) if invalid is None else (invalid[None] if unbatched else invalid).to(torch.bool)
    if guide4.shape[0] != lr4.shape[0]:
        if guide4.shape[0] != 1:
            raise ValueError(f"batch sizes differ: guide {guide4.shape[0]}, lowres {lr4.shape[0]}")
        guide4 = guide4.expand(lr4.shape[0], -1, -1, -1)
    if factor is None:
        model_factor = getattr(model, "factor", None)
        factor = model_factor if isinstance(model_factor, int) else infer_factor(lr4.shape[-2:], guide4.shape[-2:])
    device = _model_device(model)
    guide4 = guide4.to(device=device, dtype=torch.float32)
    lr4 = lr4.to(device=device, dtype=torch.float32)
    if bool(bad.any()):
        lr4 = fill_invalid(lr4, bad.to(device))

    size = tuple(guide4.shape[-2:])
    model_size = (lr4.shape[-2] * factor, lr4.shape[-1] * factor)
    if model_size != size:
        guide4 = F.interpolate(guide4, size=model_size, mode="bilinear", align_corners=False)
    normalized, lr_min, lr_scale = normalize_lowres(lr4)
    out = denormalize(model(normalized, guide4), lr_min, lr_scale)
    if model_size != size:
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
    return out[0] if unbatched else out


def _imread(path: str | os.PathLike[str]):  # noqa: ANN202 - returns a numpy array
    import cv2

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    data = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ValueError(f"could not read {path} as an image (PNG 8/16-bit or JPEG expected)")
    return data


def _to_unit_range(data: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    if data.dtype == np.uint8:
        return data.astype(np.float32) / 255.0
    if data.dtype == np.uint16:
        return data.astype(np.float32) / 65535.0
    if np.issubdtype(data.dtype, np.floating):
        return np.clip(data.astype(np.float32), 0.0, 1.0)
    raise ValueError(f"unsupported pixel type {data.dtype} in {os.fspath(path)}")


def read_image(path: str | os.PathLike[str]) -> Tensor:
    """Read an RGB guide image (PNG 8/16-bit, JPEG, ...) with OpenCV into [0, 1].

    Grey images are replicated to three channels and an alpha channel is dropped.

    Shape:
        - output: float32 :math:`(3, H, W)`, RGB order.
    """
    import cv2

    data = _imread(path)
    if data.ndim == 2:
        data = np.repeat(data[:, :, None], 3, axis=2)
    elif data.shape[2] == 4:
        data = cv2.cvtColor(data, cv2.COLOR_BGRA2RGB)
    elif data.shape[2] == 3:
        data = cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f"{os.fspath(path)} has {data.shape[2]} channels, expected 1, 3 or 4")
    return torch.from_numpy(np.ascontiguousarray(_to_unit_range(data, path).transpose(2, 0, 1)))


def read_depth(path: str | os.PathLike[str]) -> Tensor:
    """Read a depth or disparity map, keeping the file's values and units (no scaling).

    PNG (8- or 16-bit, single channel, e.g. millimetres) or ``.npy`` (``(H, W)``, ``(1, H, W)`` or ``(H, W, 1)``).
    A colour PNG is accepted only if its three channels are equal.

    Shape:
        - output: float32 :math:`(1, H, W)`.
    """
    path_str = os.fspath(path)
    if path_str.lower().endswith(".npy"):
        if not os.path.isfile(path_str):
            raise FileNotFoundError(f"no such file: {path_str}")
        try:
            data = np.load(path_str, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"could not read {path_str} as a numpy array: {err}") from err
        data = np.squeeze(data)
    else:
        data = _imread(path_str)
        if data.ndim == 3:
            if data.shape[2] >= 3 and not (
                np.array_equal(data[..., 0], data[..., 1]) and np.array_equal(data[..., 0], data[..., 2])
            ):
                raise ValueError(f"{path_str} is a colour image; a depth map must have a single channel")
            data = data[..., 0]
    if data.ndim != 2 or not (np.issubdtype(data.dtype, np.number)):
        raise ValueError(f"{path_str}: expected a single-channel map, got shape {data.shape} and type {data.dtype}")
    return torch.from_numpy(np.ascontiguousarray(data.astype(np.float32)))[None]
