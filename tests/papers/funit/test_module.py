"""FUNIT through the training stack: data module, configs, one run end to end, and the paper's claim at CPU scale."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from nvresearch.core.training import load_checkpoint
from nvresearch.core.training.run import train
from nvresearch.core.utils import instantiate
from nvresearch.funit.data import ListFileDataset, SyntheticCreatures
from nvresearch.funit.datamodule import FUNITDataModule, unseen_split

# The quickest configuration: a few tiny batches, small evaluation, CSV logging only.
FUNIT_FAST = [
    "paper=funit",
    "trainer=fast",
    "trainer.max_epochs=1",  # the paper config sets 5 (it is merged after the trainer group)
    "logger=csv",
    "data.dataset.images_per_class=4",
    "data.val_size=4",
    "data.eval_content=4",
    "data.unseen_per_class=12",
    "data.batch_size=4",
    "model.generator.nf=4",
    "model.discriminator.nf=4",
    "model.eval_ks=[1,5]",
    "model.eval_repeats=1",
    "model.classifier_steps=5",
]


def test_unseen_species_are_spread_and_disjoint():
    source, unseen = unseen_split(32, 8)
    assert unseen == [2, 6, 10, 14, 18, 22, 26, 30]
    assert not set(source) & set(unseen) and len(source) == 24
    with pytest.raises(ValueError, match="num_unseen"):
        unseen_split(4, 4)


def test_synthetic_datamodule_batches_and_fewshot_data():
    creatures = partial(SyntheticCreatures.for_part, images_per_class=4, seed=0)
    dm = FUNITDataModule(creatures, val_size=4, eval_content=6, unseen_per_class=6, batch_size=4, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["content"].shape == (4, 3, 32, 32) and batch["class_image"].shape == (4, 3, 32, 32)
    assert batch["content_label"].max() < 8 and batch["pose"].shape == (4, 4)
    data = dm.fewshot_data()
    assert data["num_classes"] == 8 and data["has_pose"]
    assert data["classifier_images"].shape == (24, 3, 32, 32) and len(data["shot_pools"]) == 8
    assert all(p.shape[0] == 3 for p in data["shot_pools"])
    with pytest.raises(ValueError, match="data.num_classes=119 but the training data has 8"):
        FUNITDataModule(SyntheticCreatures.for_part, num_classes=119).setup("fit")


def test_list_datamodule_on_a_fixture(tmp_path):
    from PIL import Image

    root = tmp_path / "animals"
    train_lines, test_lines = [], []
    for ci, c in enumerate(["n01", "n02", "n03", "n04", "n05"]):
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (24, 20), (50 * ci, 30 * i, 90)).save(root / c / f"{c}_{i}.jpg")
            (train_lines if ci < 3 else test_lines).append(f"{c}/{c}_{i}.jpg")
    (tmp_path / "train.txt").write_text("\n".join(train_lines) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test_lines) + "\n")
    lists = partial(
        ListFileDataset.for_part,
        root=str(root),
        train_list=str(tmp_path / "train.txt"),
        test_list=str(tmp_path / "test.txt"),
        image_size=16,
        resize=18,
    )
    dm = FUNITDataModule(
        lists,
        batch_size=2,
        val_size=2,
        eval_content=3,
        unseen_per_class=4,
        num_classes=3,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["content"].shape == (2, 3, 16, 16) and batch["class_label"].max() < 3
    data = dm.fewshot_data()
    assert data["num_classes"] == 2 and not data["has_pose"] and len(dm.get_split("test")) == 3
    with pytest.raises(TypeError, match="dataset component"):
        FUNITDataModule("list")


def test_module_losses_on_a_batch(compose):
    cfg = compose(FUNIT_FAST)
    module, dm = instantiate(cfg.model), instantiate(cfg.data)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    d = module.discriminator_losses(batch)
    g = module.generator_losses(batch)
    assert {"loss", "real", "fake", "gp"} <= set(d) and {"loss", "adv", "recon", "fm_content", "fm_class"} <= set(g)
    assert all(torch.isfinite(v) for v in (*d.values(), *g.values()))
    assert module.generator_ema is not None and not any(p.requires_grad for p in module.generator_ema.parameters())


def test_reference_model_config_sizes(compose):
    cfg = compose(["model=funit/default", "data=funit/animals"])
    assert cfg.model.optimizer_g._target_ == "torch.optim.RMSprop" and cfg.model.optimizer_g.lr == 1e-4
    assert (cfg.model.recon_w, cfg.model.fm_w, cfg.model.gp_w, cfg.model.ema_decay) == (0.1, 1.0, 10.0, 0.999)
    with torch.device("meta"):
        g = instantiate(cfg.model.generator)
        d = instantiate(cfg.model.discriminator)
    assert sum(p.numel() for p in g.parameters()) == 29_866_435
    assert sum(p.numel() for p in d.parameters()) == 54_252_599


@pytest.mark.slow
def test_fast_run_end_to_end(compose, tmp_path):
    metrics = train(compose(FUNIT_FAST))
    for key in ("test/top1_k1", "test/top5_k5", "test/pose_angle_err", "test/chance", "val/recon_l1"):
        assert key in metrics, metrics
    # K = 5 is paired with K = 1 (nested shot sets): the logged gain is the difference of the two accuracies
    assert metrics["test/top1_gain_k5"] == pytest.approx(metrics["test/top1_k5"] - metrics["test/top1_k1"], abs=1e-6)
    assert metrics["test/top1_gain_se_k5"] >= 0 and "test/top1_gain_k1" not in metrics
    # the trivial probes are judged alike: the colour transfer keeps the content's pose by construction
    for key in ("test/top1_colour_k1", "test/top1_copy_k5", "test/pose_center_err_colour", "test/pose_angle_err_copy"):
        assert key in metrics, metrics
    assert metrics["test/pose_center_err_colour"] < 0.5 * metrics["test/pose_center_err_copy"], metrics
    # the ablation decodes one code (the targets' mean) for every target: one image per content, judged once per
    # target, so exactly one of the T targets is named per content image: chance by construction
    assert metrics["test/top1_meancode_k5"] == pytest.approx(metrics["test/chance"], abs=1e-6), metrics
    run = tmp_path / "run"
    from PIL import Image

    # rows content, 5 shots, FUNIT, colour probe; one column per unseen class; 32-px cells enlarged to 96
    with Image.open(run / "samples" / "test_translations.png") as grid:
        assert grid.height > 8 * 96 and grid.width > 8 * 96, grid.size
    assert json.loads((run / "metrics.json").read_text())["paper"] == "funit"
    module = load_checkpoint(run / "checkpoints" / "last.ckpt")
    x = torch.zeros(2, 3, 32, 32)
    assert module.translate(x, torch.zeros(2, 3, 3, 32, 32)).shape == x.shape


@pytest.mark.slow
def test_resume_under_manual_optimisation_matches_uninterrupted_run(compose, tmp_path):
    """Stop after 2 of 3 epochs, resume from last.ckpt: the weights (G, D, EMA generator), both RMSprop states and
    the step count equal those of an uninterrupted 3-epoch run bit for bit (same data order: keys are seeded by
    (seed, epoch, index))."""
    from nvresearch.core.training import read_checkpoint

    common = [*FUNIT_FAST, "trainer.deterministic=true", "trainer.limit_train_batches=3", "test=false", "seed=3"]
    common += ["trainer.max_epochs=3", "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false"]
    common += ["model.ema_decay=0.5"]  # a short EMA memory: stale EMA weights would show
    full, part, resumed = tmp_path / "full", tmp_path / "part", tmp_path / "resumed"
    stop = ["+callbacks.stop._target_=conftest.StopAfterEpochs", "+callbacks.stop.epochs=2"]
    train(compose(common, out=full))
    train(compose([*common, *stop], out=part))
    stopped = read_checkpoint(part / "checkpoints" / "last.ckpt")
    assert stopped["epoch"] == 1 and stopped["global_step"] == 2 * 2 * 3  # two optimiser steps per batch
    train(compose([*common, f"ckpt_path={part / 'checkpoints' / 'last.ckpt'}"], out=resumed))

    a = read_checkpoint(full / "checkpoints" / "last.ckpt")
    b = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 2 * 3 * 3 and a["epoch"] == b["epoch"] == 2
    assert any(k.startswith("generator_ema.") for k in a["state_dict"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert len(a["optimizer_states"]) == len(b["optimizer_states"]) == 2  # RMSprop of G, then of D
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        assert opt_a["state"].keys() == opt_b["state"].keys() and opt_a["state"]
        for idx in opt_a["state"]:
            for name, value in opt_a["state"][idx].items():
                other = opt_b["state"][idx][name]
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(other)), (idx, name)
    # resuming really continued: the stopped run's generator, EMA and optimiser state differ from the final ones
    for prefix in ("generator.", "generator_ema.", "discriminator."):
        assert any(
            not torch.equal(stopped["state_dict"][k], a["state_dict"][k])
            for k in a["state_dict"]
            if k.startswith(prefix)
        ), prefix
