"""End to end: checkpoints pushed to the local Hub stand-in load back with ``from_pretrained``."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch
from transformers import AutoModel, BertConfig, BertForSequenceClassification, BertModel

from hf_vcr.hub import HubPushError, push_checkpoint
from hf_vcr.model_card import write_model_card


def _tiny_bert_config(**kw) -> BertConfig:
    return BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=32, **kw)


def _save_checkpoint(path, seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    model = BertModel(_tiny_bert_config())
    model.save_pretrained(path)
    write_model_card(
        str(path),
        model_name="tiny-bert-hub-test",
        method="Test",
        method_summary="a tiny random BERT used to test Hub pushes",
        paper_title="None",
        architecture="BertModel",
        task_type="multiple-choice",
        dataset_name="synthetic",
        train_command="python scripts/train_vcr.py scripts/configs/vcr_synthetic.yaml",
        hyperparameters={"learning_rate": 1e-3, "seed": seed},
        metrics={"accuracy": 0.5},
    )
    return model


def _manifest(directory) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in files + [d + "/" for d in dirs]:
            full = os.path.join(root, name.rstrip("/"))
            rel = os.path.relpath(full, directory) + ("/" if name.endswith("/") else "")
            if name.endswith("/"):
                out[rel] = "dir"
            else:
                with open(full, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest() + f":{os.stat(full).st_mtime_ns}"
    return out


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_push_checkpoint_round_trip(hub, repo_name, tmp_path):
    ckpt = tmp_path / "ckpt"
    model = _save_checkpoint(ckpt)
    (ckpt / ".tmp-leftover.json").write_text("half-written")  # an interrupted atomic write: must not be pushed
    repo_id = repo_name("tiny-bert")

    info = push_checkpoint(ckpt, repo_id, commit_message="first push")
    assert info.oid and repo_id in info.commit_url

    stored = hub.files("model", repo_id)
    assert set(stored) == {".gitattributes", "README.md", "config.json", "model.safetensors"}
    for name in ("README.md", "config.json", "model.safetensors"):
        assert stored[name] == (ckpt / name).read_bytes(), name
    # the weights went through the LFS path, the small text files inline
    lfs_puts = [r for r in hub.requests if r[1] == "lfs-upload" and repo_id in r[2] and r[3] == 200]
    assert len(lfs_puts) == 1 and lfs_puts[0][0] == "PUT"

    loaded = AutoModel.from_pretrained(repo_id)
    assert isinstance(loaded, BertModel)
    _assert_same_weights(model, loaded)

    # the model card is on the Hub with its model-index
    from huggingface_hub import ModelCard

    card = ModelCard.load(repo_id)
    assert card.data.model_name == "tiny-bert-hub-test"
    assert card.data.eval_results[0].metric_type == "accuracy"

    # a second push of a changed checkpoint replaces the weights; loading by the first commit still gives the old ones
    model2 = _save_checkpoint(ckpt, seed=1)
    info2 = push_checkpoint(ckpt, repo_id, commit_message="second push")
    assert info2.oid != info.oid
    _assert_same_weights(model2, AutoModel.from_pretrained(repo_id, force_download=True))
    _assert_same_weights(model, AutoModel.from_pretrained(repo_id, revision=info.oid))


def test_trainer_push_to_hub(hub, repo_name, tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    repo_id = repo_name("trainer-push")
    torch.manual_seed(0)
    model = BertForSequenceClassification(_tiny_bert_config(num_labels=2))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 64, (16, 8), generator=g)
    train = Dataset.from_dict({"input_ids": ids.tolist(), "labels": (ids[:, 0] % 2).tolist()})
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=2, learning_rate=1e-2,
        save_strategy="no", report_to=[], push_to_hub=True, hub_model_id=repo_id, use_cpu=True,
        disable_tqdm=True, logging_strategy="no",
    )
    trainer = Trainer(model=model, args=args, train_dataset=train)
    assert hub.commit_count("model", repo_id) == 1  # the repo was created by the Trainer, empty
    trainer.train()
    trainer.push_to_hub(commit_message="end of training")

    stored = hub.files("model", repo_id)
    assert {"config.json", "model.safetensors", "README.md", "training_args.bin"} <= set(stored)
    out = tmp_path / "out"
    assert stored["model.safetensors"] == (out / "model.safetensors").read_bytes()
    loaded = AutoModel.from_pretrained(repo_id)  # the base BertModel inside the classifier checkpoint
    _assert_same_weights(trainer.model.bert, loaded)


def test_failed_commit_raises_and_keeps_local_checkpoint(hub, repo_name, tmp_path):
    ckpt = tmp_path / "ckpt"
    _save_checkpoint(ckpt)
    before = _manifest(ckpt)
    repo_id = repo_name("fails")

    hub.fail_next("commit", status=500, message="storage backend unavailable")
    with pytest.raises(HubPushError) as err:
        push_checkpoint(ckpt, repo_id)
    e = err.value
    assert e.step == "upload/commit"
    assert e.status_code == 500
    assert e.repo_id == repo_id and "/commit/main" in e.url
    msg = str(e)
    assert "'upload/commit'" in msg and repo_id in msg and "HTTP 500" in msg and "storage backend unavailable" in msg
    assert _manifest(ckpt) == before
    # nothing was committed: the repo still only has its initial commit
    assert hub.commit_count("model", repo_id) == 1
    assert set(hub.files("model", repo_id)) == {".gitattributes"}

    # the same directory pushes fine once the Hub is back
    push_checkpoint(ckpt, repo_id)
    assert hub.files("model", repo_id)["model.safetensors"] == (ckpt / "model.safetensors").read_bytes()
    assert _manifest(ckpt) == before


@pytest.mark.parametrize("endpoint_name,step", [("lfs-upload", "upload/lfs_upload"), ("create-repo", "create_repo"),
                                                ("preupload", "upload/preupload")])
def test_failure_at_other_steps_is_named(hub, repo_name, tmp_path, endpoint_name, step):
    # huggingface_hub retries 5xx on these endpoints with back-off: fail with a non-retried status to stay fast
    ckpt = tmp_path / "ckpt"
    _save_checkpoint(ckpt)
    before = _manifest(ckpt)
    hub.fail_next(endpoint_name, status=403, message=f"no {endpoint_name} for you")
    with pytest.raises(HubPushError) as err:
        push_checkpoint(ckpt, repo_name("fails-" + endpoint_name))
    assert err.value.step == step, str(err.value)
    assert err.value.status_code == 403
    assert f"no {endpoint_name} for you" in str(err.value)
    assert _manifest(ckpt) == before


def test_push_refuses_a_directory_without_config_or_card(hub, repo_name, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HubPushError, match="no config.json") as err:
        push_checkpoint(empty, repo_name("x"))
    assert err.value.step == "check_local"
    ckpt = tmp_path / "ckpt"
    BertModel(_tiny_bert_config()).save_pretrained(ckpt)
    with pytest.raises(HubPushError, match="no README.md model card"):
        push_checkpoint(ckpt, repo_name("x"))
    with pytest.raises(HubPushError, match="not a directory"):
        push_checkpoint(tmp_path / "missing", repo_name("x"))


def test_offline_mode_is_reported(hub, repo_name, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    ckpt = tmp_path / "ckpt"
    _save_checkpoint(ckpt)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubPushError, match="HF_HUB_OFFLINE") as err:
        push_checkpoint(ckpt, repo_name("offline"))
    assert err.value.step.startswith("create_repo")
