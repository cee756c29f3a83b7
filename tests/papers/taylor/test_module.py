"""Taylor pruning through the training stack, and the paper's claims at CPU scale on the embedded digits."""

from __future__ import annotations

import json

import pytest
import torch

from nvresearch.core.training.run import train
from nvresearch.core.utils import instantiate

TAYLOR_FAST = ["paper=taylor", "trainer=fast", "logger=csv"]


def test_module_step_logs_loss(compose) -> None:
    cfg = compose(TAYLOR_FAST)
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 1, 8, 8) and y.shape == (64,)
    module.log = lambda *a, **k: None
    loss = module.training_step((x, y), 0)
    assert loss.ndim == 0 and 1.5 < float(loss.detach()) < 3.5  # about log(10) at initialisation
    loss.backward()
    assert all(p.grad is not None for p in module.net.parameters())


@pytest.mark.slow
def test_default_run_halves_the_macs_and_writes_the_smaller_network(compose, tmp_path) -> None:
    """The embedded default (``python -m nvresearch.train paper=taylor``): 5 epochs of training, then Taylor-FO-BN
    pruning to 50 % of the MACs interleaved with fine-tuning, 10 epochs in all. The pruned network stays accurate on
    the 397 held-out digits, and the run folder holds the physically smaller network (docs/papers/taylor.md).
    """
    cfg = compose(["paper=taylor", "trainer.enable_progress_bar=false", "logger=csv"])
    metrics = train(cfg)
    assert 0.45 <= metrics["test/macs_ratio"] <= 0.5
    assert metrics["test/acc"] >= 0.95, metrics
    run = tmp_path / "run"
    report = json.loads((run / "pruning.json").read_text())
    assert report["steps"] and report["macs"] == metrics["test/macs"] < report["full_macs"]
    assert report["curve"][0]["macs_ratio"] == 1.0 and report["curve"][-1]["macs_ratio"] <= 0.5
    assert report["curve"][-1]["acc"] == pytest.approx(metrics["val/acc"])
    pruned = torch.load(run / "pruned_model.pt", weights_only=False).eval()
    n_full = sum(p.numel() for p in instantiate(cfg.model).net.parameters())
    assert sum(p.numel() for p in pruned.parameters()) == report["params"] < n_full
    # the smaller network computes what the trained (masked) one does
    from nvresearch.core.training import load_checkpoint
    from nvresearch.taylor.data import Digits

    module = load_checkpoint(run / "checkpoints" / "last.ckpt")
    x = Digits("test").images[:32]
    from nvresearch.core.pruning import DependencyGraph

    graph = DependencyGraph(module.net, x[:1])
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    state = next(v for k, v in ckpt["callbacks"].items() if "TaylorPruning" in k)["pruner"]
    graph.set_keep(state["keep"])
    with torch.no_grad(), graph.masked():
        torch.testing.assert_close(pruned(x), module.net(x), rtol=1e-4, atol=1e-4)


def test_callback_state_round_trip_keeps_removed_channels(compose) -> None:
    from nvresearch.taylor.callback import TaylorPruning

    cfg = compose(TAYLOR_FAST)
    module = instantiate(cfg.model)
    cb = TaylorPruning(criterion="random", prune_per_step=20, frequency=1, target_channels=40)
    cb._build(module)
    cb.pruner.prune_step()
    assert cb.pruner.removed == 20
    state = cb.state_dict()
    cb.pruner.detach()
    again = TaylorPruning(criterion="random", prune_per_step=20, frequency=1, target_channels=40)
    again.load_state_dict(state)  # as when a checkpoint is restored before training resumes
    again._build(instantiate(cfg.model))
    assert again.pruner.removed == 20
    for a, b in zip(again.pruner.graph.keep_masks(), cb.pruner.graph.keep_masks(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(AttributeError, match="no network attribute"):
        TaylorPruning(net_attr="nosuch", target_channels=1)._build(module)


def test_callback_detaches_criterion_hooks_when_pruning_ends(compose) -> None:
    """FO-FG pruning on minibatches of 8, then fine-tuning on 8 and on a short last minibatch of 5 (crashed the
    backward pass while FO-FG's recorders stayed attached)."""
    from nvresearch.taylor.callback import TaylorPruning

    module = instantiate(compose(TAYLOR_FAST).model)
    cb = TaylorPruning(criterion="taylor_fo_fg", prune_per_step=4, frequency=1, target_channels=8)
    cb._build(module)
    g = torch.Generator().manual_seed(0)
    for n in (8, 8, 8, 8, 5):
        x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)
        module.net.zero_grad()
        torch.nn.functional.cross_entropy(module.net(x), y).backward()
        cb.on_after_backward(None, module)
    assert cb.pruner.done and cb.pruner.removed == 8
    assert sum(len(m._forward_hooks) for m in module.net.modules()) == len(cb.pruner._handles)  # the masks only
