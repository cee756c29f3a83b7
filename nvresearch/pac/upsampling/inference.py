"""Apply a joint upsampling model to arbitrary images (spec B.2 ``apply_model``), and read user files."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvresearch.pac.upsampling.data import normalize_lowres
from nvresearch.pac.upsampling.metrics import denormalize

__all__ = ["infer_factor", "read_depth", "read_image", "upsample"]


def infer_factor(lowres_size: tuple[int, int], guide_size: tuple[int, int]) -> int:
    """The power of two closest (in log scale) to the size ratio of the guide and the low-resolution map."""
    (h, w), (hh, ww) = lowres_size, guide_size
    ratio = math.sqrt((hh / h) * (ww / w))
    if ratio < 1.5:
        raise ValueError(f"the guide {guide_size} must be larger than the low-resolution map {lowres_size}")
    return 2 ** round(math.log2(ratio))


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def upsample(model: nn.Module, guide: Tensor, lowres: Tensor, factor: int | None = None) -> Tensor:
    """Upsample a low-resolution map guided by an image, in the map's own units (spec B.2 ``apply_model``).

    The map is min-max normalised per sample and channel like the training data, passed through ``model`` and
    de-normalised. If ``lowres`` times ``factor`` is not the guide's size (e.g. Sintel's 436 rows at x8), the guide is
    bilinearly resized to ``lowres * factor`` for the model and the output resized back to the guide's size. Runs
    without gradients on the model's device; the model's train/eval mode is left as it is (call ``model.eval()``).

    Args:
        model: A joint upsampling model called as ``model(target_lr, guide)``.
        guide: RGB guide in [0, 1].
        lowres: Low-resolution map in data units (e.g. metres, or disparity).
        factor: Upsampling factor of the model. If None, ``model.factor`` if the model has one, else the power of two
            closest to the size ratio.

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
