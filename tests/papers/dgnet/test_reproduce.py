"""The DG-Net reproduce scripts (scripts/reproduce/dgnet/): argument handling, the tables beside the paper's, and a
tiny real direct-transfer evaluation between two embedded worlds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import REPO, load_script

from nvresearch.core.training.checkpoint import CONFIG_KEY
from nvresearch.dgnet.models import AppearanceEncoder

FOLDER = REPO / "scripts" / "reproduce" / "dgnet"
FAKE = {"test/rank1": 0.25, "test/rank5": 0.5, "test/rank10": 0.75, "test/mAP": 0.3, "test/colour_mAP": 0.01}


def _script(name: str):
    return load_script(FOLDER / f"{name}.py")


@pytest.fixture
def tiny_ckpt(tmp_path: Path) -> Path:
    """A checkpoint as nvresearch.train writes it: a tiny appearance encoder trained on a 3-identity world."""
    torch.manual_seed(0)
    encoder = AppearanceEncoder(3, backbone="tiny")
    dataset = {"_target_": "nvresearch.dgnet.data.persons_split", "_partial_": True, "num_ids": 3,
               "images_per_camera": 2, "height": 64, "width": 32, "world_seed": 0, "seed": 0}  # fmt: skip
    config = {
        "model": {
            "_target_": "nvresearch.dgnet.module.DGNetModule",
            "appearance_encoder": {
                "_target_": "nvresearch.dgnet.models.AppearanceEncoder",
                "num_classes": 3,
                "backbone": "tiny",
                "pretrained_path": "/nowhere/resnet.pth",
            },
            "upscale_height": 0,
            "alpha": 0.5,
        },  # fmt: skip
        "data": {"dataset": dataset},
    }
    state = {f"appearance_encoder.{k}": v for k, v in encoder.state_dict().items()}
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, CONFIG_KEY: {"config": config}}, path)
    return path


def test_table_small_mode_prints_embedded_results_apart(tmp_path: Path, monkeypatch, capsys) -> None:
    script = _script("reid_table")
    seen = []
    monkeypatch.setattr(script, "train", lambda overrides: (seen.append(overrides) or dict(FAKE), None))
    assert script.main(["--small", "--out", str(tmp_path), "trainer.max_epochs=1"]) == 0
    assert seen == [["paper=dgnet", "trainer=cpu", f"paths.output_dir={tmp_path / 'embedded'}", "trainer.max_epochs=1"]]
    out = capsys.readouterr().out
    assert "NOT comparable" in out and "colour-histogram probe" in out
    line = next(row for row in out.splitlines() if row.startswith("DG-Net (tiny)"))
    assert line.split()[-4:] == ["25.00", "50.00", "75.00", "30.00"]
    assert json.loads((tmp_path / "table.json").read_text())["ours"]["embedded"]["test/mAP"] == 0.3


def test_table_full_mode_evaluates_given_and_trains_missing(tmp_path: Path, monkeypatch, capsys) -> None:
    script = _script("reid_table")
    trained, evaluated = [], []
    monkeypatch.setattr(script, "train", lambda o: (trained.append(o) or {}, tmp_path / "trained.ckpt"))
    monkeypatch.setattr(script, "released_split", lambda d, root, ckpt: (d, root))
    monkeypatch.setattr(
        script,
        "evaluate_on",
        lambda ckpt, q, g, device: (
            evaluated.append((str(ckpt), q, device)) or {"rank1": 0.9, "rank5": 0.95, "rank10": 0.97, "mAP": 0.8}
        ),
    )
    given = tmp_path / "id_00100000.pt"
    given.write_bytes(b"")
    argv = ["--data-dir", "/data", "--datasets", "market", "duke", "--checkpoint", f"market={given}"]
    assert script.main([*argv, "--out", str(tmp_path), "--device", "cuda", "model.teacher_path=t.pth"]) == 0
    assert evaluated == [(str(given), "market", "cuda"), (str(tmp_path / "trained.ckpt"), "duke", "cuda")]
    assert len(trained) == 1  # only Duke is trained: 702 identities, 100k iterations of batch 16 = 97 epochs
    for item in ("data.dataset.layout=duke", "model.appearance_encoder.num_classes=702", "trainer.max_epochs=97",
                 "data.dataset.root=/data/DukeMTMC-reID", "model.teacher_path=t.pth"):  # fmt: skip
        assert item in trained[0], item
    rows = {r.split()[0]: r.split() for r in capsys.readouterr().out.splitlines() if r and "(" not in r}
    market = rows["market"]
    assert market == ["market", "90.00", "94.80", "95.00", "97.98", "97.00", "98.78", "80.00", "86.00"]
    assert rows["duke"][1:3] == ["90.00", "86.60"] and rows["duke"][4] == "-"  # no rank-5 in the paper for Duke


def test_argument_errors(tmp_path: Path, capsys) -> None:
    script = _script("reid_table")
    with pytest.raises(SystemExit) as exit_:
        script.main([])
    assert exit_.value.code == 2 and "full mode needs --data-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="NAME must be one of market, duke, msmt17"):
        script.main(["--data-dir", str(tmp_path), "--checkpoint", "cuhk=x.pt"])
    with pytest.raises(SystemExit, match="no file"):
        script.main(["--data-dir", str(tmp_path), "--checkpoint", f"market={tmp_path / 'missing.pt'}"])
    transfer = _script("direct_transfer")
    with pytest.raises(SystemExit, match="--pairs 'market:market'"):
        transfer.main(["--data-dir", str(tmp_path), "--pairs", "market:market"])


def test_direct_transfer_small_evaluates_both_worlds(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    """A real (tiny) run: two given checkpoints, each evaluated on its own world and on the other."""
    script = _script("direct_transfer")
    argv = ["--small", "--checkpoint", f"world0={tiny_ckpt}", "--checkpoint", f"world1={tiny_ckpt}"]
    assert script.main([*argv, "--out", str(tmp_path)]) == 0
    ours = json.loads((tmp_path / "table.json").read_text())["ours"]
    assert set(ours) == {"world0->world0", "world0->world1", "world1->world0", "world1->world1"}
    assert ours["world0->world0"] == ours["world1->world0"]  # the same network on the same world
    assert ours["world0->world0"] != ours["world0->world1"]  # another world: other persons and cameras
    for r in ours.values():
        assert 0 <= r["mAP"] <= 1 and 0 <= r["rank1"] <= 1
    out = capsys.readouterr().out
    assert "NOT comparable" in out and "world0 -> world1" in out and "transfer" in out


def test_direct_transfer_full_mode_beside_the_paper(tmp_path: Path, monkeypatch, capsys) -> None:
    script = _script("direct_transfer")
    monkeypatch.setattr(script.table, "released_split", lambda d, root, ckpt: (d, root))
    monkeypatch.setattr(script.table, "evaluate_on", lambda ckpt, q, g, dev: {"rank1": 0.5, "mAP": 0.25})
    given = tmp_path / "m.ckpt"
    given.write_bytes(b"")
    argv = ["--data-dir", "/data", "--pairs", "market:duke", "--checkpoint", f"market={given}"]
    assert script.main([*argv, "--out", str(tmp_path)]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("market -> duke"))
    assert row.split()[3:] == ["50.00", "42.62", "25.00", "24.25"]
