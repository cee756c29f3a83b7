"""DG-Net's claim on the embedded persons world: generated data makes the re-id features better (Zheng et al., CVPR
2019), and the generator's swaps transfer clothing while keeping the pose.

The persons world's identities share garment palettes and every camera tints the colours, so colour does not
identify a person; each training identity is seen by 2 of the 4 cameras, so the camera's background is confounded
with the identity, as in real data. Judged beside DG-Net: the ablation without generated data (the same tiny E_a,
recipe and batches, identity losses on real images only, ``model.use_generated=false``) and the strongest
colour-only matcher (a histogram of the true person pixels, ``test/person_colour_*``); for the swaps, the two
copying probes (the structure image itself, the appearance image itself).
"""

from __future__ import annotations

import pytest
from conftest import ClaimGap, claim_gap

from nvresearch.core.training.run import train

# The claim's runs: paper=dgnet shortened to 7 of its 12 epochs (154 batches: a 66-batch teacher stage, then 88 joint
# iterations, the teacher term at full weight from joint iteration 40), no validation; the ablation on the same 154
# batches (every batch trains E_a: no teacher stage).
DGNET_CLAIM = [
    "paper=dgnet",
    "trainer.max_epochs=7",
    "trainer.check_val_every_n_epoch=50",
    "trainer.enable_progress_bar=false",
    "logger=csv",
    "model.teacher_steps=66",
    "model.weights.warm_iter=20",
    "model.weights.warm_teacher_iter=20",
    "model.weights.warm_scale=0.1",
]
ABLATION = [*DGNET_CLAIM, "model.use_generated=false"]

# The bars (docs/papers/dgnet.md, "Claim"): mAP at least 0.03 above the ablation's (the paper's Table 5 gain of
# generated data on Market, about 5 mAP points, scaled down for a 2-minute run) and 0.05 above the person-pixel colour
# probe; the swaps nearer the appearance donor's clothes and the structure donor's pose than the other way round in
# at least 60 % of the pairs. Set before the claim's runs from what the effect should look like; not tuned to them.
MAP_MARGIN_OVER_ABLATION = 0.03
MAP_MARGIN_OVER_COLOUR = 0.05
SWAP_WIN = 0.6


def claim_failures(m: dict[str, float], ablation: dict[str, float], swap: str = "") -> list[str]:
    """The bars that a run ``m`` misses against the ablation run (``swap``: "" for the method's own swaps, or a
    copying probe's, "copy_structure_" / "copy_appearance_"), as readable strings."""
    mAP, colour = m["test/mAP"], m["test/person_colour_mAP"]
    colour_win, pose_win = m[f"test/swap_{swap}colour_win"], m[f"test/swap_{swap}pose_win"]
    bars = {
        f"mAP {mAP:.3f} >= ablation {ablation['test/mAP']:.3f} + {MAP_MARGIN_OVER_ABLATION}": mAP
        >= ablation["test/mAP"] + MAP_MARGIN_OVER_ABLATION,
        f"mAP {mAP:.3f} >= person-pixel colour {colour:.3f} + {MAP_MARGIN_OVER_COLOUR}": mAP
        >= colour + MAP_MARGIN_OVER_COLOUR,
        f"clothing transferred in {colour_win:.2f} >= {SWAP_WIN} of the swaps": colour_win >= SWAP_WIN,
        f"pose kept in {pose_win:.2f} >= {SWAP_WIN} of the swaps": pose_win >= SWAP_WIN,
    }
    return [name for name, ok in bars.items() if not ok]


@pytest.mark.claim
@claim_gap(
    "gap (issue 17): in the claim's 2.3-minute CPU budget (88 joint iterations) DG-Net's E_a does not beat the "
    "ablation without generated data by the margin (mAP difference -0.105 / -0.037 / +0.023 in seeds 0-2) and its "
    "swaps transfer clothing in only 0.56-0.61 of the pairs; paired runs (E_a's first 66 updates identical, the "
    "generated images kept out of its BatchNorm statistics) give -0.045 / -0.022 / +0.043, a spread of 0.09 and no "
    "mean effect; the full paper=dgnet run (154 joint iterations) is ahead by 0.021 in one seed unpaired, by -0.001 "
    "paired (docs/papers/dgnet.md, Claim and Paired runs)",
)
def test_generated_data_improves_reid_and_swaps_transfer_clothing(compose, tmp_path):
    """Claim (Zheng et al. 2019, Sec. 4.2 and Table 5): E_a trained jointly with the generator, on generated
    cross-identity images (teacher soft labels and fine-grained structure labels), retrieves persons better than the
    same network trained without generated data, and both beat colour; the generator's swaps dress the structure
    donor's pose in the appearance donor's clothes.

    First the world and the probes are checked (plain assertions, real failures): the ablation learns identity beyond
    the person-pixel colour probe; each copying probe in DG-Net's place misses a swap bar, and the ablation in
    DG-Net's place misses the margin bar; DG-Net's swaps carry the appearance donor's clothing colours well beyond
    copying the structure image and keep the pose in more than half of the pairs. Then DG-Net must clear every bar;
    missing one raises :class:`ClaimGap`, the expected failure today.

    Measured (seeds 0 / 1 / 2, one thread; docs/papers/dgnet.md, Claim): mAP DG-Net 0.078 / 0.123 / 0.130, ablation
    0.183 / 0.160 / 0.107, person-pixel colour probe 0.043 / 0.040 / 0.040; swaps: clothing nearer the appearance
    donor's in 0.558 / 0.579 / 0.608 of the pairs (colour distance to its garments 0.407 / 0.381 / 0.371, copying
    the structure image 0.529), pose nearer the structure donor's in 0.688 / 0.600 / 0.712. 2.3 CPU minutes for
    both runs (user + sys 139 s for seed 1).

    Paired (``model.warm_start_appearance=true model.generated_bn_stats=false``, not used here; docs "Paired runs"):
    DG-Net 0.138 / 0.139 / 0.151 against the same ablation, differences -0.045 / -0.022 / +0.043; its swaps keep
    the pose in 0.583 / 0.496 / 0.646 of the pairs, so the plain pose assertion below would fail in seed 1.
    """
    m = train(compose(DGNET_CLAIM, out=tmp_path / "dgnet"))
    base = train(compose(ABLATION, out=tmp_path / "ablation"))
    print({k: round(v, 4) for k, v in m.items() if k.startswith("test/")})  # the numbers behind the docstring
    print({k: round(v, 4) for k, v in base.items() if k.startswith("test/") and "swap" not in k})
    # the probes: colour does not identify a person, and the ablation learns identity beyond it
    assert base["test/person_colour_mAP"] < 0.1, base
    assert base["test/mAP"] >= base["test/person_colour_mAP"] + MAP_MARGIN_OVER_COLOUR, base
    # each probe in DG-Net's place misses a bar: copying the structure image the clothing, copying the appearance
    # image the pose, the ablation the margin over itself
    assert any("clothing" in f for f in claim_failures(m, base, "copy_structure_")), m
    assert any("pose" in f for f in claim_failures(m, base, "copy_appearance_")), m
    assert any("ablation" in f for f in claim_failures(base, base)), base
    # what holds of DG-Net's swaps already: clothing colours moved towards the appearance donor's well beyond the
    # structure copy, and the pose kept in more than half of the pairs
    assert m["test/swap_colour_to_appearance"] <= m["test/swap_copy_structure_colour_to_appearance"] - 0.08, m
    assert m["test/swap_pose_win"] >= 0.55, m
    failures = claim_failures(m, base)
    if failures:
        raise ClaimGap(f"DG-Net misses {failures}: {m}")
