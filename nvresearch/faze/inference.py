"""Gaze estimation and few-shot personalisation without Lightning (FAZE Sec. 4.3, PS-GEN).

Example::

    from nvresearch.faze import FazeGazeEstimator, personalize, predict

    model = FazeGazeEstimator.load("outputs/faze/runs/<run>/estimator.pt")  # DT-ED encoder + meta-learned MLP
    mine = personalize(model, calib_images, calib_gaze, k=9, steps=10, lr=6e-4)  # 9 samples of one person
    pitch_yaw = predict(mine, images)  # (B, 2) radians, FAZE label convention

``calib_images`` / ``images`` are uint8 ``(N, H, W, 3)`` RGB eye-region patches in the layout of the preprocessed
HDF5 files (or float ``(N, 3, H, W)`` already in [-1, 1]); ``calib_gaze`` is ``(N, 2)`` (pitch, yaw) radians.
uint8 patches get the preprocessing the model was trained with (``estimator.preprocessing``, saved in
``estimator.pt``: e.g. luma equalisation on for GazeCapture, off for the embedded world).
"""

from __future__ import annotations

import copy
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from nvresearch.core.geometry import mean_angular_error, pitchyaw_to_vector, vector_to_pitchyaw
from nvresearch.core.meta import adapt
from nvresearch.faze.data import preprocess_pixels
from nvresearch.faze.metrics import adapt_tasks
from nvresearch.faze.models import DTED, GazeMLP

__all__ = ["FazeGazeEstimator", "personalize", "predict"]


