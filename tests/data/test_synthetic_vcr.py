"""The embedded VCR corpus: official layout, deterministic, and the answer is in the image."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from hf_vcr.data.synthetic_vcr import COLOURS, write_vcr_corpus
from hf_vcr.data.vcr import load_vcr


def test_layout_determinism_and_image_evidence(tmp_path, synthetic_vcr):
    write_vcr_corpus(str(tmp_path / "again"), n_train=160, n_val=48, seed=0)
    a = (tmp_path / "again" / "train.jsonl").read_text()
    b = open(synthetic_vcr["annotations_dir"] + "/train.jsonl").read()
    assert a == b  # same seed, same corpus
    ds = load_vcr("train", synthetic_vcr["annotations_dir"], synthetic_vcr["images_dir"])
    labels = np.array(ds["answer_label"])
    # the right answer sits at every position about equally often: no positional shortcut
    assert np.bincount(labels, minlength=4).min() > len(ds) / 8
    for row in ds.select(range(40)):
        q = row["question_refs"][[i for i, r in enumerate(row["question_refs"]) if r][0]][0]
        x1, y1, x2, y2 = row["boxes"][q][:4]
        pixel = np.asarray(Image.open(row["image_path"]).convert("RGB"))[int((y1 + y2) / 2), int((x1 + x2) / 2)]
        nearest = min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - pixel).sum())
        # the colour drawn in the referenced box is the right answer's colour word
        assert row["answer_choices"][row["answer_label"]][2] == nearest
        # and the right rationale's object has that colour too
        r = row["rationale_choices_refs"][row["rationale_label"]][6][0]
        x1, y1, x2, y2 = row["boxes"][r][:4]
        pixel = np.asarray(Image.open(row["image_path"]).convert("RGB"))[int((y1 + y2) / 2), int((x1 + x2) / 2)]
        assert min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - pixel).sum()) == nearest


def test_prepare_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hf_vcr.cli", "prepare", "vcr", "--output", str(tmp_path / "c")],
                         capture_output=True, text=True, check=True).stdout
    paths = json.loads(out.strip().splitlines()[-1])
    assert (tmp_path / "c" / "train.jsonl").is_file() and paths["images_dir"].endswith("vcr1images")
