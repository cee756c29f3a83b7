"""LightningDataModule for joint upsampling: depth (synthetic scenes, NYU Depth v2) and flow (synthetic, Sintel)."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset

from nvresearch.core.training import SplitDataModule, dataset_component
from nvresearch.pac.upsampling.data import JointUpsamplingDataset


class JointUpsamplingDataModule(SplitDataModule):
    """Train/val/test splits for joint upsampling by ``factor``.

    Args:
        dataset: the dataset component: called as ``dataset(split=...)`` it returns that split's base samples
            (dicts with ``image`` and ``target_key``), e.g. ``SyntheticRGBD.for_split``, ``NYUDepthV2.for_split``,
            ``SyntheticFlow.for_split`` or ``SintelFlow.for_split`` as a ``_partial_`` config.
        factor: upsampling factor (a power of two).
        crop: training crop size (a multiple of ``factor``); evaluation uses whole images.
        lowres_mode: how the LR input is made from the HR target (``center``: point subsampling, the NYU protocol).
        target_key: the upsampled map in the base samples: ``depth`` or ``flow``.
        eval_full_size: evaluate on whole images even where their size is not a multiple of ``factor`` (Sintel).
        eval_border / metric_scale: the evaluation protocol of this data; the model config reads them
            (``${data.eval_border}``), so they are accepted here and not used by the data module itself.
        batch_size / eval_batch_size / num_workers / seed: see :class:`~nvresearch.core.training.SplitDataModule`;
            ``seed`` also seeds the training crops and the LR degradation.
    """

    def __init__(
        self,
        dataset: Callable[..., Dataset],
        factor: int = 8,
        crop: int | None = 64,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        lowres_mode: str = "center",
        target_key: str = "depth",
        eval_full_size: bool = False,
        eval_border: int = 0,
        metric_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, seed)
        self.dataset = dataset_component(dataset, type(self).__name__)
        self.factor, self.crop, self.lowres_mode = int(factor), crop, lowres_mode
        self.target_key, self.eval_full_size = target_key, bool(eval_full_size)
        self.eval_border, self.metric_scale = eval_border, metric_scale

    def make_split(self, split: str) -> Dataset:
        train = split == "train"
        return JointUpsamplingDataset(
            self.dataset(split=split),
            factor=self.factor,
            crop=self.crop if train else None,
            train=train,
            lowres_mode=self.lowres_mode,
            seed=self.seed,
            target_key=self.target_key,
            eval_full_size=self.eval_full_size,
        )
