"""The shipped U-Bench reference data: provenance, constants, rankings, and the name mappings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ubench.analysis import ubench_reference as ub
from ubench.errors import UbenchError

ROOT = Path(__file__).resolve().parents[1]


def test_provenance_is_recorded():
    s = ub.source()
    assert s["repository"] == "https://github.com/FengheTan9/ubench" and s["file"] == "index.html"
    assert re.fullmatch(r"[0-9a-f]{40}", s["commit"]) and s["commit"].startswith("20b9f89")
    assert s["code"]["repository"] == "https://github.com/FengheTan9/U-Bench"
    assert re.fullmatch(r"[0-9a-f]{40}", s["code"]["commit"])
    assert "scripts/extract_ubench_reference.py" in s["extracted"]
    assert ub.source_label() == "FengheTan9/ubench@20b9f89 index.html"


def test_calculator_constants_as_published():
    c = ub.calculator()
    assert (c["ln_params_q10"], c["ln_params_q90"]) == (0.39, 4.32)
    assert (c["ln_gflops_q10"], c["ln_gflops_q90"]) == (0.88, 4.2)
    assert (c["fps_q10"], c["fps_q90"]) == (24.28, 121.63)
    assert c["floor"] == 0.05 and c["alpha"] == 0.5
    assert c["weights"] == {"params": 0.33, "gflops": 0.33, "fps": 0.33}  # equal: they cancel
    assert len(c["iou"]) == 20 and len(ub.iou_datasets()) == 20
    assert ub.iou_percentiles("busi") == (0.5837592, 0.7062627)
    assert ub.iou_percentiles("isic") == ub.iou_percentiles("ISIC2018") == ub.iou_percentiles("isic2018")
    assert ub.iou_percentiles("synth") is None and ub.iou_percentiles("busi->bus") is None
    for q10, q90 in map(ub.iou_percentiles, ub.iou_datasets()):
        assert 0 < q10 < q90 < 1
    ex = c["example"]
    assert ex["model"] == "U-Net" and ex["dataset"] == "busi" and ex["params_m"] == 34.527041


def test_every_dataset_name_is_a_registered_dataset():
    from ubench.data.registry import list_datasets

    known = set(list_datasets())
    assert set(ub.iou_datasets()) <= known
    for key in ub.ranked_datasets():
        assert set(key.split("->")) <= known, key
    assert len(ub.ranked_datasets("in-domain")) == 20 and len(ub.ranked_datasets("zero-shot")) == 9
    # every in-domain dataset with a ranking has calculator percentiles, and vice versa
    assert ub.ranked_datasets("in-domain") == ub.iou_datasets()


def test_published_top10():
    busi = ub.published_top10("busi", "iou")
    assert [e["rank"] for e in busi] == list(range(1, 11))
    assert busi[0] == {"rank": 1, "name": "RWKV-UNet", "code_name": "RWKV_UNet", "model": "rwkv_unet"}
    assert ub.published_top10("BUSI", "uscore")[0]["name"] == "LGMSNet"
    assert ub.published_top10("busi", "uscore")[0]["model"] == "lgmsnet"
    assert ub.published_top10("Kvasir->CVC300", "iou") == ub.published_top10("kvasir->cvc300", "iou")
    assert ub.published_top10("CHASE-STARE", "uscore")[0]["model"] == "ulite"
    total = sum(len(ub.published_top10(k, by)) for k in ub.ranked_datasets() for by in ub.BY)
    assert total == 580
    with pytest.raises(UbenchError, match="unknown dataset 'nosuch'"):
        ub.published_top10("nosuch", "iou")
    with pytest.raises(UbenchError, match="ranking"):
        ub.published_top10("busi", "dice")


def test_names_map_to_code_names_and_the_registry():
    from ubench.models import list_models

    registry = set(list_models())
    data = ub.reference_data()
    assert set(data["code_names"].values()) <= registry
    assert set(data["code_names"].values()) == registry  # every ubench model has its U-Bench name
    assert ub.code_name("MADGNet") == "MFMSNet" and ub.code_name("MFMSNet") == "MFMSNet"
    assert ub.registry_name("U-Net") == "unet" and ub.registry_name("U_Net") == "unet"
    assert ub.registry_name("ResNet34UnetPlus") == "unetpp" and ub.registry_name("AttU-Net") == "attention_unet"
    assert ub.registry_name("CE-Net") == "cenet" and ub.registry_name("CENet") == "cenet_pvt"  # two models
    assert ub.registry_name("LGMSNet") == "lgmsnet" and ub.registry_name("NoSuchNet") is None
    for key in ub.ranked_datasets():
        for by in ub.BY:
            for e in ub.published_top10(key, by):
                assert e["code_name"] == ub.code_name(e["name"])
                assert e["model"] == ub.registry_name(e["name"])


def test_top10_counts():
    counts = ub.top10_counts()
    assert sum(c["iou"] for c in counts.values()) == 290 and sum(c["uscore"] for c in counts.values()) == 290
    # MADGNet (printed so per dataset) is one model with MFMSNet
    assert "MADGNet" in counts["MFMSNet"]["names"]
    assert counts["Tinyunet"]["names"] == ["TinyU-Net"]
    assert counts["RWKV_UNet"]["model"] == "rwkv_unet" and counts["RWKV_UNet"]["iou"] >= 1
    zs = ub.top10_counts("zero-shot")
    assert sum(c["iou"] for c in zs.values()) == 90
    with pytest.raises(UbenchError):
        ub.top10_counts("somewhere")


def test_table2():
    t = ub.table2()
    assert set(t) == {"source_iou", "target_iou", "source_uscore", "target_uscore"}
    assert {k: v["unet_rank"] for k, v in t.items()} == {"source_iou": 25, "target_iou": 72,
                                                         "source_uscore": 64, "target_uscore": 69}
    assert t["source_iou"]["top10"][0]["name"] == "RWKV-UNet" and t["source_uscore"]["top10"][0]["name"] == "LGMSNet"
    assert t["target_uscore"]["top10"][6]["model"] == "swinunetr"
    assert all(len(v["top10"]) == 10 for v in t.values())
    t["source_iou"]["unet_rank"] = 1  # a copy: the shipped data cannot be changed through it
    assert ub.table2()["source_iou"]["unet_rank"] == 25


def test_data_file_is_package_data():
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "data/*.json" in pyproject["tool"]["setuptools"]["package-data"]["ubench.analysis"]
    assert (ROOT / "ubench" / "analysis" / "data" / ub.DATA_FILE).is_file()
