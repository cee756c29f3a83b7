"""Errors a user can fix (a bad checkpoint, a missing dataset, no GPU, no earlier run).

The entry points print these as one line on stderr (``error: ...``) and exit non-zero, without a traceback;
every other exception is a bug of ours and keeps its traceback.
"""

from __future__ import annotations

from nvresearch.core.data.errors import DatasetLayoutError


class UserError(Exception):
    """Base of the errors that come from the user's command line, files or machine, not from a bug."""


class NoCheckpointError(UserError, FileNotFoundError):
    """``ckpt_path`` names no checkpoint (no such file, or ``last`` with no earlier run)."""


class DeviceError(UserError, RuntimeError):
    """The trainer asks for a device this machine does not have."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types the entry points report in one line (imports Lightning through the training package)."""
    from nvresearch.core.training.module import NonFiniteLossError
    from nvresearch.core.utils.schema import ConfigError

    return (UserError, DatasetLayoutError, NonFiniteLossError, ConfigError)
