"""vinterp's claim on the embedded sprite world: adapting a source-pretrained interpolator to an unlabelled target
domain with cycle consistency plus pseudo-supervision (Reda et al., ICCV 2019, Sec. 3-4, Tables 1-2).

The world's two domains (docs/papers/vinterp.md) differ in motion magnitude (target sprites move 2-3x faster, with
acceleration) and texture (checkerboards instead of gratings). One source-pretrained network is shared: it is
evaluated as it is (the baseline), then fine-tuned on the target's unlabelled low-frame-rate triplets with CC+PS
(the paper) and, on the same budget, with the pseudo-supervised term alone (the ablation without the cycle term).
The trivial probes are the frame blend ``(1 - t) I0 + t I1`` (the strongest) and copying the nearer input.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import ClaimGap, claim_gap

from nvresearch.vinterp.data import sprite_world_split
from nvresearch.vinterp.datamodule import VInterpDataModule
from nvresearch.vinterp.module import VInterpModule

# The claim's recipe (the default world, clips and batch of data=vinterp/synthetic; 216 source windows = 27 steps per
# epoch): a width-8 SuperSloMo (flow_scale 1) pretrained with the official supervised loss for 11 epochs (297 steps,
# Adam 1e-3), then each adaptation 60 steps (Adam 5e-4) from the same pretrained weights; official loss weights, no
# perceptual term (no VGG weights offline).
WIDTH = 8
PRETRAIN_EPOCHS = 11
ADAPT_STEPS = 30  # per epoch, 2 epochs
PRETRAIN_LR, ADAPT_LR = 1e-3, 5e-4
CLIPS = {"source_train": 24, "target_train": 24, "target_val": 8, "target_test": 16}

# The bars (dB of target-domain test PSNR). Set from the paper's effect at this scale, not tuned to a run: the
# paper's adaptation gains are 0.2-0.7 dB on real footage with a modest domain gap; the sprite world's gap is larger.
PRETRAINED_OVER_BLEND = 1.0  # the starting point must be a real interpolator, not a blend (else the claim is moot)
GAIN_OVER_PRETRAINED = 0.3
GAIN_OVER_ABLATION = 0.3
OVER_PROBES = 1.0  # every network beats the blend and the copy by this much


def claim_failures(m: dict[str, dict[str, float]], method: str = "cycle+ps") -> list[str]:
    """The bars that ``method`` (the paper's ``cycle+ps``, or the ablation ``ps`` in its place) misses."""
    pre, ours, ablation = m["none"]["psnr"], m[method]["psnr"], m["ps"]["psnr"]
    blend, copy = m["none"]["psnr_blend"], m["none"]["psnr_copy"]
    bars = {
        f"pretrained {pre:.2f} >= blend {blend:.2f} + {PRETRAINED_OVER_BLEND}": pre >= blend + PRETRAINED_OVER_BLEND,
        f"{method} {ours:.2f} >= pretrained {pre:.2f} + {GAIN_OVER_PRETRAINED}": ours >= pre + GAIN_OVER_PRETRAINED,
        f"{method} {ours:.2f} >= PS only {ablation:.2f} + {GAIN_OVER_ABLATION}": method == "ps"
        or ours >= ablation + GAIN_OVER_ABLATION,
        f"{method} {ours:.2f} >= max(blend, copy) + {OVER_PROBES}": ours >= max(blend, copy) + OVER_PROBES,
    }
    return [name for name, ok in bars.items() if not ok]


def _trainer(root: Path, epochs: int, batches: int | None = None) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=str(root),
    )


def _run(root: Path, data: VInterpDataModule, adapt: str, start: dict | None, seed: int) -> dict[str, float]:
    pl.seed_everything(seed)
    lr = PRETRAIN_LR if start is None else ADAPT_LR
    module = VInterpModule(
        base_channels=WIDTH,
        flow_scale=1.0,
        pretrain_epochs=0,
        adapt=adapt,
        optimizer=functools.partial(torch.optim.Adam, lr=lr),
    )
    if start is None:
        trainer = _trainer(root / adapt, PRETRAIN_EPOCHS)
    else:
        module.net.load_state_dict(start)  # the shared pretrained weights; the teacher copies them at epoch 0
        trainer = _trainer(root / adapt, 2, ADAPT_STEPS)
    trainer.fit(module, data)
    result = trainer.test(module, data, verbose=False)[0]
    metrics = {k.removeprefix("test/"): float(v) for k, v in result.items()}
    metrics["state"] = module.net.state_dict()  # type: ignore[assignment]
    return metrics


