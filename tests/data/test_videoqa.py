"""VideoQA loaders on the real NExT-QA / MSVD-QA / MSRVTT-QA files, with tiny h5 feature files written here."""

import csv
import json
import os
import pickle
from collections import Counter

import h5py
import numpy as np
import pytest

from tests.conftest import SHARED_DATA
import torch

from hf_vcr.data.tokenization import build_word_tokenizer
from hf_vcr.data.videoqa import (
    ClipFeatureStore,
    VideoQaCollator,
    VideoQaFormatError,
    build_answer_vocab,
    load_msrvtt_qa,
    load_msvd_qa,
    load_nextqa,
    question_word,
    read_answer_set,
    read_nextqa_csv,
    read_open_ended_qa,
)

SHARED = os.path.join(str(SHARED_DATA))
NEXTQA_VAL = os.path.join(SHARED, "nextqa", "val.csv")
MSVD_VAL = os.path.join(SHARED, "msvd_qa", "val_qa.json")
MSVD_ANSWERS = os.path.join(SHARED, "msvd_qa", "answer_set.txt")
MSRVTT_VAL = os.path.join(SHARED, "msrvtt_qa", "val.csv")


def _nextqa_subset(tmp_path, n=12):
    with open(NEXTQA_VAL, newline="", encoding="utf-8") as f:
        lines = f.read().splitlines()
    path = tmp_path / "val.csv"
    path.write_text("\n".join(lines[: n + 1]) + "\n", encoding="utf-8")
    return str(path)


