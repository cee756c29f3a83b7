"""Every data config names its dataset as a component and carries exactly its own keys; tiny models inherit."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nvresearch.core.utils.instantiate import instantiate, locate

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DATA_CONFIGS = sorted(
    p.relative_to(CONFIGS / "data").with_suffix("").as_posix() for p in (CONFIGS / "data").rglob("*.yaml")
)
# What the data modules pass when they call the dataset component: the split (or FUNIT's part and count).
CALL_ARGS = {"split", "part", "count"}


def _params(fn) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def test_every_data_folder_is_covered():
    folders = {c.split("/")[0] for c in DATA_CONFIGS}
    assert folders == {"dgnet", "faze", "funit", "pac", "scops", "taylor", "vinterp"} and len(DATA_CONFIGS) >= 19


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_data_config_keys_are_the_datamodule_and_dataset_arguments(compose, name):
    slug = name.split("/")[0]
    data = compose([f"paper={slug}", f"data={name}"]).data
    module_cls = locate(data._target_)
    keys = set(data) - {"_target_"}
    assert keys == set(_params(module_cls.__init__)) - {"self"}, f"data/{name}: keys differ from {module_cls.__name__}"
    dataset = data.dataset
    assert dataset._partial_ is True, f"data/{name}: the dataset component must be a partial"
    factory = locate(dataset._target_)
    own = set(dataset) - {"_target_", "_partial_"}
    expected = {k for k, p in _params(factory).items() if k not in CALL_ARGS and p.kind != p.VAR_KEYWORD}
    assert own == expected, (
        f"data/{name}: dataset keys {sorted(own)} are not {factory.__qualname__}'s {sorted(expected)}"
    )
    # the builder hands the data module the partial itself, not a mapping
    built = instantiate(data.dataset)
    assert isinstance(built, functools.partial) and built.func == factory


@pytest.mark.parametrize("name", ["pac/synthetic", "pac/flow_synthetic", "pac/seg_synthetic", "taylor/digits"])
def test_embedded_data_configs_build_a_datamodule_with_a_dataset_partial(compose, name):
    dm = instantiate(compose([f"paper={name.split('/')[0]}", f"data={name}"]).data)
    assert isinstance(dm.dataset, functools.partial) and dm.splits == {}


def test_a_dataset_string_from_an_old_config_is_a_clear_error(compose):
    data = OmegaConf.to_container(compose(["paper=pac"]).data, resolve=True)
    data["dataset"] = "synthetic"
    with pytest.raises(TypeError, match="JointUpsamplingDataModule: data.dataset must be a dataset component"):
        instantiate(data)


# --------------------------------------------------------------------------------------------- tiny model configs
TINY = {
    "funit/tiny": "funit/default",
    "pac/seg_tiny": "pac/fcn8s_paccrf",
    "pac/tiny": "pac/default",
    "faze/tiny": "faze/default",
    "taylor/tiny": "taylor/default",
    "taylor/lenet": "taylor/default",
    "vinterp/tiny": "vinterp/default",
    "scops/tiny": "scops/default",
    "dgnet/tiny": "dgnet/default",
}


@pytest.mark.parametrize(("tiny", "base"), TINY.items())
def test_tiny_is_its_base_plus_the_differences_it_states(compose, tiny, base):
    own = OmegaConf.load(CONFIGS / "model" / f"{tiny}.yaml")
    defaults = list(own.defaults)
    assert defaults[0] == f"/model/{base}@_here_" and defaults[-1] == "_self_", defaults
    # a component the base selects from a group (a scheduler, an optimiser, a network) may be swapped, nothing else
    swaps = []
    for entry in defaults[1:-1]:
        ((key, option),) = entry.items()
        assert key.startswith(f"override /model/{tiny.split('/')[0]}/"), entry
        group, package = key.removeprefix("override /").split("@")
        swaps.append(f"{group}@model.{package}={option}")
    stated = OmegaConf.masked_copy(own, [k for k in own if k != "defaults"])
    paper = tiny.split("/")[0]
    composed = compose([f"paper={paper}", f"model={tiny}"]).model
    base_cfg = compose([f"paper={paper}", f"model={base}", *swaps]).model
    assert OmegaConf.to_container(composed) == OmegaConf.to_container(
        OmegaConf.merge(OmegaConf.to_container(base_cfg), stated)
    )

    def leaves(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    base_leaves = dict(leaves(OmegaConf.to_container(base_cfg)))
    same = [k for k, v in leaves(OmegaConf.to_container(stated)) if k in base_leaves and base_leaves[k] == v]
    assert not same, f"model/{tiny} restates values of model/{base}: {same}"
