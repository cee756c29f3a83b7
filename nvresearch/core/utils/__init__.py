"""Small helpers: object construction from configs without Hydra, pictures, thread counts."""

from nvresearch.core.utils.instantiate import instantiate, locate
from nvresearch.core.utils.threads import torch_threads

__all__ = ["instantiate", "locate", "torch_threads"]
