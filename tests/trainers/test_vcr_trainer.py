"""The foundation end to end: scripts/train_vcr.py learns on the embedded corpus, saves
loadable checkpoints with cards, evaluates Q→AR with predicted answers, and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

import hf_vcr  # noqa: F401
from hf_vcr.cli import main as cli_main
from hf_vcr.data.collator import VcrCollator
from hf_vcr.data.vcr import load_vcr, tokenize_view

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_vcr.py"
CONFIG = REPO / "scripts" / "configs" / "vcr_synthetic.yaml"


def load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_vcr", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("vcr_run")
    out = root / "out"
    metrics = load_script().main([
        str(CONFIG), "--output_dir", str(out), "--synthetic_dir", str(root / "data"),
        "--synthetic_train", "600", "--synthetic_val", "100", "--num_train_epochs", "5",
        "--per_device_train_batch_size", "16", "--save_steps", "1000", "--logging_steps", "25", "--disable_tqdm", "true",
    ])
    return root, out, metrics


def test_learns_beyond_chance(trained):
    _, out, metrics = trained
    # chance: Q→A 25%, Q→AR 6.25%
    assert metrics["q2a"] > 50.0
    assert metrics["q2ar"] > 18.75
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["q2ar"] == pytest.approx(metrics["q2ar"])


def test_leaderboard_csv_scores_the_same_through_the_cli(trained, capsys):
    root, out, metrics = trained
    assert cli_main(["evaluate", "vcr", "--predictions", str(out / "val_predictions.csv"),
                     "--annotations", str(root / "data" / "val.jsonl")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("q2a", "qa2r", "q2ar"):
        assert printed[key] == pytest.approx(metrics[key], abs=0.01)


def test_checkpoint_reloads_with_auto_model_and_same_logits(trained):
    root, out, _ = trained
    model = AutoModel.from_pretrained(out / "q2a").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "q2a")
    val = load_vcr("val", str(root / "data"), str(root / "data" / "vcr1images"))
    view = tokenize_view(val.select(range(8)), tokenizer, "q2a", max_objects=model.config.max_objects)
    batch = VcrCollator.for_model(model.config, tokenizer.pad_token_id)([view[i] for i in range(8)])
    labels = batch.pop("labels")
    with torch.no_grad():
        a = model(**batch).logits
        b = AutoModel.from_pretrained(out / "q2a").eval()(**batch).logits
    assert torch.equal(a, b)
    assert (a.argmax(-1) == labels).float().mean() > 0.25
    card = (out / "q2a" / "README.md").read_text()
    assert "model-index" in card and "VcrForMultipleChoice" in card and "AutoModel.from_pretrained" in card


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, trained):
    root, _, _ = trained
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), str(CONFIG), "--output_dir", str(out), "--synthetic_dir", str(root / "data"),
           "--synthetic_train", "600", "--synthetic_val", "100", "--tasks", "q2a", "--max_steps", "60",
           "--save_steps", "10", "--logging_steps", "10", "--disable_tqdm", "true"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    marker = out / "q2a" / "checkpoint-20" / "checkpoint_complete"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), proc.stdout.read().decode()[-3000:] if proc.poll() is not None else "no checkpoint in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "q2a" / "training_complete").exists()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    resumed = [line for line in result.stdout.splitlines() if line.startswith("hf_vcr: resuming from")]
    assert resumed and "checkpoint-" in resumed[0]
    step = int(resumed[0].rsplit("checkpoint-", 1)[1])
    assert step >= 20
    state = json.loads((out / "q2a" / "checkpoint-60" / "trainer_state.json").read_text())
    assert state["global_step"] == 60
    assert (out / "q2a" / "training_complete").exists()
