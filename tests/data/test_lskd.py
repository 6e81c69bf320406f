"""LSKD corpus loader and collator on the embedded synthetic corpus (real on-disk format)."""

import json
import os

import pytest
import torch

from hf_vcr.data.lskd import LskdCollator, LskdFormatError, load_lskd, lskd_text, read_lskd_jsonl
from hf_vcr.data.synthetic_lskd import write_synthetic_lskd

torch.set_num_threads(1)  # tiny ops: extra threads only spin on a shared machine


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("lskd"))
    return write_synthetic_lskd(d, n_images=60, n_mc=8, n_critic=20, seed=3)


def test_threshold_filtering_and_text(corpus, tmp_path):
    raw = [json.loads(l) for l in open(corpus["corpus"])]
    ds = load_lskd(corpus["corpus"], corpus["images_dir"], cache_dir=str(tmp_path))
    assert len(ds) == sum(r["prediction"] >= 0.8 for r in raw) and 0 < len(ds) < len(raw)
    assert min(ds["prediction"]) >= 0.8
    assert len(load_lskd(corpus["corpus"], corpus["images_dir"], threshold=None, cache_dir=str(tmp_path))) == len(raw)
    assert len(load_lskd(corpus["corpus"], corpus["images_dir"], threshold=0.0, cache_dir=str(tmp_path))) == len(raw)
    assert lskd_text("Q ?", "A .", "R .") == "Q ? Answer: A . Rationale: R ."
    assert lskd_text("Q ?", "A .") == "Q ? Answer: A ."
    row = ds[0]
    assert os.path.isfile(row["image_path"]) and row["region"] and set(row["region"]) <= set(row["region_ids"])


def test_boxes_from_region_file_match_references(corpus, tmp_path):
    a = list(read_lskd_jsonl(corpus["corpus"], threshold=None))
    # strip the references: boxes must come from the region file
    stripped = tmp_path / "noref.jsonl"
    stripped.write_text("".join(json.dumps({k: v for k, v in json.loads(l).items() if k != "references"}) + "\n" for l in open(corpus["corpus"])))
    with pytest.raises(LskdFormatError, match="line 1: no 'references'"):
        next(read_lskd_jsonl(str(stripped), threshold=None))
    b = list(read_lskd_jsonl(str(stripped), region_file=corpus["regions"], threshold=None))
    assert [r["region_boxes"] for r in a] == [r["region_boxes"] for r in b]
    assert [r["region_ids"] for r in a] == [r["region_ids"] for r in b]


