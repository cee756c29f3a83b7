"""Rank a folder of gallery images against query images with a trained DG-Net appearance encoder (torch only).

The feature is the official test feature (:func:`~nvresearch.dgnet.metrics.extract_features`: primary and
fine-grained halves, flip sum, per-half normalisation; the query's fine half weighted by ``alpha``), computed on the
images as the run saw them (bicubic resize to the run's size, ImageNet normalisation, the run's x2 up-sampling of
short inputs). Each query's gallery is sorted by the official score, ties by gallery order.

Sources of the encoder (:func:`load_reid_model`):

- a checkpoint written by ``python -m nvresearch.train paper=dgnet`` (a ``DGNetModule``): the appearance encoder is
  rebuilt from the checkpoint's embedded config (no Lightning needed), with the run's image size, ``upscale_height``
  and ``alpha``;
- an official ``id_*.pt`` (read with :func:`~nvresearch.dgnet.official.load_official`), or an
  :class:`~nvresearch.dgnet.models.AppearanceEncoder` already in memory: the official 256 x 128, up-sampling of
  inputs no taller than 128, ``alpha`` 0.5.

Folders (:func:`folder_images`): the images directly in the folder (``.jpg``, ``.jpeg``, ``.png``), sorted by name.
When every file name follows one of the Market-1501, DukeMTMC-reID or MSMT17 namings, the person and camera ids are
read from the names and :func:`rank_folders` also scores the ranking with the Market protocol.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from nvresearch.core.data import DatasetLayoutError
from nvresearch.core.training.checkpoint import CONFIG_KEY, read_checkpoint
from nvresearch.core.utils.instantiate import instantiate
from nvresearch.dgnet.data import IMAGE_SUFFIXES, NAMINGS, ReidImages, ReidRecord, eval_transform, parse_name
from nvresearch.dgnet.metrics import ReidResult, extract_features, market_evaluate, weight_query
from nvresearch.dgnet.models import AppearanceEncoder, upscale_small

__all__ = [
    "RankedQuery",
    "RankingResult",
    "ReidModel",
    "dataset_features",
    "evaluate_reid",
    "folder_images",
    "load_reid_model",
    "rank_folders",
    "rank_gallery",
]

UNKNOWN = -2  # person / camera of a file whose name carries no ids (never equal to a Market id, which are >= -1)


@dataclass
class ReidModel:
    """An appearance encoder with the input settings of the run that trained it.

    Attributes:
        encoder: E_a (eval mode).
        height / width: the image size the encoder was trained on.
        upscale_height: inputs no taller than this are up-sampled x2 before E_a (0: never; official 128).
        alpha: weight of the query's fine-grained half (0.5 official; 0 primary only; -1 fine only).
    """

    encoder: AppearanceEncoder
    height: int = 256
    width: int = 128
    upscale_height: int = 128
    alpha: float = 0.5

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """DG-Net's test feature of ImageNet-normalised images (as the run computes it in evaluation).

        Shape:
            images: ``(N, 3, height, width)``; returns ``(N, 2 D)``.
        """
        up = upscale_small(images, self.upscale_height) if self.upscale_height > 0 else images
        return extract_features(self.encoder, up)


def _from_run(ckpt: Mapping[str, Any], path: Path) -> ReidModel:
    config = ckpt.get(CONFIG_KEY, {}).get("config") if isinstance(ckpt.get(CONFIG_KEY), Mapping) else None
    if not isinstance(config, Mapping) or not isinstance(config.get("model"), Mapping):
        raise ValueError(f"{path}: no embedded run config (key '{CONFIG_KEY}'); not written by nvresearch.train")
    model_cfg = config["model"]
    enc_cfg = model_cfg.get("appearance_encoder")
    if not isinstance(enc_cfg, Mapping) or "_target_" not in enc_cfg:
        target = model_cfg.get("_target_", "?")
        raise ValueError(f"{path}: not a DG-Net checkpoint (model {target} has no appearance_encoder)")
    enc_cfg = dict(enc_cfg)
    if "pretrained_path" in enc_cfg:  # the ImageNet trunk file of the run is not needed: the weights are here
        enc_cfg["pretrained_path"] = None
    encoder = instantiate(enc_cfg, allowed_prefixes=("nvresearch.",))
    if not isinstance(encoder, AppearanceEncoder):
        raise ValueError(f"{path}: model.appearance_encoder builds a {type(encoder).__name__}, not AppearanceEncoder")
    prefix = "appearance_encoder."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"{path}: the state dict has no appearance_encoder.* weights")
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path}: the appearance encoder's weights do not fit its config ({err})") from err
    dataset = config.get("data", {}).get("dataset", {}) if isinstance(config.get("data"), Mapping) else {}
    return ReidModel(
        encoder.eval(),
        height=int(dataset.get("height", 256)),
        width=int(dataset.get("width", 128)),
        upscale_height=int(model_cfg.get("upscale_height", 128)),
        alpha=float(model_cfg.get("alpha", 0.5)),
    )


def load_reid_model(source: str | os.PathLike | nn.Module) -> ReidModel:
    """The appearance encoder of a trained DG-Net, with its run's input settings.

    Args:
        source: a ``nvresearch.train paper=dgnet`` checkpoint (``last.ckpt``), an official ``id_*.pt``, or an
            :class:`~nvresearch.dgnet.models.AppearanceEncoder` (e.g. :func:`~nvresearch.dgnet.load_official`'s).

    Raises:
        FileNotFoundError: no file at ``source``.
        ValueError: the file is not a readable checkpoint, or holds no DG-Net appearance encoder (the message names
            the file and what it holds instead).
    """
    if isinstance(source, nn.Module):
        if not isinstance(source, AppearanceEncoder):
            raise ValueError(f"need an AppearanceEncoder (the official id_*.pt), got a {type(source).__name__}")
        return ReidModel(source.eval())
    path = Path(source).expanduser()
    ckpt = read_checkpoint(path)  # NoCheckpointError (a FileNotFoundError) or CheckpointError (a ValueError)
    if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
        return _from_run(ckpt, path)
    from nvresearch.dgnet.official import OfficialCheckpointError, load_official

    try:
        net = load_official(ckpt if isinstance(ckpt, Mapping) else {})
    except OfficialCheckpointError as err:
        raise ValueError(f"{path}: neither an nvresearch.train checkpoint nor an official DG-Net one ({err})") from err
    if not isinstance(net, AppearanceEncoder):
        raise ValueError(f"{path}: an official {type(net).__name__} checkpoint; ranking needs the id_*.pt file")
    return ReidModel(net)


def folder_images(folder: str | os.PathLike, transform: Any = None, name: str = "folder") -> ReidImages:
    """The images directly in ``folder``, sorted by file name, with person and camera ids when every name follows
    one dataset naming (Market-1501, DukeMTMC-reID, MSMT17), :data:`UNKNOWN` otherwise.

    Raises:
        DatasetLayoutError: the folder does not exist or holds no image (the message names it).
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise DatasetLayoutError(f"{name} '{path}' is not a folder")
    files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetLayoutError(f"{name} '{path}' holds no image ({', '.join(IMAGE_SUFFIXES)})")
    ids = None
    for naming in NAMINGS:
        try:
            ids = [parse_name(f.name, naming) for f in files]
            break
        except ValueError:
            continue
    records = [ReidRecord(f, *(ids[i] if ids else (UNKNOWN, UNKNOWN))) for i, f in enumerate(files)]
    return ReidImages(records, relabel=False, transform=transform, name=f"{name} '{path}'")


def _has_ids(images: ReidImages) -> bool:
    return all(r.person != UNKNOWN for r in images.records)


def dataset_features(
    model: ReidModel, images: Dataset, batch_size: int = 64, device: str | torch.device = "cpu"
) -> Tensor:
    """DG-Net's test feature of every image of a dataset whose items are ``(image, label, camera)`` (e.g.
    :class:`~nvresearch.dgnet.data.ReidImages`, :class:`~nvresearch.dgnet.world.SyntheticPersons`), in batches.

    Shape:
        returns ``(N, 2 D)`` on the CPU.
    """
    dev = torch.device(device)
    model.encoder.to(dev)
    loader = DataLoader(images, batch_size=batch_size, shuffle=False)
    return torch.cat([model.features(x.to(dev)).cpu() for x, _, _ in loader])


def evaluate_reid(
    model: ReidModel, query: Dataset, gallery: Dataset, batch_size: int = 64, device: str | torch.device = "cpu"
) -> ReidResult:
    """The Market-1501 protocol (:func:`~nvresearch.dgnet.metrics.market_evaluate`, the model's ``alpha``) on a
    query and a gallery dataset with ``labels`` and ``cameras`` (a released dataset's or the embedded world's)."""
    qf, gf = dataset_features(model, query, batch_size, device), dataset_features(model, gallery, batch_size, device)
    return market_evaluate(qf, query.labels, query.cameras, gf, gallery.labels, gallery.cameras, alpha=model.alpha)


def rank_gallery(query_features: Tensor, gallery_features: Tensor, alpha: float = 0.5) -> tuple[Tensor, Tensor]:
    """Each query's gallery ranked by the official score (dot product of the ``alpha``-weighted query feature with
    the gallery feature; ties by gallery order).

    Returns:
        The ranked gallery indices and their distances ``1 - score / score_self``, where ``score_self`` is the score
        of an image against itself (``1 + alpha``; 1 for ``alpha`` 0 or -1): 0 for an identical feature, at most 2.

    Shape:
        query_features: ``(Q, 2 D)``; gallery_features: ``(G, 2 D)``; returns two ``(Q, G)`` tensors.
    """
    if alpha != -1 and alpha < 0:
        raise ValueError(f"alpha must be >= 0 or -1 (fine half only), got {alpha}")
    scores = weight_query(query_features, alpha).double() @ gallery_features.double().T
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    self_score = 1.0 if alpha == -1 else 1.0 + alpha
    return order, 1.0 - scores.gather(1, order) / self_score


@dataclass
class RankedQuery:
    """One query's ranking: its file and the first ``k`` gallery files with their distances."""

    query: Path
    gallery: list[Path]
    distances: list[float]
    gallery_index: list[int] = field(default_factory=list)


@dataclass
class RankingResult:
    """Rankings of every query; ``metrics`` when the file names carry person and camera ids (Market protocol)."""

    queries: list[RankedQuery]
    metrics: ReidResult | None
    query_images: ReidImages
    gallery_images: ReidImages


def rank_folders(
    model: ReidModel,
    query: str | os.PathLike,
    gallery: str | os.PathLike,
    top: int = 10,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> RankingResult:
    """Rank the images of ``gallery`` for each image of ``query`` (both folders of images).

    Args:
        model: see :func:`load_reid_model`.
        top: gallery entries kept per query (all if larger than the gallery).

    Raises:
        DatasetLayoutError: a folder is missing or empty.
        OSError: an image cannot be read (the message names the file).
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    tf = eval_transform(model.height, model.width)
    q_images, g_images = folder_images(query, tf, "query folder"), folder_images(gallery, tf, "gallery folder")
    qf, gf = (
        dataset_features(model, q_images, batch_size, device),
        dataset_features(model, g_images, batch_size, device),
    )
    order, dist = rank_gallery(qf, gf, model.alpha)
    k = min(top, len(g_images))
    ranked = [
        RankedQuery(
            q_images.records[i].path,
            [g_images.records[j].path for j in order[i, :k].tolist()],
            dist[i, :k].tolist(),
            order[i, :k].tolist(),
        )
        for i in range(len(q_images))
    ]
    metrics = None
    if _has_ids(q_images) and _has_ids(g_images):
        metrics = market_evaluate(
            qf, q_images.labels, q_images.cameras, gf, g_images.labels, g_images.cameras, alpha=model.alpha
        )
    return RankingResult(ranked, metrics, q_images, g_images)
