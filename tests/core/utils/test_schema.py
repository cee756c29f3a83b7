"""check_config: every ``_target_`` argument is compared with the target's annotations, one error names the key."""

from __future__ import annotations

import ast
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from omegaconf import OmegaConf

from nvresearch.core.utils.schema import ConfigError, check_config, config_problems


class Data:
    def __init__(
        self,
        batch_size: int,
        lr: float = 0.1,
        shuffle: bool = True,
        root: Path | None = None,
        crop: Sequence[int] = (64, 64),
        size: tuple[int, int] = (8, 8),
        mode: Literal["center", "bilinear"] = "center",
        extra: Any = None,
        transform: Callable[[int], int] | None = None,
        opts: dict[str, float] | None = None,
    ) -> None:
        pass


class Net:
    def __init__(self, width: int, name: str = "net") -> None:
        pass


class Module:
    def __init__(self, net: Net, weight: float = 1.0) -> None:
        pass


def loose(depth: int, **kwargs: Any) -> None:
    pass


@pytest.fixture(autouse=True)
def _targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The classes above, importable as ``fx.<Name>`` (what a ``_target_`` needs)."""
    mod = types.ModuleType("fx")
    for obj in (Data, Net, Module, loose):
        setattr(mod, obj.__name__, obj)
    monkeypatch.setitem(sys.modules, "fx", mod)


def data(**kwargs: Any) -> dict[str, Any]:
    return {"data": {"_target_": "fx.Data", "batch_size": 4, **kwargs}}


def test_well_typed_config_passes():
    check_config(
        data(lr=1, shuffle=False, root="/x", crop=[32, 32], size=[4, 4], mode="bilinear", extra=object(), opts={"a": 1})
    )
    check_config(data(root=None, transform=None))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": "abc"}, "data.batch_size: expected int, got 'abc'"),
        ({"batch_size": 4.5}, "data.batch_size: expected int, got 4.5"),
        ({"batch_size": True}, "data.batch_size: expected int, got True"),  # a bool is not a count
        ({"lr": "fast"}, "data.lr: expected float, got 'fast'"),
        ({"shuffle": "yes"}, "data.shuffle: expected bool, got 'yes'"),
        ({"root": 3}, "data.root: expected Path | None, got 3"),
        ({"crop": [64, "a"]}, "data.crop: expected Sequence[int], got [64, 'a']"),
        ({"crop": 64}, "data.crop: expected Sequence[int], got 64"),
        ({"size": [1, 2, 3]}, "data.size: expected tuple[int, int], got [1, 2, 3]"),
        ({"mode": "nearest"}, "data.mode: expected 'center' | 'bilinear', got 'nearest'"),
        ({"opts": {"a": "b"}}, "data.opts: expected dict[str, float] | None, got {'a': 'b'}"),
    ],
)
def test_wrong_type_names_key_type_and_value(kwargs, message):
    with pytest.raises(ConfigError) as info:
        check_config(data(**kwargs))
    assert str(info.value) == message


def test_unknown_key_is_named_with_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"^data\.batchsize: unknown key for fx\.Data \(it takes: batch_size, "):
        check_config(data(batchsize=3))
    check_config({"f": {"_target_": "fx.loose", "depth": 2, "anything": "goes"}})  # **kwargs takes any key
    assert config_problems({"f": {"_target_": "fx.loose", "depth": "2"}}) == ["f.depth: expected int, got '2'"]


def test_nested_targets_are_checked_with_their_full_key():
    cfg = {"model": {"_target_": "fx.Module", "net": {"_target_": "fx.Net", "width": "wide"}, "weight": 2}}
    assert config_problems(cfg) == ["model.net.width: expected int, got 'wide'"]
    cfg = {"models": [{"_target_": "fx.Net", "width": 1}, {"_target_": "fx.Net", "width": 1.5}]}
    assert config_problems(cfg) == ["models[1].width: expected int, got 1.5"]


def test_all_problems_are_listed_and_the_first_is_raised():
    cfg = {"trainer": {"_target_": "fx.Net", "width": "a"}, **data(batch_size="b")}
    assert config_problems(cfg) == ["trainer.width: expected int, got 'a'", "data.batch_size: expected int, got 'b'"]
    with pytest.raises(ConfigError, match=r"^trainer\.width: expected int, got 'a' \(and 1 more\)$"):
        check_config(cfg)


def test_dictconfig_interpolations_are_judged_at_their_source():
    cfg = OmegaConf.create({"size": "abc", "net": {"_target_": "fx.Net", "width": "${size}"}, **data()})
    check_config(cfg)  # `size` feeds no signature of its own; its use is not judged twice
    cfg = OmegaConf.create({**data(batch_size="abc"), "net": {"_target_": "fx.Net", "width": "${data.batch_size}"}})
    assert config_problems(cfg) == ["data.batch_size: expected int, got 'abc'"]
    check_config(OmegaConf.create(data(batch_size="???")))  # missing values are Hydra's to report


def test_partial_and_unknown_targets():
    check_config({"opt": {"_target_": "fx.Net", "_partial_": True}})  # a partial may leave arguments out
    assert config_problems({"opt": {"_target_": "fx.Net", "_partial_": True, "width": "x"}}) == [
        "opt.width: expected int, got 'x'"
    ]
    check_config({"x": {"_target_": "no_such_module.Thing", "a": 1}})  # instantiate() reports an unknown target


def test_schema_module_imports_neither_torch_nor_hydra():
    import nvresearch.core.utils.schema as schema

    tree = ast.parse(Path(schema.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"torch", "hydra", "pytorch_lightning", "lightning"}
