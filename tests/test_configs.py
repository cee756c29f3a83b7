"""Every config composes, every model/data pair instantiates, and bad input fails early and clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException

from nvresearch.core.utils import instantiate

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PAPERS = sorted(p.stem for p in (CONFIGS / "paper").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (CONFIGS / "trainer").glob("*.yaml"))
EXPERIMENTS = sorted(f"{p.parent.name}/{p.stem}" for p in (CONFIGS / "experiment").glob("*/*.yaml"))


def test_every_paper_config_has_a_package():
    import nvresearch

    assert set(PAPERS) == set(nvresearch.PAPERS)


@pytest.mark.parametrize("paper", PAPERS)
def test_paper_default_builds_model_and_data(compose, paper):
    cfg = compose([f"paper={paper}"])
    assert cfg.paper_name == paper
    module = instantiate(cfg.model)
    datamodule = instantiate(cfg.data)
    assert sum(p.numel() for p in module.parameters()) > 0
    assert datamodule is not None


@pytest.mark.parametrize("trainer", TRAINERS)
def test_trainer_presets_compose(compose, trainer):
    cfg = compose([f"trainer={trainer}"])
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    if trainer == "ddp_cpu":
        assert cfg.trainer.devices == 2 and cfg.trainer.strategy.process_group_backend == "gloo"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiments_compose_and_build_model(compose, experiment):
    """Paper-scale models (up to 134 M parameters) are built on the meta device: shapes and counts without memory
    or initialisation time (each paper's tests build its reference models for real and assert their counts)."""
    cfg = compose([f"experiment={experiment}"])
    with torch.device("meta"):
        module = instantiate(cfg.model)
    assert sum(p.numel() for p in module.parameters()) > 0


def test_unknown_paper_lists_available(compose):
    with pytest.raises(MissingConfigException, match=r"(?s)Could not find 'paper/nosuch'.*Available options.*pac"):
        compose(["paper=nosuch"])


def test_typo_in_key_fails_at_composition(compose):
    with pytest.raises(ConfigCompositionException, match="trainer.max_epoch"):
        compose(["trainer.max_epoch=3"])
    with pytest.raises(ConfigCompositionException, match="model.net.n_t_filter"):
        compose(["model.net.n_t_filter=3"])


def test_overrides_reach_the_objects(compose):
    cfg = compose(["trainer.max_epochs=2", "data.batch_size=4", "model.net.n_f_filters=12"])
    assert cfg.trainer.max_epochs == 2 and cfg.data.batch_size == 4
    module = instantiate(cfg.model)
    assert module.net.final[0].out_channels == 12 if hasattr(module.net, "final") else True
