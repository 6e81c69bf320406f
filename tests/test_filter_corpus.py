"""hf-vcr filter-corpus: every line kept / dropped with its score / malformed with its line; resumes after a kill."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from hf_vcr.data.corpus_filter import filter_corpus
from hf_vcr.data.synthetic_lskd import write_synthetic_lskd

torch.set_num_threads(1)  # tiny ops: extra threads only spin on a shared machine

BAD_LINES = {5: "{not json", 9: "missing-image", 12: "bad-reference", 15: "", 20: "negative-id", 24: "nan-box"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from hf_vcr.data.tokenization import build_word_tokenizer
    from hf_vcr.models.configuration_lskd import tiny_critic_config
    from hf_vcr.models.modeling_lskd import LskdCriticModel

    d = str(tmp_path_factory.mktemp("filter"))
    files = write_synthetic_lskd(d, n_images=36, n_mc=0, n_critic=0, seed=5)
    good = open(files["corpus"]).read().splitlines()
    lines, g = [], iter(good)
    for no in range(1, 41):
        if no in BAD_LINES:
            kind = BAD_LINES[no]
            rec = json.loads(good[0])
            if kind == "missing-image":
                lines.append(json.dumps({**rec, "image": "images/missing.png"}))
            elif kind == "bad-reference":
                lines.append(json.dumps({**rec, "question": ["is", [11], "red", "?"]}))
            elif kind == "negative-id":  # issue 14: used to abort the whole run with a bare ValueError
                lines.append(json.dumps({**rec, "references": rec["references"] + [{"name": "-1", "boxes": [[0, 0, 2, 2]]}]}))
            elif kind == "nan-box":
                ref = {**rec["references"][0], "boxes": [[0, 0, float("nan"), 2]]}
                lines.append(json.dumps({**rec, "references": [ref]}))
            else:
                lines.append(kind)
        else:
            lines.append(next(g))
    corpus = os.path.join(d, "corpus_with_errors.jsonl")
    with open(corpus, "w") as f:
        f.write("\n".join(lines) + "\n")
    tok = build_word_tokenizer(["what color is the ball box cup hat in [ 0 1 2 3 4 5 6 7 ] ? answer : rationale : it is . inside looks",
                                "black white green blue red yellow"])
    torch.manual_seed(0)
    critic = LskdCriticModel(tiny_critic_config(vocab_size=len(tok)))
    torch.nn.init.normal_(critic.itm_head.weight, std=2.0)  # spread the scores of a random critic
    critic_dir = os.path.join(d, "critic")
    critic.save_pretrained(critic_dir)
    tok.save_pretrained(critic_dir)
    BlipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(critic_dir)
    # scores of every good line -> a threshold that keeps some and drops some
    probe = os.path.join(d, "probe.jsonl")
    filter_corpus(critic_dir, corpus, probe, threshold=0.0, images_dir=d, batch_size=8, progress_bar=False)
    scores = sorted(json.loads(l)["prediction"] for l in open(probe))
    k = len(scores) // 2
    assert scores[k - 1] < scores[k]
    threshold = (scores[k - 1] + scores[k]) / 2  # between two scores: no line sits on the threshold after rounding
    return {"dir": d, "corpus": corpus, "critic": critic_dir, "threshold": threshold, "n": 40}


def _read(path):
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []


def test_every_input_line_is_accounted_for(setup, tmp_path):
    out = str(tmp_path / "kept.jsonl")
    summary = filter_corpus(setup["critic"], setup["corpus"], out, threshold=setup["threshold"], images_dir=setup["dir"],
                            batch_size=4, progress_bar=False)
    kept, report = _read(out), _read(out + ".report.jsonl")
    assert summary["lines"] == setup["n"]
    assert summary["kept"] == len(kept) > 0 and summary["dropped"] > 0
    assert summary["kept"] + summary["dropped"] + summary["malformed"] == setup["n"]
    assert sorted(summary["malformed_lines"]) == sorted(BAD_LINES)
    errors = {r["line"]: r["error"] for r in report if r["status"] == "malformed"}
    assert "malformed JSON" in errors[5] and "image file not found" in errors[9] and "[11]" in errors[12] and "empty line" in errors[15]
    assert "negative region id" in errors[20] and "NaN or infinite" in errors[24]
    assert all(f"{setup['corpus']}, line {n}" in errors[n] for n in BAD_LINES), errors
    assert all(k["prediction"] >= setup["threshold"] for k in kept)
    dropped = [r for r in report if r["status"] == "dropped"]
    assert all(r["score"] < setup["threshold"] for r in dropped)
    # every input line appears exactly once: kept (matched by content) or in the report
    originals = [json.loads(l) for i, l in enumerate(open(setup["corpus"]), 1) if i not in BAD_LINES]
    kept_keys = [(k["index"], k["image"]) for k in kept]
    assert len(set(kept_keys)) == len(kept_keys)
    assert len(kept_keys) + len(dropped) == len(originals)
    source = next(o for o in originals if (o["index"], o["image"]) == kept_keys[0])
    assert {k: v for k, v in kept[0].items() if k != "prediction"} == {k: v for k, v in source.items() if k != "prediction"}
    assert sorted(r["line"] for r in report) == sorted(set(r["line"] for r in report))
    # a finished run is not redone
    again = filter_corpus(setup["critic"], setup["corpus"], out, threshold=setup["threshold"], images_dir=setup["dir"], progress_bar=False)
    assert again["kept"] == summary["kept"] and _read(out) == kept


def test_resume_after_kill_neither_duplicates_nor_skips(setup, tmp_path, capsys):
    reference = str(tmp_path / "reference.jsonl")
    filter_corpus(setup["critic"], setup["corpus"], reference, threshold=setup["threshold"], images_dir=setup["dir"], batch_size=3,
                  progress_bar=False)
    out = str(tmp_path / "kept.jsonl")
    cmd = [sys.executable, "-m", "hf_vcr.cli", "filter-corpus", "--critic", setup["critic"], "--input", setup["corpus"],
           "--output", out, "--threshold", str(setup["threshold"]), "--images-dir", setup["dir"], "--batch-size", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd + ["--throttle", "0.3", "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    progress = out + ".progress.json"
    deadline = time.time() + 120
    state = None
    while time.time() < deadline:
        if os.path.exists(progress):
            state = json.load(open(progress))
            if state["line"] >= 9:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.load(open(progress))
    assert 0 < state["line"] < setup["n"] and not state["done"]
    # a kill can also land between writing lines and recording progress: simulate a half-written line
    with open(out, "a") as f:
        f.write('{"image": "half-writ')
    from hf_vcr.cli import main

    capsys.readouterr()
    assert main(cmd[3:]) == 0  # resume in this process, through the same CLI entry
    captured = capsys.readouterr()
    assert open(out).read() == open(reference).read()
    assert open(out + ".report.jsonl").read() == open(reference + ".report.jsonl").read()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["kept"] + summary["dropped"] + summary["malformed"] == setup["n"]
    assert f"malformed {len(BAD_LINES)} at lines {sorted(BAD_LINES)}" in captured.err and "filter-corpus" in captured.err  # summary + progress bar


def test_refuses_to_mix_runs(setup, tmp_path):
    out = str(tmp_path / "kept.jsonl")
    with open(out, "w") as f:
        f.write("something\n")
    with pytest.raises(ValueError, match="no progress record"):
        filter_corpus(setup["critic"], setup["corpus"], out, threshold=0.5, images_dir=setup["dir"], progress_bar=False)
    filter_corpus(setup["critic"], setup["corpus"], out, threshold=0.5, images_dir=setup["dir"], progress_bar=False, restart=True)
    with pytest.raises(ValueError, match="belongs to another run"):
        filter_corpus(setup["critic"], setup["corpus"], out, threshold=0.9, images_dir=setup["dir"], progress_bar=False)


def test_empty_input_is_an_error(setup, tmp_path):
    """Issue 15: an empty corpus used to end with "0 lines" and exit 0."""
    empty = tmp_path / "empty.jsonl"
    for content in ("", "\n  \n"):
        empty.write_text(content)
        with pytest.raises(ValueError, match="empty.jsonl: the input corpus is empty"):
            filter_corpus(setup["critic"], str(empty), str(tmp_path / "out.jsonl"), progress_bar=False)
    assert not os.path.exists(tmp_path / "out.jsonl")