class FazeGazeEstimator(nn.Module):
    """The deployed FAZE estimator: DT-ED encoder -> gaze code ``vec(Z_g)`` -> gaze MLP -> unit gaze vector.

    Args:
        dted: the trained DT-ED (only its encoder is used).
        mlp: the (meta-learned or personalised) gaze MLP.
        equalize: the run's ``data.equalize``: uint8 patches given to :func:`predict` / :func:`personalize` are
            luma-equalised as in training (the reference preprocessing is on). Saved with the networks.

    Shape:
        images: ``(B, 3, H, W)`` in [-1, 1]; returns ``(B, 3)`` unit vectors (``v(pitch, yaw)`` convention).
    """

    def __init__(self, dted: DTED, mlp: GazeMLP, equalize: bool = True) -> None:
        super().__init__()
        self.dted = dted
        self.mlp = mlp
        self.equalize = bool(equalize)

    @property
    def preprocessing(self) -> dict[str, bool]:
        """How uint8 patches were turned into the training input (what :meth:`save` records)."""
        return {"equalize": self.equalize}

    @classmethod
    def from_module(cls, module: nn.Module, equalize: bool = True) -> FazeGazeEstimator:
        """Build from a trained :class:`~nvresearch.faze.module.FazeModule` (copies its DT-ED and meta-learned MLP).

        ``equalize`` is the ``data.equalize`` the module was trained with.
        """
        return cls(copy.deepcopy(module.dted), copy.deepcopy(module.gaze_mlp), equalize).eval()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the networks, their constructor arguments and the preprocessing to one file (see :meth:`load`)."""
        path = Path(path)
        payload = {
            "dted_config": self.dted.config,
            "dted": self.dted.state_dict(),
            "mlp_config": self.mlp.config,
            "mlp": self.mlp.state_dict(),
            "preprocessing": self.preprocessing,
        }
        torch.save(payload, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> FazeGazeEstimator:
        """Rebuild an estimator written by :meth:`save` (each FAZE run writes ``<run>/estimator.pt``).

        Files written before the preprocessing was recorded get the reference preprocessing (equalisation on).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no FAZE estimator file at '{path}' (written by a run as <run>/estimator.pt)")
        payload = torch.load(path, map_location=map_location, weights_only=True)
        dted, mlp = DTED(**payload["dted_config"]), GazeMLP(**payload["mlp_config"])
        dted.load_state_dict(payload["dted"])
        mlp.load_state_dict(payload["mlp"])
        preprocessing = payload.get("preprocessing", {"equalize": True})
        unknown = sorted(set(preprocessing) - {"equalize"})
        if unknown:
            raise ValueError(f"'{path}' records preprocessing keys this version does not know: {unknown}")
        return cls(dted, mlp, equalize=bool(preprocessing["equalize"])).eval()

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Stage 2's input for preprocessed images (the encoder is frozen: no gradient): the gaze codes ``(B, 6)``,
        or the pooled encoder features ``(B, C)`` for an MLP with a ``before_z`` first layer."""
        if getattr(self.mlp, "pre_features", 0):
            return self.dted.pooled_features(images)
        return self.dted.encode(images)[1].flatten(1)

    def forward(self, images: Tensor) -> Tensor:
        return self.mlp(self.features(images))


def _as_images(images: Tensor | np.ndarray, equalize: bool = True) -> Tensor:
    """uint8 ``(B, H, W, 3)`` RGB patches (the HDF5 layout) are preprocessed; float ``(B, 3, H, W)`` pass through."""
    if isinstance(images, np.ndarray) or (isinstance(images, Tensor) and images.dtype == torch.uint8):
        arr = images.cpu().numpy() if isinstance(images, Tensor) else images
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (B, H, W, 3) RGB, got {arr.shape}")
        return torch.stack([preprocess_pixels(a, equalize) for a in arr])
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"float images must be (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
    return images.float()


@torch.no_grad()
def predict(model: FazeGazeEstimator, images: Tensor | np.ndarray, equalize: bool | None = None) -> Tensor:
    """Gaze (pitch, yaw) in radians for a batch of eye-region patches.

    Args:
        model: a :class:`FazeGazeEstimator` (person-independent or personalised).
        images: float ``(B, 3, H, W)`` in [-1, 1], or uint8 ``(B, H, W, 3)`` RGB patches as stored in the HDF5 files.
        equalize: luma-equalise uint8 patches; None (default): as the model was trained (``model.equalize``).

    Returns:
        ``(B, 2)`` radians.
    """
    model.eval()
    x = _as_images(images, model.equalize if equalize is None else equalize).to(next(model.parameters()).device)
    return vector_to_pitchyaw(model(x))


def personalize(
    model: FazeGazeEstimator,
    images: Tensor | np.ndarray,
    gaze_labels: Tensor | np.ndarray,
    k: int | None = None,
    steps: int = 1000,
    lr: float = 1e-5,
    seed: int = 0,
    equalize: bool | None = None,
) -> FazeGazeEstimator:
    """Few-shot personalisation (PS-GEN, FAZE Sec. 4): fine-tune a copy of the gaze MLP on k calibration samples.

    The DT-ED encoder stays frozen; ``steps`` full-batch SGD steps with the angular loss (degrees) at ``lr``
    adapt only the MLP. The returned model is a new object; ``model`` is unchanged.

    Args:
        model: the person-independent estimator.
        images: calibration patches of one person (see :func:`predict`), at least ``k``.
        gaze_labels: ``(N, 2)`` (pitch, yaw) radians of ``images``.
        k: use k of them, drawn at random with ``seed`` (None: all).
        steps / lr: SGD steps and step size (reference: 1000 at 1e-5; use the values the model was evaluated with).
        seed: seeds the draw of the k samples.
        equalize: luma-equalise uint8 patches; None (default): as the model was trained (``model.equalize``).

    Returns:
        The personalised :class:`FazeGazeEstimator`.
    """
    x = _as_images(images, model.equalize if equalize is None else equalize)
    y = torch.as_tensor(np.asarray(gaze_labels) if not isinstance(gaze_labels, Tensor) else gaze_labels).float()
    if y.dim() != 2 or y.shape[1] != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"gaze_labels must be (N, 2) for N={x.shape[0]} images, got {tuple(y.shape)}")
    n = x.shape[0]
    k = n if k is None else int(k)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} calibration samples requested but {n} were given")
    out = FazeGazeEstimator(model.dted, copy.deepcopy(model.mlp), model.equalize)
    if k == 0 or steps == 0:
        return out.eval()
    idx = torch.tensor(random.Random(seed).sample(range(n), k), dtype=torch.long)
    device = next(model.parameters()).device
    feats = model.features(x[idx].to(device))
    targets = pitchyaw_to_vector(y[idx]).to(device)
    if model.mlp.step_scales():  # Meta-SGD: its learned per-parameter steps
        adapted = adapt_tasks(model.mlp, feats.unsqueeze(0), targets.unsqueeze(0), steps, lr)
        with torch.no_grad():
            for name, p in out.mlp.named_parameters():
                p.copy_(adapted[name][0])
    else:
        out.mlp = adapt(model.mlp, (feats, targets), mean_angular_error, steps, lr)
    return out.eval()
