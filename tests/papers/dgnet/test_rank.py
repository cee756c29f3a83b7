"""Ranking the user's folders (nvresearch/dgnet/rank.py, scripts/dgnet_rank.py) with a tiny DG-Net checkpoint."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, REPO, load_script

from nvresearch.core.data import DatasetLayoutError
from nvresearch.core.training.checkpoint import CONFIG_KEY
from nvresearch.core.utils.instantiate import instantiate
from nvresearch.dgnet.data import eval_transform
from nvresearch.dgnet.models import AppearanceEncoder, DGNetDiscriminator
from nvresearch.dgnet.rank import folder_images, load_reid_model, rank_folders, rank_gallery
from nvresearch.dgnet.world import SyntheticPersons, write_market_layout

NUM_IDS = 3


@pytest.fixture(scope="module")
def script():
    return load_script(REPO / "scripts" / "dgnet_rank.py")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A checkpoint as ``nvresearch.train paper=dgnet`` writes it (the shipped config, composed with Hydra; the
    module's state dict; the resolved config embedded), and the module it was written from."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    tmp = tmp_path_factory.mktemp("rank")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["paper=dgnet", f"paths.output_dir={tmp / 'run'}"])
    config = OmegaConf.to_container(cfg, resolve=True)
    config["model"]["appearance_encoder"]["num_classes"] = NUM_IDS
    config["model"]["teacher"]["num_classes"] = NUM_IDS
    torch.manual_seed(0)
    module = instantiate(config["model"])
    path = tmp / "last.ckpt"
    torch.save({"state_dict": module.state_dict(), CONFIG_KEY: {"config": config}}, path)
    return path, module


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Query and gallery folders of the embedded world in Market names (persons 4-6, 4 cameras)."""
    kw = dict(num_ids=NUM_IDS, images_per_camera=2)
    root = tmp_path_factory.mktemp("world")
    write_market_layout(root, {s: SyntheticPersons(s, **kw) for s in ("query", "gallery")})
    return root


def test_checkpoint_gives_the_runs_encoder_and_features(run, world: Path) -> None:
    path, module = run
    model = load_reid_model(path)
    assert (model.height, model.width) == (64, 32)  # the world's size, read from the run config
    assert model.upscale_height == module.upscale_height and model.alpha == module.alpha
    images = torch.stack([x for x, _, _ in folder_images(world / "query", eval_transform(64, 32))])
    assert images.shape[-2:] == (64, 32)
    # the same feature as the run's own evaluation computes
    torch.testing.assert_close(model.features(images), module._features(images))
    assert not model.encoder.training


def test_rank_gallery_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0, 1.0, 0.0]])  # primary half (1, 0), fine half (1, 0)
    g = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    order, dist = rank_gallery(q, g, alpha=0.5)  # scores 0.5, 1.5, 1.0
    assert order.tolist() == [[1, 2, 0]]
    torch.testing.assert_close(dist, torch.tensor([[0.0, 1 - 1 / 1.5, 1 - 0.5 / 1.5]], dtype=torch.float64))
    order, dist = rank_gallery(q, g, alpha=-1)  # fine half only: scores 1, 1, 0 -> ties kept in gallery order
    assert order.tolist() == [[0, 1, 2]] and dist[0].tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="alpha must be >= 0 or -1"):
        rank_gallery(q, g, alpha=-0.5)


def test_query_copied_into_the_gallery_ranks_first(script, run, world: Path, tmp_path: Path, capsys) -> None:
    """Known answer: each query's own file, copied into the gallery under another camera, is found at rank 1 with
    distance 0, so the Market protocol (ids from the names) gives rank-1 100 %."""
    gallery = tmp_path / "gallery"
    shutil.copytree(world / "bounding_box_test", gallery)
    queries = sorted((world / "query").glob("*.jpg"))
    # 0004_c2s1_000000_00.jpg -> 0004_c9s1_000000_02.jpg (the box index keeps the names apart)
    copy = {f.name: f.name[:6] + "9" + f.name[7:-6] + f"0{f.name[6]}.jpg" for f in queries}
    for f in queries:  # the same person under a camera no query has
        shutil.copy(f, gallery / copy[f.name])
    out = tmp_path / "out"
    argv = ["--checkpoint", str(run[0]), "--query", str(world / "query"), "--gallery", str(gallery)]
    assert script.main([*argv, "--output", str(out), "--top", "3"]) == 0
    rows = list(csv.DictReader(open(out / "rankings.csv")))
    assert len(rows) == 3 * len(queries)
    firsts = {r["query"]: r for r in rows if r["rank"] == "1"}
    for f in queries:
        assert firsts[f.name]["gallery"] == copy[f.name]
        assert abs(float(firsts[f.name]["distance"])) < 1e-5
    summary = json.loads((out / "rankings.json").read_text())
    assert summary["metrics"]["rank1"] == 1.0 and summary["image_size"] == [64, 32]
    assert [q["query"] for q in summary["queries"]] == [f.name for f in queries]
    printed = capsys.readouterr().out
    assert "rank-1 100.00" in printed and f"for {len(queries)} queries" in printed
    from PIL import Image

    with Image.open(out / "ranking.png") as im:  # queries as rows, query + top 3 as columns, cells >= 96 px
        assert im.height > len(queries) * 96 and 4 * 96 < im.width < im.height


