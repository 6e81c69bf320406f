"""ARC section III probes: A→R accuracy, the eq. 1 answer-side attention ratio, the paraphrased validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import hf_vcr  # noqa: F401
from hf_vcr.data.collator import VcrCollator
from hf_vcr.data.vcr import VcrFormatError, tokenize_view
from hf_vcr.probes import (
    a2r_accuracy,
    answer_attention_ratios,
    attention_ratio,
    evaluate_paraphrased,
    predict_logits,
    probe_cli,
    tokenize_qa2r_segments,
)
from hf_vcr.trainers.coupling_data import build_scorer
from hf_vcr.trainers.vcr_config import VcrModelArguments

from tests.conftest import small_vcr_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    paths, _, val, tok = small_vcr_corpus(tmp_path_factory.mktemp("probe_corpus"), n_train=8, n_val=8, extra_words=" color")
    return paths, val, tok


def test_eq1_ratio_against_a_hand_computation():
    # tokens: [q, q, a, r, r] ; W[i, j] = attention of rationale token j to query token i
    segments = torch.tensor([0, 0, 1, 2, 2])
    att = torch.zeros(5, 5)
    att[3] = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0])
    att[4] = torch.tensor([0.0, 0.5, 0.1, 0.2, 0.2])
    att[0] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])  # question rows never count
    want = (0.3 + 0.1) / (0.1 + 0.2 + 0.3 + 0.0 + 0.5 + 0.1)
    assert attention_ratio(att, segments).item() == pytest.approx(want)


def test_segments_mark_question_answer_and_rationale(corpus):
    _, val, tok = corpus
    view = tokenize_qa2r_segments(val.select(range(2)), tok, max_objects=8)
    row, item = view[0], val[0]
    label = item["rationale_label"]
    ids, seg = row["input_ids"][label], row["segment_ids"][label]
    answer = tok.decode([i for i, s in zip(ids, seg) if s == 1]).split()
    question = tok.decode([i for i, s in zip(ids, seg) if s == 0]).split()
    a = item["answer_choices"][item["answer_label"]]
    assert answer[1:] == [w.lower() for w in a[1:]]  # "<name> is <colour> ."
    assert question[0] == item["question"][0].lower() and len(question) == len(item["question"])
    # the same tokens as the QA→R view the models are trained on
    assert row["input_ids"] == tokenize_view(val.select(range(2)), tok, "qa2r", max_objects=8)[0]["input_ids"]


@pytest.mark.parametrize("backbone", ["vcr", "visualbert"])
def test_attention_ratio_of_a_model_matches_its_attention_maps(corpus, backbone):
    _, val, tok = corpus
    torch.manual_seed(0)
    model = build_scorer(backbone, VcrModelArguments(), tok).eval()
    collator = VcrCollator.for_model(model.config, pad_token_id=tok.pad_token_id)
    ratios = answer_attention_ratios(model, val, tok, collator, batch_size=5)
    assert ratios.shape == (len(val),) and np.all((ratios > 0) & (ratios < 1))
    # recompute item 3 by hand from the last layer's head-averaged map
    view = tokenize_qa2r_segments(val.select([3]), tok, max_objects=8)
    batch = collator([view[0]])
    label = batch.pop("labels")[0].item()
    with torch.no_grad():
        att = model(**batch, output_attentions=True)["attentions"][-1].mean(1)  # [C, L', L']
    seg = view[0]["segment_ids"][label]
    L = len(seg)
    W = att[label, :L, :L]
    rationale = [j for j, s in enumerate(seg) if s == 2]
    q_side = [i for i, s in enumerate(seg) if s in (0, 1)]
    a_side = [i for i, s in enumerate(seg) if s == 1]
    want = sum(W[j, i].item() for j in rationale for i in a_side) / sum(W[j, i].item() for j in rationale for i in q_side)
    assert ratios[3] == pytest.approx(want, rel=1e-4)


def test_a2r_accuracy_uses_the_answer_alone(corpus):
    _, val, tok = corpus
    torch.manual_seed(0)
    model = build_scorer("vcr", VcrModelArguments(), tok).eval()
    collator = VcrCollator.for_model(model.config, pad_token_id=tok.pad_token_id)
    view = tokenize_view(val, tok, "a2r", max_objects=8)
    question_words = {w.lower() for w in ("What", "Which", "colour")}
    first_query = tok.decode(view[0]["input_ids"][0]).split()
    assert not question_words & set(first_query[: first_query.index("[SEP]")])
    logits = predict_logits(model, view, collator)
    want = 100.0 * float((logits.argmax(-1) == np.asarray(view["labels"])).mean())
    assert a2r_accuracy(model, val, tok, collator) == pytest.approx(want)


def _write_paraphrased(src, dst, transform):
    with open(src) as f, open(dst, "w") as g:
        for line in f:
            item = json.loads(line)
            transform(item)
            g.write(json.dumps(item) + "\n")


def test_paraphrased_validation(corpus, tmp_path):
    paths, val, tok = corpus
    torch.manual_seed(0)
    f_a = build_scorer("vcr", VcrModelArguments(), tok).eval()
    f_r = build_scorer("vcr", VcrModelArguments(), tok).eval()
    collator = VcrCollator.for_model(f_a.config, pad_token_id=tok.pad_token_id)
    src = f"{paths['annotations_dir']}/val.jsonl"
    same = tmp_path / "same.jsonl"
    _write_paraphrased(src, same, lambda item: None)
    out = evaluate_paraphrased(f_a, f_r, src, str(same), tok, collator, images_dir=paths["images_dir"])
    assert out["n_items"] == len(val) and out["q2a_drop"] == 0.0 and out["qa2r_drop"] == 0.0

    def rephrase(item):
        item["question"] = [("color" if t == "colour" else t) for t in item["question"]]
        item["rationale_choices"] = [[("color" if t == "colour" else t) for t in r] for r in item["rationale_choices"]]

    para = tmp_path / "para.jsonl"
    _write_paraphrased(src, para, rephrase)
    out = evaluate_paraphrased(f_a, f_r, src, str(para), tok, collator, images_dir=paths["images_dir"])
    assert {"original_q2a", "paraphrased_q2a", "original_qa2r", "paraphrased_qa2r"} <= set(out)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(same.read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(VcrFormatError, match=r"bad\.jsonl, line 2: malformed JSON"):
        evaluate_paraphrased(f_a, f_r, src, str(bad), tok, collator, images_dir=paths["images_dir"])


def test_probe_cli_on_saved_models(corpus, tmp_path, capsys):
    paths, val, tok = corpus
    model = build_scorer("vcr", VcrModelArguments(), tok)
    model.save_pretrained(tmp_path / "f_R")
    tok.save_pretrained(tmp_path / "f_R")
    out_json = tmp_path / "probes.json"
    assert probe_cli(["--rationale_model", str(tmp_path / "f_R"), "--annotations_dir", paths["annotations_dir"],
                      "--images_dir", paths["images_dir"], "--max_items", "6", "--output", str(out_json)]) == 0
    figures = json.loads(out_json.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert {"qa2r", "a2r", "answer_attention_percent_median"} <= set(figures)
    assert 0 < figures["answer_attention_percent_median"] < 100  # percent, like the accuracies
    # printed and written alike, rounded to two decimals as every hf_vcr figure
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == figures
    assert all(v is None or round(v, 2) == v for v in figures.values())
