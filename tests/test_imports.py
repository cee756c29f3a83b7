"""Importing the torch-only parts must not drag in the training stack or optional heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import nvresearch

HEAVY = (
    "pytorch_lightning",
    "lightning",
    "lightning_fabric",
    "hydra",
    "omegaconf",
    "torchmetrics",
    "kornia",
    "cv2",
    "scipy",
    "sklearn",
    "h5py",
)


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_top_level_import_is_cheap():
    loaded = _modules_after("import nvresearch")
    assert "torch" not in loaded
    assert not loaded & set(HEAVY)


@pytest.mark.parametrize("paper", nvresearch.PAPERS)
def test_paper_package_is_torch_only(paper):
    loaded = _modules_after(f"import nvresearch.{paper}")
    assert "torch" in loaded
    assert not loaded & set(HEAVY), f"nvresearch.{paper} imported {sorted(loaded & set(HEAVY))}"


def test_pac_layers_import_is_light():
    loaded = _modules_after("from nvresearch.pac import PacConv2d, PacConvTranspose2d")
    assert not loaded & set(HEAVY)


def test_core_torch_only_parts_are_light():
    core = ("layers", "data", "meta", "pruning", "utils", "geometry", "gan", "metrics")
    loaded = _modules_after("import " + ", ".join(f"nvresearch.core.{m}" for m in core))
    assert not loaded & set(HEAVY)


def test_checkpoint_reading_is_light():
    """The user commands read checkpoints with core's safe reader without importing the training stack: the
    training package resolves its Lightning-importing names lazily."""
    loaded = _modules_after(
        "import nvresearch.core.training.checkpoint, nvresearch.core.training.errors, nvresearch.dgnet.rank, "
        "nvresearch.scops.infer"
    )
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    loaded = _modules_after("from nvresearch.core.training import NVModule")
    assert "pytorch_lightning" in loaded  # the lazy names still resolve


def test_lazy_subpackage_attribute():
    assert nvresearch.pac.__name__ == "nvresearch.pac"
    with pytest.raises(AttributeError):
        _ = nvresearch.no_such_paper
