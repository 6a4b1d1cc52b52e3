"""The U-Bench dataset catalog: 28 datasets, 10 modalities, 20 in-domain + 8 zero-shot, and the
zero-shot pairs of the authors' project page (see ubench/data/catalog.py for the sources)."""

from __future__ import annotations

import pytest

from ubench.data.catalog import CATALOG, MODALITIES
from ubench.data.registry import get_dataset, list_datasets

BY_NAME = {info.name: info for info in CATALOG}

# Source -> zero-shot targets, as the project page's zero-shot tables pair them.
PAIRS = {
    "busi": ("bus",),
    "busbra": ("bus",),
    "tnscui2020": ("tucc",),
    "isic2018": ("ph2",),
    "kvasir": ("cvc300", "cvc_clinicdb"),
    "chase_db1": ("stare",),
    "montgomery": ("nih_lung",),
    "monusac": ("tnbc",),
}
ZERO_SHOT = {"bus", "tucc", "ph2", "cvc300", "cvc_clinicdb", "stare", "nih_lung", "tnbc"}
FORMATS = {
    "busi", "bus", "busbra", "tnscui2020", "tucc", "isic2018", "ph2", "skincancer", "kvasir",
    "cvc_clinicdb", "cvc300", "robotool", "drive", "chase_db1", "stare", "dca1", "glas", "monusac",
    "tnbc", "dsb2018", "cellnuclei", "covid_qu_ex", "montgomery", "nih_lung", "promise12", "acdc",
    "synapse", "oct_cystoid",
}


def test_28_unique_datasets_with_the_format_names():
    names = [info.name for info in CATALOG]
    assert len(names) == 28
    assert len(set(names)) == 28
    assert set(names) == FORMATS


def test_ten_modalities_all_used():
    assert len(MODALITIES) == len(set(MODALITIES)) == 10
    assert {info.modality for info in CATALOG} == set(MODALITIES)


def test_records_sorted_by_modality_then_name():
    keys = [(MODALITIES.index(info.modality), info.name) for info in CATALOG]
    assert keys == sorted(keys)


def test_20_in_domain_and_8_zero_shot():
    roles = {info.name: info.role for info in CATALOG}
    assert {n for n, r in roles.items() if r == "zero-shot"} == ZERO_SHOT
    assert sum(r == "in-domain" for r in roles.values()) == 20


def test_zero_shot_pairs_match_the_paper():
    pairs = {info.name: info.zero_shot_targets for info in CATALOG if info.zero_shot_targets}
    assert pairs == PAIRS


@pytest.mark.parametrize("source", sorted(PAIRS))
def test_targets_are_registered_same_modality_zero_shot_and_not_self(source):
    info = BY_NAME[source]
    assert info.role == "in-domain"
    for target in info.zero_shot_targets:
        assert target != source
        assert target in BY_NAME
        assert BY_NAME[target].modality == info.modality
        assert BY_NAME[target].role == "zero-shot"


def test_every_zero_shot_dataset_is_some_source_target_and_has_none_itself():
    targeted = {t for info in CATALOG for t in info.zero_shot_targets}
    assert targeted == ZERO_SHOT
    assert all(not BY_NAME[n].zero_shot_targets for n in ZERO_SHOT)


@pytest.mark.parametrize(
    "name,num_classes,class_names",
    [
        ("acdc", 4, ("RV", "MYO", "LV")),
        ("synapse", 9, ("aorta", "gallbladder", "left kidney", "right kidney", "liver", "pancreas",
                        "spleen", "stomach")),
    ],
)
def test_multi_class_datasets(name, num_classes, class_names):
    info = BY_NAME[name]
    assert info.num_classes == num_classes
    assert info.class_names == class_names
    assert len(info.class_names) == info.num_classes - 1


def test_all_other_datasets_are_binary():
    binary = [info for info in CATALOG if info.name not in {"acdc", "synapse"}]
    assert len(binary) == 26
    assert all(info.num_classes == 1 and info.class_names == ("foreground",) for info in binary)


@pytest.mark.parametrize("info", CATALOG, ids=lambda i: i.name)
def test_record_is_raw_with_provenance(info):
    assert info.kind == "raw" and info.raw_format == info.name
    assert info.title.strip()
    assert info.source.startswith(("http://", "https://"))
    assert info.licence.strip()
    assert info.citation.strip()


def test_registry_serves_the_catalog():
    listed = set(list_datasets())
    assert FORMATS <= listed and "synth" in listed
    assert get_dataset("kvasir") is BY_NAME["kvasir"]
    assert get_dataset("synapse").num_classes == 9
