"""docs/vcr.md: the Python snippet runs as written (paths pointed at a tiny saved model and the embedded corpus) and
ends with a forward pass; the documented commands name their own output folders."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import hf_vcr  # noqa: F401
from hf_vcr.trainers.vcr_components import build_model
from hf_vcr.trainers.vcr_config import VcrModelArguments

from tests.conftest import small_vcr_corpus

DOC = Path(__file__).resolve().parents[2] / "docs" / "vcr.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_python_snippet_runs_and_ends_with_a_forward_pass(tmp_path):
    paths, _, _, tok = small_vcr_corpus(tmp_path / "corpus", n_train=4, n_val=8)
    saved = tmp_path / "q2a"
    model = build_model(VcrModelArguments(), tok)
    model.save_pretrained(saved)
    tok.save_pretrained(saved)
    (snippet,) = python_blocks(DOC.read_text())
    assert snippet.strip().splitlines()[-1].startswith("logits = model(")
    code = (snippet.replace('"vcr1annots"', repr(paths["annotations_dir"])).replace('"vcr1images"', repr(paths["images_dir"]))
            .replace('"runs/vcr_synthetic/q2a"', repr(str(saved))))
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)
    assert scope["logits"].shape == (8, 4) and torch.isfinite(scope["logits"]).all()
    # the same scores as the model on the collated batch in one call (nothing in the snippet is decorative)
    reloaded = type(model).from_pretrained(saved).eval()
    batch = scope["collate"]([scope["q2a"][i] for i in range(8)])
    assert torch.allclose(reloaded(**batch).logits, scope["logits"], atol=1e-6)


def test_every_training_command_names_its_own_output_folder():
    commands = re.findall(r"hf-vcr train vcr [^\n]*", DOC.read_text().replace("\\\n", " "))
    folders = [re.search(r"--output_dir (\S+)", c) for c in commands]
    named = [f.group(1) for f in folders if f]
    assert len(commands) >= 3
    # every one names its own folder, none the README main job's runs/vcr_synthetic
    assert len(named) == len(commands) and len(set(named)) == len(named) and "runs/vcr_synthetic" not in named


def test_the_real_data_recipe_parses_with_pretrained_parts_and_the_backbones_image_size():
    from hf_vcr.flows import load_recipe

    model_args, data_args, args = load_recipe("vcr", "vcr_bert_resnet50", ["--output_dir", "unused"])
    assert (model_args.text_encoder, model_args.vision_backbone) == ("bert-base-uncased", "microsoft/resnet-50")
    assert model_args.image_size is None  # the backbone's image processor decides (224 for ResNet-50)
    assert data_args.annotations_dir and data_args.max_length == 128 and args.tasks == "q2a,qa2r"
