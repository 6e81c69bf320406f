"""No secret leaks, and the token given is the token used.

Every training flow, run with ``--push_to_hub true --hub_token <planted token>`` (and a wrong ``HF_TOKEN``, so only the
real ``--hub_token`` can push: the placeholder ``"<HUB_TOKEN>"`` of ``TrainingArguments.to_dict()`` is refused by the
local Hub), pushes models that load with ``AutoModel.from_pretrained`` with the local weights; the planted token is in
no file under ``output_dir`` (cards, ``training_args.json``, ``trainer_state.json``, checkpoints), in no pushed file, and
in no line the run printed. No pickle is written beside a model or pushed. The ``HF_TOKEN`` path of the same pushes is
covered by test_push_methods.py / test_push_vcr.py (the fixture's HF_TOKEN); its value is checked here too.
"""

from __future__ import annotations

import importlib
import logging

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import hf_vcr  # noqa: F401
from hf_vcr.model_card import train_command
from hf_vcr.utils.secrets import (
    REDACTED,
    is_secret_name,
    redact_argv,
    redact_mapping,
    scrub,
)
from tests.resume.harness import flow_args

PLANTED = "hf_PlantedSecret0123456789abcdefghijKLMN"


METHODS = ["vcr", "arc", "joint", "sort", "eigv", "lskd", "critic"]


@pytest.mark.parametrize("method, via", [(m, "--hub_token") for m in METHODS] + [("vcr", "HF_TOKEN"), ("eigv", "HF_TOKEN")])
def test_flow_pushes_with_the_token_and_leaks_it_nowhere(method, via, hub, hub_server, tmp_path, monkeypatch, capfd, request):
    corpus = request.getfixturevalue("synthetic_vcr") if method in ("vcr", "arc", "joint") else None
    monkeypatch.chdir(tmp_path)
    # with --hub_token, HF_TOKEN is wrong: only the real --hub_token (never "<HUB_TOKEN>") can push
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_the_hub_refuses" if via == "--hub_token" else PLANTED)
    hub_server.accept_token(PLANTED)
    rejected_before = len(hub_server.rejected_tokens)  # the server is shared with other tests
    repo = f"hf-vcr-tester/{method}-token-{via.strip('-').lower()}"
    argv = flow_args(method, "out", corpus) + ["--max_steps", "2", "--push_to_hub", "true", "--hub_model_id", repo]
    if via == "--hub_token":
        argv += ["--hub_token", PLANTED]
    if method == "arc":
        argv += ["--teacher_max_steps", "2"]
    importlib.import_module(f"hf_vcr.flows.{method}").main(argv)
    printed = capfd.readouterr()

    pushed = {rid: hub_server.files(rtype, rid) for (rtype, rid) in list(hub_server.repos) if rid.startswith(repo)}
    assert pushed, f"nothing was pushed to {repo}*"
    local = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    weights = {load_file(str(p)).__len__(): p for p in local if p.name == "model.safetensors"}
    for rid, files in pushed.items():
        assert not [f for f in files if f.endswith((".bin", ".pkl", ".pickle"))], f"{rid}: a pickle was pushed: {sorted(files)}"
        for name, data in files.items():
            assert PLANTED.encode() not in data, f"the token was pushed in {rid}/{name}"
        if "model.safetensors" in files:
            twin = [p for p, data in local.items() if p.name == "model.safetensors" and data == files["model.safetensors"]]
            assert twin, f"{rid}: the pushed weights are no local model's"
            remote = AutoModel.from_pretrained(rid).state_dict()
            saved = load_file(str(twin[0]))
            assert saved and all(torch.equal(remote[k], saved[k]) for k in saved if k in remote), rid
    assert weights
    for path, data in local.items():
        assert PLANTED.encode() not in data, f"the token is in {path}"
        assert path.name != "training_args.bin", f"a pickle was saved: {path}"
    for stream in (printed.out, printed.err):
        assert PLANTED not in stream
    assert "<HUB_TOKEN>" not in hub_server.rejected_tokens[rejected_before:], "a placeholder token reached the Hub"


def test_the_local_hub_refuses_a_placeholder_token(hub, hub_server, tmp_path):
    from hf_vcr.hub import HubPushError, push_checkpoint

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(HubPushError, match="401"):
        push_checkpoint(model, "hf-vcr-tester/placeholder", token="<HUB_TOKEN>", require_model_card=False)
    assert "<HUB_TOKEN>" in hub_server.rejected_tokens


def test_stage_args_keep_the_real_token():
    from hf_vcr.trainers.arc_config import ArcConfig
    from hf_vcr.trainers.coupling_data import stage_args

    args = ArcConfig(output_dir="o", hub_token=PLANTED, report_to="none")
    stage = stage_args(args, output_dir="o/stage1", max_steps=3)
    assert stage.hub_token == PLANTED and stage.output_dir == "o/stage1" and stage.max_steps == 3


def test_secret_names_and_redaction(monkeypatch):
    for name in ("hub_token", "--hub_token", "HF_TOKEN", "wandb_api_key", "AWS_SECRET_ACCESS_KEY", "db_password", "secret"):
        assert is_secret_name(name), name
    for name in ("pad_token_id", "token_type_ids", "max_tokens", "tokenizer_name", "max_length", "keyframes"):
        assert not is_secret_name(name), name
    monkeypatch.setenv("MY_SERVICE_TOKEN", "s3cr3t-value-xyz")
    argv = ["cfg.yaml", "--hub_token", PLANTED, "--api_key=abc123456", "--note", "s3cr3t-value-xyz", "--pad_token_id", "0"]
    assert redact_argv(argv) == ["cfg.yaml", "--hub_token", REDACTED, f"--api_key={REDACTED}", "--note", REDACTED,
                                 "--pad_token_id", "0"]
    assert PLANTED not in train_command("train_vcr.py", argv) and "--pad_token_id 0" in train_command("train_vcr.py", argv)
    assert redact_mapping({"hub_token": "x" * 8, "nested": [{"password": "p" * 8}], "path": f"/a/{PLANTED}/b", "lr": 0.1}) == \
        {"hub_token": REDACTED, "nested": [{"password": REDACTED}], "path": f"/a/{REDACTED}/b", "lr": 0.1}
    assert scrub(f"Bearer {PLANTED}") == f"Bearer {REDACTED}"


def test_log_records_are_scrubbed(caplog):
    from hf_vcr.utils.secrets import install_log_redaction, register_secret

    install_log_redaction()
    register_secret("in-memory-token-42")
    logger = logging.getLogger("hf_vcr.test")
    with caplog.at_level(logging.INFO, logger="hf_vcr"):
        logger.info("pushing with %s", "in-memory-token-42")
    assert "in-memory-token-42" not in caplog.text and REDACTED in caplog.text


def test_push_never_uploads_a_pickle(hub, hub_server, tmp_path):
    from hf_vcr.hub import push_checkpoint

    model = tmp_path / "m"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "training_args.json").write_text('{"learning_rate": 0.1}')
    for name in ("training_args.bin", "sub/training_args.bin", "extra.pkl"):
        (model / name).write_bytes(b"\x80\x04pickle")
    push_checkpoint(model, "hf-vcr-tester/no-pickle", require_model_card=False, ignore_patterns=[])
    pushed = sorted(f for f in hub_server.files("model", "hf-vcr-tester/no-pickle") if f != ".gitattributes")
    assert pushed == ["config.json", "training_args.json"]
    assert (model / "training_args.bin").exists()  # the local folder is left as it was
