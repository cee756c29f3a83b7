"""Small torch-free helpers: object construction from configs, optional imports."""

from nvresearch.core.utils.instantiate import instantiate, locate
from nvresearch.core.utils.optional import optional_import

__all__ = ["instantiate", "locate", "optional_import"]
