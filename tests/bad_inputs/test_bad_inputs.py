"""Every bad input of issue 14 (and the older bad-input tests) in one table per file kind, run through every
loader and every ``hf-vcr evaluate`` command that reads that kind of file.

Each case is ``(id, files, error, match)``: ``files`` writes the input, ``error``/``match`` the exception type and a
regex that names the file and the record (line, annot_id, question id) and says what is wrong; ``error=None`` means
the input is valid and must give the right result. Through the command line the same message must come out as
one stderr line ``hf-vcr evaluate KIND: ...`` with exit status 2. VCR files go through both the vectorised (fast)
and the line-by-line (Python) reader, which must accept and reject exactly the same files.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
import math
import re
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest

from tests.conftest import SHARED_DATA

from hf_vcr.cli import main as cli_main
from hf_vcr.data import vcr as vcr_module
from hf_vcr.data.vcr import VcrFormatError, load_vcr, read_vcr_jsonl, read_vcr_table
from hf_vcr.metrics.vcr import write_leaderboard_csv

# the real VCR val-1 item, shipped beside this test (data/README.md), so the table exists without the samples
GOOD = json.loads((Path(__file__).parent / "data" / "val_sample_from_VLE_README.jsonl").read_text().splitlines()[0])
NEXTQA_HEADER = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4"


@dataclass
class Case:
    id: str
    files: dict[str, Any]  # file name -> bytes / str / JSON-able (json.dumps'ed) / callable(tmp_path) -> bytes
    error: type | None = None
    match: str = ""
    args: dict = field(default_factory=dict)


def params(cases):
    return [pytest.param(c, id=c.id) for c in cases]


def write_files(tmp_path, files: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content = content(tmp_path)
        if isinstance(content, str):
            content = content.encode("utf-8")
        elif not isinstance(content, bytes):
            content = json.dumps(content).encode("utf-8")
        path.write_bytes(content)
        out[name] = str(path)
    return out


def run_cli(capsys, argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli_main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_cli_error(capsys, argv, match: str, command: str) -> None:
    rc, _, err = run_cli(capsys, argv)
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith(f"hf-vcr evaluate {command}: "), lines[0]
    assert re.search(match, lines[0]), (match, lines[0])


def strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


# ================================================================================ VCR annotations (jsonl)
def item(**changes) -> dict:
    out = copy.deepcopy(GOOD)
    out.update(changes)
    return out


def edited(edit: Callable[[dict], None], **changes) -> dict:
    out = item(**changes)
    edit(out)
    return out


def jsonl(*items, raw: bytes = b"") -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items) + raw


VCR_CASES = [
    Case("malformed-json", {"val.jsonl": jsonl(GOOD, raw=b'{"annot_id": "val-2", "question": [}\n')}, VcrFormatError,
         r"val\.jsonl, line 2: malformed JSON"),
    Case("wrong-number-of-choices", {"val.jsonl": jsonl(edited(lambda d: d["rationale_choices"].pop()))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): wrong number of choices: rationale_choices has 3, expected 4"),
    Case("reference-out-of-range", {"val.jsonl": jsonl(edited(lambda d: d["answer_choices"][1].__setitem__(2, [7])))},
         VcrFormatError, r"val\.jsonl, line 1 \(val-1\): answer_choices\[1\] references object 7, out of range for the item's 6"),
    Case("reference-out-of-range-line-3", {"val.jsonl": jsonl(GOOD, item(annot_id="val-2"),
                                                              edited(lambda d: d["rationale_choices"][2].__setitem__(0, [1, 6]), annot_id="val-3"))},
         VcrFormatError, r"val\.jsonl, line 3 \(val-3\): rationale_choices\[2\] references object 6"),
    Case("negative-reference", {"val.jsonl": jsonl(edited(lambda d: d["question"].__setitem__(1, [-1])))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): question references object -1"),
    Case("empty-reference-list", {"val.jsonl": jsonl(edited(lambda d: d["question"].__setitem__(1, [])))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): question has a token that is neither a word nor a non-empty list"),
    Case("nested-empty-reference", {"val.jsonl": jsonl(edited(lambda d: d["question"].__setitem__(1, [[]])))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): question has a token that is neither"),
    Case("number-token", {"val.jsonl": jsonl(edited(lambda d: d["question"].__setitem__(0, 5)))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): question has a token that is neither"),
    Case("objects-as-string", {"val.jsonl": jsonl(item(objects="person"))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): objects must be a list of object names"),
    Case("objects-not-strings", {"val.jsonl": jsonl(item(objects=[1, 2, 3, 4, 5, 6]))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): objects must be a list of object names"),
    Case("leading-zero-reference", {"val.jsonl": jsonl(GOOD, raw=json.dumps(item(annot_id="val-2")).replace('"Does", [0]', '"Does", [00]').encode() + b"\n")},
         VcrFormatError, r"val\.jsonl, line 2: malformed JSON"),
    Case("not-utf8", {"val.jsonl": json.dumps(GOOD).replace("Does", "D\udcffoes").encode("utf-8", "surrogateescape") + b"\n"},
         VcrFormatError, r"val\.jsonl, line 1: not valid UTF-8"),
    Case("empty-file", {"val.jsonl": b""}, VcrFormatError, r"val\.jsonl: no VCR items \(empty file\)"),
    Case("blank-lines-only", {"val.jsonl": b"\n \n"}, VcrFormatError, r"val\.jsonl: no VCR items"),
    Case("duplicate-annot-id", {"val.jsonl": jsonl(GOOD, GOOD)}, VcrFormatError,
         r"val\.jsonl, line 2 \(val-1\): duplicate annot_id \(first on line 1\)"),
    Case("duplicate-key", {"val.jsonl": json.dumps(GOOD)[:-1].encode() + b', "answer_label": 0}\n'}, VcrFormatError,
         r"val\.jsonl, line 1: key 'answer_label' appears twice"),
    Case("annot-id-int", {"val.jsonl": jsonl(item(annot_id=5))}, VcrFormatError, r"val\.jsonl, line 1: annot_id must be a non-empty string"),
    Case("annot-id-empty", {"val.jsonl": jsonl(GOOD, item(annot_id=""))}, VcrFormatError, r"val\.jsonl, line 2: annot_id must be a non-empty string"),
    Case("movie-int", {"val.jsonl": jsonl(item(movie=5))}, VcrFormatError, r"val\.jsonl, line 1 \(val-1\): movie must be a string"),
    Case("img-fn-int", {"val.jsonl": jsonl(item(img_fn=3))}, VcrFormatError, r"val\.jsonl, line 1 \(val-1\): img_fn must be a string"),
    Case("label-bool", {"val.jsonl": jsonl(item(answer_label=True))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): answer_label must be 0\.\.3, got True"),
    Case("label-float", {"val.jsonl": jsonl(item(rationale_label=1.0))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): rationale_label must be 0\.\.3, got 1\.0"),
    Case("label-out-of-range", {"val.jsonl": jsonl(item(answer_label=4))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): answer_label must be 0\.\.3, got 4"),
    Case("label-null", {"val.jsonl": jsonl(item(answer_label=None))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): answer_label must be 0\.\.3, got None"),
    Case("label-nan", {"val.jsonl": json.dumps(GOOD).replace('"answer_label": 2', '"answer_label": NaN').encode() + b"\n"},
         VcrFormatError, r"val\.jsonl, line 1 \(val-1\): answer_label must be 0\.\.3, got nan"),
    Case("duplicate-key-spaced-colon", {"val.jsonl": json.dumps(GOOD)[:-1].encode() + b', "movie" : "x"}\n'}, VcrFormatError,
         r"val\.jsonl, line 1: key 'movie' appears twice"),
    Case("duplicate-key-escaped-quote-in-token", {"val.jsonl": json.dumps(item(question=['say', '":', '?']))[:-1].encode()
                                                 + b', "annot_id": "val-1"}\n'}, VcrFormatError, r"val\.jsonl, line 1: key 'annot_id' appears twice"),
    Case("missing-field", {"val.jsonl": jsonl(edited(lambda d: d.pop("question")))}, VcrFormatError,
         r"val\.jsonl, line 1: missing field 'question'"),
    Case("not-an-object", {"val.jsonl": b"[1, 2]\n"}, VcrFormatError, r"val\.jsonl, line 1: an item must be a JSON object"),
    # valid inputs: both readers agree on them
    Case("utf8-bom", {"val.jsonl": b"\xef\xbb\xbf" + jsonl(GOOD)}),
    Case("blank-lines-between", {"val.jsonl": b"\n" + jsonl(GOOD) + b"\n\n" + jsonl(item(annot_id="val-2"))}),
    Case("compact-separators", {"val.jsonl": json.dumps(GOOD, separators=(",", ":")).encode() + b"\n"}),
    Case("test-split-without-labels", {"val.jsonl": jsonl(edited(lambda d: (d.pop("answer_label"), d.pop("rationale_label"))))}),
    Case("null-optional-fields", {"val.jsonl": jsonl(item(movie=None, metadata_fn=None))}),
    # fields outside the format are not read, by either reader, whatever they hold
    Case("unknown-field-repeated", {"val.jsonl": json.dumps(GOOD)[:-1].encode() + b', "extra": 1, "extra": [2]}\n'}),
    Case("unknown-field-nan-and-nested-repeat", {"val.jsonl": json.dumps(GOOD)[:-1].encode() + b', "extra": {"a": NaN, "a": 2}}\n'}),
    Case("token-holding-key-pattern", {"val.jsonl": jsonl(item(question=['say', '":', '?']))}),
]


def _python_path(monkeypatch):
    monkeypatch.setattr(vcr_module, "_fast_read_table", lambda *a, **k: None)


@pytest.mark.parametrize("case", params(VCR_CASES))
def test_vcr_annotations_fast_and_python_paths(case, tmp_path, monkeypatch, capsys):
    path = write_files(tmp_path, case.files)["val.jsonl"]
    fast = vcr_module._fast_read_table(path, None, True)
    cache = tmp_path / "cache"
    if case.error is None:
        with monkeypatch.context() as m:
            _python_path(m)
            slow = read_vcr_table(path)
        assert fast is None or fast.equals(slow)
        assert read_vcr_table(path).equals(slow)
        assert len(load_vcr(path, "", cache_dir=str(cache))) == slow.num_rows
        assert [i["annot_id"] for i in read_vcr_jsonl(path)] == slow.column("annot_id").to_pylist()
        return
    assert fast is None  # the fast reader accepts nothing the Python reader rejects
    with monkeypatch.context() as m:
        _python_path(m)
        with pytest.raises(case.error, match=case.match):
            read_vcr_table(path)
    with pytest.raises(case.error, match=case.match):
        read_vcr_table(path)
    with pytest.raises(case.error, match=case.match):
        load_vcr(path, "", cache_dir=str(cache))
    assert not cache.exists() or not any(cache.iterdir())  # nothing bad reaches the Arrow cache
    with pytest.raises(case.error, match=case.match):
        list(read_vcr_jsonl(path))
    predictions = tmp_path / "pred.csv"
    write_leaderboard_csv(str(predictions), ["val-1", "val-2", "val-3"], np.full((3, 4), 0.25), np.full((3, 4, 4), 0.25))
    assert_cli_error(capsys, ["evaluate", "vcr", "--predictions", str(predictions), "--annotations", path], case.match, "vcr")


def test_vcr_duplicate_across_worker_chunks_is_found(tmp_path, monkeypatch):
    # the Python reader splits a large file between processes: a repeated annot_id in two chunks is still refused
    path = write_files(tmp_path, {"val.jsonl": jsonl(GOOD, item(annot_id="val-2"), item(annot_id="val-3"), GOOD)})["val.jsonl"]
    _python_path(monkeypatch)
    monkeypatch.setattr(vcr_module, "_slow_read_vcr_table", lambda p, i, c, n: vcr_module.pa.concat_tables(
        [vcr_module._read_table(p, i, c, a, b, line) for a, b, line in vcr_module._line_chunks(p, 2)]))
    with pytest.raises(VcrFormatError, match=r"val\.jsonl, line 4 \(val-1\): duplicate annot_id \(first on line 1\)"):
        read_vcr_table(path, num_proc=2)


# ------------------------------------------------------------------------------ VCR images and metadata
def _meta_edit(edit):
    def build(tmp_path):
        meta = next((tmp_path / "vcr1images").rglob("*.json"))
        data = json.loads(meta.read_text())
        text = edit(data)
        meta.write_text(text if isinstance(text, str) else json.dumps(data))
        return jsonl(GOOD)

    return build


VCR_IMAGE_CASES = [
    Case("missing-metadata", {"val.jsonl": jsonl(item(metadata_fn=GOOD["metadata_fn"].replace("@0.json", "@9.json")))},
         FileNotFoundError, r"val\.jsonl, line 1 \(val-1\): metadata file not found: .*@9\.json"),
    Case("missing-image", {"val.jsonl": jsonl(item(img_fn=GOOD["img_fn"].replace("@0.jpg", "@9.jpg")))}, FileNotFoundError,
         r"val\.jsonl, line 1 \(val-1\): image file not found: .*@9\.jpg"),
    Case("img-fn-parent", {"val.jsonl": jsonl(item(img_fn="../../etc/passwd"))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): img_fn '\.\./\.\./etc/passwd' escapes the image root"),
    Case("img-fn-absolute", {"val.jsonl": jsonl(item(img_fn="/etc/passwd"))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): img_fn '/etc/passwd' escapes the image root"),
    Case("img-fn-inner-parent", {"val.jsonl": jsonl(item(img_fn="lsmdc_x/../../outside.jpg"))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): img_fn .* escapes the image root"),
    Case("metadata-fn-escape", {"val.jsonl": jsonl(item(metadata_fn="../val.jsonl"))}, VcrFormatError,
         r"val\.jsonl, line 1 \(val-1\): metadata_fn '\.\./val\.jsonl' escapes the image root"),
    Case("box-count", {"val.jsonl": _meta_edit(lambda d: d.__setitem__("boxes", d["boxes"][:4]))}, VcrFormatError,
         r"@0\.json: 4 boxes for an item with 6 objects \(.*val\.jsonl, line 1 \(val-1\)\)"),
    Case("box-nan", {"val.jsonl": _meta_edit(lambda d: json.dumps(d).replace(str(d["boxes"][1][0]), "NaN", 1))}, VcrFormatError,
         r"@0\.json, line 1: NaN is not a JSON value .*\(metadata of .*val\.jsonl, line 1 \(val-1\)\)"),
    Case("box-infinity", {"val.jsonl": _meta_edit(lambda d: json.dumps(d).replace(str(d["boxes"][2][3]), "-Infinity", 1))},
         VcrFormatError, r"@0\.json, line 1: -Infinity is not a JSON value"),
    Case("box-string", {"val.jsonl": _meta_edit(lambda d: d["boxes"][0].__setitem__(0, "12"))}, VcrFormatError,
         r"@0\.json: metadata \(.*val\.jsonl, line 1 \(val-1\)\): box 0 must be at least 4 finite numbers"),
    Case("width-string", {"val.jsonl": _meta_edit(lambda d: d.__setitem__("width", "1920"))}, VcrFormatError,
         r"@0\.json: metadata \(.*val\.jsonl, line 1 \(val-1\)\): width must be a positive integer"),
    Case("metadata-malformed", {"val.jsonl": _meta_edit(lambda d: json.dumps(d)[:-2])}, VcrFormatError,
         r"@0\.json, line 1: malformed JSON .*\(metadata of .*val\.jsonl, line 1 \(val-1\)\)"),
    Case("metadata-ok", {"val.jsonl": jsonl(GOOD)}),
]


@pytest.fixture
def images(tmp_path, shared_data):
    shutil.copytree(shared_data / "vcr" / "vcr1images", tmp_path / "vcr1images")
    return str(tmp_path / "vcr1images")


@pytest.mark.parametrize("case", params(VCR_IMAGE_CASES))
def test_vcr_images_and_metadata(case, tmp_path, images, monkeypatch):
    path = write_files(tmp_path, case.files)["val.jsonl"]
    fast = vcr_module._fast_read_table(path, images, True)
    if case.error is None:
        with monkeypatch.context() as m:
            _python_path(m)
            slow = read_vcr_table(path, images)
        assert fast is not None and fast.equals(slow)
        assert slow.column("width").to_pylist() == [1920]
        return
    assert fast is None
    with monkeypatch.context() as m:
        _python_path(m)
        with pytest.raises(case.error, match=case.match):
            read_vcr_table(path, images)
    with pytest.raises(case.error, match=case.match):
        load_vcr(path, "", images, cache_dir=str(tmp_path / "cache"))


def test_region_feature_paths_cannot_escape_their_folder(tmp_path):
    from hf_vcr.data.collator import VcrCollator

    (tmp_path / "feats").mkdir()
    collator = VcrCollator(visual_source="features", region_features_dir=str(tmp_path / "feats"))
    for img_fn in ("../secret.jpg", "/etc/passwd.jpg"):
        with pytest.raises(VcrFormatError, match=r"region features of val-1: img_fn .* escapes"):
            collator._region_features({"annot_id": "val-1", "img_fn": img_fn, "boxes": [[0, 0, 1, 1]]}, 4)


def test_zero_shot_mc_images_cannot_escape_images_dir(tmp_path):
    from hf_vcr.metrics.zero_shot import localized_mc_items

    (tmp_path / "images").mkdir()
    (tmp_path / "outside.jpg").write_bytes(b"")
    for image in ("../outside.jpg", str(tmp_path / "outside.jpg")):
        row = {"image": image, "references": [{"name": 0, "boxes": [[0, 0, 4, 4]]}], "question": "q", "choices": ["a", "b"], "label": 0}
        mc = tmp_path / "mc.jsonl"
        mc.write_text(json.dumps(row) + "\n")
        with pytest.raises(ValueError, match=r"mc\.jsonl, line 1: .*escapes the image root"):
            localized_mc_items(str(mc), str(tmp_path / "images"))


# =================================================================================== VCR leaderboard csv
def leaderboard(rows: list[tuple[str, list]], header=None) -> str:
    from hf_vcr.metrics.vcr import LEADERBOARD_COLUMNS

    lines = [",".join(header or LEADERBOARD_COLUMNS)]
    lines += [",".join([aid] + [str(v) for v in values]) for aid, values in rows]
    return "\n".join(lines) + "\n"


def right(label_a=GOOD["answer_label"], label_r=GOOD["rationale_label"]) -> list:
    answers = [1.0 if k == label_a else 0.0 for k in range(4)]
    return answers + [1.0 if r == label_r else 0.0 for _ in range(4) for r in range(4)]


def with_value(column: int, value) -> list:
    values = right()
    values[column] = value
    return values


PERFECT = {"q2a": 100.0, "qa2r": 100.0, "q2ar": 100.0, "qa2r_when_q2a_right": 100.0, "qa2r_when_q2a_wrong": None}
LEADERBOARD_CASES = [
    Case("nan-score", {"pred.csv": leaderboard([("val-1", with_value(1, "nan"))])}, ValueError,
         r"pred\.csv, line 2 \(val-1\): answer_1 is nan; scores must be finite"),
    Case("inf-score", {"pred.csv": leaderboard([("val-1", with_value(9, "inf"))])}, ValueError,
         r"pred\.csv, line 2 \(val-1\): rationale_conditioned_on_a1_1 is inf"),
    Case("not-a-number", {"pred.csv": leaderboard([("val-1", with_value(0, "high"))])}, ValueError,
         r"pred\.csv, line 2 \(val-1\): answer_0 is not a number: 'high'"),
    Case("duplicate-annot-id", {"pred.csv": leaderboard([("val-1", right()), ("val-1", right())])}, ValueError,
         r"pred\.csv, line 3 \(val-1\): duplicate annot_id \(first on line 2\)"),
    Case("unknown-annot-id", {"pred.csv": leaderboard([("val-1", right()), ("val-9", right())])}, ValueError,
         r"pred\.csv, line 3 \(val-9\): not an annot_id of .*val\.jsonl"),
    Case("missing-prediction", {"pred.csv": leaderboard([("val-9", right())])}, ValueError,
         r"pred\.csv: no prediction for 1 of 1 annot_ids of .*val\.jsonl, e\.g\. \['val-1'\]"),
    Case("missing-columns", {"pred.csv": "annot_id,answer_0\nval-1,0.3\n"}, ValueError, r"pred\.csv, line 1: missing columns"),
    Case("short-row", {"pred.csv": leaderboard([("val-1", right()[:10])])}, ValueError, r"pred\.csv, line 2: 11 fields, expected 21"),
    Case("empty-file", {"pred.csv": ""}, ValueError, r"pred\.csv: empty file"),
    Case("header-only", {"pred.csv": leaderboard([])}, ValueError, r"pred\.csv: no predictions"),
    Case("not-utf8", {"pred.csv": leaderboard([("val-1", right())]).encode().replace(b"val-1", b"val-\xff")}, ValueError,
         r"pred\.csv, line 2: not valid UTF-8"),
    Case("missing-file", {}, FileNotFoundError, r"VCR leaderboard csv not found: .*pred\.csv"),
    Case("unlabelled-annotations", {"pred.csv": leaderboard([("val-1", right())]),
                                    "val.jsonl": jsonl(edited(lambda d: d.pop("answer_label")))}, ValueError,
         r"val\.jsonl, line 1 \(val-1\): no answer_label / rationale_label"),
    Case("utf8-bom", {"pred.csv": b"\xef\xbb\xbf" + leaderboard([("val-1", right())]).encode()}, args={"result": PERFECT}),
    Case("crlf-line-ends", {"pred.csv": leaderboard([("val-1", right())]).replace("\n", "\r\n")}, args={"result": PERFECT}),
    Case("wrong-answer", {"pred.csv": leaderboard([("val-1", right(label_a=(GOOD["answer_label"] + 1) % 4))])},
         args={"result": {"q2a": 0.0, "qa2r": 100.0, "q2ar": 0.0, "qa2r_when_q2a_right": None, "qa2r_when_q2a_wrong": 100.0}}),
]


@pytest.mark.parametrize("case", params(LEADERBOARD_CASES))
def test_vcr_leaderboard(case, tmp_path, capsys):
    from hf_vcr.metrics.vcr import evaluate_leaderboard

    files = {"val.jsonl": jsonl(GOOD), **case.files}
    paths = write_files(tmp_path, files)
    pred, ann = str(tmp_path / "pred.csv"), paths["val.jsonl"]
    argv = ["evaluate", "vcr", "--predictions", pred, "--annotations", ann]
    if case.error is None:
        assert evaluate_leaderboard(pred, ann) == case.args["result"]
        rc, out, _ = run_cli(capsys, argv)
        assert rc == 0 and strict_loads(out.strip().splitlines()[-1]) == case.args["result"]  # null, never NaN
        return
    with pytest.raises(case.error, match=case.match):
        evaluate_leaderboard(pred, ann)
    assert_cli_error(capsys, argv, case.match, "vcr")


# ==================================================================================== NExT-QA (csv + json)
NEXTQA_ROWS = ["100,30,640,480,why did the boy run,2,1,CW,a,b,c,d,e", "100,30,640,480,what is on the table,0,2,DO,f,g,h,i,j",
               "200,30,640,480,how many dogs,4,1,DC,1,2,3,4,5"]


def nextqa_csv(rows=NEXTQA_ROWS, header=NEXTQA_HEADER) -> str:
    return "\n".join([header] + rows) + "\n"


GOOD_NEXTQA_PRED = {"100_1": {"prediction": 2, "answer": 2}, "100_2": {"prediction": 1, "answer": 0}, "200_1": {"prediction": 4, "answer": 4}}


def pred_with(key, value) -> dict:
    out = copy.deepcopy(GOOD_NEXTQA_PRED)
    out[key] = value
    return out


NEXTQA_CASES = [
    # the annotation csv: checked by read_nextqa_csv, load_nextqa and the command
    Case("csv-without-type", {"val.csv": nextqa_csv([",".join(r.split(",")[:7] + r.split(",")[8:]) for r in NEXTQA_ROWS],
                                                    NEXTQA_HEADER.replace("type,", ""))},
         Exception, r"val\.csv, line 1: missing columns \['type'\]", {"csv": True}),
    Case("csv-answer-out-of-range", {"val.csv": nextqa_csv(NEXTQA_ROWS[:1] + [NEXTQA_ROWS[1].replace(",0,2,DO", ",7,2,DO")])},
         Exception, r"val\.csv, line 3: answer 7 is not an option index in \[0, 5\)", {"csv": True}),
    Case("csv-duplicate-question", {"val.csv": nextqa_csv(NEXTQA_ROWS + NEXTQA_ROWS[:1])}, Exception,
         r"val\.csv, line 5 \(100_1\): duplicate question \(first on line 2\)", {"csv": True}),
    Case("csv-unknown-type", {"val.csv": nextqa_csv([NEXTQA_ROWS[0].replace(",CW,", ",XX,")] + NEXTQA_ROWS[1:])}, Exception,
         r"val\.csv, line 2: unknown question type 'XX'", {"csv": True}),
    Case("csv-short-row", {"val.csv": nextqa_csv(NEXTQA_ROWS[:2] + ["200,30,640,480,how many dogs,4,1,DC,1,2"])}, Exception,
         r"val\.csv, line 4: 10 fields, expected 13", {"csv": True}),
    Case("csv-empty-file", {"val.csv": ""}, Exception, r"val\.csv: empty file", {"csv": True}),
    Case("csv-header-only", {"val.csv": NEXTQA_HEADER + "\n"}, Exception, r"val\.csv: no questions", {"csv": True}),
    Case("csv-not-utf8", {"val.csv": nextqa_csv().encode().replace(b"dogs", b"dog\xe9")}, Exception,
         r"val\.csv, line 4: not valid UTF-8", {"csv": True}),
    Case("csv-qid-not-int", {"val.csv": nextqa_csv([NEXTQA_ROWS[0].replace(",2,1,CW", ",2,x,CW")] + NEXTQA_ROWS[1:])}, Exception,
         r"val\.csv, line 2: field 'qid' must be an integer", {"csv": True}),
    Case("csv-utf8-bom", {"val.csv": b"\xef\xbb\xbf" + nextqa_csv().encode()}, None, "", {"csv": True}),
    Case("csv-huge-field", {"val.csv": nextqa_csv([NEXTQA_ROWS[0].replace("why did the boy run", "why " + "very " * 40000 + "long")]
                                                  + NEXTQA_ROWS[1:])}, None, "", {"csv": True}),
    # the prediction json
    Case("prediction-out-of-range", {"pred.json": pred_with("100_2", {"prediction": 5, "answer": 0})}, ValueError,
         r"pred\.json, record '100_2': prediction must be an option index in \[0, 5\), got 5"),
    Case("prediction-negative", {"pred.json": pred_with("100_2", {"prediction": -1})}, ValueError,
         r"pred\.json, record '100_2': prediction must be an option index in \[0, 5\), got -1"),
    Case("prediction-string", {"pred.json": pred_with("100_2", {"prediction": "b"})}, ValueError,
         r"pred\.json, record '100_2': prediction must be an option index"),
    Case("prediction-bool", {"pred.json": pred_with("100_2", True)}, ValueError, r"pred\.json, record '100_2': prediction must be an option index"),
    Case("no-prediction-field", {"pred.json": pred_with("100_2", {"answer": 0})}, ValueError,
         r"pred\.json, record '100_2': no 'prediction' field"),
    Case("prediction-unknown-id", {"pred.json": pred_with("300_1", {"prediction": 0})}, ValueError,
         r"pred\.json, record '300_1': not a question of .*val\.csv"),
    Case("prediction-missing", {"pred.json": {k: v for k, v in GOOD_NEXTQA_PRED.items() if k != "200_1"}}, ValueError,
         r"pred\.json: no prediction for 1 of 3 questions of .*val\.csv, e\.g\. \['200_1'\]"),
    Case("answer-disagrees", {"pred.json": pred_with("100_2", {"prediction": 0, "answer": 3})}, ValueError,
         r"pred\.json, record '100_2': 'answer' 3 disagrees"),
    Case("prediction-nan", {"pred.json": json.dumps(GOOD_NEXTQA_PRED).replace('"prediction": 1', '"prediction": NaN')}, ValueError,
         r"pred\.json, line 1: NaN is not a JSON value"),
    Case("duplicate-key", {"pred.json": json.dumps(GOOD_NEXTQA_PRED, indent=1)[:-2] + ',\n "100_1": {"prediction": 0}\n}'}, ValueError,
         r"pred\.json, line \d+: key '100_1' appears twice"),
    Case("prediction-empty-file", {"pred.json": ""}, ValueError, r"pred\.json: empty file"),
    Case("prediction-not-object", {"pred.json": [1, 2]}, ValueError, r"pred\.json: expected an object mapping"),
    Case("prediction-not-utf8", {"pred.json": json.dumps(GOOD_NEXTQA_PRED).encode().replace(b"100_1", b"100_\xff")}, ValueError,
         r"pred\.json, line 1: not valid UTF-8"),
    Case("prediction-bom", {"pred.json": b"\xef\xbb\xbf" + json.dumps(GOOD_NEXTQA_PRED).encode()}),
]


@pytest.mark.parametrize("case", params(NEXTQA_CASES))
def test_nextqa(case, tmp_path, capsys):
    from hf_vcr.data.videoqa import VideoQaFormatError, load_nextqa, read_nextqa_csv
    from hf_vcr.metrics.videoqa import evaluate_nextqa_files

    files = {"val.csv": nextqa_csv(), "pred.json": GOOD_NEXTQA_PRED, **case.files}
    paths = write_files(tmp_path, files)
    argv = ["evaluate", "videoqa", "--predictions", paths["pred.json"], "--annotations", paths["val.csv"]]
    if case.args.get("csv"):
        error = VideoQaFormatError if case.error is Exception else case.error
        if error is None:
            assert len(read_nextqa_csv(paths["val.csv"])) == 3
            assert len(load_nextqa(paths["val.csv"], cache_dir=str(tmp_path / "cache"))) == 3
        else:
            with pytest.raises(error, match=case.match):
                read_nextqa_csv(paths["val.csv"])
            with pytest.raises(error, match=case.match):
                load_nextqa(paths["val.csv"], cache_dir=str(tmp_path / "cache"))
    if case.error is None:
        expected = {"accuracy": 200 / 3, "CW": 100.0, "DO": 0.0, "DC": 100.0, "acc_c": 100.0, "acc_d": 50.0}
        result = evaluate_nextqa_files(paths["pred.json"], paths["val.csv"])
        assert {k: result[k] for k in expected} == pytest.approx(expected)
        rc, out, _ = run_cli(capsys, argv)
        last = strict_loads(out.strip().splitlines()[-1])
        assert rc == 0 and last["accuracy"] == 66.67 and last["TN"] is None  # a type without questions: null
        return
    if not case.args.get("csv"):
        with pytest.raises(case.error, match=case.match):
            evaluate_nextqa_files(paths["pred.json"], paths["val.csv"])
    assert_cli_error(capsys, argv, case.match, "videoqa")


# ============================================================================ MSVD-QA / MSRVTT-QA (open-ended)
QA = [{"answer": "man", "id": 11, "question": "who is running?", "video_id": 1},
      {"answer": "dog", "id": 12, "question": "what is barking?", "video_id": 1},
      {"answer": "cat", "id": 13, "question": "what sleeps?", "video_id": 2}]
VOCAB = "man\ndog\nbird\n"
OPEN_CASES = [
    Case("ids-without-vocab", {"pred.json": {"11": {"prediction": 0, "answer": 0}, "12": 1, "13": 2}}, ValueError,
         r"pred\.json, record '11': prediction must be an answer string, got 0; for answer ids pass --answer-vocab"),
    Case("id-outside-vocab", {"pred.json": {"11": 0, "12": 9, "13": 2}, "vocab.txt": VOCAB}, ValueError,
         r"pred\.json, record '12': answer id 9 is outside the vocabulary's ids \[0, 3\)", {"vocab": True}),
    Case("id-outside-base-and-unknown", {"pred.json": {"11": 1, "12": 4, "13": 0}, "vocab.txt": VOCAB}, ValueError,
         r"pred\.json, record '12': answer id 4 is outside the vocabulary's ids \[1, 4\) or the unknown id 0",
         {"vocab": True, "base": 1, "unknown": 0}),
    Case("string-with-vocab", {"pred.json": {"11": "man", "12": 1, "13": 2}, "vocab.txt": VOCAB}, ValueError,
         r"pred\.json, record '11': with --answer-vocab a prediction must be an answer id \(int\), got 'man'", {"vocab": True}),
    Case("unknown-question-id", {"pred.json": {"11": "man", "12": "dog", "13": "cat", "99": "cat"}}, ValueError,
         r"pred\.json, record '99': not a question id of .*val_qa\.json"),
    Case("missing-question", {"pred.json": {"11": "man", "12": "dog"}}, ValueError,
         r"pred\.json: no prediction for 1 of 3 questions of .*val_qa\.json, e\.g\. \['13'\]"),
    Case("no-prediction-field", {"pred.json": {"11": {"answer": "man"}, "12": "dog", "13": "cat"}}, ValueError,
         r"pred\.json, record '11': no 'prediction' field"),
    Case("duplicate-key", {"pred.json": '{"11": "man",\n"12": "dog",\n"13": "cat",\n"12": "cat"}'}, ValueError,
         r"pred\.json, line 4: key '12' appears twice"),
    Case("annotations-duplicate-id", {"val_qa.json": QA + [dict(QA[0], video_id=5)]}, Exception,
         r"val_qa\.json, record 3 \(11\): duplicate question id \(first at record 0\)", {"qa": True}),
    Case("annotations-null-answer", {"val_qa.json": [QA[0], dict(QA[1], answer=None), QA[2]]}, Exception,
         r"val_qa\.json, record 1 \(12\): empty or non-string answer: None", {"qa": True}),
    Case("annotations-empty-array", {"val_qa.json": []}, Exception, r"val_qa\.json: no questions", {"qa": True}),
    Case("annotations-empty-file", {"val_qa.json": ""}, Exception, r"val_qa\.json: empty file", {"qa": True}),
    Case("annotations-not-utf8", {"val_qa.json": json.dumps(QA, indent=1).encode().replace(b"barking", b"bark\xe9")}, Exception,
         r"val_qa\.json, line \d+: not valid UTF-8", {"qa": True}),
    Case("annotations-bom", {"val_qa.json": b"\xef\xbb\xbf" + json.dumps(QA).encode()}, None, "", {"qa": True}),
    Case("annotations-upper-case-suffix", {"val_qa.JSON": QA}, None, "", {"qa": True, "name": "val_qa.JSON"}),
    Case("csv-re-export", {"val.csv": "video,question,answer,qid,type\n1,who is running?,man,11,0\n1,what is barking?,dog,12,0\n"
                                      "2,what sleeps?,cat,13,0\n"}, None, "", {"qa": True, "name": "val.csv"}),
    Case("csv-without-qid", {"val.csv": "video,question,answer\n1,who is running?,man\n"}, Exception,
         r"val\.csv, line 1: missing columns \['qid'\]", {"qa": True, "name": "val.csv"}),
    Case("vocab-duplicate", {"pred.json": {"11": 0, "12": 1, "13": 2}, "vocab.txt": "man\ndog\nman\n"}, Exception,
         r"vocab\.txt, line 3: duplicate answer 'man' \(first on line 1\)", {"vocab": True}),
    Case("vocab-empty", {"pred.json": {"11": 0, "12": 1, "13": 2}, "vocab.txt": "\n"}, Exception, r"vocab\.txt: no answers", {"vocab": True}),
    # valid: ids through a vocabulary (with an id base and an unknown id) score like the same answers as strings
    Case("ids-with-vocab", {"pred.json": {"11": {"prediction": 0, "answer": 0}, "12": 2, "13": 1}, "vocab.txt": VOCAB},
         args={"vocab": True, "accuracy": 100 / 3}),
    Case("ids-with-base-and-unknown", {"pred.json": {"11": 1, "12": 2, "13": 0}, "vocab.txt": VOCAB},
         args={"vocab": True, "base": 1, "unknown": 0, "accuracy": 200 / 3}),
]


@pytest.mark.parametrize("case", params(OPEN_CASES))
def test_open_ended(case, tmp_path, capsys):
    from hf_vcr.data.videoqa import VideoQaFormatError, load_open_ended_qa, read_open_ended_qa
    from hf_vcr.metrics.videoqa import evaluate_open_ended_files, read_answer_vocab

    name = case.args.get("name", "val_qa.json")
    files = {name: QA, "pred.json": {"11": "man", "12": "bird", "13": "cat"}, **case.files}
    paths = write_files(tmp_path, files)
    argv = ["evaluate", "videoqa", "--predictions", paths["pred.json"], "--annotations", paths[name]]
    vocab = None
    if case.args.get("vocab"):
        argv += ["--answer-vocab", paths["vocab.txt"], "--answer-id-base", str(case.args.get("base", 0))]
        if "unknown" in case.args:
            argv += ["--unknown-answer-id", str(case.args["unknown"])]
    error = VideoQaFormatError if case.error is Exception else case.error
    if case.args.get("qa"):
        if error is None:
            assert [r["key"] for r in read_open_ended_qa(paths[name])] == ["11", "12", "13"]
            assert load_open_ended_qa(paths[name], ["man", "dog"], cache_dir=str(tmp_path / "cache"))["labels"] == [0, 1, -100]
        else:
            with pytest.raises(error, match=case.match):
                read_open_ended_qa(paths[name])
            with pytest.raises(error, match=case.match):
                load_open_ended_qa(paths[name], ["man"], cache_dir=str(tmp_path / "cache"))
    if error is None:
        if case.args.get("vocab"):
            vocab = read_answer_vocab(paths["vocab.txt"])
        result = evaluate_open_ended_files(paths["pred.json"], paths[name], vocab, case.args.get("base", 0), case.args.get("unknown"))
        assert result["accuracy"] == pytest.approx(case.args.get("accuracy", 200 / 3))
        rc, out, err = run_cli(capsys, argv)
        assert rc == 0, err
        assert strict_loads(out.strip().splitlines()[-1])["accuracy"] == round(case.args.get("accuracy", 200 / 3), 2)
        return
    if case.id.startswith("vocab-"):
        with pytest.raises(error, match=case.match):
            read_answer_vocab(paths["vocab.txt"])
    elif not case.args.get("qa"):
        with pytest.raises(error, match=case.match):
            evaluate_open_ended_files(paths["pred.json"], paths[name], ["man", "dog", "bird"] if case.args.get("vocab") else None,
                                      case.args.get("base", 0), case.args.get("unknown"))
    assert_cli_error(capsys, argv, case.match, "videoqa")


def test_open_ended_training_split_without_any_known_answer(tmp_path):
    from hf_vcr.data.videoqa import VideoQaFormatError, load_open_ended_qa

    path = write_files(tmp_path, {"train_qa.json": QA})["train_qa.json"]
    with pytest.raises(VideoQaFormatError, match=r"train_qa\.json: no question has an answer in the answer vocabulary"):
        load_open_ended_qa(path, ["zebra", "car"], drop_unknown_answers=True, cache_dir=str(tmp_path / "c"))


@pytest.mark.real_data
def test_answer_ids_with_vocab_score_like_the_same_answers_as_strings(tmp_path, capsys):
    """Real MSVD-QA val questions and answer list: predictions as ids (into answer_set.txt, id base 1, 0 = unknown,
    as several VideoQA repositories write them) give exactly the scores of the same predictions as strings."""
    qa = str(SHARED_DATA / "msvd_qa" / "val_qa.json")
    vocab_path = str(SHARED_DATA / "msvd_qa" / "answer_set.txt")
    from hf_vcr.data.videoqa import read_open_ended_qa
    from hf_vcr.metrics.videoqa import read_answer_vocab

    records = read_open_ended_qa(qa)
    vocab = read_answer_vocab(vocab_path)
    index = {a: i for i, a in enumerate(vocab)}
    rng = np.random.default_rng(0)
    as_ids, as_strings = {}, {}
    for r in records:
        choice = rng.integers(3)  # right, a wrong vocabulary answer, or unknown
        word = r["answer"] if choice == 0 and r["answer"] in index else vocab[int(rng.integers(len(vocab)))] if choice < 2 else None
        as_ids[r["key"]] = {"prediction": 0 if word is None else index[word] + 1, "answer": index.get(r["answer"], -1) + 1}
        as_strings[r["key"]] = "<unknown>" if word is None else word
    (tmp_path / "ids.json").write_text(json.dumps(as_ids))
    (tmp_path / "strings.json").write_text(json.dumps(as_strings))
    outs = []
    for argv in (["--predictions", str(tmp_path / "ids.json"), "--answer-vocab", vocab_path, "--answer-id-base", "1", "--unknown-answer-id", "0"],
                 ["--predictions", str(tmp_path / "strings.json")]):
        rc, out, err = run_cli(capsys, ["evaluate", "videoqa", "--annotations", qa, *argv])
        assert rc == 0, err
        outs.append(strict_loads(out.strip().splitlines()[-1]))
    assert outs[0] == outs[1]
    assert set(outs[0]) == {"accuracy", "acc_what", "acc_who", "acc_how", "acc_when", "acc_where"}
    assert 10 < outs[0]["accuracy"] < 60


# ================================================================================= clip features (h5)
def _h5(path, ids, feat):
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("ids", data=np.asarray(ids))
        f.create_dataset("feat", data=np.asarray(feat, np.float32))


def test_clip_feature_files(tmp_path):
    from hf_vcr.data.videoqa import ClipFeatureStore, VideoQaFormatError, check_clip_features

    (tmp_path / "not_h5.h5").write_text("video,feat\n1,2\n")
    with pytest.raises(VideoQaFormatError, match=r"not_h5\.h5: not a readable HDF5 clip feature file"):
        ClipFeatureStore.nextqa(str(tmp_path / "not_h5.h5"))
    feat = np.zeros((3, 4, 8), np.float32)
    feat[1, 2, 5] = np.nan
    _h5(tmp_path / "nan.h5", [5, 7, 9], feat)
    store = ClipFeatureStore.nextqa(str(tmp_path / "nan.h5"))
    with pytest.raises(VideoQaFormatError, match=r"nan\.h5: 'feat' row 1 \(video '7'\) holds NaN or inf"):
        check_clip_features({"train": store})  # at start, before any training
    with pytest.raises(VideoQaFormatError, match=r"nan\.h5: 'feat' row 1 \(video '7'\) holds NaN or inf"):
        store.get(["9", "7"])  # and whenever a batch is read
    assert store.get(["5", "9"]).shape == (2, 4, 8)
    inf = feat.copy()
    inf[1] = 0
    inf[2, 0, 0] = np.inf
    _h5(tmp_path / "inf.h5", [5, 7, 9], inf)
    with pytest.raises(VideoQaFormatError, match=r"inf\.h5: 'feat' row 2 \(video '9'\) holds NaN or inf"):
        check_clip_features({"train": ClipFeatureStore.nextqa(str(tmp_path / "inf.h5"))})
    # width and clip count agree between splits and with the model, checked at start
    _h5(tmp_path / "a.h5", [1], np.zeros((1, 4, 8)))
    _h5(tmp_path / "wide.h5", [1], np.zeros((1, 4, 16)))
    _h5(tmp_path / "clips.h5", [1], np.zeros((1, 6, 8)))
    a = ClipFeatureStore.nextqa(str(tmp_path / "a.h5"))
    check_clip_features({"train": a, "validation": ClipFeatureStore.nextqa(str(tmp_path / "a.h5"))}, visual_dim=8, num_clips=4)
    with pytest.raises(VideoQaFormatError, match=r"wide\.h5: validation features have 16 feature width, but train features \(.*a\.h5\) have 8"):
        check_clip_features({"train": a, "validation": ClipFeatureStore.nextqa(str(tmp_path / "wide.h5"))})
    with pytest.raises(VideoQaFormatError, match=r"clips\.h5: validation features have 6 clips per video, but train features"):
        check_clip_features({"train": a, "validation": ClipFeatureStore.nextqa(str(tmp_path / "clips.h5"))})
    with pytest.raises(VideoQaFormatError, match=r"a\.h5: train features have 8 feature width, but the model's visual_dim has 32"):
        check_clip_features({"train": a}, visual_dim=32)


def test_region_feature_files(tmp_path):
    from hf_vcr.data.region_features import RegionFeatureReader

    (tmp_path / "feats.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match=r"feats\.h5: not a readable HDF5 region feature file"):
        RegionFeatureReader(str(tmp_path / "feats.h5"))
    (tmp_path / "npy").mkdir()
    feats = np.ones((3, 4), np.float32)
    feats[1, 2] = np.nan
    np.save(tmp_path / "npy" / "7.npy", feats)
    np.savez(tmp_path / "npy" / "8.npz", features=np.ones((2, 4), np.float32), boxes=np.array([[0, 0, 1, 1], [0, 0, np.inf, 1]], np.float32))
    reader = RegionFeatureReader(str(tmp_path / "npy"))
    with pytest.raises(ValueError, match=r"npy: features of image 7 hold NaN or inf"):
        reader[7]
    with pytest.raises(ValueError, match=r"npy: boxes of image 8 hold NaN or inf"):
        reader[8]


# ============================================================================ VQA-Introspect + VQAv2
INTROSPECT = {"520001": {"image_id": 520, "reasoning_question": "is this a high bridge?", "reasoning_answer_most_common": "no",
                         "introspect": [{"sub_qa": [{"sub_question": "is the bridge low?", "sub_answer": "yes"}], "pred_q_type": "reasoning"}]}}
VQA_Q = {"questions": [{"image_id": 520, "question": "is this a high bridge?", "question_id": 520001},
                       {"image_id": 520, "question": "what color is the sky?", "question_id": 520002}]}
VQA_A = {"annotations": [{"question_id": q, "image_id": 520, "answers": [{"answer": a}] * 10, "multiple_choice_answer": a}
                         for q, a in ((520001, "no"), (520002, "blue"))]}


def introspect_with(**changes):
    out = copy.deepcopy(INTROSPECT)
    out["520001"].update(changes)
    return out


INTROSPECT_CASES = [
    Case("null-reasoning-question", {"intro.json": introspect_with(reasoning_question=None)}, ValueError,
         r"intro\.json, question id 520001: reasoning_question must be a non-empty string, got None"),
    Case("sub-answer-number", {"intro.json": introspect_with(introspect=[{"sub_qa": [{"sub_question": "q?", "sub_answer": 3}]}])},
         ValueError, r"intro\.json, question id 520001: introspect\[0\]\.sub_qa\[0\]\.sub_answer must be a string"),
    Case("image-id-float", {"intro.json": introspect_with(image_id=5.5)}, ValueError, r"intro\.json, question id 520001: image_id 5\.5 is not an integer"),
    Case("missing-field", {"intro.json": {"77": {"image_id": 1, "reasoning_question": "q?", "introspect": []}}}, ValueError,
         r"intro\.json, question id 77: missing field 'reasoning_answer_most_common'"),
    Case("duplicate-key", {"intro.json": json.dumps(INTROSPECT)[:-1] + ', "520001": {}}'}, ValueError, r"intro\.json, line 1: key '520001' appears twice"),
    Case("malformed", {"intro.json": '{"1": {"image_id": 1,\n "reasoning_question": }'}, ValueError, r"intro\.json, line 2: malformed JSON"),
    Case("empty-file", {"intro.json": ""}, ValueError, r"intro\.json: empty file"),
    Case("empty-object", {"intro.json": {}}, ValueError, r"intro\.json: no questions"),
    Case("not-utf8", {"intro.json": json.dumps(INTROSPECT).encode().replace(b"bridge?", b"bridg\xe9?", 1)}, ValueError,
         r"intro\.json, line 1: not valid UTF-8"),
    Case("vqa-wrong-split", {"q.json": {"questions": [dict(q, question_id=q["question_id"] + 1000) for q in VQA_Q["questions"]]}},
         ValueError, r"q\.json: shares no question id with .*intro\.json; pass the VQAv2 files of the same split"),
    Case("vqa-annotations-wrong-split", {"a.json": {"annotations": [dict(a, question_id=a["question_id"] + 1000) for a in VQA_A["annotations"]]}},
         ValueError, r"a\.json: shares no question id with .*q\.json"),
    Case("vqa-question-missing-field", {"q.json": {"questions": [{"image_id": 520}]}}, ValueError, r"q\.json: questions\[0\] is missing"),
    Case("bom", {"intro.json": b"\xef\xbb\xbf" + json.dumps(INTROSPECT).encode()}),
]


@pytest.mark.parametrize("case", params(INTROSPECT_CASES))
def test_vqa_introspect(case, tmp_path):
    from hf_vcr.data.vqa_introspect import load_vqa_introspect

    paths = write_files(tmp_path, {"intro.json": INTROSPECT, "q.json": VQA_Q, "a.json": VQA_A, **case.files})
    load = lambda: load_vqa_introspect(paths["intro.json"], paths["q.json"], paths["a.json"], cache_dir=str(tmp_path / "c"))  # noqa: E731
    if case.error is None:
        ds = load()
        assert ds["irrelevant_questions"] == [["what color is the sky?"]] and ds["sub_answers"] == [["yes"]]
        return
    with pytest.raises(case.error, match=case.match):
        load()


# ================================================================================== SOrT ranking / consistency
RANKING_CASES = [
    Case("nan-score", {"s.jsonl": '{"id": "q1", "scores": [1.0, NaN], "relevant": [1, 0]}\n'}, ValueError,
         r"s\.jsonl, line 1: NaN is not a JSON value"),
    Case("unequal-lengths", {"s.jsonl": '{"id": "q1", "scores": [1.0], "relevant": [1]}\n{"id": "q2", "scores": [1.0, 2.0], "relevant": [1]}\n'},
         ValueError, r"s\.jsonl, line 2 \(q2\): 'scores' and 'relevant' must be non-empty and of equal length"),
    Case("score-string", {"s.jsonl": '{"id": "q1", "scores": ["1"], "relevant": [1]}\n'}, ValueError, r"s\.jsonl, line 1 \(q1\): 'scores' must be numbers"),
    Case("malformed", {"s.jsonl": '{"id": "q1", "scores": [1.0], "relevant": [1]}\n{not json\n'}, ValueError, r"s\.jsonl, line 2: malformed JSON"),
    Case("missing-key", {"s.jsonl": '{"id": "q1", "scores": [1.0]}\n'}, ValueError, r"s\.jsonl, line 1 \(q1\): missing key 'relevant'"),
    Case("duplicate-key", {"s.jsonl": '{"id": "q1", "scores": [1.0], "relevant": [1], "scores": [2.0]}\n'}, ValueError,
         r"s\.jsonl, line 1: key 'scores' appears twice"),
    Case("empty-file", {"s.jsonl": ""}, ValueError, r"s\.jsonl: no records"),
    Case("not-utf8", {"s.jsonl": b'{"id": "q\xff", "scores": [1.0], "relevant": [1]}\n'}, ValueError, r"s\.jsonl, line 1: not valid UTF-8"),
    Case("valid", {"s.jsonl": '{"id": "q1", "scores": [3, 2, 1], "relevant": [0, 1, 0]}\n{"id": "q2", "scores": [3, 2, 1], "relevant": [1, 0, 0]}\n'},
         args={"result": {"mp1": 50.0, "mrr": 75.0, "ranking_accuracy": 50.0, "n": 2, "n_skipped": 0}}),
]


@pytest.mark.parametrize("case", params(RANKING_CASES))
def test_ranking(case, tmp_path, capsys):
    path = write_files(tmp_path, case.files)["s.jsonl"]
    argv = ["evaluate", "ranking", "--scores", path]
    if case.error is None:
        rc, out, _ = run_cli(capsys, argv)
        result = strict_loads(out.strip().splitlines()[-1])
        assert rc == 0 and {k: result[k] for k in case.args["result"]} == case.args["result"]
        return
    assert_cli_error(capsys, argv, case.match, "ranking")


CONSISTENCY_CASES = [
    Case("not-bool", {"p.jsonl": '{"id": "r1", "reasoning_correct": "yes", "sub_correct": [true]}\n'}, ValueError,
         r"p\.jsonl, line 1 \(r1\): 'reasoning_correct' must be a bool"),
    Case("sub-not-bool", {"p.jsonl": '{"id": "r1", "reasoning_correct": true, "sub_correct": [1]}\n'}, ValueError,
         r"p\.jsonl, line 1 \(r1\): 'sub_correct' must be a list of booleans"),
    # no reasoning question right: consistency is undefined, printed as null (strict JSON), never NaN
    Case("undefined-consistency", {"p.jsonl": '{"id": "r1", "reasoning_correct": false, "sub_correct": [true, false]}\n'},
         args={"result": {"consistency": None, "reasoning_accuracy": 0.0, "n_pairs": 2}}),
]


@pytest.mark.parametrize("case", params(CONSISTENCY_CASES))
def test_consistency(case, tmp_path, capsys):
    path = write_files(tmp_path, case.files)["p.jsonl"]
    argv = ["evaluate", "consistency", "--predictions", path]
    if case.error is None:
        rc, out, _ = run_cli(capsys, argv)
        result = strict_loads(out.strip().splitlines()[-1])
        assert rc == 0 and {k: result[k] for k in case.args["result"]} == case.args["result"]
        return
    assert_cli_error(capsys, argv, case.match, "consistency")


# ================================================================================= shared readers
def test_json_reader_refuses_repeated_keys_and_constants(tmp_path):
    from hf_vcr.utils.json_files import dumps_strict, load_json_file

    p = tmp_path / "x.json"
    p.write_text('{"a": 1,\n "b": {"c": 1, "c": 2}}')
    with pytest.raises(ValueError, match=r"x\.json, line 2: key 'c' appears twice"):
        load_json_file(str(p), "test file")
    p.write_text('{"a": Infinity}')
    with pytest.raises(ValueError, match=r"x\.json, line 1: Infinity is not a JSON value"):
        load_json_file(str(p), "test file")
    p.write_bytes(b'\xef\xbb\xbf{"a": [1, "b"]}')
    assert load_json_file(str(p), "test file", expect=dict) == {"a": [1, "b"]}
    assert dumps_strict({"x": math.nan, "y": [np.float32(1.23456), math.inf], "z": 3}, 2) == '{"x": null, "y": [1.23, null], "z": 3}'


def test_empty_or_torn_synthetic_stamp_regenerates(tmp_path):
    from hf_vcr.data.synthetic_vcr import write_vcr_corpus

    (tmp_path / "synthetic_vcr.json").write_text("")  # a run killed while writing it
    paths = write_vcr_corpus(str(tmp_path), n_train=2, n_val=1, with_images=False)
    assert len(list(read_vcr_jsonl(paths["annotations_dir"] + "/val.jsonl"))) == 1
    assert json.loads((tmp_path / "synthetic_vcr.json").read_text())["n_train"] == 2
