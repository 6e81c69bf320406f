"""SOrT: tiny training -> ``hf-vcr predict sort`` from the saved model -> ``hf-vcr evaluate ranking|consistency``
equals the metrics the training run reported (and the files equal the ones the run wrote)."""

from __future__ import annotations

import json

import pytest

from hf_vcr.cli import main as cli_main
from hf_vcr.data.synthetic_introspect import synthetic_introspect_files

CONFIG = "sort_synthetic"  # the shipped recipe, by name
SMALL = ["--hidden_size", "32", "--question_hidden_size", "32", "--attention_hidden_size", "32", "--classifier_hidden_size", "64",
         "--disable_tqdm", "true", "--logging_steps", "50", "--per_device_eval_batch_size", "64"]


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1], parse_constant=lambda c: pytest.fail(c))


def test_predict_sort_then_evaluate_equals_the_training_metrics(tmp_path, capsys):
    from hf_vcr.flows import sort as sort_flow

    run, data = tmp_path / "run", tmp_path / "data"
    results = sort_flow.main([CONFIG, "--output_dir", str(run), "--synthetic_dir", str(data), "--synthetic_train_items", "48",
                              "--synthetic_eval_items", "12", "--max_steps", "4", "--per_device_train_batch_size", "8", *SMALL])
    files = synthetic_introspect_files(str(data), "eval")
    pred = tmp_path / "pred"
    capsys.readouterr()
    assert cli_main(["predict", "sort", "--model_dir", str(run / "final"), "--introspect", files["introspect_json"],
                     "--vqa_questions", files["vqa_questions"], "--vqa_annotations", files["vqa_annotations"],
                     "--region_features", files["region_features"], "--output_dir", str(pred), "--batch_size", "5",
                     "--no_progress"]) == 0
    assert last_json(capsys)["items"] == 12
    for name in ("ranking_scores.jsonl", "consistency_predictions.jsonl"):
        ours = [json.loads(line) for line in (pred / name).read_text().splitlines()]
        theirs = [json.loads(line) for line in (run / name).read_text().splitlines()]
        assert [r["id"] for r in ours] == [r["id"] for r in theirs] and ours, name
        for a, b in zip(ours, theirs):
            for key, value in a.items():
                assert value == pytest.approx(b[key], abs=1e-5), (name, key)
    assert cli_main(["evaluate", "ranking", "--scores", str(pred / "ranking_scores.jsonl")]) == 0
    ranking = last_json(capsys)
    for key in ("mp1", "ranking_accuracy", "mrr", "wpr"):
        assert ranking[key] == pytest.approx(results[key], abs=1e-4), key
    assert cli_main(["evaluate", "consistency", "--predictions", str(pred / "consistency_predictions.jsonl")]) == 0
    consistency = last_json(capsys)
    assert consistency["consistency"] == pytest.approx(results["consistency"], abs=1e-3)
    for k, v in consistency["quadrants"].items():
        assert v == pytest.approx(results[f"quadrant_{k}"], abs=1e-3)
