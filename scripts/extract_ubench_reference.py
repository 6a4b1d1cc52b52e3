#!/usr/bin/env python3
"""Re-derive ubench/analysis/data/ubench_reference.json from U-Bench's project page (run by hand).

ubench never downloads anything at run time: the U-Score reference constants and U-Bench's
published rankings are shipped in the package as one JSON file. This script is how that file was
made, so anyone can check it against the page's source or refresh it when the page changes:

    git clone https://github.com/FengheTan9/ubench /tmp/ubench-page        # the project page
    git clone https://github.com/FengheTan9/U-Bench /tmp/U-Bench           # its code (optional)
    python scripts/extract_ubench_reference.py --page-git-dir /tmp/ubench-page/.git \\
        --code-git-dir /tmp/U-Bench/.git            # writes the data file
    python scripts/extract_ubench_reference.py ... --check   # exit 1 if the shipped file differs

What is read from the page's ``index.html`` (at the commit given, default HEAD):

* the "U-Score Calculator" script: the per-dataset IoU 10th/90th percentiles (``datasetValues``),
  the natural logs of the params and GFLOPs percentiles, the FPS percentiles, the floor, the
  weights and alpha, and the example values its input placeholders show (U-Net on BUSI);
* the 16 "Ranking of the top 10 models" tables: for 20 in-domain datasets and 9 zero-shot pairs,
  the top-10 model names by IoU and by U-Score, as printed.

What is not on the page as text, and is therefore written below by hand: the mapping of the page's
dataset labels to ubench's dataset names, of printed model names to U-Bench's code names (the class
names imported in U-Bench's ``models/__init__.py``, checked against it with --code-git-dir), and
Table 2 of the paper (the overall top-10 lists with U-Net's
rank), transcribed from the page's image ``static/images/top10.jpg``. Code names map to ubench's
registry through each model's ``ModelInfo.ubench_name``; after adding a model,
``--code-names-only`` refreshes that part of the shipped file without a clone.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "ubench" / "analysis" / "data" / "ubench_reference.json"
PAGE_REPO = "https://github.com/FengheTan9/ubench"
CODE_REPO = "https://github.com/FengheTan9/U-Bench"

# The page's dataset labels (table headers; calculator keys in brackets) -> ubench dataset names.
IN_DOMAIN = {  # label: (calculator key, ubench name)
    "BUSI": ("busi", "busi"), "BUSBRA": ("busbra", "busbra"), "TNSCUI": ("tnscui", "tnscui2020"),
    "ISIC2018": ("isic", "isic2018"), "SkinCancer": ("skincancer", "skincancer"),
    "Kvasir": ("kvasir", "kvasir"), "Robotool": ("robotool", "robotool"),
    "CHASE": ("chasedb", "chase_db1"), "DRIVE": ("drive", "drive"), "DSB": ("dsb", "dsb2018"),
    "GlaS": ("glas", "glas"), "Monusac": ("monusac", "monusac"), "Cell": ("cell", "cellnuclei"),
    "Covidquex": ("covid", "covid_qu_ex"), "Montgomery": ("montgomery", "montgomery"),
    "DCA": ("dca", "dca1"), "ACDC": ("acdc", "acdc"), "Promise": ("promise", "promise12"),
    "Synapse": ("synapse", "synapse"), "Cystoidfluid": ("cystoidfluid", "oct_cystoid"),
}
ZERO_SHOT = {  # label as printed: (source, target) in ubench names
    "BUSI->BUS": ("busi", "bus"), "BUSBRA->BUS": ("busbra", "bus"), "TNSCUI->TUCC": ("tnscui2020", "tucc"),
    "Kvasir->CVC300": ("kvasir", "cvc300"), "Kvasir->CVC-ClinicDB": ("kvasir", "cvc_clinicdb"),
    "ISIC2018->PH2": ("isic2018", "ph2"), "CHASE-STARE": ("chase_db1", "stare"),
    "Montgomery->NIH-test": ("montgomery", "nih_lung"), "Monusac->Tnbcnuclei": ("monusac", "tnbc"),
}

# Printed model name -> U-Bench code name (the name imported in U-Bench's models/__init__.py).
# The page prints some models under their paper's name and some under the code name, and a few
# under both spellings; MADGNet's code in U-Bench is IS2D_models/mfmsnet.py (class MFMSNet).
# CE-Net (Gu et al. 2019, code CE_Net) and CENet (MICCAI 2025, code CENet) are two models.
PRINTED_TO_CODE = {
    "AURA-Net": "AURA_Net", "AttU-Net": "AttU_Net", "CA-Net": "CA_Net", "CASCADE": "CASCADE",
    "CE-Net": "CE_Net", "CENet": "CENet", "CFFormer": "CFFormer", "CFPNet-M": "CFPNet_M",
    "CMU-Net": "CMU_Net", "CMUNeXt": "CMUNeXt", "CSWin-UNet": "CSWin_UNet", "CaraNet": "CaraNet",
    "ColonSegNet": "ColonSegNet", "D-TrAttUnet": "D_TrAttUnet", "DA-TransUNet": "DA_TransUNet",
    "DAEFormer": "DAEFormer", "DCSAU-Net": "DCSAU_Net", "DDANet": "DDANet",
    "DS-TransUNet": "DS_TransUNet", "DS_TransUNet": "DS_TransUNet", "DoubleUNet": "DoubleUNet",
    "EMCAD": "EMCAD", "ESKNet": "ESKNet", "EViT-UNet": "EViT_UNet", "FAT-Net": "FAT_Net",
    "FCBFormer": "FCBFormer", "G-CASCADE": "G_CASCADE", "H2Former": "H2Former", "LFU-Net": "LFU_Net",
    "LGMSNet": "LGMSNet", "LV-UNet": "LV_UNet", "MADGNet": "MFMSNet", "MFMSNet": "MFMSNet",
    "MALUNet": "MALUNet", "MBSNet": "MBSNet", "MCA-UNet": "MCA_UNet", "MDSA-UNet": "MDSA_UNet",
    "MEGANet": "MEGANet", "MERIT": "MERIT", "MMUNet": "MMUNet", "MSLAU-Net": "MSLAU_Net",
    "MSRFNet": "MSRFNet", "MT-UNet": "MT_UNet", "MUCM-Net": "MUCM_Net", "MUCM_Net": "MUCM_Net",
    "MambaUnet": "MambaUnet", "MedFormer": "MedFormer", "MedVKAN": "MedVKAN",
    "Mobile U-ViT": "MobileUViT", "MobileUViT": "MobileUViT", "MultiResUNet": "MultiResUNet",
    "Perspective-Unet": "Perspective_Unet", "Polyp-PVT": "Polyp_PVT", "PraNet": "PraNet",
    "RWKV-UNet": "RWKV_UNet", "ResNet34UnetPlus": "ResNet34UnetPlus", "RollingUnet": "RollingUnet",
    "SimpleUNet": "SimpleUNet", "Swin-umamba": "Swin_umamba", "Swin-umambaD": "Swin_umambaD",
    "SwinUNETR": "SwinUNETR", "TA-Net": "TA_Net", "TinyU-Net": "Tinyunet", "Tinyunet": "Tinyunet",
    "TransAttUnet": "TransAttUnet", "TransNorm": "TransNorm", "TransResUNet": "TransResUNet",
    "TransUnet": "TransUnet", "U-KAN": "U_KAN", "U-Net": "U_Net", "U-RWKV": "U_RWKV",
    "UACANet": "UACANet", "UCTransNet": "UCTransNet", "ULite": "ULite", "UNETR": "UNETR",
    "UNeXt": "UNeXt", "UNet3plus": "UNet3plus", "UNetV2": "UNetV2", "UTANet": "UTANet",
    "UTNet": "UTNet", "UltraLight-VM-UNet": "UltraLight_VM_UNet", "VMUNet": "VMUNet",
    "VMUNetV2": "VMUNetV2",
}

# Why a printed name maps where it does, where that is not obvious from the spelling.
NAME_NOTES = {
    "MADGNet": "U-Bench's code for MADGNet is models/CNN/IS2D_models/mfmsnet.py, imported as MFMSNet; "
               "Table 2 prints it as MFMSNet",
    "CE-Net": "read as CE-Net (Gu et al., TMI 2019), code CE_Net, ubench `cenet`",
    "CENet": "read as CENet (MICCAI 2025; Table 2 prints `CENet MICCAI (2025)`), code "
             "models/Hybrid/CENet, a different model from CE-Net; ubench does not have it",
    "TinyU-Net": "code Tinyunet (Table 2 prints Tinyunet)",
    "Mobile U-ViT": "code MobileUViT (the page prints both spellings)",
}


@functools.cache
def code_to_registry() -> dict[str, str]:
    """U-Bench code name -> ubench registry name, for every model ubench has: read from each
    model's ``ModelInfo.ubench_name`` (the one place it is written)."""
    from ubench.models import list_models, model_info

    return {model_info(name).ubench_name: name for name in list_models()}


