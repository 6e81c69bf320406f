"""VQA-Introspect loading (the real file), the join with VQAv2 (official-format fixtures),
region features, tokenisation and batching, and bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from hf_vcr.data.region_features import RegionFeatureReader
from hf_vcr.data.synthetic_introspect import write_synthetic_introspect
from hf_vcr.data.tokenization import build_word_tokenizer
from hf_vcr.data.vqa_introspect import (
    SortCollator,
    build_answer_vocab,
    load_vqa_introspect,
    normalize_answer,
    tokenize_sort_examples,
    vqa_soft_scores,
)


@pytest.fixture(scope="module")
def introspect_path(shared_data):
    return str(shared_data / "vqa_introspect" / "VQAIntrospect_val_3000.json")


@pytest.fixture(scope="module")
def real_only_sq(introspect_path):
    return load_vqa_introspect(introspect_path)


def test_real_file_only_sq(real_only_sq, introspect_path):
    raw = json.load(open(introspect_path))
    assert len(raw) == 3000
    ds = real_only_sq
    # every kept row has a sub-question; none has irrelevant questions without VQAv2
    assert 2500 < len(ds) <= 3000
    assert all(len(s) > 0 for s in ds["sub_questions"])
    assert all(len(i) == 0 for i in ds["irrelevant_questions"])
    row = ds[0]
    assert row["question_id"] == "520001" and row["image_id"] == 520
    assert row["reasoning_question"] == "is this a high bridge?" and row["reasoning_answer"] == "no"
    assert row["sub_questions"][0] == "is the bridge low over the water?" and row["sub_answers"][0] == "yes"
    assert row["reasoning_answers"] == [{"answer": "no", "score": 1.0}]


def test_real_file_invalid_entries_dropped(real_only_sq, introspect_path):
    raw = json.load(open(introspect_path))
    by_id = {r["question_id"]: r for r in real_only_sq}
    checked = 0
    for qid, rec in raw.items():
        invalid = {s["sub_question"].strip() for e in rec["introspect"] if e["pred_q_type"] == "invalid" for s in e["sub_qa"]}
        valid = {s["sub_question"].strip() for e in rec["introspect"] if e["pred_q_type"] != "invalid" for s in e["sub_qa"]}
        only_invalid = {q for q in invalid - valid if q}
        if only_invalid and qid in by_id:
            assert not only_invalid & set(by_id[qid]["sub_questions"])
            checked += 1
    assert checked > 10
    # a reasoning question whose entries are all invalid (or empty) is dropped
    dropped = [qid for qid, rec in raw.items() if all(e["pred_q_type"] == "invalid" or not e["sub_qa"] for e in rec["introspect"])]
    assert dropped and not set(dropped) & set(by_id)


def _write_vqav2(tmp_path, questions, annotations):
    qpath, apath = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json", tmp_path / "v2_mscoco_val2014_annotations.json"
    qpath.write_text(json.dumps({"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014", "questions": questions, "license": {}}))
    apath.write_text(json.dumps({"info": {}, "data_type": "mscoco", "data_subtype": "val2014", "annotations": annotations, "license": {}}))
    return str(qpath), str(apath)


def _ann(qid, image_id, answers, mc=None):
    return {
        "question_id": qid, "image_id": image_id, "question_type": "is the", "answer_type": "yes/no",
        "multiple_choice_answer": mc or answers[0],
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)],
    }


def test_join_with_vqav2_gives_irrelevant_questions_and_soft_scores(introspect_path, tmp_path):
    questions = [
        {"image_id": 520, "question": "is this a high bridge?", "question_id": 520001},  # the reasoning question itself
        {"image_id": 520, "question": "Is the bridge low over the water", "question_id": 520002},  # repeats a sub-question
        {"image_id": 520, "question": "what color is the boat?", "question_id": 520003},
        {"image_id": 520, "question": "How many people are there?", "question_id": 520004},
        {"image_id": 589, "question": "is there a clock?", "question_id": 589001},  # another image
    ]
    annotations = [
        _ann(520001, 520, ["no"] * 7 + ["yes"] * 3),
        _ann(520002, 520, ["yes"] * 10),
        _ann(520003, 520, ["red"] * 2 + ["Red."] * 2 + ["orange"] * 6, mc="orange"),
        _ann(520004, 520, ["two"] * 5 + ["3"] * 1 + ["2"] * 4, mc="2"),
        _ann(589001, 589, ["yes"] * 10),
    ]
    qpath, apath = _write_vqav2(tmp_path, questions, annotations)
    ds = load_vqa_introspect(introspect_path, qpath, apath, max_items=3)
    row = ds[0]
    assert row["question_id"] == "520001"
    assert row["irrelevant_question_ids"] == ["520003", "520004"]
    assert row["irrelevant_questions"] == ["what color is the boat?", "How many people are there?"]
    assert row["irrelevant_answers"] == ["orange", "2"]
    scores = {d["answer"]: d["score"] for d in row["irrelevant_answer_scores"][0]}
    assert scores == pytest.approx({"orange": 1.0, "red": 1.0})  # "red" and "Red." normalise together: 4 -> min(4/3, 1)
    scores = {d["answer"]: d["score"] for d in row["irrelevant_answer_scores"][1]}
    assert scores == pytest.approx({"2": 1.0, "3": 1 / 3})  # "two" -> "2"
    # the reasoning question's soft scores come from its VQAv2 annotation
    assert {d["answer"]: d["score"] for d in row["reasoning_answers"]} == pytest.approx({"no": 1.0, "yes": 1.0})
    # image 589's reasoning question gets its VQAv2 question as irrelevant
    row589 = [r for r in ds if r["image_id"] == 589][0]
    assert row589["irrelevant_questions"] == ["is there a clock?"]
    vocab = build_answer_vocab(ds)
    assert "orange" in vocab and "2" in vocab


def test_answer_normalisation_and_soft_scores():
    assert normalize_answer(" Two Dogs. ") == "2 dogs"
    assert normalize_answer("the red one!") == "red 1"
    assert vqa_soft_scores(["yes", "Yes", "no"]) == pytest.approx({"yes": 2 / 3, "no": 1 / 3})


@pytest.mark.parametrize(
    "answer, expected",
    [
        # worked by hand from the official vqaEval.py (v2.0) rules, one rule per case
        ("T-shirt", "t shirt"),  # a mark not next to a space separates words
        ("black - white", "black white"),  # a mark next to a space is deleted
        ("1,000", "1000"),  # a comma between digits: every mark of the answer is deleted
        ("left, right", "left right"),
        ("dont know", "don't know"),  # contractions typed without their apostrophe are restored
        ("Whats up?", "what's up"),
        ("it's red", "it's red"),  # apostrophes are not punctuation to the official script
        ("end.", "end"),  # a period not followed by a digit is deleted ...
        ("3.5 cm", "3.5 cm"),  # ... one before a digit is kept
        ("10:30", "10:30"),  # ':' is not in the official punctuation list
        ("None", "0"),  # number words become digits, articles go
        ("an apple\tand the ten", "apple and 10"),
        ("(yes)", "yes"),
    ],
)
def test_normalize_answer_is_the_official_vqa_processing(answer, expected):
    assert normalize_answer(answer) == expected


def test_bad_input_names_file_and_record(tmp_path, introspect_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"1": {"image_id": 1,\n "reasoning_question": }')
    with pytest.raises(ValueError, match=r"bad\.json, line 2: malformed JSON"):
        load_vqa_introspect(str(bad))
    bad.write_text(json.dumps({"77": {"image_id": 1, "reasoning_question": "q?", "introspect": []}}))
    with pytest.raises(ValueError, match=r"bad\.json, question id 77: missing field 'reasoning_answer_most_common'"):
        load_vqa_introspect(str(bad))
    with pytest.raises(ValueError, match="both vqa_questions and vqa_annotations"):
        load_vqa_introspect(introspect_path, vqa_questions=str(bad))
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_vqa_introspect(str(tmp_path / "nope.json"))
    qpath, apath = _write_vqav2(tmp_path, [{"image_id": 999, "question": "x?", "question_id": 520001}], [_ann(520001, 999, ["no"] * 10)])
    with pytest.raises(ValueError, match=r"question id 520001: image_id 520 disagrees"):
        load_vqa_introspect(introspect_path, qpath, apath)


def test_region_feature_reader_layouts(tmp_path):
    d = tmp_path / "npy"
    d.mkdir()
    np.save(d / "520.npy", np.ones((3, 4), np.float32))
    np.savez(d / "COCO_val2014_000000000589.npz", features=np.zeros((2, 4), np.float32), boxes=np.ones((2, 4), np.float32))
    r = RegionFeatureReader(str(d))
    assert r[520]["features"].shape == (3, 4) and r[520]["boxes"] is None
    assert r[589]["boxes"].shape == (2, 4) and 589 in r and len(r) == 2
    with pytest.raises(KeyError, match="no region features for image 7"):
        r[7]
    h = tmp_path / "f.h5"
    with h5py.File(h, "w") as f:
        f["ids"] = np.array([5, 6])
        f["features"] = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
        f["num_boxes"] = np.array([3, 2])
    r = RegionFeatureReader(str(h))
    assert r[6]["features"].shape == (2, 4) and r[6]["features"][0, 0] == 12
    h2 = tmp_path / "g.h5"
    with h5py.File(h2, "w") as f:
        f["42"] = np.ones((5, 4), np.float32)
    assert RegionFeatureReader(str(h2))[42]["features"].shape == (5, 4)
    with pytest.raises(ValueError, match="directory of .npy/.npz files or an .h5"):
        RegionFeatureReader(str(tmp_path / "npy" / "520.npy"))


def test_synthetic_set_loads_tokenizes_and_collates(tmp_path):
    paths = write_synthetic_introspect(str(tmp_path / "syn"), n_train=12, n_eval=4, seed=3)
    tr = paths["train"]
    ds = load_vqa_introspect(tr["introspect_json"], tr["vqa_questions"], tr["vqa_annotations"])
    assert len(ds) == 12
    for row in ds:
        assert len(row["sub_questions"]) == 2 and len(row["irrelevant_questions"]) == 3
        evidence = row["sub_questions"][0].split()[-1].rstrip("?")
        assert all(evidence not in q for q in row["irrelevant_questions"])  # irrelevant: other objects
    # deterministic in the seed
    again = write_synthetic_introspect(str(tmp_path / "syn2"), n_train=12, n_eval=4, seed=3)
    assert open(again["train"]["introspect_json"]).read() == open(tr["introspect_json"]).read()

    vocab = build_answer_vocab(ds)
    tok = build_word_tokenizer(list(ds["reasoning_question"]) + [q for qs in list(ds["sub_questions"]) + list(ds["irrelevant_questions"]) for q in qs])
    label2id = {a: i for i, a in enumerate(vocab)}
    enc = tokenize_sort_examples(ds, tok, label2id, max_irrelevant_questions=2)
    assert enc[0]["question_roles"] == [0, 1, 1, 2, 2]
    collate = SortCollator(RegionFeatureReader(tr["region_features"]), num_labels=len(vocab), pad_token_id=tok.pad_token_id)
    batch = collate([enc[0], enc[1], enc[2]])
    assert batch["input_ids"].shape[0] == 15 and batch["image_features"].shape == (3, 6, 32)
    assert batch["question_image_index"].tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert batch["question_roles"].tolist() == [0, 1, 1, 2, 2] * 3
    assert batch["labels"].shape == (15, len(vocab)) and torch.all(batch["labels"].max(-1).values == 1.0)
    assert batch["image_boxes"].shape == (3, 6, 4)
