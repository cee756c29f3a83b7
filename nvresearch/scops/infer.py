"""Part maps for the user's own images with a trained SCOPS network (torch only).

:func:`load_part_model` reads either a checkpoint written by ``python -m nvresearch.train paper=scops`` (the
:class:`~nvresearch.scops.module.SCOPSModule` state dict and the resolved run config embedded in it) or a released
checkpoint of the official code (:func:`~nvresearch.scops.official.load_official`), and returns the network with
the square input side it was trained at. :func:`preprocess` prepares an image as the training readers did
(anisotropic bilinear resize to that side, RGB minus the Caffe mean), and :func:`predict_parts` returns the part
probabilities, labels (0 = background, 1..K = parts) and part centres at the image's own size. The command
``scripts/scops_parts.py`` writes them for a folder of images.

Example::

    from nvresearch.scops.infer import load_part_model, predict_parts
    from nvresearch.scops.data import load_rgb

    net, size = load_part_model("outputs/scops/runs/<run>/checkpoints/last.ckpt")
    parts = predict_parts(net, load_rgb("bird.jpg"), size)   # labels (H, W) in 0..K, centres (K, 2) pixels
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from nvresearch.core.training.checkpoint import CONFIG_KEY, CheckpointError, read_checkpoint
from nvresearch.scops.data import caffe_normalize, resize_bilinear
from nvresearch.scops.metrics import landmark_centers
from nvresearch.scops.models import ASPP_DILATIONS, PartSegmenter, upsample_logits
from nvresearch.scops.official import OfficialCheckpointError, load_official

__all__ = [
    "OFFICIAL_IMAGE_SIZE",
    "PartCheckpointError",
    "dataset_centres",
    "load_part_model",
    "predict_parts",
    "preprocess",
]

OFFICIAL_IMAGE_SIZE = 256
"""Input side of the released checkpoints (the official ``input_size`` 256 x 256)."""

_MODULE = "SCOPSModule"
_NET_PREFIX = "net."


class PartCheckpointError(CheckpointError):
    """A file is not a usable SCOPS checkpoint: unreadable, of another model, or not matching the network."""


def _trained_image_size(config: Mapping[str, Any]) -> int | None:
    """The square side the run's data was read at (``image_size`` of the real-data readers, ``size`` of the world)."""
    data = config.get("data")
    dataset = data.get("dataset") if isinstance(data, Mapping) else None
    if isinstance(dataset, Mapping):
        for key in ("image_size", "size"):
            if isinstance(dataset.get(key), int):
                return int(dataset[key])
    return None


