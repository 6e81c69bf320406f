"""Converted datasets push to the local Hub as Parquet, one config per task, with a dataset card, and load back
equal with ``datasets.load_dataset(repo, config)``: the VQA-Introspect join (real val file), the critic-filtered
LSKD corpus (embedded synthetic corpus) and VideoQA (real NExT-QA / MSVD-QA / MSRVTT-QA val samples).

Every loader's columns are plain Arrow types (strings, ints, floats, nested lists / structs), so they are pushed as
they are; no text view is needed."""

from __future__ import annotations

import datasets
from huggingface_hub import DatasetCard, HfApi

from hf_vcr.data.lskd import load_lskd
from hf_vcr.data.synthetic_lskd import write_synthetic_lskd
from hf_vcr.data.videoqa import build_answer_vocab, load_msrvtt_qa, load_msvd_qa, load_nextqa, read_answer_set, read_open_ended_qa
from hf_vcr.data.vqa_introspect import load_vqa_introspect
from hf_vcr.hub import push_dataset

DATA = "/work/shared/data"


def assert_round_trip(repo: str, configs: dict[str, datasets.Dataset], pretty_name: str):
    files = HfApi().list_repo_files(repo, repo_type="dataset")
    for name, local in configs.items():
        assert any(f.startswith(f"{name}/") and f.endswith(".parquet") for f in files), (name, files)
        loaded = datasets.load_dataset(repo, name, split="train")
        assert loaded.column_names == local.column_names
        assert loaded.to_list() == local.to_list(), name
    assert not [f for f in files if f.endswith((".arrow", ".json", ".jsonl"))], files
    card = DatasetCard.load(repo, repo_type="dataset")
    assert sorted(c["config_name"] for c in card.data.configs) == sorted(configs)
    assert pretty_name in card.text or card.data.pretty_name == pretty_name


def test_vqa_introspect_join_pushes_per_task(hub, tmp_path):
    joined = load_vqa_introspect(f"{DATA}/vqa_introspect/VQAIntrospect_val_3000.json", cache_dir=str(tmp_path / "c"))
    joined = joined.select(range(40))

    def flatten(batch):  # the perception task: one row per (sub-question, answer) of a reasoning question
        out = {"reasoning_question_id": [], "image_id": [], "question": [], "answer": []}
        for qid, img, qs, ans in zip(batch["question_id"], batch["image_id"], batch["sub_questions"], batch["sub_answers"]):
            for q, a in zip(qs, ans):
                out["reasoning_question_id"].append(qid)
                out["image_id"].append(img)
                out["question"].append(q)
                out["answer"].append(a)
        return out

    sub = joined.map(flatten, batched=True, remove_columns=joined.column_names)
    assert len(sub) > len(joined)
    configs = {"reasoning": joined, "sub_questions": sub}
    push_dataset(configs, "lab/vqa-introspect", pretty_name="VQA-Introspect (hf_vcr join)",
                 source="VQAIntrospect_val_3000.json")
    assert_round_trip("lab/vqa-introspect", configs, "VQA-Introspect (hf_vcr join)")
    row = datasets.load_dataset("lab/vqa-introspect", "reasoning", split="train")[0]
    assert row["reasoning_question"] == "is this a high bridge?" and row["sub_answers"] == ["yes", "no", "yes"]
    assert row["reasoning_answers"] == [{"answer": "no", "score": 1.0}]


def test_filtered_lskd_corpus_pushes(hub, tmp_path):
    paths = write_synthetic_lskd(str(tmp_path / "lskd"), n_images=30, n_mc=4, n_critic=4, seed=0)
    kw = dict(region_file=paths["regions"], check_images=False, cache_dir=str(tmp_path / "c"))
    everything = load_lskd(paths["corpus"], threshold=None, **kw)
    filtered = load_lskd(paths["corpus"], threshold=0.8, **kw)
    assert 0 < len(filtered) < len(everything)  # the critic's threshold (0.8) drops some machine-written QARs
    assert min(filtered["prediction"]) >= 0.8 > min(everything["prediction"])
    # image_path is this machine's absolute path: not shared (the relative `image` column is)
    configs = {"filtered": filtered.remove_columns("image_path"), "unfiltered": everything.remove_columns("image_path")}
    push_dataset(configs, "lab/lskd-corpus", pretty_name="LSKD localized corpus", source="synthetic LSKD corpus",
                 default_config="filtered")
    assert_round_trip("lab/lskd-corpus", configs, "LSKD localized corpus")
    default = datasets.load_dataset("lab/lskd-corpus", split="train")
    assert default.to_list() == configs["filtered"].to_list()
    assert default.features["region_boxes"] == configs["filtered"].features["region_boxes"]


def test_videoqa_pushes_one_config_per_dataset(hub, tmp_path):
    cache = str(tmp_path / "c")
    nextqa = load_nextqa(f"{DATA}/nextqa/val.csv", cache_dir=cache).select(range(30))
    msvd = load_msvd_qa(f"{DATA}/msvd_qa/val_qa.json", read_answer_set(f"{DATA}/msvd_qa/answer_set.txt"), cache_dir=cache)
    msrvtt_records = read_open_ended_qa(f"{DATA}/msrvtt_qa/val.csv")
    msrvtt = load_msrvtt_qa(f"{DATA}/msrvtt_qa/val.csv", build_answer_vocab([r["answer"] for r in msrvtt_records], 1000),
                            cache_dir=cache)
    configs = {"nextqa": nextqa, "msvd_qa": msvd.select(range(30)), "msrvtt_qa": msrvtt.select(range(30))}
    push_dataset(configs, "lab/videoqa", pretty_name="VideoQA annotations", source="NExT-QA, MSVD-QA, MSRVTT-QA val")
    assert_round_trip("lab/videoqa", configs, "VideoQA annotations")
    row = datasets.load_dataset("lab/videoqa", "nextqa", split="train")[0]
    assert len(row["options"]) == 5 and row["labels"] == row["answer"]
