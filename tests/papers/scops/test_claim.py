"""SCOPS's claim on the embedded part-object world (Hung et al., CVPR 2019): parts found without part labels.

The world (``data=scops/synthetic``, docs/papers/scops.md) draws objects of 4 textured parts, turned by any angle
(rotation +-180 deg), whose colours are shared by all parts of an image: neither colour nor where a pixel lies (in the
image or relative to the object's centre and extent) tells the parts apart; texture and the parts' shapes do. The
semantic features are frozen texture energies (``TextureFeatures``, the stand-in for ImageNet VGG). The claim is a
set of bars on the test split (200 images): the parts of full SCOPS agree with the ground-truth parts (FG-NMI) by a
margin more than those of SCOPS without the semantic-consistency loss and without the equivariance losses trained
on the same budget, and than the trivial probes (k-means on the colour of the foreground pixels, per image, and on
their position, over the set, absolute or normalised by the foreground's centroid and extent, the stronger of the
two; all handed the exact foreground); and the landmarks regressed from its part centres are well below the mean
shape's error and below the strongest trivial regression (from the foreground's centroid and second moments).
"""

from __future__ import annotations

import pytest
import torch
from conftest import ClaimGap, claim_gap

from nvresearch.core.training.run import train
from nvresearch.scops.data import part_objects_split
from nvresearch.scops.metrics import (
    colour_kmeans_parts,
    feature_kmeans_parts,
    foreground_moments,
    landmark_regression_error,
    part_agreement,
    position_kmeans_parts,
)
from nvresearch.scops.models import TextureFeatures

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
    """The trivial probes on the claim run's test split: FG-NMI of k-means on colour (per image), on absolute
    position (whole set) and on normalised position (relative to each image's foreground centroid, divided by its
    extent), and of k-means on SCOPS's own frozen features (the DFF-like baseline); and the landmark errors of the mean
    shape and of the centroid + moments regression (fitted on the first half of the test images and scored on the
    second, as the module does)."""
    d, m = cfg.data.dataset, cfg.model
    keys = ("train_images", "val_images", "test_images", "size", "seed", "rotation_deg", "shift", "articulation_deg")
    test = part_objects_split("test", scale_range=tuple(d.scale_range), clutter=d.clutter, **{k: d[k] for k in keys})
    labels, fg = test.labels, test.labels > 0
    g = torch.Generator().manual_seed(0)
    features = TextureFeatures(tuple(m.feature_periods), stride=m.feature_stride, scale=m.feature_scale)
    with torch.no_grad():
        feats = features(torch.stack([test[i]["image"] for i in range(len(test))]))
    parts = {
        "colour": colour_kmeans_parts(test.images, fg, 4, per_image=True, generator=g),
        "position": position_kmeans_parts(fg, 4, generator=g),
        "normalised_position": position_kmeans_parts(fg, 4, normalised=True, generator=g),
        "features": feature_kmeans_parts(feats, fg, 4, generator=g),
    }
    half = labels.shape[0] // 2
    lm, mom = test.landmarks, foreground_moments(fg)
    return {
        **{f"{name}_fg_nmi": part_agreement(pred, labels, foreground=fg)["nmi"] for name, pred in parts.items()},
        # a constant prediction regresses to the train mean: the mean shape
        "mean_shape_error": landmark_regression_error(0 * lm[:half], lm[:half], 0 * lm[half:], lm[half:])[1],
        "moments_error": landmark_regression_error(mom[:half], lm[:half], mom[half:], lm[half:])[1],
    }


