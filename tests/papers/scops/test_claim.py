"""SCOPS's claim on the embedded part-object world (Hung et al., CVPR 2019): parts found without part labels.

The world (``data=scops/synthetic``, docs/papers/scops.md) draws objects of 4 textured parts whose colours are
shared by all parts of an image, so colour does not tell the parts apart; texture, shape and layout do. The semantic
features are frozen texture energies (``TextureFeatures``, the stand-in for ImageNet VGG). The claim is a set of bars
on the test split (200 images): the parts of full SCOPS agree with the ground-truth parts (FG-NMI) by a margin more
than those of SCOPS without the semantic-consistency loss and without the equivariance losses trained on the same
budget, and than the trivial probes (k-means on the colour of the foreground pixels, per image, and on their
position, over the set, both handed the exact foreground); and the landmarks regressed from its part centres are
well below the mean shape's error and below the strongest trivial regression (from the foreground's centroid and
second moments).
"""

from __future__ import annotations

import pytest
import torch
from conftest import ClaimGap

from nvresearch.core.training.run import train
from nvresearch.scops.data import part_objects_split
from nvresearch.scops.metrics import colour_kmeans_parts, foreground_moments, landmark_regression_error, part_agreement

# The claim's run: the default embedded run (model=scops/tiny, batch 8, 600 training images) shortened to 4 epochs
# (300 iterations, the poly schedule over them), no validation (the final network is tested, as by default): three
# runs fill the 3-minute CPU budget of the claim.
SCOPS_CLAIM = [
    "paper=scops",
    "trainer.max_epochs=4",
    "model.scheduler.total_iters=300",
    "+trainer.limit_val_batches=0",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]
ABLATIONS = {
    "full": [],
    "no_sc": ["model.terms=[con,eqv,lmeqv]"],  # no semantic consistency (the bases and L_on have no role then)
    "no_eqv": ["model.terms=[con,sc,'on']"],  # no equivariance: neither the KL on the maps nor the centre term
}

# The bars (docs/papers/scops.md, "The claim"): FG-NMI margins over the ablations and the probes, and the landmark
# error against the mean shape and the moments probe.
NMI_MARGIN_OVER_ABLATION = 0.05
NMI_MARGIN_OVER_PROBE = 0.05
LANDMARK_RATIO_TO_MEAN_SHAPE = 0.6
LANDMARK_RATIO_TO_MOMENTS = 0.9


def probes(cfg) -> dict[str, float]:
    """The trivial probes on the claim run's test split: FG-NMI of k-means on colour (per image) and on position
    (whole set), and the landmark errors of the mean shape and of the centroid + moments regression (fitted on the
    first half of the test images and scored on the second, as the module does)."""
    d = cfg.data.dataset
    keys = ("train_images", "val_images", "test_images", "size", "seed", "rotation_deg", "shift", "articulation_deg")
    test = part_objects_split("test", scale_range=tuple(d.scale_range), clutter=d.clutter, **{k: d[k] for k in keys})
    labels, fg = test.labels, test.labels > 0
    g = torch.Generator().manual_seed(0)
    colour = colour_kmeans_parts(test.images, fg, 4, per_image=True, generator=g)
    position = colour_kmeans_parts(torch.zeros_like(test.images), fg, 4, with_position=True, generator=g)
    half = labels.shape[0] // 2
    lm, mom = test.landmarks, foreground_moments(fg)
    return {
        "colour_fg_nmi": part_agreement(colour, labels, foreground=fg)["nmi"],
        "position_fg_nmi": part_agreement(position, labels, foreground=fg)["nmi"],
        # a constant prediction regresses to the train mean: the mean shape
        "mean_shape_error": landmark_regression_error(0 * lm[:half], lm[:half], 0 * lm[half:], lm[half:])[1],
        "moments_error": landmark_regression_error(mom[:half], lm[:half], mom[half:], lm[half:])[1],
    }


def claim_failures(m: dict[str, float], method: str, runs: dict[str, dict[str, float]], p: dict[str, float]) -> list:
    """The bars that the run ``m`` misses, as readable strings. ``method`` names it, a key of ``runs``: "full" for
    SCOPS, or an ablation put in its place (it is then held to the margin over the other runs, full SCOPS included)."""
    nmi, err = m["test/fg_nmi"], m["test/landmark_error"]
    bars = {}
    for name, other in runs.items():
        if name != method:  # full SCOPS against its ablations
            bars[f"FG-NMI {nmi:.3f} >= {name} {other['test/fg_nmi']:.3f} + {NMI_MARGIN_OVER_ABLATION}"] = (
                nmi >= other["test/fg_nmi"] + NMI_MARGIN_OVER_ABLATION
            )
    for probe in ("colour", "position"):
        ref = p[f"{probe}_fg_nmi"]
        bars[f"FG-NMI {nmi:.3f} >= {probe} k-means {ref:.3f} + {NMI_MARGIN_OVER_PROBE}"] = (
            nmi >= ref + NMI_MARGIN_OVER_PROBE
        )
    bars[f"landmarks {err:.3f} <= {LANDMARK_RATIO_TO_MEAN_SHAPE} x mean shape {p['mean_shape_error']:.3f}"] = (
        err <= LANDMARK_RATIO_TO_MEAN_SHAPE * p["mean_shape_error"]
    )
    bars[f"landmarks {err:.3f} <= {LANDMARK_RATIO_TO_MOMENTS} x moments {p['moments_error']:.3f}"] = (
        err <= LANDMARK_RATIO_TO_MOMENTS * p["moments_error"]
    )
    return [name for name, ok in bars.items() if not ok]