def _from_run(path: Path, ckpt: Mapping[str, Any]) -> tuple[PartSegmenter, int]:
    meta = ckpt.get(CONFIG_KEY)
    config = meta.get("config") if isinstance(meta, Mapping) else None
    model = config.get("model") if isinstance(config, Mapping) else None
    target = str(model.get("_target_", "")) if isinstance(model, Mapping) else ""
    if not target.endswith(_MODULE):
        raise PartCheckpointError(
            f"'{path}' is not a SCOPS checkpoint: its model is '{target or 'unknown'}' (paper=scops writes one with "
            f"{_MODULE})"
        )
    net = PartSegmenter(
        num_parts=int(model.get("num_parts", 8)),
        blocks=tuple(model.get("blocks", (3, 4, 6, 3))),
        base_channels=int(model.get("base_channels", 64)),
        aspp_dilations=tuple(model.get("aspp_dilations", ASPP_DILATIONS)),
    )
    state = {k[len(_NET_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(_NET_PREFIX)}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:  # missing, unexpected or mis-shaped names: torch lists them
        detail = " ".join(str(err).split())[:300]
        raise PartCheckpointError(f"'{path}': the network weights do not match its config ({detail})") from err
    return net, _trained_image_size(config) or OFFICIAL_IMAGE_SIZE


def load_part_model(path: str | os.PathLike, image_size: int | None = None) -> tuple[PartSegmenter, int]:
    """The trained part segmentation network of a checkpoint, in evaluation mode, and its input side.

    Args:
        path: a checkpoint of ``nvresearch.train paper=scops`` (``.ckpt``) or a released official state dict
            (``model_<step>.pth``, read by :func:`~nvresearch.scops.official.load_official`).
        image_size: the square input side; ``None`` takes the side the run was trained at (its data config), or
            :data:`OFFICIAL_IMAGE_SIZE` for a released checkpoint.

    Returns:
        ``(net, image_size)``.

    Raises:
        FileNotFoundError: no file at ``path`` (core's ``NoCheckpointError``).
        CheckpointError: the file is not a readable, safe checkpoint (core's reader); its subclass
            :class:`PartCheckpointError`: a checkpoint of another model, or weights that do not fit the network.
    """
    p = Path(path).expanduser()
    ckpt = read_checkpoint(p)  # NoCheckpointError (a FileNotFoundError) or CheckpointError
    if "state_dict" in ckpt and isinstance(ckpt["state_dict"], Mapping):
        net, size = _from_run(p, ckpt)
    else:
        try:
            net = load_official(p)
        except OfficialCheckpointError as err:
            raise PartCheckpointError(str(err)) from err
        size = OFFICIAL_IMAGE_SIZE
    if image_size is not None:
        size = int(image_size)
    if size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {size}")
    return net.eval(), size


def preprocess(rgb: Tensor, image_size: int) -> Tensor:
    """An image as the training readers hand it to the network: bilinear resize to ``image_size`` squared without
    keeping the aspect ratio (as the official CelebA loader and :class:`~nvresearch.scops.data.PartImageFolder`),
    RGB minus the Caffe mean.

    Shape:
        rgb: ``(3, H, W)`` uint8 (or float in 0..255); returns ``(3, S, S)`` float32.
    """
    if rgb.dim() != 3 or rgb.shape[0] != 3:
        raise ValueError(f"expected an RGB image of shape (3, H, W), got {tuple(rgb.shape)}")
    return caffe_normalize(resize_bilinear(rgb, (image_size, image_size)))


@torch.no_grad()
def predict_parts(net: torch.nn.Module, rgb: Tensor, image_size: int) -> dict[str, Tensor]:
    """Part maps of one image at its own size.

    The network sees the :func:`preprocess`-ed image; its logits are up-sampled bilinearly (``align_corners=True``,
    as in training and evaluation) straight to the image's ``H x W``, which undoes the anisotropic resize. Centres
    are the official evaluation's (softmax part maps normalised by their sum, no epsilon), in the image's pixels.

    Returns:
        ``probs (K + 1, H, W)`` (softmax; channel 0 the background), ``labels (H, W)`` long in ``0..K`` (the argmax),
        ``centres (K, 2)`` as ``(x, y)`` pixels.
    """
    h, w = rgb.shape[-2:]
    device = next(net.parameters()).device
    logits = net(preprocess(rgb, image_size)[None].to(device))
    z = upsample_logits(logits, (h, w))
    probs = z.softmax(dim=1)[0]
    return {
        "probs": probs.cpu(),
        "labels": probs.argmax(dim=0).cpu(),
        "centres": landmark_centers(logits, (h, w))[0].cpu(),
    }


@torch.no_grad()
def dataset_centres(
    net: torch.nn.Module, dataset: Dataset, batch_size: int = 16, device: str | torch.device = "cpu"
) -> dict[str, Tensor]:
    """Part centres of every sample of a reader (the landmark evaluation's input), with the sample's ground truth.

    The samples are the readers' (already resized and normalised); the centres are the official evaluation's, in
    pixels of the sample's ``S x S`` frame (:func:`~nvresearch.scops.metrics.landmark_centers`).

    Returns:
        ``centres (N, K, 2)`` and, where the samples have them, ``landmarks (N, L, 2)``, ``keypoints (N, P, 3)``,
        ``labels (N, S, S)``.
    """
    net = net.to(device).eval()
    out: dict[str, list[Tensor]] = {}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images = batch["image"].to(device)
        out.setdefault("centres", []).append(landmark_centers(net(images), images.shape[-2:]).cpu())
        for key in ("landmarks", "keypoints", "labels"):
            if key in batch:
                out.setdefault(key, []).append(batch[key])
    if not out:
        raise ValueError("dataset_centres: the dataset is empty")
    return {key: torch.cat(values) for key, values in out.items()}
