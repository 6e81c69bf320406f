"""VideoQA metrics, the `evaluate` modules, the `hf-vcr evaluate videoqa` command and the causal-mask PNG."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import SHARED_DATA

from hf_vcr.cli import main as cli_main
from hf_vcr.metrics import load_metric
from hf_vcr.metrics.videoqa import grounding_overlap, nextqa_accuracies, open_ended_accuracies

SHARED = os.path.join(str(SHARED_DATA))
NEXTQA_VAL = os.path.join(SHARED, "nextqa", "val.csv")
MSRVTT_VAL = os.path.join(SHARED, "msrvtt_qa", "val.csv")


def test_nextqa_accuracies_tp_counted_as_tn_and_groups():
    types = ["CW", "CW", "CH", "TN", "TP", "TC", "DC", "DL", "DO", "DO"]
    gold = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    pred = [0, 0, 2, 3, 0, 0, 1, 0, 3, 3]  # right: CW 1/2, CH 1/1, TN 1/1 + TP 0/1, TC 1/1, DC 1/1, DL 0/1, DO 1/2
    m = nextqa_accuracies(pred, gold, types)
    assert m["accuracy"] == pytest.approx(60.0)
    assert m["CW"] == 50.0 and m["CH"] == 100.0 and m["TN"] == 50.0 and m["TC"] == 100.0
    assert m["DC"] == 100.0 and m["DL"] == 0.0 and m["DO"] == 50.0 and "TP" not in m
    assert m["acc_c"] == pytest.approx(200 / 3) and m["acc_t"] == pytest.approx(200 / 3) and m["acc_d"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="unknown NExT-QA question types"):
        nextqa_accuracies([0], [0], ["XX"])


def _expected_nextqa(rows, preds):
    groups = {"CW": "C", "CH": "C", "TN": "T", "TP": "T", "TC": "T", "DC": "D", "DL": "D", "DO": "D"}
    right, total = {}, {}
    for r in rows:
        t = "TN" if r["type"] == "TP" else r["type"]
        ok = int(preds[f"{r['video']}_{r['qid']}"]["prediction"] == int(r["answer"]))
        for key in (t, "acc_" + groups[t].lower(), "accuracy"):
            right[key] = right.get(key, 0) + ok
            total[key] = total.get(key, 0) + 1
    return {k: round(100.0 * right[k] / total[k], 2) for k in total}


def _nextqa_predictions(tmp_path):
    with open(NEXTQA_VAL, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    preds = {}
    for i, r in enumerate(rows):
        gold = int(r["answer"])
        # right on a type-dependent share of the questions, so every type has its own accuracy
        right = (i * 7 + len(r["type"]) + ord(r["type"][1])) % 5 < 3
        preds[f"{r['video']}_{r['qid']}"] = {"prediction": gold if right else (gold + 1) % 5, "answer": gold}
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(preds))
    return rows, preds, str(path)


@pytest.mark.real_data
def test_cli_on_real_nextqa_val(tmp_path, capsys):
    rows, preds, path = _nextqa_predictions(tmp_path)
    assert cli_main(["evaluate", "videoqa", "--predictions", path, "--annotations", NEXTQA_VAL]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    expected = _expected_nextqa(rows, preds)
    assert set(result) == {"accuracy", "CW", "CH", "TN", "TC", "DC", "DL", "DO", "acc_c", "acc_t", "acc_d"}
    assert result == expected
    assert len({result[t] for t in ("CW", "CH", "TN", "TC", "DC", "DL", "DO")}) > 1


@pytest.mark.real_data
def test_console_entry_prints_json_last_line(tmp_path):
    rows, preds, path = _nextqa_predictions(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "hf_vcr.cli", "evaluate", "videoqa", "--predictions", path, "--annotations", NEXTQA_VAL],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1])["accuracy"] == _expected_nextqa(rows, preds)["accuracy"]


@pytest.mark.real_data
def test_cli_errors_name_the_problem(tmp_path):
    rows, preds, _ = _nextqa_predictions(tmp_path)
    first = f"{rows[0]['video']}_{rows[0]['qid']}"
    missing = dict(preds)
    del missing[first]
    p = tmp_path / "missing.json"
    p.write_text(json.dumps(missing))
    with pytest.raises(ValueError, match=rf"no prediction for 1 of 4996 questions.*{first}"):
        cli_main(["--debug", "evaluate", "videoqa", "--predictions", str(p), "--annotations", NEXTQA_VAL])
    wrong = dict(preds)
    wrong[first] = {"prediction": 0, "answer": (int(rows[0]["answer"]) + 1) % 5}
    p.write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match=rf"record '{first}': 'answer' .* disagrees"):
        cli_main(["--debug", "evaluate", "videoqa", "--predictions", str(p), "--annotations", NEXTQA_VAL])
    p.write_text('{"a": ')
    with pytest.raises(ValueError, match="malformed JSON"):
        cli_main(["--debug", "evaluate", "videoqa", "--predictions", str(p), "--annotations", NEXTQA_VAL])


@pytest.mark.real_data
def test_open_ended_on_real_msrvtt_val(tmp_path, capsys):
    with open(MSRVTT_VAL, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    preds = {r["qid"]: (r["answer"] if i % 3 else "zzz") for i, r in enumerate(rows)}
    p = tmp_path / "open.json"
    p.write_text(json.dumps(preds))
    assert cli_main(["evaluate", "videoqa", "--predictions", str(p), "--annotations", MSRVTT_VAL]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    right = [bool(i % 3) for i in range(len(rows))]
    assert result["accuracy"] == round(100.0 * np.mean(right), 2)
    for w in ("what", "who", "how", "when", "where"):
        sel = [ok for ok, r in zip(right, rows) if r["question"].split()[0] == w]
        assert result[f"acc_{w}"] == round(100.0 * np.mean(sel), 2)
    m = open_ended_accuracies(["man", "dog"], ["man", "cat"], ["who is it", "what is it"])
    assert m == {"accuracy": 50.0, "acc_who": 100.0, "acc_what": 0.0}


def test_evaluate_modules_match_pure_functions():
    types = ["CW", "TP", "DO", "DL"]
    nq = load_metric("nextqa_accuracy").compute(predictions=[0, 1, 2, 3], references=[0, 1, 0, 3], question_types=types)
    np.testing.assert_equal(nq, nextqa_accuracies([0, 1, 2, 3], [0, 1, 0, 3], types))  # None for absent types
    assert nq["accuracy"] == 75.0 and nq["TN"] == 100.0
    oe = load_metric("videoqa_open_ended_accuracy").compute(predictions=["a", "b"], references=["a", "c"], questions=["who x", "how y"])
    assert oe == {"accuracy": 50.0, "acc_who": 100.0, "acc_how": 0.0}


def test_grounding_overlap_against_known_clips():
    truth = [[1, 2], [0, 3]]
    masks = np.array([[0, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0]])
    probs = np.array([[0.1, 0.9, 0.8, 0.2, 0, 0, 0, 0], [0.9, 0.5, 0.4, 0.1, 0, 0, 0, 0]])
    m = grounding_overlap(masks, probs, truth)
    assert m["mask_precision"] == pytest.approx(100 * (1.0 + 0.5) / 2)
    assert m["mask_recall"] == pytest.approx(100.0)
    assert m["mask_iou"] == pytest.approx(100 * (1.0 + 0.5) / 2)
    assert m["top_hit"] == pytest.approx(100 * (1.0 + 0.5) / 2)  # example 2: top-2 = clips 0, 1
    assert m["chance_top_hit"] == pytest.approx(25.0) and m["chance_precision"] == pytest.approx(25.0, abs=3.0)
    assert m["mask_fraction"] == pytest.approx(100 * 6 / 16)


def test_causal_mask_png(tmp_path):
    from PIL import Image

    from hf_vcr.visualization import draw_causal_masks

    path = draw_causal_masks(
        str(tmp_path / "masks.png"),
        [{"title": "what does the dog do? pred: swim", "causal_mask": [0, 1, 1, 0], "causal_probs": [0.1, 0.9, 0.7, 0.2], "true_clips": [1, 2]},
         {"title": "q2", "causal_mask": [1, 0, 0, 0], "causal_probs": [0.8, 0.1, 0.1, 0.3]}],
    )
    img = Image.open(path)
    assert img.format == "PNG" and img.size[1] > 60
    px = np.asarray(img.convert("RGB"))
    assert ((px[..., 1] == 160) & (px[..., 0] == 0)).any()  # a green causal frame
    assert ((px[..., 0] == 255) & (px[..., 1] == 140)).any()  # an orange known-clip bar
    with pytest.raises(ValueError, match="no examples"):
        draw_causal_masks(str(tmp_path / "x.png"), [])
