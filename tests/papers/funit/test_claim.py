"""FUNIT's claim on the embedded creatures: few-shot translation to unseen classes (Liu et al., ICCV 2019).

The creatures' species differ in the texture of their fur (type and period); colours come from palettes shared by all
species and the head layout and pose are drawn per image, so neither colour nor layout identifies a species. Two
trivial probes are judged beside FUNIT with the same judge and shots: the colour transfer (the content's foreground
painted with the shots' mean colour) and copying the first shot. So is FUNIT minus its key ingredient, the class code
conditioning the decoder (every content image decoded with the mean of the target classes' codes). The claim is a
set of bars that a translation must clear; each probe and the ablation misses at least one of them (asserted), and
FUNIT must clear all of them.
"""

from __future__ import annotations

import pytest
from conftest import ClaimGap, claim_gap

from nvresearch.core.training.run import train

# The claim test's run: the default embedded run (model=funit/tiny, batch 8, 8 source species) shortened to 3 of
# its 4 epochs (432 of 576 iterations), evaluated at K = 1 and 5 only, on 16 held-out content images x 12 nested
# K-shot draws per unseen class (the K comparison's error comes from the draws), with a judge of 200 Adam steps at
# width 32 trained with random RGB channel permutations (the default judge at 150 steps).
FUNIT_CLAIM = [
    "paper=funit",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "logger=csv",
    "data.eval_content=16",
    "model.eval_ks=[1,5]",
    "model.eval_repeats=12",
    "model.classifier_steps=200",
    "model.classifier_width=32",
]

# The bars, at K = 5 (docs/papers/funit.md, "Tests and claims"): the target class is recognised at least 3x chance
# and 0.25 above the colour transfer; the pose is kept, centre and orientation errors at most 0.6x those of copying
# the class image. Set from what the paper's effect should look like at this scale (far above chance and above any
# colour-only method; pose errors well below a random pair's), and the previous test's 3x chance and 0.6x copy; not
# tuned to a run (FUNIT does not reach them at this budget; the probes miss them by 0.25 top-1 and by construction).
CLASS_MARGIN_OVER_COLOUR = 0.25
POSE_RATIO_TO_COPY = 0.6


def claim_failures(m: dict[str, float], method: str = "") -> list[str]:
    """The bars that ``method`` ("" for FUNIT, or a probe: "colour", "copy") misses, as readable strings."""
    top1 = m[f"test/top1_{method}_k5" if method else "test/top1_k5"]
    suffix = f"_{method}" if method else ""
    centre, angle = m[f"test/pose_center_err{suffix}"], m[f"test/pose_angle_err{suffix}"]
    bars = {
        f"top-1 {top1:.3f} >= 3x chance": top1 >= 3 * m["test/chance"],
        f"top-1 {top1:.3f} >= colour transfer + {CLASS_MARGIN_OVER_COLOUR}": top1
        >= m["test/top1_colour_k5"] + CLASS_MARGIN_OVER_COLOUR,
        f"centre error {centre:.2f} px <= {POSE_RATIO_TO_COPY}x copy": centre
        <= POSE_RATIO_TO_COPY * m["test/pose_center_err_copy"],
        f"angle error {angle:.1f} deg <= {POSE_RATIO_TO_COPY}x copy": angle
        <= POSE_RATIO_TO_COPY * m["test/pose_angle_err_copy"],
    }
    return [name for name, ok in bars.items() if not ok]


@pytest.mark.claim
@claim_gap(
    "gap (issue 15): in the texture world (colour and layout are not species traits) the class code of the "
    "432-iteration CPU run of funit/tiny carries some of the species, but its translations are recognised at K = 5 "
    "well below both class bars (0.375 and the colour transfer + 0.25), and the orientation is kept only partly (angle "
    "error above 0.6x copying's); pilots need ~864 iterations, over the CPU budget, to clear the top-1 bars "
    "(docs/papers/funit.md, Results and appendix)",
)
def test_translations_take_the_unseen_class_beyond_colour_and_keep_the_pose(compose):
    """Claim (Liu et al. 2019, Sec. 4, Table 1): few-shot translations into classes never seen in training are
    recognised as the target class well beyond what transferring colour achieves, and keep the content's pose
    (centre and orientation) well beyond copying the class image.

    First the world and the judge are checked (plain assertions, real failures): the judge recognises real images of
    the unseen species, colour alone does not identify them (the colour transfer scores below 2x chance), and each
    probe in FUNIT's place misses a bar: the colour transfer the class bars, copying the class image the pose bars;
    the ablation without class conditioning (``test/top1_meancode_k5``) misses the class bars.
    Then FUNIT must clear every bar; missing one raises :class:`ClaimGap`, the expected failure today.

    Measured in the texture world (seeds 1 / 2, one thread; docs/papers/funit.md, Results): judge 0.979 / 0.990 on
    real images; top-1 at K = 5 FUNIT 0.190 / 0.285, colour transfer 0.126 / 0.097, copy 0.990 / 0.990 (chance
    0.125), the ablation 0.125 (chance, by construction: one image per content image for all 8 targets); centre error
    FUNIT 1.71 / 1.68 px, colour transfer 1.33 / 1.04, copy 5.03 / 5.24; angle error FUNIT 15.2 / 23.6 deg, colour
    transfer 10.8 / 8.2, copy 22.4 / 23.2. So the colour transfer in FUNIT's place misses both class bars (0.126 <
    0.375) and copying misses both pose bars; FUNIT misses both class bars and the angle bar. K: gain K = 1 -> 5 of
    +0.043 +- 0.021 / +0.023 +- 0.018, so no K gain is asserted. 139.8 CPU-s for the pytest process.
    """
    m = train(compose(FUNIT_CLAIM))
    print({k: round(v, 4) for k, v in m.items() if k.startswith("test/")})  # the numbers behind the docstring
    assert m["test/classifier_top1_real"] > 0.9, m
    assert m["test/top1_colour_k5"] < 2 * m["test/chance"], m  # colour does not identify the species
    colour, copy = claim_failures(m, "colour"), claim_failures(m, "copy")
    assert any("top-1" in f for f in colour), (colour, m)  # the claim fails with the colour transfer in FUNIT's place
    assert any("centre" in f for f in copy) and any("angle" in f for f in copy), (copy, m)
    # FUNIT minus its class conditioning misses the class bars (it cannot tell the targets apart)
    ablation = m["test/top1_meancode_k5"]
    assert ablation < 3 * m["test/chance"] or ablation < m["test/top1_colour_k5"] + CLASS_MARGIN_OVER_COLOUR, m
    failures = claim_failures(m)
    if failures:
        raise ClaimGap(f"FUNIT misses {failures}: {m}")
