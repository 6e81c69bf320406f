"""End to end: converted datasets pushed as Parquet configs to the local Hub stand-in load back with
``datasets.load_dataset``, with a dataset card."""

from __future__ import annotations

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value, load_dataset
from huggingface_hub import DatasetCard

from hf_vcr.hub import HubPushError, push_dataset


def _views():
    q2a_features = Features({
        "id": Value("string"),
        "question": Value("string"),
        "answer_choices": Sequence(Value("string")),
        "label": ClassLabel(names=["a", "b", "c", "d"]),
    })
    q2a_rows = {
        "id": [f"val-{i}" for i in range(6)],
        "question": [f"why is [0] holding object {i} ?" for i in range(6)],
        "answer_choices": [[f"answer {i}-{j}" for j in range(4)] for i in range(6)],
        "label": [i % 4 for i in range(6)],
    }
    q2a = DatasetDict({
        "train": Dataset.from_dict({k: v[:4] for k, v in q2a_rows.items()}, features=q2a_features),
        "validation": Dataset.from_dict({k: v[4:] for k, v in q2a_rows.items()}, features=q2a_features),
    })
    qa2r = Dataset.from_dict({
        "id": ["val-0", "val-1", "val-2"],
        "question": ["q0", "q1", "q2"],
        "answer": ["a0", "a1", "a2"],
        "rationale_choices": [["r0", "r1"], ["r2", "r3"], ["r4", "r5"]],
        "label": [1, 0, 1],
        "score": [0.25, 0.5, 1.0],
    })
    return q2a, qa2r


def test_push_two_configs_and_load_back(hub, repo_name):
    q2a, qa2r = _views()
    repo_id = repo_name("vcr-views")
    info = push_dataset(
        {"q2a": q2a, "qa2r": qa2r}, repo_id,
        pretty_name="VCR task views (test)", source="VCR 1.0 (visualcommonsense.com)",
        source_url="https://visualcommonsense.com", license="other", tags=["vcr"],
        description="Question-to-answer and question+answer-to-rationale views.",
    )
    assert info.oid

    stored = hub.files("dataset", repo_id)
    parquet = sorted(p for p in stored if p.endswith(".parquet"))
    assert [p.split("/")[0] for p in parquet] == ["q2a", "q2a", "qa2r"], parquet
    assert all(stored[p][:4] == b"PAR1" for p in parquet)

    got = load_dataset(repo_id, "q2a")
    assert set(got) == {"train", "validation"}
    for split in ("train", "validation"):
        assert got[split].features == q2a[split].features
        assert got[split].to_dict() == q2a[split].to_dict()
    got = load_dataset(repo_id, "qa2r")
    assert set(got) == {"train"}
    assert got["train"].features == qa2r.features
    assert got["train"].to_dict() == qa2r.to_dict()

    with pytest.raises(ValueError, match="(?i)config"):  # two configs and no default: the name is needed
        load_dataset(repo_id)

    card = DatasetCard.load(repo_id, repo_type="dataset")
    assert [c["config_name"] for c in card.data.configs] == ["q2a", "qa2r"]
    assert card.data.license == "other"
    assert card.data.pretty_name == "VCR task views (test)"
    assert "hf_vcr" in card.data.tags and "vcr" in card.data.tags
    assert card.data.source_datasets == ["VCR 1.0 (visualcommonsense.com)"]
    text = card.text
    assert f'load_dataset("{repo_id}", "q2a")' in text and f'load_dataset("{repo_id}", "qa2r")' in text
    assert "| `q2a` | train (4), validation (2) |" in text
    assert "| `qa2r` | train (3) |" in text
    assert "| `answer_choices` | list<string> |" in text and "| `label` | class label (a, b, c, d) |" in text
    assert "[VCR 1.0 (visualcommonsense.com)](https://visualcommonsense.com)" in text


def test_single_config_is_the_default(hub, repo_name):
    _, qa2r = _views()
    repo_id = repo_name("single")
    push_dataset(qa2r, repo_id, config_name="qa2r", split="validation", license="mit")
    for got in (load_dataset(repo_id), load_dataset(repo_id, "qa2r")):
        assert set(got) == {"validation"}
        assert got["validation"].to_dict() == qa2r.to_dict()
    card = DatasetCard.load(repo_id, repo_type="dataset")
    assert card.data.configs[0]["default"] is True
    assert "the default configuration, `qa2r`" in card.text


def test_failed_dataset_commit_names_config_and_step(hub, repo_name):
    q2a, qa2r = _views()
    before = qa2r.to_dict()
    hub.fail_next("commit", status=403, message="quota exceeded")
    repo_id = repo_name("fails")
    with pytest.raises(HubPushError) as err:
        push_dataset({"q2a": q2a, "qa2r": qa2r}, repo_id)
    assert err.value.step == "push_config:q2a/commit"
    assert err.value.status_code == 403 and err.value.repo_type == "dataset"
    assert "quota exceeded" in str(err.value) and repo_id in str(err.value)
    assert qa2r.to_dict() == before
    assert not any(p.endswith(".parquet") for p in hub.files("dataset", repo_id))


def test_bad_arguments(hub, repo_name):
    q2a, _ = _views()
    with pytest.raises(TypeError, match="push_dataset expects"):
        push_dataset([q2a], repo_name("x"))
    with pytest.raises(ValueError, match="invalid config name"):
        push_dataset({"q 2 a": q2a}, repo_name("x"))
    with pytest.raises(TypeError, match="unknown card argument"):
        push_dataset(q2a, repo_name("x"), licence="mit")