@pytest.mark.parametrize(
    "line,match",
    [
        ("{not json", "line 2: malformed JSON"),
        (json.dumps({"image": "x.png", "question": ["q"], "answer": ["a"]}), "line 2: missing field"),
        (json.dumps({"image": "x.png", "question": ["is", [9], "?"], "answer": ["a"], "rationale": ["r"], "prediction": 0.9,
                     "references": [{"name": "0", "boxes": [[0, 0, 4, 4]]}]}), r"line 2: region reference\(s\) \[9\]"),
        (json.dumps({"image": "x.png", "question": ["is", [0], "?"], "answer": ["a"], "rationale": ["r"], "prediction": 0.9,
                     "references": [{"name": "0", "boxes": [[5, 0, 4, 4]]}]}), "line 2: region 0: box"),
        (json.dumps({"image": "x.png", "question": ["is", ["0"], "?"], "answer": ["a"], "rationale": ["r"], "prediction": 0.9,
                     "references": []}), "neither a word nor a list of region ids"),
        # issue 14: NaN / inf scores and boxes, unreadable critic labels, negative region ids
        ('{"image": "x.png", "question": ["q"], "answer": ["a"], "rationale": ["r"], "prediction": NaN, "references": []}',
         "line 2: 'prediction' is nan"),
        ('{"image": "x.png", "question": ["q"], "answer": ["a"], "rationale": ["r"], "prediction": Infinity, "references": []}',
         "line 2: 'prediction' is inf"),
        ('{"image": "x.png", "question": ["q"], "answer": ["a"], "rationale": ["r"], "qa_score": NaN, "references": []}',
         "line 2: 'qa_score' is nan"),
        ('{"image": "x.png", "question": ["is", [0], "?"], "answer": ["a"], "rationale": ["r"], "prediction": 0.9, '
         '"references": [{"name": "0", "boxes": [[0, 0, NaN, 4]]}]}', "line 2: region 0: box .* NaN or infinite"),
        ('{"image": "x.png", "question": ["is", [0], "?"], "answer": ["a"], "rationale": ["r"], "prediction": 0.9, '
         '"references": [{"name": "0", "boxes": [[0, 0, 4, Infinity]]}]}', "line 2: region 0: box .* NaN or infinite"),
        (json.dumps({"image": "x.png", "question": ["q"], "answer": ["a"], "rationale": ["r"], "label": "nope", "references": []}),
         "line 2: 'label' verdicts"),
        (json.dumps({"image": "x.png", "question": ["q"], "answer": ["a"], "rationale": ["r"], "label": [], "references": []}),
         "line 2: 'label' must be"),
        (json.dumps({"image": "x.png", "question": ["q"], "answer": ["a"], "rationale": ["r"], "label": 5, "references": []}),
         "line 2: 'label' must be"),
        (json.dumps({"image": "x.png", "question": ["q"], "answer": ["a"], "rationale": ["r"], "label": -3, "references": []}),
         "line 2: 'label' must be"),
        (json.dumps({"image": "x.png", "question": ["q"], "answer": ["a"], "rationale": ["r"], "prediction": 0.9,
                     "references": [{"name": "-1", "boxes": [[0, 0, 4, 4]]}]}), "line 2: reference name '-1' is a negative region id"),
        (json.dumps({"image": "x.png", "question": ["is", [0], "?"], "answer": ["a"], "rationale": ["r"], "prediction": 0.9,
                     "region_all": [0, 4], "references": [{"name": "0", "boxes": [[0, 0, 4, 4]]}]}), "line 2: 'region_all' must list"),
    ],
)
def test_bad_lines_name_file_and_line(corpus, tmp_path, line, match):
    first = open(corpus["corpus"]).readline()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(first + line + "\n")
    with pytest.raises(LskdFormatError, match=match) as e:
        list(read_lskd_jsonl(str(bad), threshold=None))
    assert str(bad) in str(e.value)


def test_critic_label_strings_and_region_all(corpus, tmp_path):
    """A plain "reject" string rejects (it used to be read character by character and accepted); region_all is kept."""
    rec = json.loads(open(corpus["critic"]).readline())
    lines = [{**rec, "label": "reject"}, {**rec, "label": "accept"}, {**rec, "label": 0}, {**rec, "label": ["maybe", "accept"]}]
    p = tmp_path / "labels.jsonl"
    p.write_text("".join(json.dumps(l) + "\n" for l in lines))
    recs = list(read_lskd_jsonl(str(p), threshold=None))
    assert [r["label"] for r in recs] == [0, 1, 0, 1]
    assert recs[0]["region_all"] == sorted(set(rec["region_all"]) | set(rec["region"]))


def test_missing_image_and_escaping_path(corpus, tmp_path):
    rec = json.loads(open(corpus["corpus"]).readline())
    for image, match in (("images/nope.png", "image file not found"), ("../../etc/passwd", "escapes the images root")):
        p = tmp_path / f"c{len(image)}.jsonl"
        p.write_text(json.dumps({**rec, "image": image, "prediction": 0.95}) + "\n")
        with pytest.raises(Exception, match=match):
            load_lskd(str(p), corpus["images_dir"], cache_dir=str(tmp_path / "cache"))


