"""Training glue shared by every paper: the LightningModule base, checkpoints, the run loop (imports Lightning)."""

from nvresearch.core.training.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from nvresearch.core.training.datamodule import SplitDataModule, dataset_component
from nvresearch.core.training.module import NonFiniteLossError, NVModule

__all__ = [
    "CheckpointError",
    "NVModule",
    "NonFiniteLossError",
    "SplitDataModule",
    "dataset_component",
    "load_checkpoint",
    "read_checkpoint",
]
