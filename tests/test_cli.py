"""The command line as a user runs it: python -m nvresearch.train / nvresearch.eval in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import PAC_FAST, run_cli
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow


def _only_run_dir(root: Path) -> Path:
    runs = sorted((root / "pac" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_train_then_eval_writes_the_documented_run_folder(tmp_path):
    work = tmp_path / "cwd"
    work.mkdir()
    out_root = tmp_path / "outputs"
    res = run_cli(["-m", "nvresearch.train", *PAC_FAST, f"paths.output_root={out_root}"], cwd=work)
    assert res.returncode == 0, res.stderr[-3000:]
    run = _only_run_dir(out_root)
    assert run.name[:4].isdigit() and "_" in run.name  # <date>_<time>
    for rel in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "train.log",
        "checkpoints/last.ckpt",
        "csv/metrics.csv",
        "metrics.json",
    ):
        assert (run / rel).is_file(), rel
    assert list((run / "samples").glob("*.png")), "no sample pictures"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["paper"] == "pac"
    assert {"val/rmse", "test/rmse", "test/rmse_bicubic", "test/rmse_bilinear"} <= set(metrics["metrics"])
    assert str(run) in res.stdout and "test/rmse" in res.stdout  # the final report names the folder and metrics
    assert list(work.iterdir()) == [], "nothing may be written into the working directory"

    # evaluation of that checkpoint, without retraining, into its own run folder
    ckpt = run / "checkpoints" / "last.ckpt"
    res = run_cli(
        [
            "-m",
            "nvresearch.eval",
            "paper=pac",
            f"ckpt_path={ckpt}",
            "trainer=fast",
            "logger=csv",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        cwd=work,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ev = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert ev["task"] == "eval" and ev["checkpoint"] == str(ckpt)
    assert ev["metrics"]["test/rmse"] > 0
    assert (tmp_path / "eval" / "samples" / "test.png").is_file()
    assert list(work.iterdir()) == []


def test_cfg_job_prints_composed_config(tmp_path):
    res = run_cli(["-m", "nvresearch.train", "paper=pac", "data.batch_size=3", "--cfg", "job"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "paper_name: pac" in res.stdout and "batch_size: 3" in res.stdout
    assert list(tmp_path.iterdir()) == []


def test_sweep_runs_each_value(tmp_path):
    res = run_cli(
        [
            "-m",
            "nvresearch.train",
            "-m",
            *PAC_FAST,
            "model.optimizer.lr=1e-3,1e-4",
            f"paths.output_root={tmp_path}",
            "test=false",
        ],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    sweeps = list((tmp_path / "pac" / "multiruns").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    lrs = set()
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file()
        lrs.add(OmegaConf.load(job / ".hydra" / "config.yaml").model.optimizer.lr)
    assert lrs == {1e-3, 1e-4}, lrs


def test_bad_input_fails_fast_with_clear_messages(tmp_path):
    res = run_cli(["-m", "nvresearch.train", "paper=nosuch"], cwd=tmp_path)
    assert res.returncode != 0 and "Available options" in res.stderr and "pac" in res.stderr
    res = run_cli(["-m", "nvresearch.train", "paper=pac", "trainer.max_epoch=1"], cwd=tmp_path)
    assert res.returncode != 0 and "trainer.max_epoch" in res.stderr
    missing = tmp_path / "no_data_here"
    res = run_cli(
        [
            "-m",
            "nvresearch.train",
            "paper=pac",
            "data=pac/nyu",
            f"paths.data_dir={missing}",
            f"paths.output_root={tmp_path / 'o'}",
        ],
        cwd=tmp_path,
    )
    assert res.returncode != 0
    assert str(missing / "nyu_depth_v2") in res.stderr and "nyu_depth_v2_labeled.mat" in res.stderr


def test_non_finite_loss_stops_the_run_with_a_clear_message(tmp_path):
    res = run_cli(
        ["-m", "nvresearch.train", *PAC_FAST, "model.optimizer.lr=1e30", f"paths.output_root={tmp_path}"], cwd=tmp_path
    )
    assert res.returncode == 1
    assert "non-finite loss at global step 1" in res.stderr and ("l2=nan" in res.stderr or "l2=inf" in res.stderr)


def test_user_errors_are_one_line_and_leave_no_run_folder(tmp_path):
    """No earlier run, a checkpoint of random bytes, a GPU trainer without a GPU: one 'error:' line each, exit 1."""
    out = tmp_path / "outputs"
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(bytes(range(256)) * 4)
    cases = [
        (["ckpt_path=last"], "no earlier run"),
        ([f"ckpt_path={noise}"], "is not a readable checkpoint"),
    ]
    if not torch.cuda.is_available():
        cases.append((["trainer=gpu"], "add trainer=cpu"))
    for overrides, message in cases:
        res = run_cli(["-m", "nvresearch.train", *PAC_FAST, *overrides, f"paths.output_root={out}"], cwd=tmp_path)
        errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
        assert res.returncode == 1 and len(errors) == 1 and message in errors[0], (overrides, res.stderr[-2000:])
        assert "Traceback" not in res.stderr, res.stderr[-2000:]
        assert not list(out.glob("pac/runs/*")), list(out.glob("pac/runs/*"))