def test_collator_shapes_augmentation_and_critic_targets(corpus, tmp_path):
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from hf_vcr.data.tokenization import build_word_tokenizer

    ds = load_lskd(corpus["critic"], corpus["images_dir"], threshold=None, cache_dir=str(tmp_path))
    tok = build_word_tokenizer(["what color is the ball box cup hat in [ 0 1 2 3 4 5 6 7 ] ? answer : rationale : it is . inside looks",
                                "black white green blue red yellow"])
    ip = BlipImageProcessorPil(size={"height": 32, "width": 32})
    rows = [ds[i] for i in range(6)]
    plain = LskdCollator(tok, ip, critic_targets=True)
    batch = plain(rows)
    assert batch["pixel_values"].shape == (6, 3, 32, 32)
    assert batch["input_ids"].shape[0] == 6 and (batch["input_ids"] == tok.unk_token_id).sum() == 0
    text = tok.decode(batch["input_ids"][0], skip_special_tokens=True)
    assert "answer :" in text and "rationale :" in text
    assert batch["labels"].tolist() == [r["label"] for r in rows]
    assert torch.allclose(batch["r_score"], torch.tensor([r["r_score"] for r in rows]))
    # deterministic without augmentation (so vision outputs can be cached), varying with it
    assert torch.equal(plain(rows)["pixel_values"], batch["pixel_values"])
    aug = LskdCollator(tok, ip, augment=True, max_regions=8, seed=1)
    texts = {tok.decode(aug(rows[:1])["input_ids"][0], skip_special_tokens=True) for _ in range(12)}
    assert len(texts) > 1
    no_r = LskdCollator(tok, ip, with_rationale=False)(rows[:1])
    assert "rationale" not in tok.decode(no_r["input_ids"][0], skip_special_tokens=True)


def _tok_ip():
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from hf_vcr.data.tokenization import build_word_tokenizer

    tok = build_word_tokenizer(["what color is the ball box cup hat in [ 0 1 2 3 4 5 6 7 ] ? answer : rationale : it is . inside looks",
                                "black white green blue red yellow"])
    return tok, BlipImageProcessorPil(size={"height": 32, "width": 32})


def test_collator_released_text_and_region_augmentation(corpus, tmp_path):
    """Training collator = the released pipeline: rationale in ~1/2 of the texts, regions renumbered from [0];
    128-token default; without augmentation the rationale is always there."""
    ds = load_lskd(corpus["critic"], corpus["images_dir"], threshold=None, cache_dir=str(tmp_path))
    tok, ip = _tok_ip()
    assert LskdCollator(tok, ip).max_length == 128
    aug = LskdCollator(tok, ip, augment=True, seed=0)
    rows = [ds[i] for i in range(len(ds))]
    with_r = 0
    for _ in range(5):
        for r in rows:
            _, text = aug.render(r)
            with_r += "Rationale:" in text
            assert "[0]" in text  # the first region drawn is always [0] (ids 0..n-1 in drawing order)
    assert 0.3 < with_r / (5 * len(rows)) < 0.7
    plain = LskdCollator(tok, ip)
    assert all("Rationale:" in plain.render(r)[1] for r in rows[:5])
    assert LskdCollator(tok, ip, augment=True, rationale_probability=1.0).rationale_probability == 1.0
    with pytest.raises(ValueError, match="rationale_probability"):
        LskdCollator(tok, ip, augment=True, rationale_probability=1.5)


def test_synthetic_writer_skips_empty_parts(tmp_path):
    """Issue 15: the critic's synthetic folder had empty corpus/mc/regions files."""
    paths = write_synthetic_lskd(str(tmp_path / "c"), n_images=0, n_mc=0, n_critic=3, seed=0)
    assert set(paths) == {"critic", "images_dir"}
    assert sorted(f for f in os.listdir(tmp_path / "c") if f.endswith(".jsonl")) == ["critic.jsonl"]
    assert all(os.path.getsize(p) > 0 for k, p in paths.items() if k != "images_dir")
    with pytest.raises(ValueError, match="at least one positive"):
        write_synthetic_lskd(str(tmp_path / "e"), n_images=0, n_mc=0, n_critic=0)