def measure(compose, tmp_path, seed: int = 1) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Train full SCOPS and its two ablations on the same budget and world, and compute the probes."""
    runs = {}
    for name, extra in ABLATIONS.items():
        runs[name] = train(compose([*SCOPS_CLAIM, f"seed={seed}", *extra], out=tmp_path / name))
    return runs, probes(compose([*SCOPS_CLAIM, f"seed={seed}"], out=tmp_path / "probes"))


@pytest.mark.claim
@pytest.mark.xfail(
    strict=True,
    raises=ClaimGap,
    reason="gap (issue 19): on the 300-iteration CPU budget the texture-feature SCOPS of model=scops/tiny finds parts "
    "(far above its ablations and colour k-means; landmarks well below the mean shape) but stays below k-means on "
    "pixel position in FG-NMI, and its landmarks are not reliably 10 % below the foreground-moments regression "
    "(docs/papers/scops.md, The claim)",
)
def test_parts_beat_ablations_and_probes(compose, tmp_path):
    """Claim (Hung et al. 2019, Sec. 4, the ablation of Table 3 and Fig. 6): self-supervised parts agree with the
    ground-truth parts beyond what the method finds without its semantic-consistency loss or without equivariance,
    and beyond clustering the foreground's colours or positions; the landmarks regressed from the part centres are
    well below the mean shape and below the foreground-moments regression.

    First the world, the probes and the ablations are checked (plain assertions, real failures): colour does not
    identify the parts (colour k-means below FG-NMI 0.1), the foreground moments alone clear the mean-shape bar (so a
    landmark claim against the mean shape only would be empty: the moments bar is the one that counts), and each
    ablation in SCOPS's place misses its bar against full SCOPS. Then full SCOPS must clear every bar: the margins over
    the ablations and colour k-means and the mean-shape bar hold in the three measured seeds (plain assertions); the
    margin over k-means on pixel position (missed in all three) and the moments bar (cleared in seed 1, missed in 2
    and 3) are the gap: missing them raises :class:`ClaimGap`, the expected failure.

    Measured (one thread, this test's runs, ``/tmp`` script calling :func:`measure`; docs/papers/scops.md, "The
    claim"), FG-NMI / FG-ARI / landmark error, seed 1 | seed 2 | seed 3:
    full 0.238 / 0.189 / 0.284 | 0.129 / -0.046 / 0.295 | 0.287 / 0.269 / 0.309; without L_sc 0.001 / 0.000 / 0.606 |
    0.001 / 0.000 / 0.609 | 0.000 / 0.000 / 0.626;
    without equivariance 0.000 / 0.000 / NaN (one label everywhere) | 0.000 / 0.000 / NaN | 0.058 / 0.052 / NaN.
    Probes: colour k-means FG-NMI
    0.025 | 0.028 | 0.016, position k-means 0.333 | 0.299 | 0.310, mean shape 0.597 | 0.611 | 0.596, centroid +
    moments 0.346 | 0.301 | 0.339.
    CPU time of the four parts: 60 + 48 + 26 + 3 s (seed 1), 64 + 47 + 28 + 3 s (seed 2); the whole test (seed 1):
    142 s of CPU (user 114 + sys 28), 6 min 25 s of wall time, XFAIL (ClaimGap).
    """
    runs, p = measure(compose, tmp_path)
    assert p["colour_fg_nmi"] < 0.1, p
    assert p["moments_error"] <= LANDMARK_RATIO_TO_MEAN_SHAPE * p["mean_shape_error"], p
    for name in ("no_sc", "no_eqv"):
        missed = claim_failures(runs[name], name, runs, p)
        assert any(" full " in bar for bar in missed), f"{name} in SCOPS's place clears the bar against full SCOPS"
    failures = claim_failures(runs["full"], "full", runs, p)
    gap = [bar for bar in failures if "position k-means" in bar or "moments" in bar]
    assert not set(failures) - set(gap), f"full SCOPS misses {failures}"
    if gap:
        raise ClaimGap(f"full SCOPS misses {gap}")


def test_claim_bars_reject_what_they_must() -> None:
    """The bars themselves (fast, not a claim): a run that beats the ablations and the probes by the margins clears
    them; each ablation put in SCOPS's place, a run at the position probe's level, and one whose landmarks are only
    as good as the foreground moments each miss a bar. The probe numbers are those of the claim's world (seed 1)."""
    p = {"colour_fg_nmi": 0.025, "position_fg_nmi": 0.333, "mean_shape_error": 0.597, "moments_error": 0.346}

    def run(nmi: float, err: float) -> dict[str, float]:
        return {"test/fg_nmi": nmi, "test/landmark_error": err}

    runs = {"full": run(0.45, 0.25), "no_sc": run(0.30, 0.40), "no_eqv": run(0.35, 0.30)}
    assert claim_failures(runs["full"], "full", runs, p) == []
    for name in ("no_sc", "no_eqv"):
        assert any("full" in bar for bar in claim_failures(runs[name], name, runs, p)), name
    at_position = claim_failures(run(p["position_fg_nmi"], 0.25), "full", runs, p)
    assert any("position k-means" in bar for bar in at_position) and all("FG-NMI" in bar for bar in at_position)
    as_moments = claim_failures(run(0.45, p["moments_error"]), "full", runs, p)
    assert as_moments == [f"landmarks 0.346 <= {LANDMARK_RATIO_TO_MOMENTS} x moments 0.346"]
