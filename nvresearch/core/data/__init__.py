"""Dataset plumbing shared by the papers (torch-only)."""

from nvresearch.core.data.cache import MemoryCache
from nvresearch.core.data.errors import DatasetLayoutError
from nvresearch.core.data.images import read_image
from nvresearch.core.data.loaders import make_loader
from nvresearch.core.data.samplers import EpochSampler, split_epoch_key, split_seed

__all__ = [
    "DatasetLayoutError",
    "EpochSampler",
    "MemoryCache",
    "make_loader",
    "read_image",
    "split_epoch_key",
    "split_seed",
]
