"""The package as a user gets it: a wheel built from this checkout, installed outside the repository.

No editable install and no ``scripts/`` on the path: from a temporary working directory ``hf-vcr train vcr
vcr_synthetic`` runs to the end (card written from the packaged template, checkpoint loadable with
``AutoModel.from_pretrained``), ``hf-vcr evaluate vcr`` scores its leaderboard csv, and the metrics equal
``python scripts/train_vcr.py scripts/configs/vcr_synthetic.yaml`` run from the clone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--synthetic_train", "48", "--synthetic_val", "12", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
        "--max_steps", "4", "--logging_steps", "2", "--save_steps", "2", "--disable_tqdm", "true", "--dataloader_num_workers", "0"]


def _run(cmd, cwd, env, timeout=600):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    # a copy of the checkout without build leftovers (a stale build/ could ship removed modules) or run outputs
    source = root / "source"
    top_level_junk = {".git", "build", "dist", "runs", "data", "outputs"}
    shutil.copytree(REPO, source, symlinks=True, ignore=lambda folder, names: [
        n for n in names if (Path(folder) == REPO and n in top_level_junk) or n.endswith(".egg-info") or n == "__pycache__"])
    # the build backend already installed (no isolated build env: this machine reaches PyPI, CI may not need to)
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(root / "dist")], cwd=root, env=env)
    wheel = next((root / "dist").glob("hf_vcr-*.whl"))
    site = root / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)], cwd=root, env=env)
    return wheel, site


def test_wheel_ships_templates_configs_and_flows(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("hf_vcr/model_cards/model_card.md.j2", "hf_vcr/model_cards/dataset_card.md.j2", "hf_vcr/configs/vcr_synthetic.yaml",
                   "hf_vcr/configs/eigv_synthetic.yaml", "hf_vcr/configs/deepspeed/zero3.json", "hf_vcr/configs/accelerate/multi_gpu.yaml",
                   "hf_vcr/flows/vcr.py", "hf_vcr/flows/launcher.py", "hf_vcr/metrics/modules/vcr_accuracy/vcr_accuracy.py"):
        assert needed in names, needed
    assert not any(n.startswith(("scripts/", "tests/")) for n in names)


def test_installed_wheel_trains_evaluates_and_matches_the_clone(installed, tmp_path):
    _, site = installed
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    where = _run([sys.executable, "-c", "import hf_vcr, hf_vcr.model_cards as m; print(hf_vcr.__file__); print(m.__file__)"], work, env)
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout  # not the checkout

    hf_vcr = str(site / "bin" / "hf-vcr")
    run = _run([hf_vcr, "train", "vcr", "vcr_synthetic", "--synthetic_dir", "data", "--output_dir", "runs/wheel", *TINY], work, env)
    metrics = _last_json(run.stdout)
    out = work / "runs" / "wheel"
    card = (out / "q2a" / "README.md").read_text()
    assert "VcrForMultipleChoice" in card and "model-index" in card
    load = _run([sys.executable, "-c", "import hf_vcr; from transformers import AutoModel; "
                 f"m = AutoModel.from_pretrained({str(out / 'qa2r')!r}); print(type(m).__name__)"], work, env)
    assert load.stdout.split()[-1] == "VcrForMultipleChoice"

    evaluated = _run([hf_vcr, "evaluate", "vcr", "--predictions", str(out / "val_predictions.csv"),
                      "--annotations", str(work / "data" / "val.jsonl")], work, env)
    scored = _last_json(evaluated.stdout)
    for key in ("q2a", "qa2r", "q2ar"):
        assert abs(scored[key] - metrics[key]) < 1e-2, (key, scored, metrics)

    # the same command from the clone, through the thin script and the config's path
    clone_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    clone = _run([sys.executable, str(REPO / "scripts" / "train_vcr.py"), str(REPO / "scripts" / "configs" / "vcr_synthetic.yaml"),
                  "--synthetic_dir", str(work / "data"), "--output_dir", str(tmp_path / "clone"), *TINY], tmp_path, clone_env)
    from_clone = _last_json(clone.stdout)
    assert {k: v for k, v in from_clone.items() if k != "eval_file"} == {k: v for k, v in metrics.items() if k != "eval_file"}