# Table 2 of the paper, transcribed by hand from the page's static/images/top10.jpg (an image,
# not text): rank 1..10 as (printed name, venue, year), then U-Net's rank. "Source" = in-domain,
# "Target" = zero-shot. U-Net's venue is printed "MICCAI (2025)" there; kept as printed.
TABLE2 = {
    "source_iou": ([("RWKV-UNet", "Arxiv", 2025), ("AURA-Net", "ISBI", 2021), ("UTANet", "AAAI", 2025),
                    ("MEGANet", "WACV", 2024), ("Swin-umamba", "MICCAI", 2024), ("MFMSNet", "CIBM", 2024),
                    ("TransResUNet", "Arxiv", 2022), ("EViT-UNet", "ISBI", 2025),
                    ("FCBFormer", "MIUA", 2022), ("DA-TransUNet", "FBB", 2024)], 25),
    "target_iou": ([("RWKV-UNet", "Arxiv", 2025), ("G-CASCADE", "WACV", 2024),
                    ("Swin-umamba", "MICCAI", 2024), ("MEGANet", "WACV", 2024), ("CASCADE", "WACV", 2023),
                    ("MFMSNet", "CIBM", 2024), ("TransResUNet", "Arxiv", 2022),
                    ("DS-TransUNet", "TIM", 2022), ("CENet", "MICCAI", 2025), ("PraNet", "MICCAI", 2020)], 72),
    "source_uscore": ([("LGMSNet", "ECAI", 2025), ("MBSNet", "MSSP", 2021), ("CMUNeXt", "ISBI", 2024),
                       ("LV-UNet", "BIBM", 2024), ("Mobile U-ViT", "ACM MM", 2025),
                       ("Tinyunet", "MICCAI", 2024), ("U-RWKV", "MICCAI", 2025), ("U-KAN", "AAAI", 2025),
                       ("DCSAU-Net", "CIBM", 2023), ("RWKV-UNet", "Arxiv", 2025)], 64),
    "target_uscore": ([("LGMSNet", "ECAI", 2025), ("LV-UNet", "BIBM", 2024), ("U-KAN", "AAAI", 2025),
                       ("Mobile U-ViT", "ACM MM", 2025), ("RWKV-UNet", "Arxiv", 2025),
                       ("MBSNet", "MSSP", 2021), ("SwinUNETR", "CVPR", 2022), ("CMUNeXt", "ISBI", 2024),
                       ("G-CASCADE", "WACV", 2024), ("TA-Net", "CIBM", 2021)], 69),
}