def _write_app_mot(path, videos, clips=16, dim=4096, seed=0):
    rng = np.random.default_rng(seed)
    feat = rng.standard_normal((len(videos), clips, dim)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("ids", data=np.array([int(v) for v in videos], dtype=np.int64))
        f.create_dataset("feat", data=feat)
    return feat


@pytest.mark.real_data
def test_read_real_nextqa_val_csv():
    records = read_nextqa_csv(NEXTQA_VAL)
    assert len(records) == 4996
    first = records[0]
    assert first["key"] == "4010069381_6" and first["type"] == "CH" and first["answer"] == 0
    assert first["options"] == ["roll the handle", "tap their feet", "strum the string", "hit with sticks", "pat with hand"]
    types = Counter(r["type"] for r in records)
    assert types["CW"] == 1924 and types["TP"] == 54 and sum(types.values()) == 4996


def test_load_nextqa_with_lazy_h5_features_and_collator(tmp_path):
    csv_path = _nextqa_subset(tmp_path)
    videos = sorted({r["video"] for r in read_nextqa_csv(csv_path)})
    h5_path = str(tmp_path / "app_mot_val.h5")
    feat = _write_app_mot(h5_path, videos[::-1])  # row order differs from the csv order
    store = ClipFeatureStore.nextqa(h5_path)
    assert store.arrays[0]._file is None  # nothing but the ids read so far
    assert store.num_clips == 16 and store.dim == 4096 and len(store) == len(videos)
    ds = load_nextqa(csv_path, features=store, cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 12 and ds[0]["key"] == "4010069381_6" and ds[0]["labels"] == 0 and len(ds[0]["options"]) == 5
    rows = [ds[i] for i in range(4)]
    got = store.get([r["video"] for r in rows])
    order = videos[::-1]
    for r, g in zip(rows, got):
        assert np.array_equal(g, feat[order.index(r["video"])])
    # pickles for dataloader workers (the h5 handle is re-opened there)
    clone = pickle.loads(pickle.dumps(store))
    assert np.array_equal(clone.get([rows[0]["video"]])[0], got[0])
    tok = build_word_tokenizer(list(ds["question"]) + [o for opts in ds["options"] for o in opts])
    batch = VideoQaCollator(tok, store, max_length=32)(rows)
    assert batch["clip_features"].shape == (4, 16, 4096) and batch["clip_features"].dtype == torch.float32
    assert batch["input_ids"].shape[:2] == (4, 5) and batch["attention_mask"].shape == batch["input_ids"].shape
    assert batch["labels"].tolist() == [r["answer"] for r in rows]
    assert batch["video_index"].tolist() == [store.video_index(r["video"]) for r in rows]
    # the pair (question, option) is what is encoded
    decoded = tok.decode(batch["input_ids"][0, 2], skip_special_tokens=True)
    assert decoded.startswith(rows[0]["question"]) and decoded.endswith(rows[0]["options"][2])


def test_nextqa_missing_video_features_named(tmp_path):
    csv_path = _nextqa_subset(tmp_path)
    videos = sorted({r["video"] for r in read_nextqa_csv(csv_path)})
    h5_path = str(tmp_path / "feat.h5")
    _write_app_mot(h5_path, videos[1:], clips=4, dim=8)
    with pytest.raises(VideoQaFormatError, match=r"val\.csv: 1 videos have no clip features.*" + videos[0]):
        load_nextqa(csv_path, features=ClipFeatureStore.nextqa(h5_path), cache_dir=str(tmp_path / "cache"))


@pytest.mark.real_data
@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda row: row.__setitem__(5, "7"), r"line 3: answer 7 is not an option index"),
        (lambda row: row.__setitem__(7, "XX"), r"line 3: unknown question type 'XX'"),
        (lambda row: row.__setitem__(6, "abc"), r"line 3: field 'qid' must be an integer"),
        (lambda row: row.__delitem__(slice(9, None)), r"line 3: 9 fields, expected 13"),
    ],
)
def test_nextqa_bad_rows_name_file_and_line(tmp_path, edit, message):
    with open(NEXTQA_VAL, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[:4]
    edit(rows[2])
    path = tmp_path / "bad.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(VideoQaFormatError, match="bad.csv, " + message):
        read_nextqa_csv(str(path))


def test_nextqa_missing_column(tmp_path):
    path = tmp_path / "nocol.csv"
    path.write_text("video,question,answer\n1,q,0\n", encoding="utf-8")
    with pytest.raises(VideoQaFormatError, match=r"nocol.csv, line 1: missing columns"):
        read_nextqa_csv(str(path))


@pytest.mark.real_data
def test_msvd_qa_real_json_with_answer_set(tmp_path):
    records = read_open_ended_qa(MSVD_VAL)
    assert len(records) == 6415
    assert records[0] == {
        "key": "30933",
        "qid": 30933,
        "video": "1201",
        "question": "who pours liquid from a plastic container into a ziploc bag containing meat pieces?",
        "answer": "someone",
        "question_word": "who",
    }
    vocab = read_answer_set(MSVD_ANSWERS)
    assert len(vocab) == 1000 and vocab[:3] == ["man", "woman", "person"]
    ds = load_msvd_qa(MSVD_VAL, vocab, cache_dir=str(tmp_path / "cache"))
    labels = np.array(ds["labels"])
    assert len(ds) == 6415 and ds[0]["labels"] == vocab.index("someone")
    known = np.array([a in set(vocab) for a in ds["answer"]])
    assert np.array_equal(labels >= 0, known) and (labels[~known] == -100).all()
    assert abs(known.mean() - 0.8948) < 1e-3  # 89.48 % of val answers are in the 1000-answer set
    dropped = load_msvd_qa(MSVD_VAL, vocab, drop_unknown_answers=True, cache_dir=str(tmp_path / "cache"))
    assert len(dropped) == int(known.sum()) and min(dropped["labels"]) >= 0


@pytest.mark.real_data
def test_msrvtt_qa_real_csv_top_k_vocab_and_question_words(tmp_path):
    records = read_open_ended_qa(MSRVTT_VAL)
    assert len(records) == 12278 and records[0]["video"] == "6513" and records[0]["answer"] == "couch"
    words = Counter(r["question_word"] for r in records)
    assert words["what"] == 8337 and words["who"] == 3439 and words["how"] == 344 and words["when"] == 106 and words["where"] == 52
    vocab = build_answer_vocab((r["answer"] for r in records), top_k=50)
    counts = Counter(r["answer"] for r in records)
    assert len(vocab) == 50 and counts[vocab[0]] == max(counts.values())
    assert all(counts[vocab[i]] >= counts[vocab[i + 1]] for i in range(49))
    ds = load_msrvtt_qa(MSRVTT_VAL, vocab, cache_dir=str(tmp_path / "cache"))
    assert sum(1 for x in ds["labels"] if x >= 0) == sum(counts[a] for a in vocab)
    assert question_word("How many people?") == "how" and question_word("is it red") == "other"


def test_appearance_motion_store_and_classification_collator(tmp_path):
    app, mot = str(tmp_path / "msvd_appearance_feat.h5"), str(tmp_path / "msvd_motion_feat.h5")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 8, 4, 6)).astype(np.float32)  # (N, K clips, F frames, D)
    m = rng.standard_normal((3, 8, 5)).astype(np.float32)
    with h5py.File(app, "w") as f:
        f.create_dataset("ids", data=np.array([1201, 7, 30]))
        f.create_dataset("resnet_features", data=a)
    with h5py.File(mot, "w") as f:
        f.create_dataset("ids", data=np.array([30, 1201, 7]))
        f.create_dataset("resnext_features", data=m)
    store = ClipFeatureStore.appearance_motion(app, mot)
    assert store.num_clips == 8 and store.dim == 11
    got = store.get(["1201", 30])
    assert np.allclose(got[0], np.concatenate([a[0].mean(1), m[1]], -1), atol=1e-6)
    assert np.allclose(got[1], np.concatenate([a[2].mean(1), m[0]], -1), atol=1e-6)
    qa = tmp_path / "val_qa.json"
    qa.write_text(json.dumps([{"answer": "man", "id": 1, "question": "who runs?", "video_id": 1201},
                              {"answer": "zebra", "id": 2, "question": "what is it?", "video_id": 7}]))
    ds = load_msvd_qa(str(qa), ["man", "dog"], features=store, cache_dir=str(tmp_path / "cache"))
    tok = build_word_tokenizer(ds["question"])
    batch = VideoQaCollator(tok, store)([ds[0], ds[1]])
    assert batch["input_ids"].dim() == 2 and batch["labels"].tolist() == [0, -100]
    assert batch["clip_features"].shape == (2, 8, 11)


