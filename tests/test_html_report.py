"""reports/index.html: self-contained (no network), complete, deterministic, and rendered by a real
browser (Debian's Chromium, headless) with every figure decoded and visible in a screenshot."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.conftest import tiny_params
from ubench import paths
from ubench.analysis.html_report import curve_rows, read_curves, render_html
from ubench.analysis.leaderboard import build_leaderboard
from ubench.analysis.plots import plot_iou_ci, plot_iou_vs_uscore, training_curves_png
from ubench.analysis.stats import AnalysisInputError
from ubench.analysis.uscore import uscore_report
from ubench.config import config_from_dict
from ubench.errors import UbenchError
from ubench.io import json_dumps

IDS = [f"img{i}" for i in range(6)]
MODELS = ["unet", "unext", "malunet"]  # unext learns; malunet predicts nothing


def frame(iou, pred_fg):
    return pd.DataFrame({"id": IDS, "iou": iou, "dice": iou, "se": iou, "pc": iou, "f1": iou,
                         "acc": [0.9] * 6, "hd95": [1.0] * 6, "pred_fg": pred_fg, "true_fg": [0.2] * 6})


def grid_results():
    """A board with a degenerate model (malunet predicts nothing) and its U-Score report."""
    in_domain = {"synth": {
        "unet": frame([0.7, 0.6, 0.8, 0.75, 0.65, 0.7], [0.2] * 6),
        "unext": frame([0.8, 0.7, 0.85, 0.8, 0.7, 0.75], [0.21] * 6),
        "malunet": frame([0.0] * 6, [0.0] * 6),
    }}
    zeroshot = {("synth", "synth_shift"): {m: f for m, f in in_domain["synth"].items()}}
    board = build_leaderboard(in_domain, zeroshot, baseline="unet")
    report = uscore_report(board, {
        "unet": {"params_m": 34.5, "gflops": 65.5, "fps": 100.0, "device": "cpu: x"},
        "unext": {"params_m": 1.5, "gflops": 0.6, "fps": 300.0, "device": "cpu: x"},
        "malunet": {"params_m": 10.0, "gflops": 8.0, "fps": 150.0, "device": "cpu: x"},
    }, reference="grid", floor=0.05)
    return board, report


def figures(tmp_path: Path, board, report) -> dict[str, bytes]:
    plot_iou_ci(board, tmp_path / "lb.png")
    plot_iou_vs_uscore(report, tmp_path / "us.png")
    curves = {"synth": {m: [(1, 0.2), (2, 0.5 if m != "malunet" else 0.0)] for m in MODELS}}
    return {"leaderboard": (tmp_path / "lb.png").read_bytes(), "uscore": (tmp_path / "us.png").read_bytes(),
            "training": training_curves_png(curves, "unet")}


def test_page_is_self_contained_and_names_degenerate_models(tmp_path):
    board, report = grid_results()
    page = render_html(board, report, figures(tmp_path, board, report))
    # nothing to fetch: every src/href is inline (a data: URI) and there is no external script/style
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(refs) == 3 and all(r.startswith("data:image/png;base64,") for r in refs)
    assert "http://" not in page and "https://" not in page
    # the degenerate model is flagged in its row and in the warnings, the baseline is named
    row = re.search(r'<tr class="degenerate">.*?</tr>', page).group(0)
    assert ">malunet " in row and "degenerate: empty" in row
    assert "⚠ malunet on synth is degenerate" in page
    assert re.search(r'<tr class="baseline"><td class="num">\d+</td><td>unet \(baseline\)', page)
    assert "synth → synth_shift" in page and "U-Score" in page
    # each figure decodes as the PNG it was given
    for blob in re.findall(r'base64,([A-Za-z0-9+/=]+)"', page):
        assert Image.open(io.BytesIO(base64.b64decode(blob))).format == "PNG"


def test_page_says_when_fps_is_not_comparable_with_ubench(tmp_path):
    board, grid_report = grid_results()
    assert "⚠ FPS:" not in render_html(board, grid_report, figures(tmp_path, board, grid_report))
    eff = {m: dict(r, device="cpu: x") for m, r in grid_report["models"].items()}
    report = uscore_report(board, eff, reference="ubench", floor=0.05)  # CPU FPS vs U-Bench's GPU percentiles
    page = render_html(board, report, figures(tmp_path, board, report))
    assert "⚠ FPS: FPS of malunet, unet, unext was measured on cpu: x, not on a GPU" in page
    assert "NOT comparable with U-Bench" in page


def test_page_needs_every_figure(tmp_path):
    board, report = grid_results()
    figs = figures(tmp_path, board, report)
    del figs["training"]
    with pytest.raises(AnalysisInputError, match="training figure"):
        render_html(board, report, figs)


def _write_grid_outputs(root: Path, board, report, figs) -> None:
    for path, data in ((paths.LEADERBOARD_JSON, json_dumps(board)), (paths.USCORE_JSON, json_dumps(report))):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(data)
    for path, key in ((paths.LEADERBOARD_PNG, "leaderboard"), (paths.USCORE_PNG, "uscore")):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(figs[key])
    for m, ious in (("unet", [0.1, 0.5, 0.6]), ("unext", [0.2, 0.6, 0.7]), ("malunet", [0.0, 0.0, 0.0])):
        tsv = root / paths.train_live("synth", m) / "plots/metrics/val/iou.tsv"
        tsv.parent.mkdir(parents=True)
        tsv.write_text("step\tiou\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(ious)))


def test_report_stage_writes_page_curves_and_plot_data(tmp_path, monkeypatch):
    from ubench.pipeline import run_report

    board, report = grid_results()
    _write_grid_outputs(tmp_path, board, report, figures(tmp_path, board, report))
    monkeypatch.chdir(tmp_path)
    cfg = config_from_dict(tiny_params(grid={"models": MODELS, "datasets": ["synth"], "transfer": [],
                                             "synthetic": ["synth"], "raw": []}))
    assert run_report(cfg) == paths.REPORT_HTML
    page = paths.REPORT_HTML.read_bytes()
    curves = pd.read_csv(paths.TRAINING_PLOTS / "synth.csv")
    assert list(curves.columns) == ["epoch", "model", "val_iou"]
    assert sorted(set(curves["model"])) == sorted(MODELS) and curves["epoch"].tolist()[:3] == [1, 2, 3]
    good = curves[curves["model"] == "unext"]["val_iou"].tolist()
    assert good == [0.2, 0.6, 0.7]
    assert Image.open(paths.TRAINING_PNG).format == "PNG"
    run_report(cfg)  # same inputs, same bytes
    assert paths.REPORT_HTML.read_bytes() == page
    # a missing training log is named, with the fix
    shutil.rmtree(paths.train_live("synth", "unext"))
    with pytest.raises(AnalysisInputError, match=r"results/train/synth/unext.*no training log.*dvc repro"):
        run_report(cfg)
    paths.LEADERBOARD_JSON.unlink()
    with pytest.raises(UbenchError, match="results/leaderboard.json not found"):
        run_report(cfg)


def test_curve_rows_are_long_form_per_dataset():
    rows = curve_rows({"b": {"m2": [(1, 0.5)], "m1": [(1, 0.1), (2, 0.3)]}, "a": {"m1": [(1, 0.9)]}})
    assert list(rows) == ["a", "b"]
    assert rows["b"] == [{"epoch": 1, "model": "m1", "val_iou": 0.1}, {"epoch": 2, "model": "m1", "val_iou": 0.3},
                         {"epoch": 1, "model": "m2", "val_iou": 0.5}]


def test_read_curves_numbers_epochs_from_one(tmp_path):
    tsv = tmp_path / "d" / "m" / "plots/metrics/val/iou.tsv"
    tsv.parent.mkdir(parents=True)
    tsv.write_text("step\tiou\n0\t0.25\n1\t0.5\n")
    assert read_curves(tmp_path, ["d"], ["m"]) == {"d": {"m": [(1, 0.25), (2, 0.5)]}}


# --- a real browser -------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# headless, offline: any network request fails (names resolve nowhere, the proxy is a closed port)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
                  "--hide-scrollbars", "--virtual-time-budget=5000"]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (`make test` installs it where it can: "
                             "`apt-get install chromium`)")


def _chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)


def _check_renders(page: Path, tmp_path: Path) -> Image.Image:
    """Every image decoded offline (the page's own marker), and a screenshot that shows content."""
    dom = _chromium(page, tmp_path, "--dump-dom")
    assert 'data-rendered="ok"' in dom.stdout, (dom.stdout[-2000:], dom.stderr[-2000:])
    shot = tmp_path / f"{page.stem}.png"
    r = _chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,1800")
    assert shot.is_file(), r.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 1800)
    small = img.resize((300, 450))
    pixels = list(small.getdata())
    non_white = sum(1 for p in pixels if min(p) < 240) / len(pixels)
    assert 0.03 < non_white < 0.9, non_white  # text, tables and figures; not blank, not a black page
    # the baseline's red (its row and its marker in the IoU figure) is on screen
    assert any(p[0] > 150 and p[1] < 80 and p[2] < 80 for p in pixels)
    return img


