"""What a run shows on the console: targeted filters for known noise, and lines copied into the run's log file.

One place for every filter, each matched on its message and category (or logger), so that a warning that matters
still shows; nothing here is a blanket ``ignore``.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings

# Lightning's advertisement for its cloud services (logger and checkpoint upload), logged at INFO on every run.
_TIP = re.compile(r"^💡 Tip: ")
# lightning_utilities appends "Requirement 'x' not met. HINT: Try running `pip install -U 'x'`" lines to the
# missing-TensorBoard message; the first line already says what to install.
_REQUIREMENT_HINT = re.compile(r"^Requirement '[^']+' not met\. HINT: .*$\n?", re.MULTILINE)


class _ConsoleNoise(logging.Filter):
    """Drops Lightning's tips and strips the pip hints from a record; every other record passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _TIP.match(message):
            return False
        if _REQUIREMENT_HINT.search(message):
            record.msg, record.args = _REQUIREMENT_HINT.sub("", message).rstrip("\n"), ()
        return True


_FILTER = _ConsoleNoise()


def quiet_console() -> None:
    """Install the filters (idempotent); the entry points call it before anything imports Lightning's loggers."""
    # Lightning 2.6 calls torch's deprecated LeafSpec on every batch transfer; nothing a user can act on.
    leafspec = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
    warnings.filterwarnings("ignore", message=leafspec, category=FutureWarning)
    # The embedded datasets are made in memory and read with num_workers=0 on purpose (workers would copy them).
    from lightning_fabric.utilities.warnings import PossibleUserWarning

    warnings.filterwarnings("ignore", message=r".*does not have many workers", category=PossibleUserWarning)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero", "nvresearch"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def interactive() -> bool:
    """Whether stdout is a terminal or a notebook (a progress bar redraws in place there; in a file it piles up)."""
    return sys.stdout.isatty() or "ipykernel" in sys.modules


def log_to_files(text: str, logger: logging.Logger | None = None) -> None:
    """Write ``text`` to the log files of the root logger (Hydra's ``<task>.log``) only, not to the console."""
    logger = logger or logging.getLogger("nvresearch")
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, text, (), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
