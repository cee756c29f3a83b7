"""Every config composes, every model/data pair instantiates, and bad input fails early and clearly."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf

from nvresearch.core.utils import ConfigError, check_config, instantiate

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


def _slug(name: str) -> str:
    return name.split("/")[0]


def _overrides(name: str) -> list[str]:
    return [f"experiment={name}"] if "/" in name else [f"paper={name}"]


_COMPOSED: dict[str, DictConfig] = {}  # name -> composed config, shared by the tests (composition costs ~0.5 s)
_LOGGED: dict[str, set[str]] = {}  # embedded config name -> the keys one validation step logs


def _composed(compose: Callable[..., Any], name: str) -> DictConfig:
    if name not in _COMPOSED:
        _COMPOSED[name] = compose(_overrides(name))
    return _COMPOSED[name]


def _unresolved(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else node


def _embedded(cfg: DictConfig) -> bool:
    """Runs on data the package makes itself: nothing in its data config points below ``paths.data_dir``."""
    return "paths.data_dir" not in str(_unresolved(cfg.data))


def _module_settings(cfg: DictConfig) -> dict[str, Any]:
    """The module's own scalar settings (``metric``, loss weights...), not its networks or optimisers."""
    return {k: v for k, v in _unresolved(cfg.model).items() if not isinstance(v, (Mapping, list))}


def _embedded_twin(compose: Callable[..., Any], name: str, cfg: DictConfig) -> str:
    """The embedded config of the same paper whose module class and settings are closest to ``cfg``'s.

    Experiments need real data and paper-scale networks; the keys a module logs depend on its class and its settings
    (e.g. PAC's ``metric``), not on the network size or the data source, so the twin's validation step stands in.
    """
    if _embedded(cfg):
        return name
    target, settings = cfg.model._target_, _module_settings(cfg)
    candidates = [_slug(name)] + [e for e in EXPERIMENTS if _slug(e) == _slug(name)]
    best, best_score = None, -1
    for cand in candidates:
        c = _composed(compose, cand)
        if not _embedded(c) or c.model._target_ != target:
            continue
        other = _module_settings(c)
        score = sum(settings.get(k, "<unset>") == other.get(k, "<unset>") for k in {*settings, *other})
        if score > best_score:
            best, best_score = cand, score
    assert best is not None, f"{name}: no embedded config of paper {_slug(name)} uses {target}"
    return best


def _logged_val_keys(cfg: DictConfig, root: Path) -> set[str]:
    """Run one validation step on one batch of the config's own data and return the keys it logged."""
    import pytorch_lightning as pl

    module, datamodule = instantiate(cfg.model), instantiate(cfg.data)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return set(trainer.callback_metrics)


@pytest.mark.parametrize("name", PAPERS + EXPERIMENTS)
def test_config_is_self_contained(compose, tmp_path, name):
    """``paper=<slug>`` and ``experiment=<slug>/<name>`` each compose a complete run of their own paper: the paper is
    the folder's slug, every value fits its class's signature, every callback builds, the monitored key is one the
    module logs (one validation step of the embedded twin, see :func:`_embedded_twin`), and the model builds.

    Paper-scale models (up to 134 M parameters) are built on the meta device: shapes and counts without memory or
    initialisation time (each paper's tests build its reference models for real and assert their counts)."""
    from nvresearch.core.training.run import _build_callbacks

    cfg = _composed(compose, name)
    problems = []
    if cfg.paper_name != _slug(name):
        problems.append(f"paper_name is {cfg.paper_name!r}, not {_slug(name)!r}")
    try:
        check_config(cfg)
    except ConfigError as err:
        problems.append(str(err))
    try:
        callbacks = _build_callbacks(cfg.callbacks)
        assert len(callbacks) == sum(c is not None for c in cfg.callbacks.values())
    except ConfigError as err:
        problems.append(str(err))
    if cfg.monitor is not None:
        twin = _embedded_twin(compose, name, cfg)
        if twin not in _LOGGED:
            _LOGGED[twin] = _logged_val_keys(_composed(compose, twin), tmp_path)
        if cfg.monitor not in _LOGGED[twin]:
            problems.append(
                f"monitor {cfg.monitor!r} is never logged (validation of {twin} logs {sorted(_LOGGED[twin])})"
            )
    with torch.device("meta"):
        module = instantiate(cfg.model)
    assert sum(p.numel() for p in module.parameters()) > 0
    assert not problems, f"{name}: " + "; ".join(problems)


def test_taylor_experiment_prunes(compose):
    """The issue's done-criterion: the ImageNet Taylor experiment composes the pruning callback, which builds."""
    from nvresearch.core.training.run import _build_callbacks
    from nvresearch.taylor.callback import TaylorPruning

    cfg = compose(["experiment=taylor/imagenet_resnet50_prune72"])
    assert cfg.callbacks.pruning._target_ == "nvresearch.taylor.callback.TaylorPruning"
    assert cfg.callbacks.pruning.target_channels == 3200 and cfg.monitor is None
    assert any(isinstance(c, TaylorPruning) for c in _build_callbacks(cfg.callbacks))


def test_callback_without_target_is_an_error_naming_it():
    from nvresearch.core.training.run import _build_callbacks, _build_loggers

    with pytest.raises(ConfigError, match=r"^callbacks\.pruning: no '_target_'"):
        _build_callbacks(OmegaConf.create({"lr": None, "pruning": {"criterion": "taylor_fo_bn"}}))
    with pytest.raises(ConfigError, match=r"^logger\.csv: no '_target_'"):
        _build_loggers(OmegaConf.create({"csv": {"save_dir": "."}}))
    assert _build_callbacks(OmegaConf.create({"pruning": None})) == []  # null is how a callback is switched off


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=abc", "data.batch_size: expected int, got 'abc'"),
        ("trainer.max_epochs=abc", "trainer.max_epochs: expected int | None, got 'abc'"),
        ("model.optimizer.lr=abc", "model.optimizer.lr: expected float"),
        ("+model.net.no_such_arg=3", "model.net.no_such_arg: unknown key for"),
    ],
)
def test_wrong_type_fails_before_anything_is_built(compose, monkeypatch, override, message):
    """train() raises one ConfigError naming the key before it builds data, model or trainer."""
    import nvresearch.core.training.run as run

    def no_build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("something was built before the config was checked")

    monkeypatch.setattr(run, "instantiate", no_build)
    monkeypatch.setattr(run.pl, "seed_everything", no_build)
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        run.train(compose(["paper=pac", override]))


@pytest.mark.slow
def test_cli_wrong_type_is_one_line(tmp_path):
    from conftest import REPO, run_cli

    proc = run_cli(["-m", "nvresearch.train", "paper=pac", "data.batch_size=abc", f"hydra.run.dir={tmp_path}"], REPO)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.strip().splitlines() == ["error: data.batch_size: expected int, got 'abc'"]


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
