"""The VCR loader on the real published samples, views, rendering and tokenization."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pytest

from hf_vcr.data.references import GENDER_NEUTRAL_NAMES, join_tokens, render, split_tokens
from hf_vcr.data.tokenization import build_word_tokenizer
from hf_vcr.data.vcr import load_vcr, read_vcr_jsonl, render_view, tokenize_view


@pytest.fixture(scope="module")
def val(real_vcr_dir, shared_data, tmp_path_factory):
    return load_vcr("val", str(real_vcr_dir), str(shared_data / "vcr" / "vcr1images"), cache_dir=str(tmp_path_factory.mktemp("c")))


def test_real_val_item_with_metadata_and_image(val, shared_data):
    assert len(val) == 1
    row = val[0]
    assert row["annot_id"] == "val-1"
    assert row["objects"] == ["person", "person", "person", "car", "cellphone", "clock"]
    # "Does [0] live in this house ?"
    assert row["question"] == ["Does", "", "live", "in", "this", "house", "?"]
    assert row["question_refs"][1] == [0]
    assert row["answer_label"] == 2 and row["rationale_label"] == 3
    assert len(row["answer_choices"]) == 4 and len(row["rationale_choices"]) == 4
    assert row["answer_choices_refs"][3][1] == [1]
    # metadata: 6 boxes with scores, image size 1920x797
    assert len(row["boxes"]) == 6 and len(row["boxes"][0]) == 5
    assert row["width"] == 1920 and row["height"] == 797
    assert row["boxes"][0][0] == pytest.approx(955.7418, rel=1e-5)
    assert row["image_path"].endswith("@0.jpg")
    assert row["metadata_path"].endswith("@0.json")


def test_real_train_item_without_images(real_vcr_dir, tmp_path):
    ds = load_vcr("train", str(real_vcr_dir), cache_dir=str(tmp_path))
    row = ds[0]
    assert row["annot_id"] == "train-0"
    assert row["image_path"] is None and row["boxes"] == []
    assert row["question"][1] == "" and row["question_refs"][1] == [2]
    assert row["answer_label"] == 1 and row["rationale_label"] == 1
    # a path to the jsonl works as the split too
    assert load_vcr(str(real_vcr_dir / "train.jsonl"), None, cache_dir=str(tmp_path))[0]["annot_id"] == "train-0"


def test_split_join_roundtrip_on_real_item(real_vcr_dir):
    item = next(read_vcr_jsonl(str(real_vcr_dir / "val.jsonl")))
    for tokens in [item["question"]] + item["answer_choices"] + item["rationale_choices"]:
        assert join_tokens(*split_tokens(tokens)) == tokens


def test_reference_rendering_styles():
    names = ["person", "person", "wine glass", "car"]
    words, refs = split_tokens(["Why", "is", [0, 1, 2], "near", [3], "?"])
    r2c, objs = render(words, refs, names, "r2c")
    assert r2c == ["Why", "is", GENDER_NEUTRAL_NAMES[0], ",", GENDER_NEUTRAL_NAMES[1], "and", "wine", "glass", "near", "car", "?"]
    assert objs == [-1, -1, 0, -1, 1, -1, 2, 2, -1, 3, -1]
    idx, objs = render(words, refs, names, "index")
    assert idx == ["Why", "is", "[0]", ",", "[1]", "and", "[2]", "near", "[3]", "?"]
    assert objs == [-1, -1, 0, -1, 1, -1, 2, -1, 3, -1]
    with pytest.raises(ValueError, match="reference style"):
        render(words, refs, names, "bogus")


def test_views_on_real_item(val):
    row = val[0]
    rendered, label = render_view(row, "q2a")
    assert label == 2 and len(rendered) == 4
    assert rendered[0][0] == ["Does", "Casey", "live", "in", "this", "house", "?"]
    # QA→R: the query is question + right answer ("No , Casey is a visitor .")
    rendered, label = render_view(row, "qa2r")
    assert label == 3 and rendered[0][0][7:] == ["No", ",", "Casey", "is", "a", "visitor", "."]
    # QR→A (ARC's teacher): question + right rationale, choices are answers
    rendered, label = render_view(row, "qr2a")
    assert label == 2 and rendered[0][0][7:10] == ["Casey", "is", "wearing"]
    assert rendered[1][2][:2] == ["Yes", ","]
    # A→R probe: the query is the right answer alone
    rendered, label = render_view(row, "a2r")
    assert rendered[0][0] == ["No", ",", "Casey", "is", "a", "visitor", "."]
    # joint 4x4: label 4a + r, query i*4+j holds answer i and rationale j
    rendered, label = render_view(row, "joint")
    assert label == 4 * 2 + 3 and len(rendered) == 16
    assert rendered[9][0][7:] == ["No", ",", "Casey", "is", "a", "visitor", "."]
    assert rendered[9][2] == rendered[1][2]


def test_tokenize_keeps_object_ids(val):
    tok = build_word_tokenizer(["does casey live in this house ? no , is a visitor wearing"])
    view = tokenize_view(val, tok, "qa2r", max_length=40)
    ex = view[0]
    assert len(ex["input_ids"]) == 4 and ex["labels"] == 3
    ids, objs = ex["input_ids"][3], ex["object_ids"][3]
    tokens = tok.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2
    # every "casey" token carries object 0, every other token -1
    assert [o for t, o in zip(tokens, objs) if t == "casey"] == [0, 0, 0]
    assert all(o == -1 for t, o in zip(tokens, objs) if t != "casey")
    sep = tokens.index("[SEP]")
    assert set(ex["token_type_ids"][3][: sep + 1]) == {0} and set(ex["token_type_ids"][3][sep + 1 :]) == {1}


def test_arrow_cache_is_reused(real_vcr_dir, shared_data, tmp_path):
    kw = dict(cache_dir=str(tmp_path))
    first = load_vcr("val", str(real_vcr_dir), str(shared_data / "vcr" / "vcr1images"), **kw)
    t0 = time.perf_counter()
    second = load_vcr("val", str(real_vcr_dir), str(shared_data / "vcr" / "vcr1images"), **kw)
    assert time.perf_counter() - t0 < 5
    assert second.cache_files and second.cache_files[0]["filename"].startswith(str(tmp_path))
    assert second[0] == first[0]


def test_parallel_parse_matches_and_keeps_line_numbers(synthetic_vcr, tmp_path):
    from hf_vcr.data.vcr import VcrFormatError, read_vcr_table

    path = synthetic_vcr["annotations_dir"] + "/train.jsonl"
    assert read_vcr_table(path, num_proc=3).to_pylist() == read_vcr_table(path, num_proc=1).to_pylist()
    lines = open(path).read().splitlines()
    lines[150] = lines[150][:-5]  # line 151 sits in the last of three chunks
    bad = tmp_path / "train.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(VcrFormatError, match=r"train\.jsonl, line 151: malformed JSON"):
        read_vcr_table(str(bad), num_proc=3)


# ------------------------------------------------- fast paths == the straightforward Python paths


def _wordpiece_tokenizer(tmp_path, words):
    """A tiny real WordPiece BertTokenizerFast: whole words for half the vocabulary, the rest split into
    characters ("##x"), so words map to one or several tokens."""
    from transformers import BertTokenizerFast

    words = sorted({w.lower() for w in words if w})
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words[::2] + chars + [f"##{c}" for c in chars]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    return BertTokenizerFast(vocab_file=str(path), do_lower_case=True)


def _vcr_tables(real_vcr_dir, shared_data, synthetic_vcr):
    from hf_vcr.data.vcr import read_vcr_table

    return {
        "real_val": read_vcr_table(str(real_vcr_dir / "val.jsonl"), str(shared_data / "vcr" / "vcr1images")),
        "real_train": read_vcr_table(str(real_vcr_dir / "train.jsonl")),
        "synthetic": read_vcr_table(synthetic_vcr["annotations_dir"] + "/val.jsonl", synthetic_vcr["images_dir"]),
    }


def test_fast_reader_equals_python_reader(real_vcr_dir, shared_data, synthetic_vcr):
    from hf_vcr.data.vcr import _fast_read_table, _slow_read_vcr_table

    images = str(shared_data / "vcr" / "vcr1images")
    cases = [
        (str(real_vcr_dir / "val.jsonl"), images),
        (str(real_vcr_dir / "val.jsonl"), None),
        (str(real_vcr_dir / "train.jsonl"), None),
        (synthetic_vcr["annotations_dir"] + "/train.jsonl", synthetic_vcr["images_dir"]),
        (synthetic_vcr["annotations_dir"] + "/train.jsonl", None),
    ]
    for path, images_dir in cases:
        fast = _fast_read_table(path, images_dir, True)
        assert fast is not None, path  # the well-formed files take the fast path
        assert fast.equals(_slow_read_vcr_table(path, images_dir, True, 1)), path


def test_reader_falls_back_on_files_the_rewrite_cannot_handle(real_vcr_dir, tmp_path):
    from hf_vcr.data.vcr import _fast_read_table, _slow_read_vcr_table, read_vcr_table

    item = json.loads((real_vcr_dir / "val.jsonl").read_text())
    item["question_orig"] = "Does [0] live in [1, 2] house ?"  # brackets inside a string
    item["answer_choices"][0][1] = [0, 1]  # a multi-object reference, as "[0,1]" without the space
    path = tmp_path / "val.jsonl"
    path.write_text(json.dumps(item) + "\n" + json.dumps(dict(item, annot_id="val-2"), separators=(",", ":")) + "\n\n")
    assert _fast_read_table(str(path), None, True) is None
    table = read_vcr_table(str(path))
    assert table.equals(_slow_read_vcr_table(str(path), None, True, 1))
    assert table.column("answer_choices_refs").to_pylist()[1][0][1] == [0, 1]


@pytest.mark.parametrize("kind", ["word", "wordpiece"])
def test_fast_tokenization_equals_reference(kind, real_vcr_dir, shared_data, synthetic_vcr, tmp_path):
    from datasets import Dataset

    from hf_vcr.data.vcr import VIEWS, _encode_reference, _FastViewEncoder

    tables = _vcr_tables(real_vcr_dir, shared_data, synthetic_vcr)
    words = [w for t in tables.values() for row in t.select(["question", "answer_choices", "rationale_choices", "objects"]).to_pylist()
             for w in row["question"] + [x for c in row["answer_choices"] + row["rationale_choices"] for x in c] + row["objects"]]
    words = [p for w in words + ["and", ","] + GENDER_NEUTRAL_NAMES for p in w.split()]
    if kind == "word":
        tok = build_word_tokenizer([" ".join(words[: len(words) * 2 // 3])])  # some words unknown
    else:
        tok = _wordpiece_tokenizer(tmp_path, words)
    n_checked = n_overflow = 0
    for name, table in tables.items():
        for view in VIEWS:
            for style in ("r2c", "index"):
                for max_length, max_objects in ((64, None), (24, 2)):
                    result = _FastViewEncoder(tok, view, style, max_length, max_objects)(table)
                    ref = _encode_reference(table, tok, view, style, max_length, max_objects)
                    overflow = set(result["overflow"].tolist())
                    keep = pa.array([i for i in range(table.num_rows) if i not in overflow], pa.int64())
                    got = pa.table({k: v.take(keep) for k, v in result["out"].items()}).to_pylist()
                    assert got == pa.table({k: v.take(keep) for k, v in ref.items()}).to_pylist(), (name, view, style)
                    n_checked += len(keep)
                    n_overflow += len(overflow)
                    if view == "qa2r" and style == "r2c":  # end to end, truncated items included
                        ds = Dataset(table)
                        out = tokenize_view(ds, tok, view, max_length=max_length, max_objects=max_objects, load_from_cache_file=False)
                        expected = pa.table(ref).to_pylist()
                        rows = out.remove_columns([c for c in out.column_names if c not in ref]).to_list()
                        assert rows == expected
    assert n_checked > 500 and n_overflow > 0


def test_fast_tokenization_switches_off_for_context_dependent_tokenizers(val):
    from hf_vcr.data.vcr import _encode_reference

    tok = build_word_tokenizer(["does casey live in this house ? no , is a visitor wearing"])

    class Shifted:  # a tokenizer whose words are NOT tokenized independently (ids shift with position)
        is_fast = True

        def __init__(self, inner):
            self.inner, self._tokenizer = inner, inner._tokenizer

        def __call__(self, *a, **k):
            enc = self.inner(*a, **k)
            enc["input_ids"] = [[i + (j % 2) for j, i in enumerate(ids)] for ids in enc["input_ids"]]
            return enc

    shifted = Shifted(tok)
    out = tokenize_view(val, shifted, "q2a", load_from_cache_file=False)
    ref = _encode_reference(val.with_format("arrow")[:], shifted, "q2a", "r2c", 64, None)
    assert out[0]["input_ids"] == ref["input_ids"].to_pylist()[0]
