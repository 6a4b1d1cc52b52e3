"""Histology/nuclei converters (GlaS, MoNuSAC, TNBC, DSB2018, CellNuclei) on tiny owner-layout fixtures,
plus one real DSB2018 image rebuilt into the official per-nucleus layout."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ubench.data.converters import histology
from ubench.data.converters.base import check_folder, convert_folder
from ubench.errors import UbenchError

H, W = 20, 24
CONVS = {c.name: c for c in histology.CONVERTERS}
SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsb2018-sample"
GLAS_DIR = "Warwick QU Dataset (Released 2016_07_08)"
MONUSAC_TRAIN, MONUSAC_TEST = "MoNuSAC_images_and_annotations", "MoNuSAC Testing Data and Annotations"


def _write(path: Path, arr: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def _rgba(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 4), dtype=np.uint8)


def _labels(seed: int) -> np.ndarray:
    """An instance map: two rectangles labelled 1 and 2 (8-bit), the rest 0."""
    m = np.zeros((H, W), dtype=np.uint8)
    m[2 + seed : 8 + seed, 2:9] = 1
    m[10:16, 12 + seed : 20] = 2
    return m


def _fg(labels: np.ndarray) -> np.ndarray:
    return (labels > 0).astype(np.uint8)


def _check_problem(conv, root: Path, fragment: str) -> None:
    """The problem list names ``fragment``; converting refuses with a UbenchError."""
    problems = check_folder(conv, root)[1]
    assert any(fragment in p.line() for p in problems), [p.line() for p in problems]
    with pytest.raises(UbenchError):
        convert_folder(conv, root)


# ------------------------------------------------------------------------------------- fixtures
def make_glas(root: Path) -> dict:
    """GlaS: train_1, train_2, testA_1, testB_1 BMPs with 8-bit instance-label _anno BMPs."""
    truth = {}
    for k, stem in enumerate(("train_1", "train_2", "testA_1", "testB_1")):
        img, labels = _rgba(k)[..., :3], _labels(k)
        _write(root / GLAS_DIR / f"{stem}.bmp", img)
        _write(root / GLAS_DIR / f"{stem}_anno.bmp", labels)
        truth[stem] = (img, _fg(labels), stem)
    (root / GLAS_DIR / "Grade.csv").write_text("name,grade\ntrain_1,benign\n")
    return truth


def _monusac_xml(path: Path, annotations: list[tuple[str, list[list[tuple[float, float]]]]]) -> None:
    """An ImageScope XML: one Annotation per (cell type, polygons), as MoNuSAC ships them."""
    top = ET.Element("Annotations", MicronsPerPixel="0.25")
    for i, (kind, polygons) in enumerate(annotations, start=1):
        ann = ET.SubElement(top, "Annotation", Id=str(i), Type="4")
        ET.SubElement(ET.SubElement(ann, "Attributes"), "Attribute", Name=kind, Id="0", Value="")
        regions = ET.SubElement(ann, "Regions")
        ET.SubElement(regions, "RegionAttributeHeaders")
        for j, points in enumerate(polygons, start=1):
            region = ET.SubElement(regions, "Region", Id=str(j), Type="0")
            ET.SubElement(region, "Attributes")
            vertices = ET.SubElement(region, "Vertices")
            for x, y in points:
                ET.SubElement(vertices, "Vertex", X=f"{x:.3f}", Y=f"{y:.3f}", Z="0")
        ET.SubElement(ann, "Plots")
    ET.ElementTree(top).write(path, encoding="utf-8", xml_declaration=True)


def _rect(x0: int, y0: int, x1: int, y1: int) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


MONUSAC_SLIDES = (
    (MONUSAC_TRAIN, "TCGA-5P-A9K0-01Z-00-DX1", 1),
    (MONUSAC_TRAIN, "TCGA-5P-A9K0-01Z-00-DX1", 2),
    (MONUSAC_TRAIN, "TCGA-55-1594-01Z-00-DX1", 1),
    (MONUSAC_TEST, "TCGA-2Z-A9JG-01Z-00-DX1", 1),
)


def make_monusac(root: Path, folders: tuple[str, ...] = (MONUSAC_TRAIN, MONUSAC_TEST)) -> dict:
    """MoNuSAC: RGBA .tif sub-images + .xml polygons (4 types, Ambiguous, a 2-vertex region) + .svs."""
    truth = {}
    for k, (top, slide, n) in enumerate(MONUSAC_SLIDES):
        if top not in folders:
            continue
        stem = f"{slide}_{n}"
        folder = root / top / slide
        img = _rgba(30 + k)
        _write(folder / f"{stem}.tif", img)
        (folder / f"{stem}.svs").write_bytes(b"whole-slide region, ignored")
        _monusac_xml(folder / f"{stem}.xml", [
            ("Epithelial", [_rect(1, 1, 5, 4 + k), [(20.0, 2.0), (22.0, 2.0)]]),
            ("Lymphocyte", [_rect(8, 10, 11, 13)]),
            ("Neutrophil", []),
            ("Macrophage", [_rect(15, 14, 30, 25)]),  # reaches past the image edge: clipped
            ("Ambiguous", [_rect(0, 0, W - 1, H - 1)]),  # not foreground
        ])
        mask = np.zeros((H, W), dtype=np.uint8)
        mask[1 : 5 + k, 1:6] = 1
        mask[10:14, 8:12] = 1
        mask[14:, 15:] = 1
        truth[stem] = (img[..., :3], mask, "-".join(slide.split("-")[:3]))
    return truth


def make_tnbc(root: Path) -> dict:
    """TNBC: Slide_01 (2 images), Slide_02 (1), GT_<nn> masks, and a __MACOSX shadow copy."""
    base = root / "TNBC_NucleiSegmentation"
    truth = {}
    for k, (slide, n) in enumerate((("01", 1), ("01", 2), ("02", 1))):
        img, labels = _rgba(40 + k), _labels(k) * 127  # 0/127/254: any nonzero is a nucleus
        _write(base / f"Slide_{slide}" / f"{slide}_{n}.png", img)
        _write(base / f"GT_{slide}" / f"{slide}_{n}.png", labels)
        truth[f"{slide}_{n}"] = (img[..., :3], _fg(labels), slide)
    (root / "__MACOSX" / "TNBC_NucleiSegmentation" / "Slide_01").mkdir(parents=True)
    (root / "__MACOSX" / "TNBC_NucleiSegmentation" / "Slide_01" / "._01_1.png").write_bytes(b"\0\5\26\7")
    return truth


def make_dsb(root: Path, inside: str = "stage1_train") -> dict:
    """DSB2018 stage-1 train: <id>/images/<id>.png (RGBA) + <id>/masks/<k>.png per nucleus."""
    truth = {}
    for k, sid in enumerate(("0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9", "1b44d226")):
        img, labels = _rgba(50 + k), _labels(k)
        _write(root / inside / sid / "images" / f"{sid}.png", img)
        for lab in (1, 2):
            _write(root / inside / sid / "masks" / f"{lab:03d}{sid[:6]}.png", (labels == lab).astype(np.uint8) * 255)
        truth[sid] = (img[..., :3], _fg(labels), sid)
    return truth


MAKERS = {"glas": make_glas, "monusac": make_monusac, "tnbc": make_tnbc, "dsb2018": make_dsb, "cellnuclei": make_dsb}


def test_module_exports_the_five_formats():
    assert list(CONVS) == ["glas", "monusac", "tnbc", "dsb2018", "cellnuclei"]
    assert all(c.layout and c.num_classes == 1 for c in CONVS.values())


# ------------------------------------------------------------------------------ correct layouts
@pytest.mark.parametrize("name", sorted(MAKERS))
def test_images_masks_and_groups_are_exact(tmp_path, name):
    truth = MAKERS[name](tmp_path)
    _, samples = convert_folder(CONVS[name], tmp_path)
    assert [s.id for s in samples] == sorted(truth)
    for s in samples:
        img, mask, group = truth[s.id]
        assert np.array_equal(s.image, img), s.id  # lossless; alpha dropped
        assert s.mask.dtype == np.uint8 and np.array_equal(s.mask, mask), s.id
        assert s.group == group, s.id


@pytest.mark.parametrize(
    "name, split",
    [
        ("glas", {"train": ["train_1", "train_2"], "test": ["testA_1", "testB_1"]}),
        ("monusac", {"train": ["TCGA-55-1594", "TCGA-5P-A9K0"], "test": ["TCGA-2Z-A9JG"]}),
        ("tnbc", None),
        ("dsb2018", None),
    ],
)
def test_official_split(tmp_path, name, split):
    MAKERS[name](tmp_path)
    assert CONVS[name].scan(tmp_path).official_split == split


def test_monusac_training_release_alone_has_no_official_split(tmp_path):
    truth = make_monusac(tmp_path, folders=(MONUSAC_TRAIN,))
    scan, samples = convert_folder(CONVS["monusac"], tmp_path)
    assert scan.official_split is None and len(samples) == len(truth) == 3
    assert all(m.suffix == ".xml" for it in scan.items for m in it.masks)  # .svs never read


def test_monusac_split_found_below_a_wrapping_folder(tmp_path):
    make_monusac(tmp_path / "MoNuSAC")
    split = CONVS["monusac"].scan(tmp_path).official_split
    assert split == {"train": ["TCGA-55-1594", "TCGA-5P-A9K0"], "test": ["TCGA-2Z-A9JG"]}


def test_monusac_rasterizer_fills_a_triangle_and_its_outline():
    tri = histology.rasterize_polygons([[(0.0, 0.0), (6.0, 0.0), (0.0, 6.0)]], 8, 8)
    assert tri.dtype == np.uint8 and set(np.unique(tri)) == {0, 1}
    assert tri[0, :7].all() and tri[:7, 0].all() and tri[3, 3] == 1 and tri[6, 6] == 0 and tri[7].sum() == 0


def test_dsb_folder_may_be_stage1_train_itself(tmp_path):
    truth = make_dsb(tmp_path, inside=".")
    _, samples = convert_folder(CONVS["dsb2018"], tmp_path)
    assert [s.id for s in samples] == sorted(truth)


def test_tnbc_ignores_macosx_shadow_files(tmp_path):
    make_tnbc(tmp_path)
    scan = CONVS["tnbc"].scan(tmp_path)
    assert scan.problems == [] and not any("__MACOSX" in str(it.image) for it in scan.items)


# ------------------------------------------------------------------------------------- bad data
# (format, builder, one image file, its mask file: relative to the root)
_SID = "0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9"
_MON = f"{MONUSAC_TRAIN}/TCGA-5P-A9K0-01Z-00-DX1/TCGA-5P-A9K0-01Z-00-DX1_2"
ITEMS = [
    ("glas", f"{GLAS_DIR}/testA_1.bmp", f"{GLAS_DIR}/testA_1_anno.bmp"),
    ("monusac", f"{_MON}.tif", f"{_MON}.xml"),
    ("tnbc", "TNBC_NucleiSegmentation/Slide_01/01_2.png", "TNBC_NucleiSegmentation/GT_01/01_2.png"),
    ("dsb2018", f"stage1_train/{_SID}/images/{_SID}.png", f"stage1_train/{_SID}/masks/0010a7d30.png"),
]
RASTER_ITEMS = [i for i in ITEMS if i[0] != "monusac"]


@pytest.mark.parametrize("name, image, mask", ITEMS, ids=[i[0] for i in ITEMS])
def test_missing_mask(tmp_path, name, image, mask):
    MAKERS[name](tmp_path)
    for p in (tmp_path / mask).parent.glob("*.png") if name == "dsb2018" else [tmp_path / mask]:
        p.unlink()
    _check_problem(CONVS[name], tmp_path, image)


@pytest.mark.parametrize("name, image, mask", ITEMS, ids=[i[0] for i in ITEMS])
def test_orphan_mask(tmp_path, name, image, mask):
    MAKERS[name](tmp_path)
    (tmp_path / image).unlink()
    _check_problem(CONVS[name], tmp_path, mask)


@pytest.mark.parametrize("name, image, mask", ITEMS, ids=[i[0] for i in ITEMS])
def test_unreadable_image(tmp_path, name, image, mask):
    MAKERS[name](tmp_path)
    (tmp_path / image).write_bytes(b"\x00 truncated")
    _check_problem(CONVS[name], tmp_path, image)


@pytest.mark.parametrize("name, image, mask", RASTER_ITEMS, ids=[i[0] for i in RASTER_ITEMS])
def test_mask_of_another_size(tmp_path, name, image, mask):
    MAKERS[name](tmp_path)
    _write(tmp_path / mask, np.full((H - 4, W), 255, dtype=np.uint8), fmt="BMP" if mask.endswith(".bmp") else "PNG")
    _check_problem(CONVS[name], tmp_path, image)


def test_dsb_nucleus_mask_must_be_binary(tmp_path):
    make_dsb(tmp_path)
    _, _, mask = ITEMS[3]
    three = np.zeros((H, W), dtype=np.uint8)
    three[1:4, 1:4], three[5:8, 5:8] = 100, 255
    _write(tmp_path / mask, three)
    _check_problem(CONVS["dsb2018"], tmp_path, "not binary")


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"<Annotations><Annotation>", "cannot read annotation"),
        (b'<Annotations><Annotation><Attributes><Attribute Name="Mitosis"/></Attributes></Annotation>'
         b"</Annotations>", "'mitosis'"),
        (b'<Annotations><Annotation><Attributes><Attribute Name="Epithelial"/></Attributes><Regions><Region>'
         b'<Vertices><Vertex X="a" Y="1"/></Vertices></Region></Regions></Annotation></Annotations>', "numeric"),
    ],
    ids=["malformed", "unknown-type", "bad-vertex"],
)
def test_monusac_bad_annotation(tmp_path, content, fragment):
    make_monusac(tmp_path)
    (tmp_path / ITEMS[1][2]).write_bytes(content)
    _check_problem(CONVS["monusac"], tmp_path, fragment)


# ------------------------------------------------------------------------------------ real data
@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"real sample folder {SAMPLE} is absent")
def test_real_dsb2018_image_in_the_official_layout(tmp_path):
    """A real DSB2018 image (uint16) and its 125 nuclei, rebuilt as stage1_train/<id>/ PNGs."""
    img = np.asarray(Image.open(SAMPLE / "img2d.tif"))
    labels = np.asarray(Image.open(SAMPLE / "mask2d.tif"))
    sid = "stardist_img2d"
    _write(tmp_path / "stage1_train" / sid / "images" / f"{sid}.png", img)  # 16-bit PNG
    ids = [v for v in np.unique(labels).tolist() if v != 0]
    for v in ids:
        _write(tmp_path / "stage1_train" / sid / "masks" / f"{v:04d}.png", (labels == v).astype(np.uint8) * 255)
    scan, samples = convert_folder(CONVS["dsb2018"], tmp_path)
    assert len(samples) == 1 and len(scan.items[0].masks) == len(ids) == 125
    s = samples[0]
    assert set(np.unique(s.mask).tolist()) == {0, 1}
    assert np.array_equal(s.mask, (labels > 0).astype(np.uint8))
    # pixel rule for deeper-than-8-bit images: round(x * 255 / max(x)), replicated to RGB
    expected = np.floor(img.astype(np.float64) * 255.0 / img.max() + 0.5).astype(np.uint8)
    assert np.array_equal(s.image, np.repeat(expected[..., None], 3, axis=2))
