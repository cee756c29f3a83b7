"""The FUNIT reproduce script's table: embedded results alone, paper numbers flagged when uncertain."""

from __future__ import annotations

import json

from conftest import REPO, load_script


def _script():
    path = REPO / "scripts" / "reproduce" / "funit" / "translation_accuracy.py"
    return load_script(path)


FAKE = {"test/top1_k1": 0.5, "test/top5_k1": 0.9, "test/top1_colour_k1": 0.12, "test/top1_copy_k1": 1.0}


def test_small_mode_prints_no_paper_numbers(tmp_path, monkeypatch, capsys):
    script = _script()
    monkeypatch.setattr(script, "run", lambda *a, **k: dict(FAKE))
    assert script.main(["--small", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no paper counterpart" in out and "top1 colour probe" in out and "paper" not in out.split("\n")[2]
    for value in ("46.72", "82.36", "68.68"):  # no Animal Faces number beside the embedded results
        assert value not in out
    assert json.loads((tmp_path / "table.json").read_text())["ours"]["creatures"]["test/top1_k1"] == 0.5


def test_full_mode_flags_recalled_paper_numbers(tmp_path, monkeypatch, capsys):
    script = _script()
    monkeypatch.setattr(script, "run", lambda *a, **k: dict(FAKE))
    assert script.main(["--data-dir", str(tmp_path), "--datasets", "animals", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "46.72?" in out and "82.36" in out and "82.36?" not in out  # recalled vs checked
    paper = json.loads((tmp_path / "table.json").read_text())["paper"]
    assert paper["animals"]["top1_k1"] == {"value": 46.72, "status": "recalled"}
