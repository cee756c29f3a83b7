"""Shared fixtures: compose configs with Hydra's compose API, outputs in tmp_path; marker handling."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def _asked_for(config: pytest.Config, marker: str) -> bool:
    """Whether the ``-m`` expression names ``marker`` (``pytest -m claim``, ``-m "claim and not slow"``...)."""
    return marker in (config.getoption("markexpr") or "")


class ClaimGap(AssertionError):
    """A method misses a bar of its paper's claim: the known gap that the claim test's ``xfail(strict=True,
    raises=ClaimGap)`` names. Any other failure (a crash, a probe that starts to win, an ablation that passes) is a
    real one, and a method that starts to pass turns the strict xfail red."""


def claim_gap(reason: str) -> pytest.MarkDecorator:
    """Mark a claim test whose method misses a bar today: a strict expected failure that only :class:`ClaimGap`
    satisfies (a crash or a probe bar fails for real; a method that starts to pass turns the test red)."""
    return pytest.mark.xfail(strict=True, raises=ClaimGap, reason=reason)


def pytest_configure(config: pytest.Config) -> None:
    # xdist workers share the cores: each gets an equal share of torch threads (one each for `-n 2` on two cores),
    # and so do the training subprocesses it starts (OMP_NUM_THREADS, unless the caller set it). With torch's default
    # of one thread per core, two workers ran four spin-waiting OpenMP threads on two cores: 35 % more CPU time and
    # 30 % more wall time for the same tests (PAC upsampling + SCOPS losses, `-n 2`, measured in README's Tests).
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Two stages: plain `pytest` (and any -m expression that does not name them) leaves out the claim tests and the
    # `long` ones; `pytest -m claim` runs the claims. A marker expression overrides addopts' -m, so this is done here.
    leave_out = [m for m in ("claim", "long") if not _asked_for(config, m)]
    if leave_out:
        kept = [i for i in items if not any(i.get_closest_marker(m) for m in leave_out)]
        if len(kept) != len(items):
            config.hook.pytest_deselected(items=[i for i in items if i not in kept])
            items[:] = kept
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_data = pytest.mark.skip(reason="needs a real dataset: set NVRESEARCH_DATA")
    for item in items:
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if item.get_closest_marker("data") and not os.environ.get("NVRESEARCH_DATA"):
            item.add_marker(skip_data)


@pytest.fixture(autouse=True)
def _pin_claim_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """A claim test runs with the thread count its marker names (default 1), whatever the caller's environment.

    Its numbers are then those of its docstring on any machine, and two xdist workers share two cores without
    oversubscription: ``@pytest.mark.claim`` or ``@pytest.mark.claim(threads=2)``.
    """
    marker = request.node.get_closest_marker("claim")
    if marker is None:
        yield
        return
    from nvresearch.core.utils import torch_threads

    with torch_threads(int(marker.kwargs.get("threads", 1))):
        yield


@pytest.fixture
def compose(tmp_path: Path) -> Callable[..., object]:
    """``compose(overrides, config_name="train")`` -> DictConfig with outputs under ``tmp_path``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    def _compose(overrides: Sequence[str] = (), config_name: str = "train", out: Path | None = None) -> object:
        out_dir = out or tmp_path / "run"
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            return hydra_compose(
                config_name,
                overrides=[f"paths.output_dir={out_dir}", f"paths.output_root={tmp_path / 'outputs'}", *overrides],
            )

    return _compose


def run_cli(
    args: Sequence[str], cwd: Path, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``python <args>`` in a subprocess with this interpreter; returns the completed process (never raises)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("NVRESEARCH_OUTPUT", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def load_script(path: Path) -> ModuleType:
    """A script of the repository imported as a fresh module (its ``main`` not run), so that tests can call its
    functions; each call executes the file again."""
    name = "script_" + re.sub(r"\W", "_", str(Path(path).resolve().relative_to(REPO).with_suffix("")))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The quickest configuration of the PAC task: a few tiny batches, no sanity check, CSV logging only.
PAC_FAST = [
    "paper=pac",
    "trainer=fast",
    "logger=csv",
    "data.dataset.train_size=16",
    "data.dataset.val_size=4",
    "data.dataset.test_size=4",
    "data.dataset.height=64",
    "data.dataset.width=64",
    "data.batch_size=4",
    "model.net.n_t_filters=4",
    "model.net.n_g_filters=4",
    "model.net.n_f_filters=4",
    "model.net.k_ch=2",
]


class StopAfterEpochs:
    """Lightning callback that ends training after ``epochs`` epochs, as if the run had been killed there."""

    def __new__(cls, epochs: int):  # built lazily so that importing conftest does not import Lightning
        import pytorch_lightning as pl

        class _Stop(pl.Callback):
            def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
                if trainer.current_epoch + 1 >= epochs:
                    trainer.should_stop = True

        return _Stop()
