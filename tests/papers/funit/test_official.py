"""Reading the official FUNIT generator checkpoint: names and shapes of NVlabs/FUNIT's FewShotGen state dict."""

from __future__ import annotations

import pytest
import torch

from nvresearch.funit import FewShotGenerator, load_official
from nvresearch.funit.official import official_config, official_to_ours


def official_shapes(
    nf: int = 64, downs_content: int = 3, downs_class: int = 4, res: int = 2, latent: int = 64, mlp: int = 256
) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the official FewShotGen's state dict for a configuration (58 tensors at the released
    ``configs/funit_animals.yaml``), written out from the official module structure (networks.py, blocks.py)."""
    out: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        out[f"{name}.weight"], out[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    conv("enc_class_model.model.0.conv", 3, nf, 7)
    ch = nf
    for i in range(downs_class):
        nxt = 2 * ch if i < 2 else ch
        conv(f"enc_class_model.model.{i + 1}.conv", ch, nxt, 4)
        ch = nxt
    conv(f"enc_class_model.model.{downs_class + 2}", ch, latent, 1)  # after the pooling layer
    conv("enc_content.model.0.conv", 3, nf, 7)
    ch = nf
    for i in range(downs_content):
        conv(f"enc_content.model.{i + 1}.conv", ch, 2 * ch, 4)
        ch *= 2
    for b in range(res):
        for j in range(2):
            conv(f"enc_content.model.{downs_content + 1}.model.{b}.model.{j}.conv", ch, ch, 3)
    for b in range(res):
        for j in range(2):
            out[f"dec.model.0.model.{b}.model.{j}.norm.running_mean"] = (ch,)
            out[f"dec.model.0.model.{b}.model.{j}.norm.running_var"] = (ch,)
            conv(f"dec.model.0.model.{b}.model.{j}.conv", ch, ch, 3)
    for i in range(downs_content):
        conv(f"dec.model.{2 * i + 2}.conv", ch, ch // 2, 5)
        ch //= 2
    conv(f"dec.model.{2 * downs_content + 1}.conv", ch, 3, 7)
    adain = 2 * 2 * res * nf * 2**downs_content
    for i, (a, b) in enumerate([(latent, mlp), (mlp, mlp), (mlp, adain)]):
        out[f"mlp.model.{i}.fc.weight"], out[f"mlp.model.{i}.fc.bias"] = (b, a), (b,)
    return out


def test_the_released_configuration_maps_name_for_name():
    shapes = official_shapes()
    assert len(shapes) == 58
    state = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    renamed, ignored, unmapped = official_to_ours(state)
    assert len(ignored) == 8 and all("running_" in k for k in ignored) and unmapped == []
    assert official_config(state) == {
        "nf": 64,
        "num_downs_content": 3,
        "num_downs_class": 4,
        "num_res": 2,
        "latent_dim": 64,
        "mlp_dim": 256,
        "mlp_blocks": 3,
    }
    with torch.device("meta"):
        ours = FewShotGenerator().state_dict()
    assert {k: tuple(v.shape) for k, v in renamed.items()} == {k: tuple(v.shape) for k, v in ours.items()}


def test_load_official_reads_a_checkpoint_file(tmp_path):
    cfg = {"nf": 4, "downs_content": 2, "downs_class": 3, "res": 1, "latent": 8, "mlp": 16}
    g = torch.Generator().manual_seed(0)
    gen = {k: torch.randn(s, generator=g) for k, s in official_shapes(**cfg).items()}
    gen_test = {k: v + 1 for k, v in gen.items()}
    path = tmp_path / "gen_00200000.pt"
    torch.save({"gen": gen, "gen_test": gen_test}, path)
    model = load_official(path)
    assert not model.training and model.official_report["unmapped"] == []
    assert len(model.official_report["ignored"]) == 4
    torch.testing.assert_close(model.mlp.model[0].fc.weight, gen_test["mlp.model.0.fc.weight"])
    torch.testing.assert_close(model.class_encoder.model[5].weight, gen_test["enc_class_model.model.5.weight"])
    # residual block j of the official Sequential is our conv{j+1}
    torch.testing.assert_close(
        model.content_encoder.model[3][0].conv2.conv.weight, gen_test["enc_content.model.3.model.0.model.1.conv.weight"]
    )
    torch.testing.assert_close(
        model.decoder.model[0][0].conv1.conv.bias, gen_test["dec.model.0.model.0.model.0.conv.bias"]
    )
    torch.testing.assert_close(model.decoder.model[4].conv.weight, gen_test["dec.model.4.conv.weight"])
    assert model(torch.zeros(1, 3, 16, 16), torch.zeros(1, 2, 3, 16, 16)).shape == (1, 3, 16, 16)
    torch.testing.assert_close(load_official(path, key="gen").mlp.model[2].fc.bias, gen["mlp.model.2.fc.bias"])
    # a bare state dict is read too
    torch.save(gen, tmp_path / "bare.pt")
    torch.testing.assert_close(
        load_official(tmp_path / "bare.pt").decoder.model[5].conv.bias, gen["dec.model.5.conv.bias"]
    )


def test_load_official_reports_what_does_not_map(tmp_path):
    shapes = official_shapes(nf=4, downs_content=2, downs_class=3, res=1, latent=8, mlp=16)
    state = {k: torch.zeros(s) for k, s in shapes.items()}
    torch.save({"gen_test": {**state, "dis.extra.weight": torch.zeros(1)}}, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match=r"1 unmapped official keys \['dis.extra.weight'\]"):
        load_official(tmp_path / "extra.pt")
    assert load_official(tmp_path / "extra.pt", strict=False).official_report["unmapped"] == ["dis.extra.weight"]
    del state["dec.model.4.conv.weight"]
    torch.save({"gen_test": state}, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"1 missing keys \['decoder.model.4.conv.weight'\]"):
        load_official(tmp_path / "missing.pt")
    with pytest.raises(KeyError, match="has no 'gen_test' generator"):
        torch.save({"gen": state}, tmp_path / "gen_only.pt")
        load_official(tmp_path / "gen_only.pt")
    with pytest.raises(FileNotFoundError, match="official FUNIT checkpoint not found: '.*nowhere.pt'"):
        load_official(tmp_path / "nowhere.pt")
