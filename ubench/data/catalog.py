"""The 28 datasets of the U-Bench study (Tang et al. 2025, arXiv:2510.07041), 20 in-domain + 8 zero-shot.

Where the facts come from:
- the 28 datasets, 10 modalities and "20 in-domain datasets": the paper's abstract and the authors'
  model-zoo card (huggingface.co/FengheTan9/U-Bench);
- the in-domain list, the modality of each, and the zero-shot pairs: the authors' project page
  (fenghetan9.github.io/ubench, source github.com/FengheTan9/ubench, index.html): its per-modality
  top-10 tables (Ultrasound, Dermoscopy, Endoscopy, Fundus, Nuclear, X-Ray, MRI, CT, OCT,
  Histopathology) and its six zero-shot tables, nine pairs (BUSI->BUS, BUSBRA->BUS, TNSCUI->TUCC,
  Kvasir->CVC300, Kvasir->CVC-ClinicDB, ISIC2018->PH2, CHASE->STARE, Montgomery->NIH-test,
  MoNuSAC->TNBC), cross-checked with the run scripts in github.com/FengheTan9/U-Bench
  (README, model_infer.sh, dataloader/). The body of the paper (its dataset table and zero-shot
  section) could not be read from here, so titles follow the authors' README/project-page
  spelling; see the per-record comments for what is uncertain.
- licences and references: the owners' pages; where an owner states no licence the record says
  so (``NO_LICENCE``) instead of guessing. MedSegBench's summaries (quoted in U-Bench's
  dataloader/download.py) are named as such where they are the only source seen.

``num_classes`` 1 = binary (every U-Bench 2D task is binary, MoNuSAC's cell types included);
ACDC 4 and Synapse 9 count the background.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# The record type lives here, below ``registry.py`` (which lists this catalog and the synthetic
# datasets), so that imports point one way: registry -> catalog.
KINDS = ("synthetic", "raw")
ROLES = ("in-domain", "zero-shot")


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: identity, how it is prepared, and provenance for the report.

    ``num_classes`` counts model outputs: 1 = binary (one sigmoid channel); C > 1 = C softmax
    classes including background (ACDC 4, Synapse 9). ``role``: "in-domain" datasets are trained
    on; "zero-shot" ones are only targets of a source dataset's ``zero_shot_targets``.
    """

    name: str
    modality: str
    num_classes: int
    kind: str
    raw_format: str = ""  # converter name (kind "raw"); `ubench datasets check DIR --format NAME`
    role: str = "in-domain"
    zero_shot_targets: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ("foreground",)
    source: str = ""  # the owners' page
    licence: str = ""
    citation: str = ""
    title: str = ""  # the name as the paper writes it (e.g. "Kvasir-SEG")

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} not in {KINDS}")
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} not in {ROLES}")
        if self.kind == "raw" and not self.raw_format:
            raise ValueError(f"raw dataset {self.name!r} needs a raw_format")
        expected = 1 if self.num_classes == 1 else self.num_classes - 1
        if len(self.class_names) != expected:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")

    @property
    def raw_layout(self) -> str:
        """The expected raw layout, in words (from the converter)."""
        if self.kind != "raw":
            return "none: generated at prepare time"
        from ubench.data.converters import get_converter

        return get_converter(self.raw_format).layout

    def to_dict(self) -> dict:
        d = asdict(self)
        d["zero_shot_targets"] = list(self.zero_shot_targets)
        d["class_names"] = list(self.class_names)
        d["raw_layout"] = self.raw_layout
        return d


# In the order of the project page's per-modality tables.
MODALITIES = (
    "ultrasound",
    "dermoscopy",
    "endoscopy",
    "fundus",
    "nuclei",
    "x-ray",
    "mri",
    "ct",
    "oct",
    "histopathology",
)

NO_LICENCE = "research use only; see owner's terms"
_DSB_CITATION = (
    "Caicedo J.C. et al., Nucleus segmentation across imaging experiments: the 2018 Data Science "
    "Bowl, Nat. Methods 16, 2019, doi:10.1038/s41592-019-0612-7"
)