def git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True,
                          text=True).stdout


class _Tables(HTMLParser):
    """Collects each <table id=...> as a list of rows of cell texts (images as their file name)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif self._table and tag == "tr":
            self._row = []
        elif self._row is not None and tag in ("td", "th"):
            self._cell = []
        elif self._cell is not None and tag == "img":
            self._cell.append(Path(a.get("src", "")).stem)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _entry(rank: int, name: str) -> dict:
    if name not in PRINTED_TO_CODE:
        raise SystemExit(f"printed name {name!r} has no U-Bench code name in PRINTED_TO_CODE: add it")
    code = PRINTED_TO_CODE[name]
    return {"rank": rank, "name": name, "code_name": code, "model": code_to_registry().get(code)}


def rankings(html: str) -> dict:
    """{dataset key: {label, setting, source?, target?, iou: [...], uscore: [...]}} from the tables."""
    parser = _Tables()
    parser.feed(html)
    out: dict[str, dict] = {}
    medals = {"gold": 1, "silver": 2, "bronze": 3}
    for tid, rows in parser.tables.items():
        head, body = rows[0], rows[1:]
        if head[0] != "Rank" or len(body) != 10:
            raise SystemExit(f"table {tid}: expected a Rank column and 10 rows, got {head} / {len(body)}")
        for r, row in enumerate(body, start=1):
            shown = medals.get(row[0]) or int(row[0].lstrip("#"))
            if shown != r:
                raise SystemExit(f"table {tid}: row {r} is labelled {row[0]!r}")
        for col, title in enumerate(head[1:], start=1):
            m = re.fullmatch(r"(.+) \((IoU|U-Score)\)", title)
            if not m:
                raise SystemExit(f"table {tid}: unexpected column {title!r}")
            label, by = m.group(1), "iou" if m.group(2) == "IoU" else "uscore"
            if label in IN_DOMAIN:
                key, extra = IN_DOMAIN[label][1], {"setting": "in-domain"}
            elif label in ZERO_SHOT:
                src, tgt = ZERO_SHOT[label]
                key, extra = f"{src}->{tgt}", {"setting": "zero-shot", "source": src, "target": tgt}
            else:
                raise SystemExit(f"table {tid}: dataset label {label!r} is not mapped: add it")
            rec = out.setdefault(key, {"label": label, **extra, "table": tid})
            rec[by] = [_entry(r, row[col]) for r, row in enumerate(body, start=1)]
    for label in (*IN_DOMAIN, *ZERO_SHOT):
        key = IN_DOMAIN[label][1] if label in IN_DOMAIN else "->".join(ZERO_SHOT[label])
        if key not in out or {"iou", "uscore"} - set(out[key]):
            raise SystemExit(f"the page has no complete IoU and U-Score columns for {label}")
    return dict(sorted(out.items()))


def _number(pattern: str, text: str, what: str) -> float:
    m = re.search(pattern, text)
    if not m:
        raise SystemExit(f"calculator: cannot find {what} (pattern {pattern!r}); the page changed")
    return float(m.group(1))


def calculator(html: str) -> dict:
    """The calculator's constants, exactly as the page's script states them."""
    start = html.index("const datasetValues")
    js = html[start:html.index("</script>", start)]
    iou = {}
    for key, q10, q90 in re.findall(r"(\w+): \{ busi_p10: ([0-9.]+), busi_p90: ([0-9.]+) \}", js):
        iou[key] = (float(q10), float(q90))
    options = dict(re.findall(r'<option value="(\w+)">([^<]+)</option>', html))
    by_key = {v[0]: (label, v[1]) for label, v in IN_DOMAIN.items()}
    if set(iou) != set(by_key) or set(options) != set(by_key):
        raise SystemExit(f"calculator datasets {sorted(iou)} / menu {sorted(options)} differ from "
                         f"the mapped ones {sorted(by_key)}")
    # the params and FLOPs constants are handed to down01_log as (lq10, lq90), which compares
    # them with Math.log(x): they are natural logs of the percentiles, not the percentiles
    for call in ("down01_log(params, params_p10, params_p90)", "down01_log(flops, flops_p10, flops_p90)",
                 "up01(iou, busi_p10, busi_p90)", "up01(fps, fps_p10, fps_p90)", "const lx = Math.log(x);"):
        if call not in js:
            raise SystemExit(f"calculator: `{call}` not found; the page's formula changed")
    weights = {k: _number(rf"\b{k} = ([0-9.]+)", js, k) for k in ("wP", "wG", "wS")}
    example = {
        "model": "U-Net", "dataset": "busi",
        "iou": _number(r"U-Net IoU in BUSI: ([0-9.]+)", html, "the IoU placeholder"),
        "params_m": _number(r"U-Net Params: ([0-9.]+)", html, "the params placeholder"),
        "gflops": _number(r"U-Net GFLOPs: ([0-9.]+)", html, "the GFLOPs placeholder"),
        "fps": _number(r"U-Net FPS: ([0-9.]+)", html, "the FPS placeholder"),
    }
    return {
        "formula": "a = clip((IoU - Q10) / (Q90 - Q10)); p = clip((ln Q90 - ln P) / (ln Q90 - ln Q10)), "
                   "g likewise for GFLOPs; s = clip((FPS - Q10) / (Q90 - Q10)); each term raised to at "
                   "least `floor`; efficiency = weighted harmonic mean of p, g, s; U-Score = "
                   "alpha-weighted harmonic mean of a and efficiency; the page prints 100 x U-Score "
                   "with two decimals",
        "floor": _number(r"const floor = ([0-9.]+);", js, "floor"),
        "alpha": _number(r"const alpha = ([0-9.]+);", js, "alpha"),
        "weights": {"params": weights["wP"], "gflops": weights["wG"], "fps": weights["wS"]},
        "ln_params_q10": _number(r"params_p10 = ([0-9.]+)", js, "params_p10"),
        "ln_params_q90": _number(r"params_p90 = ([0-9.]+)", js, "params_p90"),
        "ln_gflops_q10": _number(r"flops_p10 = ([0-9.]+)", js, "flops_p10"),
        "ln_gflops_q90": _number(r"flops_p90 = ([0-9.]+)", js, "flops_p90"),
        "fps_q10": _number(r"fps_p10 = ([0-9.]+)", js, "fps_p10"),
        "fps_q90": _number(r"fps_p90 = ([0-9.]+)", js, "fps_p90"),
        "fps_device": "GPU (U-Bench's FPS measurements; the page does not name the card)",
        "iou": {by_key[k][1]: {"label": by_key[k][0], "page_key": k, "menu_label": options[k],
                               "q10": iou[k][0], "q90": iou[k][1]} for k in sorted(iou, key=lambda k: by_key[k][1])},
        "example": example,
    }


def table2() -> dict:
    out = {}
    for key, (rows, unet_rank) in TABLE2.items():
        top = []
        for rank, (name, venue, year) in enumerate(rows, start=1):
            top.append({**_entry(rank, name), "venue": venue, "year": year})
        out[key] = {"setting": "in-domain" if key.startswith("source") else "zero-shot",
                    "by": key.split("_")[1], "top10": top, "unet_rank": unet_rank}
    return out


def check_code_names(code_git_dir: str) -> dict:
    """Every code name used must be a model U-Bench's models/__init__.py imports."""
    init = git(code_git_dir, "show", "HEAD:models/__init__.py")
    names = set()
    for m in re.finditer(r"^\s*from \S+ import (\w+)(?: as (\w+))?", init, re.M):
        names.add(m.group(2) or m.group(1))
    used = set(PRINTED_TO_CODE.values()) | set(code_to_registry())
    missing = sorted(used - names)
    if missing:
        raise SystemExit(f"code names not imported by U-Bench's models/__init__.py: {missing}")
    commit = git(code_git_dir, "rev-parse", "HEAD").strip()
    return {"repository": CODE_REPO, "commit": commit, "file": "models/__init__.py",
            "checked": "every code_name below is a model that file imports"}