def test_bad_open_ended_and_h5_inputs(tmp_path):
    bad = tmp_path / "bad_qa.json"
    bad.write_text('[{"answer": "a", "id": 1, "question": "q?", "video_id": 3},\n {"answer": "b", "id": 2')
    with pytest.raises(VideoQaFormatError, match=r"bad_qa.json, line 2: malformed JSON"):
        read_open_ended_qa(str(bad))
    bad.write_text(json.dumps([{"answer": "a", "id": 1, "question": "q?", "video_id": 3}, {"answer": "b", "id": 2, "question": "q?"}]))
    with pytest.raises(VideoQaFormatError, match=r"bad_qa.json, record 1: missing keys \['video_id'\]"):
        read_open_ended_qa(str(bad))
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        read_open_ended_qa(str(tmp_path / "nope.json"))
    noids = str(tmp_path / "noids.h5")
    with h5py.File(noids, "w") as f:
        f.create_dataset("feat", data=np.zeros((2, 4, 3)))
    with pytest.raises(VideoQaFormatError, match=r"noids.h5: no 'ids' dataset"):
        ClipFeatureStore.nextqa(noids)
    dup = str(tmp_path / "dup.h5")
    with h5py.File(dup, "w") as f:
        f.create_dataset("ids", data=np.array([5, 5]))
        f.create_dataset("feat", data=np.zeros((2, 4, 3)))
    with pytest.raises(VideoQaFormatError, match=r"dup.h5: video id '5' appears twice"):
        ClipFeatureStore.nextqa(dup)
    short = str(tmp_path / "short.h5")
    with h5py.File(short, "w") as f:
        f.create_dataset("ids", data=np.array([1, 2, 3]))
        f.create_dataset("feat", data=np.zeros((2, 4, 3)))
    with pytest.raises(VideoQaFormatError, match=r"'ids' has 3 entries but 'feat' has 2 rows"):
        ClipFeatureStore.nextqa(short)