def _ds(name, title, modality, source, licence, citation, *, zero_shot=False, targets=(), classes=None):
    """One raw dataset whose converter format has the same name as the dataset."""
    extra = {"num_classes": 1}
    if classes:
        extra = {"num_classes": len(classes) + 1, "class_names": tuple(classes)}
    return DatasetInfo(
        name=name,
        title=title,
        modality=modality,
        kind="raw",
        raw_format=name,
        role="zero-shot" if zero_shot else "in-domain",
        zero_shot_targets=tuple(targets),
        source=source,
        licence=licence,
        citation=citation,
        **extra,
    )


CATALOG: tuple[DatasetInfo, ...] = (
    # ---------------------------------------------------------------- ultrasound
    # Uncertain: "BUS" is taken to be Yap et al.'s "Dataset B" (UDIAT, 163 images); U-Bench only
    # names it "bus" (README: BUSI -> BUS). The BUSIS benchmark (Zhang et al. 2022) is the other
    # candidate.
    _ds(
        "bus", "BUS", "ultrasound",
        "http://www2.docm.mmu.ac.uk/STAFF/m.yap/dataset.php",
        NO_LICENCE + " (released on request under the owners' agreement)",
        "Yap M.H. et al., Automated Breast Ultrasound Lesions Detection Using Convolutional Neural "
        "Networks, IEEE J. Biomed. Health Inform. 22(4), 2018, doi:10.1109/JBHI.2017.2731873",
        zero_shot=True,
    ),
    _ds(
        "busbra", "BUSBRA", "ultrasound",
        "https://zenodo.org/records/8231412",
        "CC BY 4.0",  # as on the Zenodo record
        "Gómez-Flores W., Gregorio-Calas M.J., Coelho de Albuquerque Pereira W., BUS-BRA: A breast "
        "ultrasound dataset for assessing computer-aided diagnosis systems, Med. Phys. 51(4), 2024, "
        "doi:10.1002/mp.16812",
        targets=("bus",),
    ),
    # The owners' page states no licence; a Kaggle mirror (used by MedSegBench) labels it CC0.
    _ds(
        "busi", "BUSI", "ultrasound",
        "https://scholar.cu.edu.eg/?q=afahmy/pages/dataset",
        NO_LICENCE,
        "Al-Dhabyani W., Gomaa M., Khaled H., Fahmy A., Dataset of breast ultrasound images, "
        "Data in Brief 28:104863, 2020, doi:10.1016/j.dib.2019.104863",
        targets=("bus",),
    ),
    # The challenge has no overview paper; the citation is the challenge itself.
    _ds(
        "tnscui2020", "TNSCUI", "ultrasound",
        "https://tn-scui2020.grand-challenge.org/",
        NO_LICENCE,
        "TN-SCUI 2020: Thyroid Nodule Segmentation and Classification in Ultrasound Images, "
        "MICCAI 2020 challenge, https://tn-scui2020.grand-challenge.org/",
        targets=("tucc",),
    ),
    # Uncertain: "TUCC" is read as Stanford AIMI's Thyroid Ultrasound Cine-clip set (U-Bench's
    # scripts test on its malignant cases: data/TUCC-test/malignant).
    _ds(
        "tucc", "TUCC", "ultrasound",
        "https://stanfordaimi.azurewebsites.net/datasets/a72f2b02-7b53-4c5d-963c-d7253220bfd5",
        "Stanford University Dataset Research Use Agreement (non-commercial research)",
        "Yamashita R. et al., Toward Reduction in False-Positive Thyroid Nodule Biopsies with a Deep "
        "Learning-based Risk Stratification System Using US Cine-Clip Images, Radiol. Artif. Intell. "
        "4(3):e210174, 2022, doi:10.1148/ryai.210174",
        zero_shot=True,
    ),
    # ---------------------------------------------------------------- dermoscopy
    _ds(
        "isic2018", "ISIC2018", "dermoscopy",
        "https://challenge.isic-archive.com/data/#2018",
        "CC BY-NC 4.0",
        "Codella N. et al., Skin Lesion Analysis Toward Melanoma Detection 2018: A Challenge Hosted "
        "by the ISIC, arXiv:1902.03368, 2019; Tschandl P. et al., The HAM10000 dataset, Sci. Data "
        "5:180161, 2018, doi:10.1038/sdata.2018.161",
        targets=("ph2",),
    ),
    _ds(
        "ph2", "PH2", "dermoscopy",
        "https://www.fc.up.pt/addi/ph2%20database.html",
        NO_LICENCE,
        "Mendonça T. et al., PH2 - A dermoscopic image database for research and benchmarking, "
        "IEEE EMBC 2013, pp. 5437-5440, doi:10.1109/EMBC.2013.6610779",
        zero_shot=True,
    ),
    # Clinical photographs (DermIS/DermQuest) but grouped with dermoscopy by U-Bench. Licence
    # wording from MedSegBench's summary; the citation is the lab's paper on this set.
    _ds(
        "skincancer", "SkinCancer", "dermoscopy",
        "https://uwaterloo.ca/vision-image-processing-lab/research-demos/skin-cancer-detection",
        "non-commercial use; see owner's terms",
        "Glaister J., Amelard R., Wong A., Clausi D.A., MSIM: Multistage Illumination Modeling of "
        "Dermatological Photographs for Illumination-Corrected Skin Lesion Analysis, IEEE Trans. "
        "Biomed. Eng. 60(7), 2013, doi:10.1109/TBME.2013.2244596",
    ),
    # ---------------------------------------------------------------- endoscopy
    # CVC-300 = the 60-image EndoScene test part, as in PraNet's TestDataset (U-Bench: CVC-300val.txt).
    _ds(
        "cvc300", "CVC-300", "endoscopy",
        "http://www.cvc.uab.es/CVC-Colon/index.php/databases/cvc-endoscenestill/",
        NO_LICENCE,
        "Vázquez D. et al., A Benchmark for Endoluminal Scene Segmentation of Colonoscopy Images, "
        "J. Healthc. Eng. 2017:4037190, doi:10.1155/2017/4037190",
        zero_shot=True,
    ),
    # U-Bench tests on the 62-image CVC-ClinicDB part of PraNet's TestDataset.
    _ds(
        "cvc_clinicdb", "CVC-ClinicDB", "endoscopy",
        "https://polyp.grand-challenge.org/CVCClinicDB/",
        NO_LICENCE,
        "Bernal J. et al., WM-DOVA maps for accurate polyp highlighting in colonoscopy: Validation "
        "vs. saliency maps from physicians, Comput. Med. Imaging Graph. 43, 2015, "
        "doi:10.1016/j.compmedimag.2015.02.007",
        zero_shot=True,
    ),
    _ds(
        "kvasir", "Kvasir-SEG", "endoscopy",
        "https://datasets.simula.no/kvasir-seg/",
        "research and educational use only; commercial use forbidden without prior written "
        "permission",
        "Jha D. et al., Kvasir-SEG: A Segmented Polyp Dataset, MultiMedia Modeling (MMM) 2020, "
        "LNCS 11962, doi:10.1007/978-3-030-37734-2_37",
        targets=("cvc300", "cvc_clinicdb"),
    ),
    # Licence as summarised by MedSegBench (from which U-Bench loads this set); not seen on the
    # Synapse page itself.
    _ds(
        "robotool", "RoboTool", "endoscopy",
        "https://www.synapse.org/#!Synapse:syn22427422",
        "CC BY 4.0",
        "Garcia-Peraza-Herrera L.C. et al., Image Compositing for Segmentation of Surgical Tools "
        "Without Manual Annotations, IEEE Trans. Med. Imaging 40(5), 2021, "
        "doi:10.1109/TMI.2021.3057884",
    ),
    # ---------------------------------------------------------------- fundus
    # Only CHASE -> STARE is a fundus zero-shot pair on the project page (no DRIVE -> STARE).
    _ds(
        "chase_db1", "CHASE", "fundus",
        "https://blogs.kingston.ac.uk/retinal/chasedb1/",
        "CC BY 4.0",
        "Fraz M.M. et al., An Ensemble Classification-Based Approach Applied to Retinal Blood Vessel "
        "Segmentation, IEEE Trans. Biomed. Eng. 59(9), 2012, doi:10.1109/TBME.2012.2205687",
        targets=("stare",),
    ),
    _ds(
        "drive", "DRIVE", "fundus",
        "https://drive.grand-challenge.org/",
        "CC BY 4.0",  # as listed on the challenge page (also MedSegBench); uncertain
        "Staal J. et al., Ridge-based vessel segmentation in color images of the retina, IEEE Trans. "
        "Med. Imaging 23(4), 2004, doi:10.1109/TMI.2004.825627",
    ),
    _ds(
        "stare", "STARE", "fundus",
        "https://cecas.clemson.edu/~ahoover/stare/",
        NO_LICENCE,
        "Hoover A., Kouznetsova V., Goldbaum M., Locating blood vessels in retinal images by "
        "piecewise threshold probing of a matched filter response, IEEE Trans. Med. Imaging 19(3), "
        "2000, doi:10.1109/42.845178",
        zero_shot=True,
    ),
    # ---------------------------------------------------------------- nuclei
    # Same images as dsb2018 (the 670 stage-1 training images), in MedSegBench's split, from
    # which U-Bench loads it; title uncertain (project page: "Cell", README: "cellnuclei").
    _ds(
        "cellnuclei", "CellNuclei", "nuclei",
        "https://www.kaggle.com/competitions/data-science-bowl-2018/data",
        "CC0 1.0",  # as stated for the DSB2018 images on BBBC038
        _DSB_CITATION,
    ),
    _ds(
        "dsb2018", "DSB2018", "nuclei",
        "https://bbbc.broadinstitute.org/BBBC038",
        "CC0 1.0",
        _DSB_CITATION,
    ),
    # ---------------------------------------------------------------- x-ray
    _ds(
        "covid_qu_ex", "COVID-QU-Ex", "x-ray",
        "https://www.kaggle.com/datasets/anasmohammedtahir/covidqu",
        "CC BY-SA 4.0",
        "Tahir A.M. et al., COVID-19 infection localization and severity grading from chest X-ray "
        "images, Comput. Biol. Med. 139:105002, 2021, doi:10.1016/j.compbiomed.2021.105002",
    ),
    # Coronary X-ray angiograms: U-Bench's project page puts DCA in its X-Ray table (its converter
    # lives in the fundus module only because it is a vessel task).
    _ds(
        "dca1", "DCA1", "x-ray",
        "http://personal.cimat.mx:8181/~ivan.cruz/DB_Angiograms.html",
        NO_LICENCE + " (owners: made accessible for research and comparison purposes)",
        "Cervantes-Sanchez F. et al., Automatic Segmentation of Coronary Arteries in X-ray "
        "Angiograms using Multiscale Analysis and Artificial Neural Networks, Appl. Sci. 9(24):5507, "
        "2019, doi:10.3390/app9245507",
    ),
    _ds(
        "montgomery", "Montgomery", "x-ray",
        "https://lhncbc.nlm.nih.gov/LHC-publications/pubs/TuberculosisChestXrayImageDataSets.html",
        NO_LICENCE,
        "Jaeger S. et al., Two public chest X-ray datasets for computer-aided screening of pulmonary "
        "diseases, Quant. Imaging Med. Surg. 4(6), 2014, doi:10.3978/j.issn.2223-4292.2014.11.20",
        targets=("nih_lung",),
    ),
    # "NIH-test": the NIH ChestX-ray14 images with lung masks released with XLSor (images/,
    # masks/*_mask.png, the naming U-Bench's loader reads). The code is MIT; no data licence seen.
    _ds(
        "nih_lung", "NIH", "x-ray",
        "https://github.com/rsummers11/CADLab/tree/master/Lung_Segmentation_XLSor",
        NO_LICENCE,
        "Tang Y.B., Tang Y.X., Xiao J., Summers R.M., XLSor: A Robust and Accurate Lung Segmentor on "
        "Chest X-Rays Using Criss-Cross Attention and Customized Radiorealistic Abnormalities "
        "Generation, MIDL 2019, PMLR 102",
        zero_shot=True,
    ),
    # ---------------------------------------------------------------- mri
    # Licence: the owners' portal asks for registration and non-commercial use; wording not
    # verified from here.
    _ds(
        "acdc", "ACDC", "mri",
        "https://www.creatis.insa-lyon.fr/Challenge/acdc/",
        NO_LICENCE,
        "Bernard O. et al., Deep Learning Techniques for Automatic MRI Cardiac Multi-Structures "
        "Segmentation and Diagnosis: Is the Problem Solved?, IEEE Trans. Med. Imaging 37(11), 2018, "
        "doi:10.1109/TMI.2018.2837502",
        classes=("RV", "MYO", "LV"),
    ),
    _ds(
        "promise12", "PROMISE12", "mri",
        "https://promise12.grand-challenge.org/",
        NO_LICENCE,
        "Litjens G. et al., Evaluation of prostate segmentation algorithms for MRI: the PROMISE12 "
        "challenge, Med. Image Anal. 18(2), 2014, doi:10.1016/j.media.2013.12.002",
    ),
    # ---------------------------------------------------------------- ct
    # Class order = TransUNet's label values 1..8 (its preprocessed Synapse release).
    _ds(
        "synapse", "Synapse", "ct",
        "https://www.synapse.org/#!Synapse:syn3193805/wiki/217789",
        NO_LICENCE,
        "Landman B. et al., MICCAI Multi-Atlas Labeling Beyond the Cranial Vault - Workshop and "
        "Challenge, 2015, doi:10.7303/syn3193805; split and classes: Chen J. et al., TransUNet, "
        "arXiv:2102.04306, 2021",
        classes=("aorta", "gallbladder", "left kidney", "right kidney", "liver", "pancreas", "spleen",
                 "stomach"),
    ),
    # ---------------------------------------------------------------- oct
    # Uncertain: the owners' page was not seen; source, licence and references are MedSegBench's
    # (U-Bench loads this set from MedSegBench). Title from the project page ("Cystoidfluid").
    _ds(
        "oct_cystoid", "CystoidFluid", "oct",
        "https://doi.org/10.34740/KAGGLE/DS/2277068",
        "CC BY-NC-SA 4.0",
        "Intraretinal cystoid fluid OCT dataset, Kaggle, doi:10.34740/KAGGLE/DS/2277068; "
        "Int. J. Imaging Syst. Technol. 2022, doi:10.1002/ima.22662",
    ),
    # ---------------------------------------------------------------- histopathology
    _ds(
        "glas", "GlaS", "histopathology",
        "https://warwick.ac.uk/fac/cross_fac/tia/data/glascontest/",
        NO_LICENCE,
        "Sirinukunwattana K. et al., Gland segmentation in colon histology images: The GlaS "
        "challenge contest, Med. Image Anal. 35, 2017, doi:10.1016/j.media.2016.08.008",
    ),
    # Binary in U-Bench: all nuclei are foreground (the 4 cell types are merged).
    _ds(
        "monusac", "MoNuSAC", "histopathology",
        "https://monusac-2020.grand-challenge.org/Data/",
        "CC BY-NC-SA 4.0",
        "Verma R. et al., MoNuSAC2020: A Multi-Organ Nuclei Segmentation and Classification "
        "Challenge, IEEE Trans. Med. Imaging 40(12), 2021, doi:10.1109/TMI.2021.3085712",
        targets=("tnbc",),
    ),
    # MedSegBench (U-Bench's copy, "tnbcnuclei") points at Zenodo record 2579118, a later version
    # of the same deposit.
    _ds(
        "tnbc", "TNBC", "histopathology",
        "https://zenodo.org/records/1175282",
        "CC BY 4.0",
        "Naylor P., Laé M., Reyal F., Walter T., Segmentation of Nuclei in Histopathology Images by "
        "Deep Regression of the Distance Map, IEEE Trans. Med. Imaging 38(2), 2019, "
        "doi:10.1109/TMI.2018.2865709",
        zero_shot=True,
    ),
)