def build(page_git_dir: str, commit: str, code_git_dir: str | None, previous: dict | None) -> dict:
    sha = git(page_git_dir, "rev-parse", commit).strip()
    date = git(page_git_dir, "show", "-s", "--format=%cs", sha).strip()
    html = git(page_git_dir, "show", f"{sha}:index.html")
    if code_git_dir:
        code = check_code_names(code_git_dir)
    elif previous:
        code = previous["source"]["code"]
    else:
        raise SystemExit("--code-git-dir is needed the first time (to check the code names)")
    return {
        "about": "U-Bench's published U-Score constants and rankings (facts, with their source). "
                 "Made by scripts/extract_ubench_reference.py; never fetched at run time.",
        "source": {
            "page": "https://fenghetan9.github.io/ubench/",
            "repository": PAGE_REPO, "commit": sha, "commit_date": date, "file": "index.html",
            "paper": "Tang et al., U-Bench: A Comprehensive Understanding of U-Net through "
                     "100-Variant Benchmarking, arXiv:2510.07041 (2025)",
            "extracted": "calculator constants from the page's `U-Score Calculator` script and "
                         "rankings from its `Ranking of the top 10 models` tables, by "
                         "scripts/extract_ubench_reference.py; table2 transcribed by hand from "
                         "static/images/top10.jpg at the same commit; name mappings written by hand",
            "code": code,
        },
        "calculator": calculator(html),
        "rankings": rankings(html),
        "table2": table2(),
        "names": dict(sorted(PRINTED_TO_CODE.items())),
        "name_notes": NAME_NOTES,
        "code_names": dict(sorted(code_to_registry().items())),
    }


