"""The ``hf-vcr`` command line on bad input (one line, status 2, ``--debug`` for the traceback), its help, and its
start-up: the evaluate commands import neither torch nor transformers, while ``import hf_vcr`` still registers
every model with the Auto classes."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest


from hf_vcr.cli import main as cli_main
from hf_vcr.metrics.vcr import write_leaderboard_csv

ENV = dict(os.environ)


def _files(tmp_path, scores=0.25):
    line = (Path(__file__).parent / "data" / "val_sample_from_VLE_README.jsonl").read_text().splitlines()[0]
    (tmp_path / "val.jsonl").write_text(line + "\n")
    write_leaderboard_csv(str(tmp_path / "pred.csv"), ["val-1"], np.full((1, 4), scores), np.full((1, 4, 4), 0.25))
    return str(tmp_path / "pred.csv"), str(tmp_path / "val.jsonl")


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV)


def test_evaluate_imports_neither_torch_nor_transformers(tmp_path):
    pred, ann = _files(tmp_path)
    code = (
        "import sys\n"
        "from hf_vcr.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'pyarrow') if m in sys.modules)\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}) if (json := __import__('json')) else '')\n"
    )
    for argv in (["evaluate", "vcr", "--predictions", pred, "--annotations", ann],
                 ["evaluate", "vcr", "--predictions", pred + ".missing", "--annotations", ann]):
        proc = _python(code, *argv)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["heavy"] == [] and out["rc"] in (0, 2), out


def test_import_hf_vcr_then_auto_model_in_a_fresh_interpreter(tmp_path):
    from hf_vcr.models import VcrConfig, VcrForMultipleChoice

    VcrForMultipleChoice(VcrConfig.tiny()).save_pretrained(tmp_path / "model")
    registered = ("from transformers import CONFIG_MAPPING\n"
                  "assert all(t in CONFIG_MAPPING for t in ('hf_vcr_vcr', 'hf_vcr_vqa', 'hf_vcr_videoqa', 'lskd_student', 'lskd_critic'))\n")
    proc = _python(
        "import importlib.util, sys, hf_vcr\n"
        "assert importlib.util.find_spec('transformers')  # a probe, as libraries make: executes nothing\n"
        "assert 'torch' not in sys.modules  # registration waits for transformers\n"
        "from transformers import AutoModel, AutoModelForMultipleChoice\n" + registered +
        "print(type(AutoModel.from_pretrained(sys.argv[1])).__name__, type(AutoModelForMultipleChoice.from_pretrained(sys.argv[1])).__name__)",
        str(tmp_path / "model"),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["VcrForMultipleChoice", "VcrForMultipleChoice"]
    # transformers imported before hf_vcr: registered at once (any hf_vcr module import runs hf_vcr/__init__ first)
    proc = _python("import transformers, hf_vcr\n" + registered)
    assert proc.returncode == 0, proc.stderr


def test_console_script_one_line_and_status_2(tmp_path):
    pred, ann = _files(tmp_path)
    with open(pred) as f:
        text = f.read().replace("0.250000", "nan", 1)
    with open(pred, "w") as f:
        f.write(text)
    proc = subprocess.run([sys.executable, "-m", "hf_vcr.cli", "evaluate", "vcr", "--predictions", pred, "--annotations", ann],
                          capture_output=True, text=True, env=ENV)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"hf-vcr evaluate vcr: {pred}, line 2 (val-1): answer_0 is nan"), proc.stderr
    debug = subprocess.run([sys.executable, "-m", "hf_vcr.cli", "--debug", "evaluate", "vcr", "--predictions", pred, "--annotations", ann],
                           capture_output=True, text=True, env=ENV)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "answer_0 is nan" in debug.stderr


def test_help_and_usage(capsys):
    assert cli_main(["evaluate", "--help"]) == 0
    out = capsys.readouterr()
    assert "usage: hf-vcr [--debug] evaluate {consistency,ranking,vcr,videoqa,zero-shot}" in out.out and out.err == ""
    assert cli_main(["--help"]) == 0 and "filter-corpus" in capsys.readouterr().out
    assert cli_main(["evaluate"]) == 2 and "usage:" in capsys.readouterr().err
    assert cli_main(["evaluate", "nope"]) == 2
    with pytest.raises(SystemExit) as e:
        cli_main(["evaluate", "vcr", "--help"])
    assert e.value.code == 0 and "--predictions" in capsys.readouterr().out


def test_unexpected_errors_are_one_line_with_status_1(capsys, monkeypatch):
    import hf_vcr.metrics.vcr as vcr_metrics

    def broken(argv):
        raise RuntimeError("something\nunexpected")

    monkeypatch.setattr(vcr_metrics, "evaluate_cli", broken)
    assert cli_main(["evaluate", "vcr"]) == 1
    assert capsys.readouterr().err == "hf-vcr evaluate vcr: RuntimeError: something unexpected (run with --debug for the traceback)\n"
    with pytest.raises(RuntimeError):
        cli_main(["evaluate", "vcr", "--debug"])
