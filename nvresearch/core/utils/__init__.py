"""Small helpers: object construction from configs without Hydra, config type checks, pictures, thread counts."""

from nvresearch.core.utils.instantiate import instantiate, locate
from nvresearch.core.utils.schema import ConfigError, check_config
from nvresearch.core.utils.threads import torch_threads

__all__ = ["ConfigError", "check_config", "instantiate", "locate", "torch_threads"]
