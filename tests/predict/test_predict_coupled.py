"""ARC and joint coupling: tiny training -> ``hf-vcr predict arc|joint`` from the saved f_A / f_R ->
``hf-vcr evaluate vcr`` equals the run's metrics; and their cards name the data they really used."""

from __future__ import annotations

import json
import re

import pytest
import yaml

import hf_vcr  # noqa: F401
from hf_vcr.cli import main as cli_main
from hf_vcr.trainers.arc_config import ArcConfig
from hf_vcr.trainers.arc_trainer import run_arc
from hf_vcr.trainers.coupling_data import build_scorer
from hf_vcr.trainers.joint_config import JointConfig
from hf_vcr.trainers.joint_trainer import run_joint
from hf_vcr.trainers.vcr_config import VcrModelArguments

from tests.conftest import small_vcr_corpus

COMMON = dict(per_device_train_batch_size=8, per_device_eval_batch_size=5, learning_rate=1e-3, save_strategy="no",
              logging_steps=50, report_to="none", use_cpu=True, seed=0, dataloader_num_workers=0, disable_tqdm=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_coupled")
    paths, train, val, tok = small_vcr_corpus(root / "data", n_train=16, n_val=12)
    return root, paths, train, val, tok


def build(tok):
    return lambda: build_scorer("vcr", VcrModelArguments(), tok)


@pytest.fixture(scope="module")
def runs(corpus):
    root, _, train, val, tok = corpus
    arc = run_arc(ArcConfig(output_dir=str(root / "arc"), max_steps=2, teacher_max_steps=2, teacher_eval_steps=1, **COMMON),
                  train, val, tok, build(tok))
    joint = run_joint(JointConfig(output_dir=str(root / "joint"), max_steps=2, coupling="softmax", **COMMON), train, val, tok,
                      build(tok))
    return {"arc": arc, "joint": joint}


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1], parse_constant=lambda c: pytest.fail(c))


@pytest.mark.parametrize("method", ["arc", "joint"])
def test_predict_then_evaluate_equals_the_training_metrics(corpus, runs, method, capsys):
    root, paths, *_ = corpus
    val = f"{paths['annotations_dir']}/val.jsonl"
    pred = root / f"{method}_val.csv"
    assert cli_main(["predict", method, "--model_dir", str(root / method), "--annotations", val,
                     "--images-dir", paths["images_dir"], "--output", str(pred), "--batch_size", "4", "--no_progress"]) == 0
    assert last_json(capsys)["items"] == 12
    assert cli_main(["evaluate", "vcr", "--predictions", str(pred), "--annotations", val]) == 0
    scored = last_json(capsys)
    for key in ("q2a", "qa2r", "q2ar"):
        assert scored[key] == pytest.approx(runs[method][key], abs=0.01), key


def card_yaml(path) -> dict:
    text = path.read_text()
    return yaml.safe_load(text.split("---")[1]), text


@pytest.mark.parametrize("method,sub", [("arc", ""), ("arc", "f_A"), ("joint", ""), ("joint", "f_R")])
def test_cards_name_the_synthetic_data_and_the_schedule_used(corpus, runs, method, sub):
    root = corpus[0]
    meta, text = card_yaml(root / method / sub / "README.md")
    results = meta["model-index"][0]["results"]
    assert results, "the card carries the run's scores"
    for r in results:
        assert r["dataset"]["name"].startswith("embedded synthetic VCR-layout corpus"), r["dataset"]
        assert "val split, 12 items" in r["dataset"]["name"]
    assert "embedded synthetic VCR-layout corpus (hf_vcr, not VCR 1.0), train split, 16 items" in text
    assert not re.search(r"^- VCR\s*$", text, re.M)  # no bare "VCR" as the training data
    assert "| max_steps | 2 |" in text
    if method == "arc":
        assert "| teacher_max_steps | 2 |" in text and "| teacher steps trained | 2 |" in text


def test_card_datasets_say_vcr_for_real_files(real_vcr_dir):
    from hf_vcr.data.vcr import load_vcr
    from hf_vcr.trainers.vcr_components import card_datasets

    val = load_vcr("val", str(real_vcr_dir), check_images=False)
    assert card_datasets(val, val) == {"dataset_name": f"VCR 1.0 train ({len(val)} items)",
                                       "eval_dataset_name": f"VCR 1.0 val ({len(val)} items)"}