def claim_failures(m: dict[str, float], method: str, runs: dict[str, dict[str, float]], p: dict[str, float]) -> list:
    """The bars that the run ``m`` misses, as readable strings. ``method`` names it, a key of ``runs``: "full" for
    SCOPS, or an ablation put in its place (it is then held to the margin over the other runs, full SCOPS included).
    The position bar is against the stronger of the two position probes."""
    nmi, err = m["test/fg_nmi"], m["test/landmark_error"]
    bars = {}
    for name, other in runs.items():
        if name != method:  # full SCOPS against its ablations
            bars[f"FG-NMI {nmi:.3f} >= {name} {other['test/fg_nmi']:.3f} + {NMI_MARGIN_OVER_ABLATION}"] = (
                nmi >= other["test/fg_nmi"] + NMI_MARGIN_OVER_ABLATION
            )
    position = max(p["position_fg_nmi"], p["normalised_position_fg_nmi"])
    for probe, ref in (("colour", p["colour_fg_nmi"]), ("position", position)):
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
@claim_gap(
    "gap (issue 19): in the world turned by any angle the texture-feature SCOPS of model=scops/tiny finds parts "
    "above its ablations and every trivial part probe (colour, absolute and normalised position k-means) on the "
    "300-iteration CPU budget (seeds 1 and 3; seed 2 collapsed), but its parts split the torso from head and limbs "
    "together, whose centres carry no direction: its landmarks stay at the mean shape's and the moments probe's "
    "level (docs/papers/scops.md, The claim)",
)
def test_parts_beat_ablations_and_probes(compose, tmp_path):
    """Claim (Hung et al. 2019, Sec. 4, the ablation of Table 3 and Fig. 6): self-supervised parts agree with the
    ground-truth parts beyond what the method finds without its semantic-consistency loss or without equivariance,
    and beyond clustering the foreground's colours or positions; the landmarks regressed from the part centres are
    well below the mean shape and below the foreground-moments regression.

    First the world, the probes and the ablations are checked (plain assertions, real failures): colour and position
    do not identify the parts (colour k-means and both position probes below FG-NMI 0.1; the rotation of +-180 deg
    is what disarms the position probes: at +-45 deg they reached 0.30-0.33 absolute and 0.56-0.64 normalised), the
    foreground moments alone miss the mean-shape bar (second moments give the object's axis, not its direction), and
    each ablation in SCOPS's place misses its bar against full SCOPS. Then full SCOPS must clear every bar: the FG-NMI
    margins over the ablations and the probes are plain assertions (cleared in seeds 1, the test's, and 3; missed in
    seed 2, where the parts collapsed: not reliable across seeds, see the docs); the two landmark bars (missed in all
    three seeds) are the gap: missing them raises :class:`ClaimGap`, the expected failure. k-means on the frozen
    features themselves (the DFF-like baseline, 0.34-0.37) is reported, not asserted: SCOPS's parts stay below it.

    Measured (one thread, this test's parts run by a ``/tmp`` script with its overrides; docs/papers/scops.md, "The
    claim"), FG-NMI / FG-ARI / landmark error, seed 1 | seed 2 | seed 3:
    full 0.200 / 0.165 / 1.028 | 0.043 / -0.022 / 0.928 | 0.157 / 0.225 / 0.943;
    without L_sc 0.000 / 0.000 / 1.128 | 0.000 / 0.000 / 1.112 | 0.001 / -0.003 / 1.107;
    without equivariance 0.000 / 0.000 / NaN (one label everywhere) | 0.000 / 0.000 / NaN | 0.017 / 0.033 / NaN.
    Probes, FG-NMI: colour k-means 0.021 | 0.015 | 0.021, position k-means 0.004 | 0.004 | 0.003, normalised position
    0.010 | 0.001 | 0.002, feature k-means 0.360 | 0.342 | 0.367; landmarks: mean shape 1.103 | 1.099 | 1.098,
    centroid + moments 1.040 | 0.977 | 0.977.
    CPU time of the parts (seed 1): full 64 s, without L_sc 43 s, without equivariance 26 s, probes 5 s; the whole
    test (seed 1): 164 s of CPU (user 127 + sys 37), 4 min 26 s of wall time, XFAIL (ClaimGap).
    """
    runs, p = measure(compose, tmp_path)
    assert p["colour_fg_nmi"] < 0.1, p
    assert max(p["position_fg_nmi"], p["normalised_position_fg_nmi"]) < 0.1, p
    # the probe the moments bar stands for: without parts, the mean-shape bar is out of reach in this world
    assert p["moments_error"] > LANDMARK_RATIO_TO_MEAN_SHAPE * p["mean_shape_error"], p
    for name in ("no_sc", "no_eqv"):
        missed = claim_failures(runs[name], name, runs, p)
        assert any(" full " in bar for bar in missed), f"{name} in SCOPS's place clears the bar against full SCOPS"
    failures = claim_failures(runs["full"], "full", runs, p)
    gap = [bar for bar in failures if bar.startswith("landmarks")]
    assert not set(failures) - set(gap), f"full SCOPS misses {failures}"
    if gap:
        raise ClaimGap(f"full SCOPS misses {gap}")


def test_claim_bars_reject_what_they_must() -> None:
    """The bars themselves (fast, not a claim): a run that beats the ablations and the probes by the margins clears
    them; each ablation put in SCOPS's place, a run at the level of either position probe (the stronger one counts)
    or of colour k-means, and one whose landmarks are only as good as the foreground moments each miss a bar. The
    probe numbers are those of the claim's world (seed 1), and of the former +-45 deg world for the normalised
    position probe that the rotation disarmed (0.637 there)."""
    p = {
        "colour_fg_nmi": 0.021,
        "position_fg_nmi": 0.004,
        "normalised_position_fg_nmi": 0.010,
        "features_fg_nmi": 0.360,
        "mean_shape_error": 1.103,
        "moments_error": 1.040,
    }

    def run(nmi: float, err: float) -> dict[str, float]:
        return {"test/fg_nmi": nmi, "test/landmark_error": err}

    runs = {"full": run(0.20, 0.5), "no_sc": run(0.0, 1.128), "no_eqv": run(0.0, float("nan"))}
    assert claim_failures(runs["full"], "full", runs, p) == []
    for name in ("no_sc", "no_eqv"):
        assert any(" full " in bar for bar in claim_failures(runs[name], name, runs, p)), name
    at_colour = claim_failures(run(p["colour_fg_nmi"], 0.5), "full", runs, p)
    assert any("colour k-means" in bar for bar in at_colour) and all("FG-NMI" in bar for bar in at_colour)
    aligned = {**p, "normalised_position_fg_nmi": 0.637}  # the +-45 deg world: the normalised probe is the stronger
    at_position = claim_failures(run(0.45, 0.5), "full", runs, aligned)
    assert at_position == [f"FG-NMI 0.450 >= position k-means 0.637 + {NMI_MARGIN_OVER_PROBE}"]
    as_moments = claim_failures(run(0.20, p["moments_error"]), "full", runs, p)
    assert as_moments == [
        f"landmarks 1.040 <= {LANDMARK_RATIO_TO_MEAN_SHAPE} x mean shape 1.103",
        f"landmarks 1.040 <= {LANDMARK_RATIO_TO_MOMENTS} x moments 1.040",
    ]