@pytest.mark.claim
@claim_gap(
    "gap (issue 18): in the claim's CPU budget there is no target-domain room to recover: the same width-8 "
    "network trained on the target's own ground truth reaches the source-pretrained network's PSNR (21.49 vs 21.40 dB "
    "after 297 steps) and fine-tuning on that ground truth adds 0.03-0.08 dB in 30-90 steps, so CC+PS (+0.04-0.08 dB) "
    "cannot clear +0.3 dB (docs/papers/vinterp.md, Results)",
)
def test_cycle_consistency_with_pseudo_supervision_adapts_to_the_target_domain(tmp_path: Path) -> None:
    """Claim (Reda et al. 2019, Sec. 4, Tables 1-2): fine-tuning a source-pretrained interpolator on unlabelled
    target-domain triplets with cycle consistency + pseudo-supervision raises its target PSNR by a margin, beyond
    fine-tuning on the same triplets without the cycle term (pseudo-supervision alone), and every network beats the
    frame blend (and copying the nearer input) by a margin.

    First the probes are checked (plain assertions, real failures): the frame blend is the stronger probe, and the
    ablation (PS only) in CC+PS's place misses the gain bar. Then CC+PS must clear every bar; missing one raises
    :class:`ClaimGap`, the expected failure today.

    Measured (target test PSNR in dB, one thread; docs/papers/vinterp.md, Results): this test (seed 0): pretrained
    21.35, CC+PS 21.39, PS only 21.34, blend 20.85, copy 19.54; the same recipe in a plain loop (seed 1, other batch
    order): pretrained 21.24, CC+PS 21.32, PS only 21.24, CC only 21.33. So the probes' order holds (blend 1.3 dB
    above copy), the ablation misses the gain bar, and CC+PS misses the first three bars: the pretrained network is
    only 0.4-0.5 dB above the blend and CC+PS gains 0.04-0.08 dB over it.

    Why (issue 18, oracle bounds in a plain loop, seed 0, same world and width): the network trained on the target's
    own ground truth from scratch for the same 297 steps reaches 21.49 dB (source-pretrained 21.40 in that loop), and
    fine-tuning the source-pretrained network on the target's ground truth (Adam 5e-4) gives 21.44 / 21.43 / 21.48 dB
    after 30 / 60 / 90 steps: at this scale the target is hard for any training, not far from the source, so CC+PS
    matches the supervised oracle and no adaptation can gain 0.3 dB in the budget. A narrower gap (target sprites
    0.75-1.5 px/frame) lifts the pretrained network 1.1 dB over the blend but leaves the same bound (oracle from
    scratch 23.98 vs source-pretrained 23.93; CC+PS +0.09 at 60 steps).
    """
    data = VInterpDataModule(functools.partial(sprite_world_split, clips=CLIPS, size=64, seed=0), batch_size=8)
    m = {"none": _run(tmp_path, data, "none", None, seed=0)}
    start = m["none"].pop("state")
    for adapt in ("cycle+ps", "ps"):
        m[adapt] = _run(tmp_path, data, adapt, start, seed=1)
        m[adapt].pop("state")
    print({k: {n: round(v, 3) for n, v in r.items()} for k, r in m.items()})  # the numbers behind the docstring
    assert m["none"]["psnr_blend"] > m["none"]["psnr_copy"] + 1.0, m  # the blend is the strongest trivial probe
    assert any(">= pretrained" in f for f in claim_failures(m, "ps")), m  # the ablation in its place misses the gain
    failures = claim_failures(m)
    if failures:
        raise ClaimGap(f"CC+PS misses {failures}: {m}")