def test_same_camera_copy_is_ranked_but_not_scored(run, world: Path, tmp_path: Path) -> None:
    """The copy under the query's own camera is still at rank 1 of the ranking (distance 0), but the protocol
    drops it as junk, so the score is the model's (a random tiny network: below 100 %)."""
    gallery = tmp_path / "gallery"
    shutil.copytree(world / "bounding_box_test", gallery)
    queries = sorted((world / "query").glob("*.jpg"))
    for f in queries:
        shutil.copy(f, gallery / (f.name[:9] + "_999999_00.jpg"))
    result = rank_folders(load_reid_model(run[0]), world / "query", gallery, top=2)
    assert [r.gallery[0].name for r in result.queries] == [f.name[:9] + "_999999_00.jpg" for f in queries]
    assert result.metrics is not None and result.metrics.rank1 < 1.0


def test_plain_names_rank_without_scores(run, world: Path, tmp_path: Path, capsys, script) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    for i, f in enumerate(sorted((world / "query").glob("*.jpg"))[:3]):
        shutil.copy(f, folder / f"person_{i}.jpg")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    argv = ["--checkpoint", str(run[0]), "--query", str(folder), "--gallery", str(folder), "--output", str(out)]
    assert script.main([*argv, "--top", "10"]) == 0
    summary = json.loads((out / "rankings.json").read_text())
    assert summary["metrics"] is None
    assert [len(q["ranked"]) for q in summary["queries"]] == [3, 3, 3]  # top capped by the gallery's size
    assert [q["ranked"][0]["gallery"] for q in summary["queries"]] == ["person_0.jpg", "person_1.jpg", "person_2.jpg"]
    assert "rank-1" not in capsys.readouterr().out


def test_official_appearance_encoder(tmp_path: Path) -> None:
    encoder = AppearanceEncoder(num_classes=NUM_IDS, backbone="tiny")
    model = load_reid_model(encoder)  # load_official's result: the official input settings
    assert model.encoder is encoder and (model.height, model.width, model.upscale_height) == (256, 128, 128)
    dis = tmp_path / "dis_00100000.pt"
    torch.save({"a": DGNetDiscriminator().state_dict()}, dis)  # load_official reads our names as well
    with pytest.raises(ValueError, match="official DGNetDiscriminator checkpoint; ranking needs the id_"):
        load_reid_model(dis)


def test_clear_errors(script, run, world: Path, tmp_path: Path, capsys) -> None:
    ckpt = str(run[0])
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["--output", str(tmp_path / "out")]
    with pytest.raises(DatasetLayoutError, match="gallery folder '.*empty' holds no image"):
        script.main(["--checkpoint", ckpt, "--query", str(world / "query"), "--gallery", str(empty), *base])
    with pytest.raises(DatasetLayoutError, match="query folder '.*nowhere' is not a folder"):
        script.main(["--checkpoint", ckpt, "--query", str(tmp_path / "nowhere"), "--gallery", str(empty), *base])
    bad = tmp_path / "bad"
    shutil.copytree(world / "query", bad)
    (bad / "0004_c2s1_000000_00.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="cannot read image '.*bad/0004_c2s1_000000_00.jpg'"):
        script.main(["--checkpoint", ckpt, "--query", str(bad), "--gallery", str(world / "query"), *base])
    other = tmp_path / "linear.ckpt"  # a checkpoint of another model
    config = {"model": {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 1}}
    torch.save({"state_dict": torch.nn.Linear(2, 1).state_dict(), CONFIG_KEY: {"config": config}}, other)
    with pytest.raises(ValueError, match="linear.ckpt: not a DG-Net checkpoint"):
        load_reid_model(other)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00 not a checkpoint")
    with pytest.raises(ValueError, match="garbage.ckpt' is not a readable checkpoint"):  # core's CheckpointError
        load_reid_model(garbage)
    with pytest.raises(FileNotFoundError, match="checkpoint not found: '.*nope.ckpt'"):
        load_reid_model(tmp_path / "nope.ckpt")
    with pytest.raises(SystemExit) as exit_:
        script.main(["--help"])
    assert exit_.value.code == 0 and "--gallery" in capsys.readouterr().out
