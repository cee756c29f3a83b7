"""FAZE stage 2 (Sec. 4): meta-learn the person-adaptive gaze MLP on gaze codes, with persons as tasks.

Torch-only; the official counterpart is ``src/2_meta_learning.py``. The inputs are the frozen DT-ED's gaze codes
``vec(Z_g)`` (6 numbers, column-normalised, not frontalised) and the unit gaze vectors ``v(g)`` of each person
(:class:`PersonCodes`). :func:`meta_train` runs MAML through :class:`nvresearch.core.meta.MAML` (``'faithful'``: the
official update; ``'textbook'``: MAML as published); :func:`joint_train` is the jointly trained (non-meta)
initialisation used as a comparison.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nvresearch.core.geometry import angular_error, mean_angular_error
from nvresearch.core.meta import MAML, Task
from nvresearch.faze.models import GazeMLP

__all__ = [
    "AdaGENConfig",
    "PersonCodes",
    "joint_train",
    "meta_train",
    "mlp_from_dted_before_z",
    "mlp_from_dted_head",
    "mlp_meta_loss",
    "sample_task",
]


@dataclass
class AdaGENConfig:
    """Stage-2 settings; the defaults are the reference's (official ``src/2_meta_learning.py`` arguments).

    Attributes:
        hidden / activation: the MLP (6 -> 64 -> 3, SELU).
        mode: ``'faithful'`` (official update G) or ``'textbook'`` MAML.
        first_order: FOMAML.
        inner_lr / inner_steps: the meta-training inner SGD (1e-5, 1 step; the loss is in degrees).
        outer_lr: Adam learning rate of the outer loop (1e-3).
        meta_steps: outer iterations (100,000).
        tasks_per_step: tasks per outer iteration (5).
        query_size: query samples per task (100).
        per_k: meta-train one model per k (the reference); otherwise one model with task support sizes drawn from
            ``train_ks``.
        train_ks: support sizes drawn when ``per_k`` is false (per task in ``'faithful'`` mode, per outer step in
            ``'textbook'`` mode).
        joint_steps / joint_lr / joint_batch: the jointly trained baseline MLP (Adam).
        adapt_steps / adapt_lr: test-time personalisation, full-batch SGD (1000 steps at 1e-5).
        adapt_lrs: candidate personalisation step sizes; when given, the jointly trained MLP and the DT-ED head
            (the "NONE" baseline) are each personalised at their own best one, chosen on the validation persons
            (their last ``select_last`` samples held out, calibration from the rest, mean error over
            ``select_ks``), never on the test persons. The meta-learned MLP keeps ``adapt_lr``, the step size it was
            meta-learned for. Empty: every initialisation uses ``adapt_lr``.
        select_last / select_ks: see ``adapt_lrs`` (``select_last`` 0: ``test_last``).
        repeats: calibration draws per test person (10).
        ks: calibration sizes evaluated (0 = no adaptation).
        test_last: the last samples of each test person form its test set (500).
        seed: the calibration draws (4089213955 in the reference) and the task sampling.
        select_z: stage 2's input (official ``--select-z``): ``'z_gaze'`` (the gaze code, the reference) or
            ``'before_z'`` (the encoder's pooled features, through an MLP that starts with the DT-ED's ``fc_enc`` and
            gaze head: :func:`mlp_from_dted_before_z`).
        meta_sgd: Meta-SGD (official ``--meta-learner Meta-SGD``): meta-learn one step-size multiplier per parameter
            element with the initialisation; the inner update and the personalisation use ``inner_lr * scale``
            (needs ``mode='textbook'``).
        meta_sgd_init: the multipliers start uniform in this range (the official code: U(0.005, 0.1) times its
            inner lr).
    """

    hidden: int = 64
    activation: str = "selu"
    mode: str = "faithful"
    first_order: bool = False
    inner_lr: float = 1e-5
    inner_steps: int = 1
    outer_lr: float = 1e-3
    meta_steps: int = 100_000
    tasks_per_step: int = 5
    query_size: int = 100
    per_k: bool = True
    train_ks: Sequence[int] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 32)
    joint_steps: int = 20_000
    joint_lr: float = 1e-3
    joint_batch: int = 512
    adapt_steps: int = 1000
    adapt_lr: float = 1e-5
    adapt_lrs: Sequence[float] = ()
    select_last: int = 0
    select_ks: Sequence[int] = (1, 3, 9)
    repeats: int = 10
    ks: Sequence[int] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 32, 64, 128, 256)
    test_last: int = 500
    seed: int = 4089213955
    select_z: str = "z_gaze"
    meta_sgd: bool = False
    meta_sgd_init: Sequence[float] = (0.005, 0.1)

    def __post_init__(self) -> None:
        if self.select_z not in ("z_gaze", "before_z"):
            raise ValueError(f"model.stage2.select_z must be 'z_gaze' or 'before_z', got {self.select_z!r}")
        if self.meta_sgd and self.mode != "textbook":
            raise ValueError(f"model.stage2.meta_sgd needs model.stage2.mode=textbook, got {self.mode!r}")
        if len(self.meta_sgd_init) != 2 or not 0 < self.meta_sgd_init[0] <= self.meta_sgd_init[1]:
            raise ValueError(
                f"model.stage2.meta_sgd_init must be [low, high] with 0 < low <= high, got {list(self.meta_sgd_init)}"
            )


def mlp_from_dted_before_z(
    fc_enc: torch.nn.Linear,
    gaze1: torch.nn.Linear,
    gaze2: torch.nn.Linear,
    keep_start: int,
    activation: str = "selu",
    meta_sgd: bool = False,
) -> GazeMLP:
    """The official ``before_z`` stage-2 MLP (``GazeEstimationModelPreExtended`` with ``--maml-use-pretrained-mlp``):
    ``fc_enc`` (pooled encoder features -> all codes), the gaze code's outputs from ``keep_start`` (``z_app``; not
    column-normalised), SELU, then the DT-ED gaze head ``gaze1`` / ``gaze2`` with ``activation`` (SELU in the official
    code, which asserts it), all copied from the trained DT-ED.
    """
    mlp = GazeMLP(
        gaze1.in_features,
        gaze1.out_features,
        activation,
        pre_features=fc_enc.in_features,
        pre_out=fc_enc.out_features,
        pre_keep_start=keep_start,
        meta_sgd=meta_sgd,
    )
    with torch.no_grad():
        for mine, theirs in ((mlp.layer0, fc_enc), (mlp.layer1, gaze1), (mlp.layer2, gaze2)):
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
    return mlp.eval()


def mlp_from_dted_head(gaze1: torch.nn.Linear, gaze2: torch.nn.Linear) -> GazeMLP:
    """The DT-ED gaze head (``gaze1``, ``gaze2``, ReLU; ``dt_ed.py``) as a :class:`GazeMLP`, for the official
    "NONE" baseline: no meta-learning, the person-independent head itself is fine-tuned on the k calibration samples
    (``2_meta_learning.py`` with ``--maml-use-pretrained-mlp``). The official code loads the ReLU-trained head into
    its SELU MLP; here it keeps the ReLU it was trained with, so that at k = 0 it is the DT-ED head.
    """
    mlp = GazeMLP(gaze1.in_features, gaze1.out_features, "relu")
    with torch.no_grad():
        for mine, theirs in ((mlp.layer1, gaze1), (mlp.layer2, gaze2)):
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
    return mlp.eval()


@dataclass
class PersonCodes:
    """One person's stage-2 data in sample order.

    Shape:
        features: ``(N, 6)``; targets: ``(N, 3)`` unit gaze vectors; gaze: ``(N, 2)`` (pitch, yaw) radians.
    """

    person: str
    features: Tensor
    targets: Tensor
    gaze: Tensor

    def __len__(self) -> int:
        return int(self.features.shape[0])


def sample_task(person: PersonCodes, k: int, query_size: int, generator: torch.Generator) -> Task:
    """k random support samples and ``query_size`` disjoint random query samples of one person (as the reference)."""
    n = len(person)
    q = min(int(query_size), n - int(k))
    if k < 1 or q < 1:
        raise ValueError(f"person {person.person} has {n} samples, too few for k={k} support + query")
    perm = torch.randperm(n, generator=generator)
    s, qi = perm[:k], perm[k : k + q]
    return Task(person.features[s], person.targets[s], person.features[qi], person.targets[qi])


def meta_train(
    persons: Sequence[PersonCodes], cfg: AdaGENConfig, k: int | None = None, init: GazeMLP | None = None
) -> GazeMLP:
    """Meta-train the gaze MLP with MAML over persons as tasks (FAZE Sec. 4); returns the meta-learned MLP.

    Args:
        persons: meta-training persons.
        cfg: the settings.
        k: support size of every task (``per_k``); None draws it from ``cfg.train_ks``: per task in
            ``'faithful'`` mode, per outer step in ``'textbook'`` mode, whose equal-size tasks are then adapted in
            one vectorised pass (:func:`mlp_meta_loss`, the same objective as ``MAML.meta_loss``).
        init: starting MLP (copied); default a fresh :class:`GazeMLP` seeded by ``cfg.seed``.
    """
    if not persons:
        raise ValueError("meta_train needs at least one person")
    torch.manual_seed(cfg.seed % 2**31)
    if init is not None:
        mlp = copy.deepcopy(init)
    else:
        mlp = GazeMLP(persons[0].features.shape[1], cfg.hidden, cfg.activation, meta_sgd=cfg.meta_sgd)
    if cfg.meta_sgd != mlp.meta_sgd:
        raise ValueError(f"model.stage2.meta_sgd={cfg.meta_sgd} but the initial MLP has meta_sgd={mlp.meta_sgd}")
    maml = MAML(mlp, mean_angular_error, cfg.inner_steps, cfg.inner_lr, first_order=cfg.first_order, mode=cfg.mode)
    learned = list(mlp.parameters())
    scales: list[Tensor] | None = None
    if cfg.meta_sgd:
        low, high = (float(v) for v in cfg.meta_sgd_init)
        scales = [torch.nn.Parameter(torch.empty_like(p).uniform_(low, high)) for p in learned]
        learned += scales
    opt = torch.optim.Adam(learned, lr=cfg.outer_lr)
    g = torch.Generator().manual_seed(cfg.seed % 2**63)
    pick = random.Random(cfg.seed)
    ks = [int(x) for x in cfg.train_ks] if k is None else [int(k)]
    batched = cfg.mode == "textbook"
    for _ in range(cfg.meta_steps):
        tasks = []
        kk = pick.choice(ks)
        for _ in range(cfg.tasks_per_step):
            if not batched:
                kk = pick.choice(ks)
            eligible = [p for p in persons if len(p) > kk]
            if not eligible:
                raise ValueError(f"no meta-training person has more than k={kk} samples (too few for k={kk} + query)")
            tasks.append(sample_task(pick.choice(eligible), kk, cfg.query_size, g))
        opt.zero_grad(set_to_none=True)
        if batched and len({t.query_y.shape[0] for t in tasks}) == 1:
            # equal-size tasks: the same objective as maml.meta_loss, vectorised over the tasks
            stack = [
                torch.stack(parts) for parts in zip(*((t.support_x, t.support_y, t.query_x, t.query_y) for t in tasks))
            ]
            loss = mlp_meta_loss(mlp, *stack, cfg.inner_steps, cfg.inner_lr, cfg.first_order, step_scales=scales)
        elif scales is not None:
            # tasks of unequal size (per-task support sizes): one stacked pass per task, the same objective
            parts = [
                mlp_meta_loss(
                    mlp,
                    *(x.unsqueeze(0) for x in (t.support_x, t.support_y, t.query_x, t.query_y)),
                    cfg.inner_steps,
                    cfg.inner_lr,
                    cfg.first_order,
                    step_scales=scales,
                )
                for t in tasks
            ]
            loss = torch.stack(parts).mean()
        else:
            loss = maml.meta_loss(tasks)
        loss.backward()
        opt.step()
    if scales is not None:
        with torch.no_grad():
            for scale, buf in zip(scales, mlp.step_scales().values()):
                buf.copy_(scale)
    return mlp.eval()


def _stacked_mlp(params: Sequence[Tensor], x: Tensor, mlp: GazeMLP) -> Tensor:
    """:class:`GazeMLP` forward with task-stacked weights (in ``named_parameters`` order): ``(T, N, F)`` inputs,
    ``(T, N, 3)`` unit vectors."""
    if mlp.pre_features:
        w0, b0, *params = params
        start = mlp.pre_keep_start
        x = F.selu(torch.baddbmm(b0.unsqueeze(1), x, w0.transpose(1, 2))[..., start : start + mlp.in_features])
    w1, b1, w2, b2 = params
    h = torch.baddbmm(b1.unsqueeze(1), x, w1.transpose(1, 2))
    h = F.selu(h) if mlp.activation == "selu" else F.relu(h)
    return F.normalize(torch.baddbmm(b2.unsqueeze(1), h, w2.transpose(1, 2)), dim=-1)


def mlp_meta_loss(
    mlp: GazeMLP,
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor,
    query_y: Tensor,
    steps: int,
    lr: float,
    first_order: bool = False,
    step_scales: Sequence[Tensor] | None = None,
) -> Tensor:
    """Textbook MAML objective of ``T`` equal-size tasks for a :class:`GazeMLP` with the angular loss.

    The same objective (value and gradient) as :func:`~nvresearch.core.meta.batched_meta_loss` with
    :func:`~nvresearch.core.geometry.mean_angular_error`, written with batched matrix products over stacked
    weights instead of ``vmap`` over ``functional_call``: about half the CPU time per outer step for this
    643-parameter MLP (measured 19 vs 40 ms for 5 tasks and 10 inner steps, one thread), where the per-call
    overhead is most of the cost. ``step_scales`` (Meta-SGD: one tensor per parameter, in ``named_parameters``
    order) multiply the inner step element-wise and receive gradients through it (also in first-order mode, where
    only the support gradients are constants).

    Shape:
        support_x: ``(T, K, F)``, support_y: ``(T, K, 3)``; query_x: ``(T, Q, F)``, query_y: ``(T, Q, 3)``;
        returns a scalar.
    """
    if steps < 0 or lr <= 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    num_tasks = support_x.shape[0]
    params = [t.unsqueeze(0).expand(num_tasks, *t.shape) for t in mlp.parameters()]
    scales = [lr * s for s in step_scales] if step_scales is not None else [lr] * len(params)
    if len(scales) != len(params):
        raise ValueError(f"step_scales has {len(scales)} tensors for {len(params)} parameters")
    with torch.enable_grad():
        for _ in range(steps):
            # Row t of the gradient of the summed per-task losses is task t's own gradient.
            total = angular_error(_stacked_mlp(params, support_x, mlp), support_y).mean(1).sum()
            grads = torch.autograd.grad(total, params, create_graph=not first_order)
            params = [p - a * (g.detach() if first_order else g) for p, a, g in zip(params, scales, grads)]
        return angular_error(_stacked_mlp(params, query_x, mlp), query_y).mean()


def joint_train(persons: Sequence[PersonCodes], cfg: AdaGENConfig, init: GazeMLP | None = None) -> GazeMLP:
    """Train the gaze MLP on all persons' samples together (Adam, angular loss): the non-meta initialisation."""
    if not persons:
        raise ValueError("joint_train needs at least one person")
    torch.manual_seed(cfg.seed % 2**31 + 1)
    if init is not None:
        mlp = copy.deepcopy(init)
    else:
        mlp = GazeMLP(persons[0].features.shape[1], cfg.hidden, cfg.activation)
    x = torch.cat([p.features for p in persons])
    y = torch.cat([p.targets for p in persons])
    opt = torch.optim.Adam(mlp.parameters(), lr=cfg.joint_lr)
    g = torch.Generator().manual_seed(cfg.seed % 2**63 + 1)
    for _ in range(cfg.joint_steps):
        idx = torch.randint(0, x.shape[0], (min(cfg.joint_batch, x.shape[0]),), generator=g)
        opt.zero_grad(set_to_none=True)
        mean_angular_error(mlp(x[idx]), y[idx]).backward()
        opt.step()
    return mlp.eval()
