"""Each bad-input case of DESIGN.md's contracts gets a clear error naming file, line and problem."""

from __future__ import annotations

import json
import shutil

import pytest

from hf_vcr.data.vcr import VcrFormatError, load_vcr


@pytest.fixture
def good_item(real_vcr_dir):
    return json.loads((real_vcr_dir / "val.jsonl").read_text())


@pytest.fixture
def images(shared_data, tmp_path):
    dst = tmp_path / "vcr1images"
    shutil.copytree(shared_data / "vcr" / "vcr1images", dst)
    return dst


def write(tmp_path, lines):
    d = tmp_path / "ann"
    d.mkdir(exist_ok=True)
    (d / "val.jsonl").write_text("\n".join(lines) + "\n")
    return d


def test_malformed_json(tmp_path, good_item):
    d = write(tmp_path, [json.dumps(good_item), '{"annot_id": "val-2", "question": [}'])
    with pytest.raises(VcrFormatError, match=r"val\.jsonl, line 2: malformed JSON"):
        load_vcr("val", str(d), cache_dir=str(tmp_path / "c"))


def test_wrong_number_of_choices(tmp_path, good_item):
    good_item["rationale_choices"] = good_item["rationale_choices"][:3]
    d = write(tmp_path, [json.dumps(good_item)])
    with pytest.raises(VcrFormatError, match=r"line 1 \(val-1\): wrong number of choices: rationale_choices has 3, expected 4"):
        load_vcr("val", str(d), cache_dir=str(tmp_path / "c"))


def test_object_reference_out_of_range(tmp_path, good_item):
    good_item["answer_choices"][1][2] = [7]
    d = write(tmp_path, [json.dumps(good_item)])
    with pytest.raises(VcrFormatError, match=r"line 1 \(val-1\): answer_choices\[1\] references object 7, out of range for the item's 6 objects"):
        load_vcr("val", str(d), cache_dir=str(tmp_path / "c"))


def test_missing_metadata(tmp_path, good_item, images):
    good_item["metadata_fn"] = good_item["metadata_fn"].replace("@0.json", "@9.json")
    d = write(tmp_path, [json.dumps(good_item)])
    with pytest.raises(FileNotFoundError, match=r"val\.jsonl, line 1 \(val-1\): metadata file not found: .*@9\.json"):
        load_vcr("val", str(d), str(images), cache_dir=str(tmp_path / "c"))


def test_missing_image(tmp_path, good_item, images):
    next(images.rglob("*.jpg")).unlink()
    d = write(tmp_path, [json.dumps(good_item)])
    with pytest.raises(FileNotFoundError, match=r"line 1 \(val-1\): image file not found: .*@0\.jpg"):
        load_vcr("val", str(d), str(images), cache_dir=str(tmp_path / "c"))


@pytest.mark.parametrize("escape", ["../../etc/passwd", "/etc/passwd", "lsmdc_x/../../outside.jpg"])
def test_img_fn_escaping_the_image_root(tmp_path, good_item, images, escape):
    good_item["img_fn"] = escape
    d = write(tmp_path, [json.dumps(good_item)])
    with pytest.raises(VcrFormatError, match=r"line 1 \(val-1\): img_fn .* escapes the image root"):
        load_vcr("val", str(d), str(images), cache_dir=str(tmp_path / "c"))


def test_metadata_box_count_must_match_objects(tmp_path, good_item, images):
    meta = next(images.rglob("*.json"))
    data = json.loads(meta.read_text())
    data["boxes"] = data["boxes"][:4]
    meta.write_text(json.dumps(data))
    d = write(tmp_path, [json.dumps(good_item)])
    with pytest.raises(VcrFormatError, match=r"4 boxes for an item with 6 objects"):
        load_vcr("val", str(d), str(images), cache_dir=str(tmp_path / "c"))


def test_bad_label_and_missing_file(tmp_path, good_item):
    good_item["answer_label"] = 4
    d = write(tmp_path, [json.dumps(good_item)])
    with pytest.raises(VcrFormatError, match="answer_label must be 0..3"):
        load_vcr("val", str(d), cache_dir=str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match=r"VCR annotations not found: .*test\.jsonl"):
        load_vcr("test", str(d), cache_dir=str(tmp_path / "c"))


def test_leading_zero_reference_is_malformed_json(tmp_path, good_item):
    # the fast reader turns references into strings; "01" must still be refused as json.loads refuses it
    line = json.dumps(good_item).replace('"Does", [0]', '"Does", [00]')
    assert "[00]" in line
    d = write(tmp_path, [json.dumps(good_item), line])
    with pytest.raises(VcrFormatError, match=r"val\.jsonl, line 2: malformed JSON"):
        load_vcr("val", str(d), cache_dir=str(tmp_path / "c"))


def test_out_of_range_reference_found_by_the_fast_reader_names_the_line(tmp_path, good_item):
    bad = json.loads(json.dumps(good_item))
    bad["annot_id"] = "val-3"
    bad["rationale_choices"][2][0] = [1, 6]
    second = dict(good_item, annot_id="val-2")
    d = write(tmp_path, [json.dumps(good_item), json.dumps(second), json.dumps(bad)])
    with pytest.raises(VcrFormatError, match=r"line 3 \(val-3\): rationale_choices\[2\] references object 6, out of range for the item's 6 objects"):
        load_vcr("val", str(d), cache_dir=str(tmp_path / "c"))
