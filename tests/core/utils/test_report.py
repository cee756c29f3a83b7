"""nvresearch.core.utils.report: the "ours beside the paper" tables of the reproduce scripts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nvresearch.core.utils.report import format_cell, format_table, print_table, write_json

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts" / "reproduce"


def test_cells() -> None:
    assert format_cell(1.23456) == "1.23" and format_cell(1.23456, 3) == "1.235"
    assert format_cell(None) == "-" and format_cell(math.nan) == "-"
    assert format_cell(7) == "7" and format_cell("> 0.93") == "> 0.93"


def test_table_aligns_and_marks_missing_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [["Bicubic", 12.3456, 14.22], ["PacJointUpsample", 1.5, None]]
    text = format_table(["model", "x8 ours", "x8 paper"], rows, precision=[0, 3, 2])
    assert text.splitlines() == [
        "model             x8 ours  x8 paper",
        "Bicubic            12.346     14.22",
        "PacJointUpsample    1.500         -",
    ]
    printed = print_table("RMSE", ["model", "x8 ours", "x8 paper"], rows, precision=[0, 3, 2])
    assert capsys.readouterr().out == printed + "\n" and printed.startswith("\nRMSE\nmodel")


def test_text_columns_align_left() -> None:
    text = format_table(["criterion", "rho", "paper"], [["taylor", 0.951, "> 0.93 (ImageNet)"], ["random", 0.0, None]])
    assert text.splitlines() == [
        "criterion   rho  paper",
        "taylor     0.95  > 0.93 (ImageNet)",
        "random     0.00  -",
    ]


def test_table_errors() -> None:
    with pytest.raises(ValueError, match=r"row 0 has 2 cells for 3 columns \['a', 'b', 'c'\]"):
        format_table(["a", "b", "c"], [[1, 2]])
    with pytest.raises(ValueError, match="precision has 2 entries for 3 columns"):
        format_table(["a", "b", "c"], [], precision=[1, 2])


def test_write_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "run", {"ours": {8: 1.5}, "paper": {"x": None}})
    assert json.loads(path.read_text()) == {"ours": {"8": 1.5}, "paper": {"x": None}}
    assert f"wrote {path}" in capsys.readouterr().out


# the scripts (a module imported by the scripts beside it, such as scops_reproduce_common.py, prints nothing itself)
_SCRIPTS = sorted(p.relative_to(SCRIPTS).as_posix() for p in SCRIPTS.glob("*/*.py") if "__main__" in p.read_text())


@pytest.mark.parametrize("script", _SCRIPTS)
def test_every_reproduce_script_prints_with_the_helper(script: str) -> None:
    path = SCRIPTS / script
    assert "print_table(" in path.read_text(), f"{path} prints its table by hand: use nvresearch.core.utils.report"
