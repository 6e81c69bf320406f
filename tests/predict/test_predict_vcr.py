"""The leaderboard round trip: tiny VCR training -> ``hf-vcr predict vcr`` on val and on an unlabelled copy
-> ``hf-vcr evaluate vcr`` equals the metrics the training run reported; the unlabelled copy gives a
complete csv with the same probabilities."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import hf_vcr  # noqa: F401
from hf_vcr.cli import main as cli_main
from hf_vcr.flows.vcr import main as train_vcr
from hf_vcr.metrics.vcr import LEADERBOARD_COLUMNS


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == LEADERBOARD_COLUMNS
        return {row["annot_id"]: row for row in reader}


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1], parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_vcr")
    out = root / "run"
    metrics = train_vcr([
        "vcr_synthetic", "--output_dir", str(out), "--synthetic_dir", str(root / "data"),
        "--synthetic_train", "64", "--synthetic_val", "24", "--max_steps", "6", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "7", "--save_strategy", "no",
        "--logging_steps", "50", "--disable_tqdm", "true", "--use_cpu", "true",
    ])
    return root, out, metrics


def test_predict_val_then_evaluate_equals_the_training_metrics(trained, capsys):
    root, out, metrics = trained
    val = root / "data" / "val.jsonl"
    pred = root / "val_predict.csv"
    assert cli_main(["predict", "vcr", "--q2a", str(out / "q2a"), "--qa2r", str(out / "qa2r"), "--annotations", str(val),
                     "--images-dir", str(root / "data" / "vcr1images"), "--output", str(pred), "--batch_size", "5",
                     "--no_progress"]) == 0
    summary = last_json(capsys)
    assert summary["items"] == 24
    assert cli_main(["evaluate", "vcr", "--predictions", str(pred), "--annotations", str(val)]) == 0
    scored = last_json(capsys)
    for key in ("q2a", "qa2r", "q2ar"):
        assert scored[key] == pytest.approx(metrics[key], abs=0.01), key
        assert summary[key] == scored[key]
    # the same file as the training run's val_predictions.csv, up to float noise of a different batching
    ours, theirs = read_csv(pred), read_csv(out / "val_predictions.csv")
    assert ours.keys() == theirs.keys()
    for aid, row in ours.items():
        for col in LEADERBOARD_COLUMNS[1:]:
            assert float(row[col]) == pytest.approx(float(theirs[aid][col]), abs=2e-6), (aid, col)


def test_unlabelled_copy_gives_a_complete_csv(trained, capsys):
    root, out, _ = trained
    val = root / "data" / "val.jsonl"
    test = root / "unlabelled" / "test.jsonl"
    test.parent.mkdir()
    with open(val) as src, open(test, "w") as dst:
        for line in src:
            item = json.loads(line)
            for key in ("answer_label", "rationale_label", "answer_match_iter", "rationale_match_iter"):
                item.pop(key, None)
            dst.write(json.dumps(item) + "\n")
    pred = root / "test_predictions.csv"
    assert cli_main(["predict", "vcr", "--q2a", str(out / "q2a"), "--qa2r", str(out / "qa2r"), "--annotations", str(test),
                     "--images-dir", str(root / "data" / "vcr1images"), "--output", str(pred), "--no_progress"]) == 0
    summary = last_json(capsys)
    assert summary == {"predictions": str(pred), "items": 24}  # no labels: no scores claimed
    rows, labelled = read_csv(pred), read_csv(out / "val_predictions.csv")
    assert rows.keys() == labelled.keys()
    for aid, row in rows.items():
        values = [float(row[c]) for c in LEADERBOARD_COLUMNS[1:]]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert sum(values[:4]) == pytest.approx(1.0, abs=1e-5)
        for a in range(4):
            assert sum(values[4 + 4 * a: 8 + 4 * a]) == pytest.approx(1.0, abs=1e-5)
        assert values == pytest.approx([float(labelled[aid][c]) for c in LEADERBOARD_COLUMNS[1:]], abs=2e-6)
    # an unlabelled file cannot be scored: a clear error, not a number
    assert cli_main(["evaluate", "vcr", "--predictions", str(pred), "--annotations", str(test)]) != 0
    assert "without labels" in capsys.readouterr().err


def test_predict_help_lists_the_methods(capsys):
    assert cli_main(["predict", "--help"]) == 0
    text = capsys.readouterr().out
    for method in ("vcr", "arc", "joint", "sort", "eigv"):
        assert method in text
    with pytest.raises(SystemExit) as e:
        cli_main(["predict", "vcr", "--help"])
    assert e.value.code == 0
    assert "--q2a" in capsys.readouterr().out
    assert cli_main(["predict", "nonsense"]) == 2


def test_missing_inputs_are_one_line_errors(trained, capsys):
    root, out, _ = trained
    val = str(root / "data" / "val.jsonl")
    assert cli_main(["predict", "vcr", "--q2a", str(out / "q2a"), "--qa2r", str(out / "qa2r"), "--annotations", val,
                     "--output", str(root / "x.csv")]) != 0
    assert "reads pixels (visual_source=backbone): pass --images-dir" in capsys.readouterr().err
    assert cli_main(["predict", "vcr", "--q2a", str(out / "nope"), "--qa2r", str(out / "qa2r"), "--annotations", val,
                     "--images-dir", str(root / "data" / "vcr1images"), "--output", str(root / "x.csv")]) != 0
    assert f"saved model not found: {out / 'nope'}" in capsys.readouterr().err
    assert not (root / "x.csv").exists()