def _relink_models(obj) -> None:
    """Set every ranking entry's ``model`` from its ``code_name`` (a model added since)."""
    if isinstance(obj, dict):
        if "code_name" in obj and "model" in obj:
            obj["model"] = code_to_registry().get(obj["code_name"])
        for v in obj.values():
            _relink_models(v)
    elif isinstance(obj, list):
        for v in obj:
            _relink_models(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--page-git-dir", help="git dir of a clone of FengheTan9/ubench")
    ap.add_argument("--commit", default="HEAD", help="commit of the page to read (default HEAD)")
    ap.add_argument("--code-git-dir", default=None, help="git dir of a clone of FengheTan9/U-Bench")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    ap.add_argument("--code-names-only", action="store_true",
                    help="rewrite only `code_names` (and each ranking entry's `model`) of --out from "
                         "the registry, after adding a model; needs no clone")
    args = ap.parse_args()
    if args.code_names_only:
        doc = json.loads(args.out.read_text(encoding="utf-8"))
        doc["code_names"] = dict(sorted(code_to_registry().items()))
        _relink_models(doc)
        tmp = args.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(args.out)
        print(f"wrote {args.out}: code_names of {len(doc['code_names'])} models")
        return 0
    if not args.page_git_dir:
        ap.error("--page-git-dir is required (except with --code-names-only)")
    previous = json.loads(args.out.read_text(encoding="utf-8")) if args.out.exists() else None
    doc = build(args.page_git_dir, args.commit, args.code_git_dir, previous)
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'DIFFERS from the page'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    n = sum(len(r["iou"]) + len(r["uscore"]) for r in doc["rankings"].values())
    print(f"wrote {args.out}: {len(doc['calculator']['iou'])} datasets with IoU percentiles, "
          f"{len(doc['rankings'])} ranked datasets/pairs ({n} entries), page commit {doc['source']['commit'][:7]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