@needs_chromium
def test_report_renders_in_headless_chromium(tmp_path):
    board, report = grid_results()
    page = tmp_path / "index.html"
    page.write_text(render_html(board, report, figures(tmp_path, board, report)), encoding="utf-8")
    _check_renders(page, tmp_path)
    # the check can fail: a page whose figure does not decode is reported as broken
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text(encoding="utf-8").replace("base64,", "base64,AAAA", 1), encoding="utf-8")
    assert 'data-rendered="broken-images"' in _chromium(broken, tmp_path, "--dump-dom").stdout


@needs_chromium
def test_committed_report_renders_in_headless_chromium(tmp_path):
    """The page the default run wrote and git holds: what a user of a fresh clone opens."""
    page = Path(__file__).resolve().parents[1] / paths.REPORT_HTML
    if not page.is_file():
        pytest.skip(f"{paths.REPORT_HTML} is not in this checkout (`dvc repro report` writes it)")
    _check_renders(page, tmp_path)


def test_board_table_prints_p_values_as_the_markdown_leaderboard_does():
    """A Holm p below 1e-4 reads "<0.0001" (escaped) in the HTML, as in reports/leaderboard.md, not 0.0000."""
    from ubench.analysis.html_report import _board_table
    from ubench.analysis.leaderboard import format_p

    row = {"iou_mean": 0.8, "iou_ci_low": 0.7, "iou_ci_high": 0.9, "dice_mean": 0.85, "pred_empty_share": 0.0,
           "pred_full_share": 0.0, "degenerate": False, "significant": True}
    section = {"models": {"unet": {**row, "delta_iou": 0.0, "p_holm": None},
                          "unext": {**row, "iou_mean": 0.7, "delta_iou": -0.1, "p_holm": 3e-7},
                          "malunet": {**row, "iou_mean": 0.6, "delta_iou": -0.2, "p_holm": 0.0123}}}
    table = _board_table(section, "unet")
    assert format_p(3e-7) == "<0.0001"
    assert '<td class="num">&lt;0.0001</td>' in table and '<td class="num">0.0000</td>' not in table
    assert '<td class="num">0.0123</td>' in table
