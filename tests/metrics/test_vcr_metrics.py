"""VCR metrics, the leaderboard csv, the `evaluate` module and `hf-vcr evaluate vcr`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hf_vcr.cli import main as cli_main
from hf_vcr.metrics import load_metric
from hf_vcr.metrics.vcr import (
    LEADERBOARD_COLUMNS,
    accuracies_from_scores,
    evaluate_leaderboard,
    read_leaderboard_csv,
    vcr_accuracies,
    write_leaderboard_csv,
)


def test_accuracies_by_hand():
    a_hat = [0, 1, 2, 3, 0]
    a = [0, 1, 0, 3, 1]  # right: items 0, 1, 3
    r_hat = [2, 0, 1, 1, 3]  # for the predicted answer
    r_right = [2, 1, 1, 1, 3]  # for the right answer
    r = [2, 1, 1, 0, 3]
    m = vcr_accuracies(a_hat, a, r_hat, r, rationale_pred_given_right_answer=r_right)
    assert m["q2a"] == pytest.approx(60.0)
    assert m["qa2r"] == pytest.approx(80.0)  # r_right == r at 0, 1, 2, 4
    assert m["q2ar"] == pytest.approx(20.0)  # answer right and r_hat right: only item 0
    assert m["qa2r_when_q2a_right"] == pytest.approx(100 * 2 / 3)
    assert m["qa2r_when_q2a_wrong"] == pytest.approx(100.0)


def test_q2ar_uses_the_rationale_for_the_predicted_answer():
    answer = np.array([[0.1, 0.9, 0.0, 0.0]])  # predicts 1, right is 1
    rationale = np.zeros((1, 4, 4))
    rationale[0, 1, 2] = 1.0  # conditioned on a1 picks r2 (right)
    rationale[0, 0, 3] = 1.0
    assert accuracies_from_scores(answer, rationale, [1], [2])["q2ar"] == 100.0
    assert accuracies_from_scores(answer, rationale, [1], [3])["q2ar"] == 0.0
    # wrong answer: Q→AR is wrong even though QA→R (with the right answer) is right
    m = accuracies_from_scores(answer, rationale, [0], [3])
    assert m["q2ar"] == 0.0 and m["qa2r"] == 100.0


def test_leaderboard_roundtrip_and_cli(real_vcr_dir, tmp_path, capsys):
    path = tmp_path / "pred.csv"
    answers = np.array([[0.1, 0.2, 0.6, 0.1]])  # right answer 2
    rationales = np.full((1, 4, 4), 0.25)
    rationales[0, 2] = [0.1, 0.1, 0.1, 0.7]  # right rationale 3 given a2
    write_leaderboard_csv(str(path), ["val-1"], answers, rationales)
    header = path.read_text().splitlines()[0].split(",")
    assert header == LEADERBOARD_COLUMNS and header[5] == "rationale_conditioned_on_a0_0" and header[-1] == "rationale_conditioned_on_a3_3"
    back = read_leaderboard_csv(str(path))
    assert np.allclose(back["val-1"][1], rationales[0])
    assert evaluate_leaderboard(str(path), str(real_vcr_dir / "val.jsonl")) == {
        "q2a": 100.0, "qa2r": 100.0, "q2ar": 100.0, "qa2r_when_q2a_right": 100.0, "qa2r_when_q2a_wrong": None
    }
    assert cli_main(["evaluate", "vcr", "--predictions", str(path), "--annotations", str(real_vcr_dir / "val.jsonl")]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["q2a"] == 100.0 and last["qa2r"] == 100.0 and last["q2ar"] == 100.0
    # the console script prints the same JSON object on its last line
    out = subprocess.run(
        [sys.executable, "-m", "hf_vcr.cli", "evaluate", "vcr", "--predictions", str(path), "--annotations", str(real_vcr_dir / "val.jsonl")],
        capture_output=True, text=True, check=True,
    ).stdout
    assert json.loads(out.strip().splitlines()[-1])["q2ar"] == 100.0


def test_leaderboard_errors(real_vcr_dir, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("annot_id,answer_0\nval-1,0.3\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 1: missing columns"):
        read_leaderboard_csv(str(path))
    write_leaderboard_csv(str(path), ["val-9"], np.full((1, 4), 0.25), np.full((1, 4, 4), 0.25))
    with pytest.raises(ValueError, match="no prediction for 1 of 1 annot_ids"):
        evaluate_leaderboard(str(path), str(real_vcr_dir / "val.jsonl"))


def test_evaluate_module_matches_pure_function():
    metric = load_metric("vcr_accuracy")
    args = dict(
        answer_predictions=[0, 1, 2, 3],
        answer_references=[0, 1, 0, 3],
        rationale_predictions=[1, 1, 0, 0],
        rationale_references=[1, 0, 0, 0],
        rationale_predictions_given_right_answer=[1, 0, 0, 2],
    )
    out = metric.compute(**args)
    expected = vcr_accuracies(args["answer_predictions"], args["answer_references"], args["rationale_predictions"],
                              args["rationale_references"], args["rationale_predictions_given_right_answer"])
    assert out == pytest.approx(expected)
    assert out["q2ar"] == 50.0
