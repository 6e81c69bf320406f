"""EIGV: tiny training -> ``hf-vcr predict eigv`` from the saved model -> ``hf-vcr evaluate videoqa`` equals the
metrics the training run reported, and the prediction json equals the one the run wrote."""

from __future__ import annotations

import json

import pytest

from hf_vcr.cli import main as cli_main
from hf_vcr.predict.eigv import prediction_records

CONFIG = "eigv_synthetic"  # the shipped recipe, by name


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1], parse_constant=lambda c: pytest.fail(c))


def test_predict_eigv_then_evaluate_equals_the_training_metrics(tmp_path, capsys):
    from hf_vcr.flows import eigv as eigv_flow

    run, data = tmp_path / "run", tmp_path / "data"
    results = eigv_flow.main([CONFIG, "--output_dir", str(run), "--data_dir", str(data), "--synthetic_train", "64",
                              "--synthetic_val", "24", "--max_steps", "3", "--erm_warmup_steps", "1", "--save_strategy", "no",
                              "--memory_bank_size", "64", "--disable_tqdm", "true", "--use_cpu", "true"])
    pred = tmp_path / "predictions.json"
    capsys.readouterr()
    assert cli_main(["predict", "eigv", "--model_dir", str(run / "final"), "--annotations", str(data / "val.csv"),
                     "--features", str(data / "vid_feat" / "app_mot_val.h5"), "--output", str(pred), "--max_length", "16",
                     "--batch_size", "5", "--no_progress"]) == 0
    assert last_json(capsys)["items"] == 24
    assert json.loads(pred.read_text()) == json.loads((run / "predictions.json").read_text())
    assert cli_main(["evaluate", "videoqa", "--predictions", str(pred), "--annotations", str(data / "val.csv")]) == 0
    scored = last_json(capsys)
    assert "accuracy" in scored and "accuracy" in results
    for key, value in scored.items():
        if key in results:
            assert value == pytest.approx(results[key], abs=0.01), key


def test_open_ended_records_are_answer_strings():
    assert prediction_records(["q1", "q2"], [2, 0], False, answer_vocab=["dog", "cat", "man"]) == {"q1": "man", "q2": "dog"}
    assert prediction_records(["v_1"], [3], True, answers=[1]) == {"v_1": {"prediction": 3, "answer": 1}}
    with pytest.raises(ValueError, match="answer vocabulary"):
        prediction_records(["q1"], [0], False)
