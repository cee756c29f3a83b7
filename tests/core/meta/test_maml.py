"""Tests for nvresearch.core.meta (MAML inner/outer loops; FAZE spec A.7 'faithful' vs textbook MAML)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvresearch.core.meta import MAML, Task, inner_loop

ALPHA = 0.05


def _linear_tasks(n_tasks: int, d: int = 3, k: int = 4, q: int = 6, seed: int = 0) -> list[Task]:
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for _ in range(n_tasks):
        w_true = torch.randn(d, 1, generator=g, dtype=torch.float64)
        xs = torch.randn(k, d, generator=g, dtype=torch.float64)
        xq = torch.randn(q, d, generator=g, dtype=torch.float64)
        tasks.append(Task(xs, xs @ w_true + 0.1, xq, xq @ w_true - 0.2))
    return tasks


def _linear_maml(w0: Tensor, **kwargs) -> MAML:
    model = nn.Linear(w0.numel(), 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w0.view(1, -1))
    return MAML(model, F.mse_loss, **kwargs)


# Hand derivation for f(x) = x.w with L(w) = (1/n)|Xw - y|^2: grad = (2/n) X^T (Xw - y), Hessian H = (2/n) X^T X.
def _grad(x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    return 2.0 / x.shape[0] * x.T @ (x @ w - y)


def _hess(x: Tensor) -> Tensor:
    return 2.0 / x.shape[0] * x.T @ x


def _meta_grad(maml: MAML, tasks: list[Task]) -> Tensor:
    maml.zero_grad()
    maml.meta_loss(tasks).backward()
    return maml.model.weight.grad.detach().view(-1, 1).clone()


def test_linear_closed_form_textbook_second_and_first_order() -> None:
    tasks = _linear_tasks(3)
    w0 = torch.randn(3, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    # Adapted weight after one step: w' = w - alpha * grad L_s(w).
    t = tasks[0]
    adapted = inner_loop(_linear_maml(w0).model, {"weight": w0.view(1, -1)}, t.support, F.mse_loss, steps=1, lr=ALPHA)[
        "weight"
    ].view(-1, 1)
    torch.testing.assert_close(adapted, w0 - ALPHA * _grad(t.support_x, t.support_y, w0), rtol=0, atol=1e-10)

    second, first = torch.zeros_like(w0), torch.zeros_like(w0)
    for t in tasks:
        wp = w0 - ALPHA * _grad(t.support_x, t.support_y, w0)
        gq = _grad(t.query_x, t.query_y, wp)
        second += (eye - ALPHA * _hess(t.support_x)) @ gq / len(tasks)
        first += gq / len(tasks)
    g2 = _meta_grad(_linear_maml(w0, inner_steps=1, inner_lr=ALPHA), tasks)
    g1 = _meta_grad(_linear_maml(w0, inner_steps=1, inner_lr=ALPHA, first_order=True), tasks)
    torch.testing.assert_close(g2, second, rtol=0, atol=1e-10)
    torch.testing.assert_close(g1, first, rtol=0, atol=1e-10)
    assert (g2 - g1).abs().max() > 1e-3  # the Hessian term matters here


def test_linear_closed_form_faithful_matches_spec_G() -> None:
    """Spec A.7: G = sum_j g_j + (I - alpha sum_j H_j) grad L_query(task J; w - alpha sum_j g_j)."""
    tasks = _linear_tasks(5, seed=3)
    w0 = torch.randn(3, 1, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    g_sum = sum(_grad(t.support_x, t.support_y, w0) for t in tasks)
    h_sum = sum(_hess(t.support_x) for t in tasks)
    last = tasks[-1]
    gq = _grad(last.query_x, last.query_y, w0 - ALPHA * g_sum)
    expected_2nd = g_sum + (eye - ALPHA * h_sum) @ gq
    expected_1st = g_sum + gq

    faithful = _meta_grad(_linear_maml(w0, inner_lr=ALPHA, mode="faithful"), tasks)
    faithful_fo = _meta_grad(_linear_maml(w0, inner_lr=ALPHA, mode="faithful", first_order=True), tasks)
    textbook = _meta_grad(_linear_maml(w0, inner_lr=ALPHA, mode="textbook"), tasks)
    torch.testing.assert_close(faithful, expected_2nd, rtol=0, atol=1e-10)
    torch.testing.assert_close(faithful_fo, expected_1st, rtol=0, atol=1e-10)
    # Mixing the modes up would be caught: they differ by far more than the tolerance.
    assert (faithful - textbook).abs().max() > 1e-2

    # The faithful surrogate's value is sum of support losses plus the last task's adapted query loss.
    maml = _linear_maml(w0, inner_lr=ALPHA, mode="faithful")
    value = maml.meta_loss(tasks).item()
    wq = w0 - ALPHA * g_sum
    expected_value = sum(F.mse_loss(t.support_x @ w0, t.support_y).item() for t in tasks)
    expected_value += F.mse_loss(last.query_x @ wq, last.query_y).item()
    assert value == pytest.approx(expected_value, rel=1e-12)


def _tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def _mlp_tasks(n: int = 2, k: int = 5, q: int = 5) -> list[Task]:
    g = torch.Generator().manual_seed(11)
    tasks = []
    for _ in range(n):
        x = torch.randn(k + q, 2, generator=g, dtype=torch.float64)
        y = torch.sin(x @ torch.randn(2, 1, generator=g, dtype=torch.float64))
        tasks.append(Task(x[:k], y[:k], x[k:], y[k:]))
    return tasks


def test_second_order_meta_gradient_matches_finite_differences() -> None:
    tasks = _mlp_tasks()
    maml = MAML(_tiny_mlp(), F.mse_loss, inner_steps=2, inner_lr=0.3)
    params = list(maml.model.parameters())
    maml.meta_loss(tasks).backward()
    analytic = torch.cat([p.grad.flatten() for p in params])
    fo = MAML(_tiny_mlp(), F.mse_loss, inner_steps=2, inner_lr=0.3, first_order=True)
    fo.meta_loss(tasks).backward()
    first_order = torch.cat([p.grad.flatten() for p in fo.model.parameters()])

    eps = 1e-6
    numeric = torch.zeros_like(analytic)
    i = 0
    with torch.no_grad():
        for p in params:
            flat = p.view(-1)
            for j in range(flat.numel()):
                orig = flat[j].item()
                flat[j] = orig + eps
                plus = maml.meta_loss(tasks).item()
                flat[j] = orig - eps
                minus = maml.meta_loss(tasks).item()
                flat[j] = orig
                numeric[i] = (plus - minus) / (2 * eps)
                i += 1
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-8)
    assert (first_order - numeric).abs().max() > 1e-4  # FOMAML is a different (approximate) gradient


@pytest.mark.parametrize("per_param", [False, True])
def test_learned_inner_lrs_receive_gradients(per_param: bool) -> None:
    maml = MAML(_tiny_mlp(), F.mse_loss, inner_steps=2, inner_lr=0.1, learn_inner_lr=True, per_param_lr=per_param)
    maml.meta_loss(_mlp_tasks()).backward()
    lrs = list(maml.inner_lrs.parameters())
    assert len(lrs) == (2 * 4 if per_param else 2)
    for lr in lrs:
        assert lr.grad is not None and lr.grad.abs().sum() > 0
    if per_param:
        assert lrs[0].shape == maml.model[0].weight.shape


def test_learned_lr_changes_the_adapted_result() -> None:
    maml = MAML(_tiny_mlp(), F.mse_loss, inner_steps=1, inner_lr=0.1, learn_inner_lr=True)
    t = _mlp_tasks(1)[0]
    before = maml.adapt(t.support)(t.query_x)
    with torch.no_grad():
        maml.inner_lrs[0].fill_(0.5)
    after = maml.adapt(t.support)(t.query_x)
    explicit = maml.adapt(t.support, lr=0.1)(t.query_x)
    torch.testing.assert_close(before, explicit)
    assert (after - before).abs().max() > 1e-4


def test_adapt_returns_copy_and_lowers_support_loss() -> None:
    maml = MAML(_tiny_mlp(), F.mse_loss, inner_steps=5, inner_lr=0.2)
    state = {k: v.clone() for k, v in maml.state_dict().items()}
    t = _mlp_tasks(1)[0]
    adapted = maml.adapt(t.support, steps=20)
    assert adapted is not maml.model
    for k, v in maml.state_dict().items():
        assert torch.equal(v, state[k])
    with torch.no_grad():
        before = F.mse_loss(maml.model(t.support_x), t.support_y).item()
        after = F.mse_loss(adapted(t.support_x), t.support_y).item()
    assert after < 0.5 * before
    assert all(not p.grad_fn for p in adapted.parameters())


def test_adapt_equals_plain_sgd_loop() -> None:
    """FAZE personalization (spec A.7) is plain full-batch SGD on a copy; adapt must match torch.optim.SGD."""
    maml = MAML(_tiny_mlp(), F.mse_loss, inner_steps=1, inner_lr=0.1, mode="faithful")
    t = _mlp_tasks(1)[0]
    adapted = maml.adapt(t.support, steps=7, lr=0.05)
    ref = _tiny_mlp()
    opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    for _ in range(7):
        opt.zero_grad()
        F.mse_loss(ref(t.support_x), t.support_y).backward()
        opt.step()
    for a, b in zip(adapted.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_zero_inner_steps_gives_unadapted_query_loss() -> None:
    maml = MAML(_tiny_mlp(), F.mse_loss, inner_steps=0, inner_lr=0.1)
    tasks = _mlp_tasks(3)
    expected = torch.stack([F.mse_loss(maml.model(t.query_x), t.query_y) for t in tasks]).mean()
    torch.testing.assert_close(maml.meta_loss(tasks), expected, rtol=0, atol=1e-14)


def test_inner_params_subset_adapts_only_head_but_all_get_meta_grads() -> None:
    maml = MAML(_tiny_mlp(), F.mse_loss, inner_steps=3, inner_lr=0.2, inner_params=["2"])
    t = _mlp_tasks(1)[0]
    adapted = maml.adapt(t.support)
    torch.testing.assert_close(adapted[0].weight, maml.model[0].weight, rtol=0, atol=0)
    assert (adapted[2].weight - maml.model[2].weight).abs().max() > 1e-4
    maml.meta_loss([t]).backward()
    assert maml.model[0].weight.grad.abs().sum() > 0 and maml.model[2].weight.grad.abs().sum() > 0


def test_tuple_inputs_and_batchnorm_buffers_untouched() -> None:
    class TwoInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(2)
            self.fc = nn.Linear(2, 1)

        def forward(self, a: Tensor, b: Tensor) -> Tensor:
            return self.fc(self.bn(a + b))

    torch.manual_seed(0)
    model = TwoInput()
    maml = MAML(model, F.mse_loss, inner_steps=2, inner_lr=0.1)
    x = torch.randn(8, 2) * 3 + 5
    task = Task((x[:4], x[:4]), torch.randn(4, 1), (x[4:], x[4:]), torch.randn(4, 1))
    maml.meta_loss([task, task]).backward()
    # Per-task buffer clones: the meta-model's running stats are not modified by meta_loss.
    torch.testing.assert_close(model.bn.running_mean, torch.zeros(2))
    assert int(model.bn.num_batches_tracked) == 0
    adapted = maml.adapt(task.support)
    assert adapted.bn.running_mean.abs().sum() > 0  # the copy tracked its support statistics
    assert model.fc.weight.grad is not None


def _line_tasks(g: torch.Generator, n: int, k: int, q: int = 20) -> list[Task]:
    tasks = []
    for _ in range(n):
        a = torch.rand(1, generator=g) * 4 - 2
        b = torch.rand(1, generator=g) * 2 - 1
        x = torch.rand(k + q, 1, generator=g) * 4 - 2
        y = a * x + b
        tasks.append(Task(x[:k], y[:k], x[k:], y[k:]))
    return tasks


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))


def test_few_shot_regression_meta_init_beats_joint_init() -> None:
    """Random lines y = a x + b, 5-shot, 3 SGD steps. Measured query MSE: MAML 0.113, joint 0.568, unadapted 2.78."""
    k, steps, lr, iters = 5, 3, 0.1, 100
    maml = MAML(_net(), F.mse_loss, inner_steps=steps, inner_lr=lr)
    opt = torch.optim.Adam(maml.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(iters):
        opt.zero_grad()
        maml.meta_loss(_line_tasks(g, 5, k)).backward()
        opt.step()

    joint = _net()
    opt = torch.optim.Adam(joint.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(iters):
        opt.zero_grad()
        ts = _line_tasks(g, 5, k)
        x = torch.cat([torch.cat([t.support_x, t.query_x]) for t in ts])
        y = torch.cat([torch.cat([t.support_y, t.query_y]) for t in ts])
        F.mse_loss(joint(x), y).backward()
        opt.step()
    joint_maml = MAML(joint, F.mse_loss, inner_steps=steps, inner_lr=lr)

    test = _line_tasks(torch.Generator().manual_seed(123), 50, k, 50)

    def query_mse(m: MAML, n_steps: int) -> float:
        with torch.no_grad():
            return sum(F.mse_loss(m.adapt(t.support, steps=n_steps)(t.query_x), t.query_y).item() for t in test) / 50

    meta_adapted, joint_adapted, meta_zero = query_mse(maml, steps), query_mse(joint_maml, steps), query_mse(maml, 0)
    assert meta_adapted < 0.5 * joint_adapted
    assert meta_adapted < 0.2 * meta_zero


def test_errors() -> None:
    model = _tiny_mlp()
    params = dict(model.named_parameters())
    support = _mlp_tasks(1)[0].support
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        inner_loop(model, params, support, F.mse_loss, steps=-1, lr=0.1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        inner_loop(model, params, support, F.mse_loss, steps=1, lr=0.0)
    with pytest.raises(ValueError, match="per_step_lrs has 1 entries but steps=2"):
        inner_loop(model, params, support, F.mse_loss, steps=2, lr=None, per_step_lrs=[0.1])
    with pytest.raises(ValueError, match="per-parameter lr is missing"):
        inner_loop(model, params, support, F.mse_loss, steps=1, lr=None, per_step_lrs=[{"0.weight": torch.tensor(1.0)}])
    with pytest.raises(ValueError, match="unknown mode 'reptile'"):
        MAML(model, F.mse_loss, mode="reptile")
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        MAML(model, F.mse_loss, inner_steps=-2)
    with pytest.raises(ValueError, match="lr must be > 0"):
        MAML(model, F.mse_loss, inner_lr=-1.0)
    with pytest.raises(ValueError, match="inner_steps must be 1"):
        MAML(model, F.mse_loss, inner_steps=2, mode="faithful")
    with pytest.raises(ValueError, match="match no parameter"):
        MAML(model, F.mse_loss, inner_params=["head"])
    maml = MAML(model, F.mse_loss)
    with pytest.raises(ValueError, match="lr must be > 0"):
        maml.adapt(support, lr=0.0)
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        maml.adapt(support, steps=-1)
    with pytest.raises(ValueError, match="at least one task"):
        maml.meta_loss([])
