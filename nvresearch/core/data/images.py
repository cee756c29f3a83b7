"""Reading one image file of a dataset, with errors that name the file (torch-only; PIL is imported on use)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from nvresearch.core.data.errors import DatasetLayoutError


def read_image(path: str | os.PathLike, mode: str = "RGB", name: str = "image", missing: str | None = None) -> Tensor:
    """Read an image file as uint8, converted to ``mode`` (``"RGB"`` or ``"L"``).

    Args:
        path: the file.
        mode: the PIL mode to convert to.
        name: what the file is, for the error messages ("frame", "saliency map").
        missing: the message's start when the file does not exist (default ``"<name> not found"``).

    Raises:
        DatasetLayoutError: the file is missing (``"<missing>: '<path>'"``) or not a readable image
            (``"corrupt or unreadable <name>: '<path>' (<reason>)"``).

    Shape:
        returns ``(3, H, W)`` for RGB, ``(H, W)`` for L.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise DatasetLayoutError(f"{missing or name + ' not found'}: '{p}'")
    try:
        with Image.open(p) as im:
            img = im.convert(mode)
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetLayoutError(f"corrupt or unreadable {name}: '{p}' ({err})") from err
    if len(img.getbands()) == 1:
        return data.view(img.height, img.width)
    return data.view(img.height, img.width, -1).permute(2, 0, 1).contiguous()
