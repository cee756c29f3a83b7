"""Small helpers: object construction from configs without Hydra, pictures."""

from nvresearch.core.utils.instantiate import instantiate, locate

__all__ = ["instantiate", "locate"]
