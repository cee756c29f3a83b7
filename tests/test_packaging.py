"""A built wheel carries the configs: the CLI works from an unrelated folder without the checkout."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest
from conftest import PAC_FAST, REPO, run_cli

pytestmark = pytest.mark.slow


def test_wheel_ships_configs_and_trains_from_elsewhere(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("nvresearch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "nvresearch/configs/train.yaml" in names
    assert "nvresearch/configs/paper/pac.yaml" in names and "nvresearch/configs/model/pac/tiny.yaml" in names

    site = tmp_path / "site"
    inst = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert inst.returncode == 0, inst.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site), "NVRESEARCH_OUTPUT": str(elsewhere / "outputs")}
    where = run_cli(
        ["-c", "import nvresearch, nvresearch._hydra as h; print(nvresearch.__file__); print(h.config_path())"],
        cwd=elsewhere,
        env=env,
    )
    assert str(site) in where.stdout and "pkg://nvresearch.configs" in where.stdout, where.stdout + where.stderr

    res = run_cli(
        ["-m", "nvresearch.train", *PAC_FAST, f"paths.output_root={elsewhere / 'outputs'}"], cwd=elsewhere, env=env
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = (elsewhere / "outputs" / "pac" / "runs").iterdir()
    assert json.loads((run / "metrics.json").read_text())["paper"] == "pac"

    # users add their own configs with --config-dir
    extra = tmp_path / "myconfigs" / "model" / "pac"
    extra.mkdir(parents=True)
    (extra / "mine.yaml").write_text("defaults:\n  - pac/tiny\n\nnet:\n  k_ch: 3\n")
    res = run_cli(
        [
            "-m",
            "nvresearch.train",
            "paper=pac",
            "model=pac/mine",
            "--config-dir",
            str(tmp_path / "myconfigs"),
            "--cfg",
            "job",
        ],
        cwd=elsewhere,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "k_ch: 3" in res.stdout
