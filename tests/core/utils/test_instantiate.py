import functools

import pytest
import torch

from nvresearch.core.utils import instantiate, locate


def test_locate_resolves_modules_and_attributes():
    assert locate("torch.nn.Conv2d") is torch.nn.Conv2d
    assert locate("torch.optim.lr_scheduler.StepLR") is torch.optim.lr_scheduler.StepLR
    with pytest.raises(ImportError, match="has no attribute 'Conv9'"):
        locate("torch.nn.Conv9")
    with pytest.raises(ImportError, match="no module named 'no_such_pkg'"):
        locate("no_such_pkg.thing")
    with pytest.raises(ValueError):
        locate("..relative")


def test_instantiate_nested_partial_and_args():
    cfg = {
        "_target_": "torch.nn.Sequential",
        "_args_": [{"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2}, {"_target_": "torch.nn.ReLU"}],
    }
    net = instantiate(cfg)
    assert isinstance(net[0], torch.nn.Linear) and net[0].out_features == 2
    assert isinstance(net[1], torch.nn.ReLU)
    opt = instantiate({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.5})
    assert isinstance(opt, functools.partial)
    built = opt(net.parameters())
    assert built.param_groups[0]["lr"] == 0.5


def test_instantiate_overrides_and_omegaconf():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"a": 4, "m": {"_target_": "torch.nn.Linear", "in_features": "${a}", "out_features": 1}})
    lin = instantiate(cfg.m, bias=False)
    assert lin.in_features == 4 and lin.bias is None


def test_instantiate_allow_list_refuses_before_import():
    with pytest.raises(PermissionError, match="refusing to build 'os.system'"):
        instantiate({"_target_": "os.system", "_args_": ["echo pwned"]}, allowed_prefixes=("nvresearch.",))
    nested = {"_target_": "torch.nn.Sequential", "_args_": [{"_target_": "subprocess.run", "_args_": [["true"]]}]}
    with pytest.raises(PermissionError):
        instantiate(nested, allowed_prefixes=("torch.nn.",))


def test_instantiate_rejects_non_target():
    with pytest.raises(ValueError, match="_target_"):
        instantiate({"a": 1})
