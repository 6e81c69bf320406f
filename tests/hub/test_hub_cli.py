"""``hf-vcr push`` and ``hf-vcr push-dataset`` against the local Hub stand-in."""

from __future__ import annotations

from datasets import Dataset, DatasetDict, load_dataset
from transformers import AutoModel

from hf_vcr.cli import main
from .test_push_checkpoint import _assert_same_weights, _save_checkpoint


def test_cli_push_checkpoint(hub, repo_name, tmp_path, capsys):
    ckpt = tmp_path / "out"
    model = _save_checkpoint(ckpt)
    (ckpt / "checkpoint-2").mkdir()  # an intermediate Trainer checkpoint: not pushed
    (ckpt / "checkpoint-2" / "optimizer.pt").write_bytes(b"\0" * 10)
    repo_id = repo_name("cli")
    assert main(["push", str(ckpt), repo_id, "--message", "from the cli"]) == 0
    assert repo_id in capsys.readouterr().out
    assert set(hub.files("model", repo_id)) == {".gitattributes", "README.md", "config.json", "model.safetensors"}
    _assert_same_weights(model, AutoModel.from_pretrained(repo_id))

    hub.fail_next("commit", status=500, message="down for maintenance")
    assert main(["push", str(ckpt), repo_name("cli-fail")]) == 1
    err = capsys.readouterr().err
    assert "failed at step 'upload/commit'" in err and "HTTP 500" in err and "down for maintenance" in err


def test_cli_push_dataset(hub, repo_name, tmp_path, capsys):
    q2a = DatasetDict({"train": Dataset.from_dict({"question": ["a", "b"], "label": [0, 3]}),
                       "validation": Dataset.from_dict({"question": ["c"], "label": [1]})})
    q2a.save_to_disk(str(tmp_path / "q2a"))
    qa2r = Dataset.from_dict({"question": ["x", "y", "z"], "label": [2, 1, 0]})
    qa2r.to_parquet(str(tmp_path / "qa2r.parquet"))
    repo_id = repo_name("cli-ds")
    rc = main(["push-dataset", repo_id, "--config", f"q2a={tmp_path / 'q2a'}",
               "--config", f"qa2r={tmp_path / 'qa2r.parquet'}", "--default-config", "q2a", "--license", "mit"])
    assert rc == 0, capsys.readouterr().err
    got = load_dataset(repo_id)  # the default config
    assert got["validation"].to_dict() == q2a["validation"].to_dict()
    assert load_dataset(repo_id, "qa2r")["train"].to_dict() == qa2r.to_dict()
    assert main(["push-dataset", repo_id, "--config", f"bad={tmp_path / 'missing.txt'}"]) == 2
