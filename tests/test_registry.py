"""The model registry: names, families, source files, clear errors, cheap import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ubench.errors import UbenchError
from ubench.models import FAMILIES, create_model, list_models, model_info, model_source_file

FIRST_THREE = {"unet", "unetpp", "attention_unet"}


@pytest.mark.parametrize("typo,expected", [("unet_pp", "unetpp"), ("atention_unet", "attention_unet")])
def test_unknown_name_suggests_close_names(typo, expected):
    with pytest.raises(UbenchError) as info:
        create_model(typo)
    assert typo in info.value.what
    assert "did you mean" in info.value.fix and expected in info.value.fix.split("known")[0]


def test_unknown_name_without_close_match_lists_known_models():
    with pytest.raises(UbenchError) as info:
        create_model("zzzz")
    assert "did you mean" not in info.value.fix
    assert "known models" in info.value.fix


def test_list_models_by_family():
    cnn = list_models(family="cnn")
    assert FIRST_THREE <= set(cnn)
    assert all(model_info(n).family == "cnn" for n in cnn)
    everything = list_models()
    assert everything == sorted(everything) and set(cnn) <= set(everything)


def test_unknown_family_is_a_clear_error():
    with pytest.raises(UbenchError) as info:
        list_models(family="bogus")
    assert "bogus" in info.value.what
    assert all(f in info.value.fix for f in FAMILIES)


@pytest.mark.parametrize("name", list_models())
def test_source_file_defines_the_factory(name):
    path = model_source_file(name)
    assert path.is_file() and path.stem == name
    assert f"def {name}(" in path.read_text()


@pytest.mark.parametrize("name", list_models())
def test_model_info_is_complete(name):
    info = model_info(name)
    assert info.family in FAMILIES
    assert 2010 <= info.year <= 2030
    assert info.paper and info.ref_source
    assert info.ref_params_m and info.ref_params_m > 0
    assert info.to_dict()["paper"] == info.paper


def test_registry_import_and_listing_do_not_import_monai():
    """Optional heavy imports belong inside the factories, not at module level (one subprocess)."""
    code = (
        "import sys; import ubench.models.registry as r; a = 'monai' in sys.modules; "
        "names = r.list_models(); print(a, 'monai' in sys.modules, len(names), 'torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    after_import, after_listing, count, dynamo = out.stdout.split()
    # a model file that builds a module at import (even on 'meta': `with torch.device` imports
    # torch._dynamo, about 1 s) slows every stage's start-up: list unused parameters statically
    assert dynamo == "False", "listing the models imported torch._dynamo (a module built at import?)"
    assert int(count) >= len(FIRST_THREE)
    assert after_import == "False", "importing ubench.models.registry imported monai"
    assert after_listing == "False", "list_models() imported monai: move the import into the factory"


def test_input_check_is_attached_by_create_model_and_survives_pickling():
    """The registry's check runs before forward (a ValueError naming size and fix), and a built
    model still pickles (torch.save of a whole module, multiprocessing)."""
    import pickle

    import torch

    model = create_model("unet").eval()
    with pytest.raises(ValueError, match=r"divisible by 16, got 40x48; resize or pad"):
        model(torch.zeros(1, 3, 40, 48))
    clone = pickle.loads(pickle.dumps(model))
    with pytest.raises(ValueError, match="divisible by 16"):
        clone(torch.zeros(1, 3, 40, 48))
    with torch.no_grad():
        assert clone(torch.zeros(1, 3, 48, 32)).shape == (1, 1, 48, 32)


def test_fixed_size_models_refuse_other_and_non_square_sizes():
    import torch

    model = create_model("swinunet").eval()
    with pytest.raises(ValueError, match="only takes square inputs of 224 pixels, got 224x256"):
        model(torch.zeros(1, 3, 224, 256))


def test_unknown_option_names_what_the_model_takes():
    with pytest.raises(UbenchError) as info:
        create_model("unet", depth=3)
    assert "depth" in info.value.what and "num_classes and in_channels" in info.value.fix


def test_every_model_names_its_ubench_counterpart_consistently():
    """ModelInfo.ubench_name / ubench_id map results and weights across to U-Bench; the names agree
    with the code-name table the published rankings are read through, and ids are unique."""
    import json
    from pathlib import Path

    import ubench.analysis

    ref = json.loads((Path(ubench.analysis.__file__).parent / "data" / "ubench_reference.json").read_text())
    ours = {ubench: mine for ubench, mine in ref["code_names"].items() if mine}
    infos = {name: model_info(name) for name in list_models()}
    assert all(i.ubench_name and isinstance(i.ubench_id, int) and i.ubench_id > 0 for i in infos.values())
    assert {i.ubench_name: n for n, i in infos.items()} == {k: v for k, v in ours.items() if v in infos}
    ids = [i.ubench_id for i in infos.values()]
    assert len(ids) == len(set(ids))
