"""The `ubench` command: help text, and errors printed as `error:` / `fix:` with exit code 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ubench.cli import build_parser, main


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("prepare", "train", "evaluate", "complexity", "speed", "leaderboard", "uscore",
                "candidate", "models"):
        assert cmd in out


PARAMS_TEXT = (Path(__file__).resolve().parents[1] / "params.yaml").read_text()


def test_unknown_model_is_a_clean_error(capsys, workdir):
    (workdir / "params.yaml").write_text(PARAMS_TEXT)
    code = main(["train", "--model", "unetpp2", "--dataset", "synth"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: unknown model 'unetpp2'" in err and "fix: did you mean unetpp" in err
    assert "Traceback" not in err


def test_bad_params_file_is_a_clean_error(capsys, workdir):
    (workdir / "params.yaml").write_text(re.sub(r"(?m)^(\s+epochs:) \d+", r"\1 many", PARAMS_TEXT))
    assert main(["prepare", "synth"]) == 2
    err = capsys.readouterr().err
    assert "`train.epochs` must be an integer" in err and "fix:" in err
    assert not (workdir / "data").exists()


def test_models_list_and_show(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache: params/FLOPs unknown
    assert main(["models", "list", "--family", "cnn", "--no-flops"]) == 0  # deprecated, still accepted
    out = capsys.readouterr().out
    for name in ("unet", "unetpp", "attention_unet"):
        assert f"| {name} | cnn |" in out
    assert "| unet | cnn | 2015 | - | 34.53 | - | no | - | 3/0 |" in out
    assert main(["models", "show", "unet"]) == 0
    assert '"family": "cnn"' in capsys.readouterr().out


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "ubench", "models", "show", "nope"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "unknown model 'nope'" in r.stderr


def test_parser_requires_a_command():
    with pytest.raises(SystemExit):
        build_parser().parse_args([])


def test_a_failure_inside_dvc_exp_run_says_how_to_restore_params(capsys, workdir, monkeypatch):
    """`dvc exp run -S` writes params.yaml first and leaves the value there when a stage fails."""
    (workdir / "params.yaml").write_text(PARAMS_TEXT)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert main(["train", "--model", "unet", "--dataset", "nowhere"]) == 2
    assert "dvc exp run" not in capsys.readouterr().err
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")
    assert main(["train", "--model", "unet", "--dataset", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert "note: this stage ran inside `dvc exp run`" in err and "git checkout params.yaml" in err
    assert "--temp" in err


def _stage_subcommands() -> set[str]:
    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())
    subs = set()
    for stage in doc["stages"].values():
        body = stage.get("do", stage)
        words = body["cmd"].split()
        assert words[0] == "ubench", body["cmd"]
        subs.add(words[1])
    return subs


def test_no_stage_runs_a_tool_so_tools_are_not_stage_sources():
    # cli_tools.py is left out of every stage's sources: that is right only while no stage runs it
    import argparse

    from ubench.cli import SUBCOMMANDS
    from ubench.cli_tools import TOOLS
    from ubench.stage_sources import CORE, SOURCES

    stage_cmds, tool_cmds = set(), set()
    for adders, into in ((SUBCOMMANDS, stage_cmds), (TOOLS, tool_cmds)):
        sub = argparse.ArgumentParser().add_subparsers()
        for add in adders:
            add(sub)
        into.update(sub.choices)
    used = _stage_subcommands()
    assert used and used <= stage_cmds, used - stage_cmds
    assert not used & tool_cmds
    assert "ubench/cli.py" in CORE
    assert all("cli_tools" not in f for f in CORE + tuple(f for fs in SOURCES.values() for f in fs))


def test_models_show_says_whether_ubench_weights_import(capsys):
    from ubench.ubench_keymap import load_keymap

    assert main(["models", "show", "transunet"]) == 0
    out = capsys.readouterr().out
    km = load_keymap("transunet")
    assert '"ubench_weights": {' in out and f'"verdict": "{km.status}"' in out
    assert f'"imports": {"true" if km.proven else "false"}' in out
    refused = next(n for n in ("u_rwkv", "zig_rir", "rwkv_unet") if not load_keymap(n).proven)
    assert main(["models", "show", refused]) == 0
    assert '"imports": false' in capsys.readouterr().out
