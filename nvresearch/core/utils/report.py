"""Plain-text result tables for the reproduce scripts: our numbers beside the paper's.

The module imports no torch, Lightning or Hydra (the ``nvresearch.core.utils`` package around it imports torch).

Every ``scripts/reproduce/<slug>/*.py`` prints its table with :func:`print_table` and saves the numbers with
:func:`write_json`, so that the tables of all papers read the same way: a missing number is ``-``, the first column
and the columns of text are left-aligned, the columns of numbers right-aligned to their widest cell.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["format_cell", "format_table", "print_table", "reproduce_output", "write_json"]


def format_cell(value: object, precision: int = 2) -> str:
    """A number with ``precision`` decimals, an int as it is, text as it is; ``None`` and NaN (no number) as ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or isinstance(value, int) or isinstance(value, str):
        return str(value)
    if isinstance(value, float) or hasattr(value, "__float__"):
        return f"{float(value):.{precision}f}"
    return str(value)


def format_table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], precision: int | Sequence[int] = 2, indent: str = ""
) -> str:
    """The table as text: a header line, then one line per row.

    Args:
        columns: the column names.
        rows: one sequence of cells per row, as long as ``columns``.
        precision: decimals for float cells, one for all columns or one per column.
        indent: put before every line.
    """
    precisions = [precision] * len(columns) if isinstance(precision, int) else list(precision)
    if len(precisions) != len(columns):
        raise ValueError(f"precision has {len(precisions)} entries for {len(columns)} columns")
    cells, text = [list(columns)], [True] + [True] * (len(columns) - 1)
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"row {i} has {len(row)} cells for {len(columns)} columns {list(columns)}")
        cells.append([format_cell(v, p) for v, p in zip(row, precisions, strict=True)])
        text = [t and (v is None or isinstance(v, str)) for t, v in zip(text, row, strict=True)]
    text[0] = True  # the row names
    widths = [max(len(r[j]) for r in cells) for j in range(len(columns))]
    lines = [
        indent + "  ".join(c.ljust(w) if t else c.rjust(w) for c, w, t in zip(r, widths, text, strict=True))
        for r in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def print_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[object]], precision: int | Sequence[int] = 2
) -> str:
    """Print ``title`` after a blank line, then :func:`format_table`; returns the printed text."""
    text = f"\n{title}\n{format_table(columns, rows, precision)}"
    print(text)
    return text


def write_json(out: str | Path, payload: Mapping[str, Any], name: str = "table.json") -> Path:
    """Write ``payload`` (ours, the paper's, the data used) as ``out/name``, say where, and return the path."""
    path = Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"\nwrote {path}")
    return path


def reproduce_output(parser: argparse.ArgumentParser, args: argparse.Namespace, default_root: str | Path) -> Path:
    """The output folder of a reproduce script run: ``--out``, or ``<default_root>/<date>_<time>``.

    Checks first what every script's command line shares: full mode needs ``--data-dir`` unless ``--small`` is given
    (``parser.error`` exits with the usage line otherwise).
    """
    if not args.small and not args.data_dir:
        parser.error("full mode needs --data-dir (or use --small)")
    return args.out or Path(default_root) / time.strftime("%Y-%m-%d_%H-%M-%S")
