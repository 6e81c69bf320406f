"""``hf-vcr predict sort``: SOrT's evaluation files from a saved VQA model, for ``hf-vcr evaluate ranking|consistency``.

Per <image, reasoning question>: the Grad-CAM similarity of every sub-question and irrelevant question to the
reasoning question (``ranking_scores.jsonl``, SOrT appendix A.1.1) and whether the reasoning question and each
sub-question are answered right (``consistency_predictions.jsonl``, eq. 4). Both need the VQA answers
(``--vqa_annotations``): correctness is the figure. The files are the ones the training flow writes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Sequence

from .common import add_common_arguments, default_device


def make_parser(prog: str = "hf-vcr predict sort") -> argparse.ArgumentParser:
    from ..trainers.sort_config import SortConfig, SortDataArguments

    p = argparse.ArgumentParser(prog=prog, description="Write ranking_scores.jsonl and consistency_predictions.jsonl from a "
                                "saved SOrT / VQA model (e.g. runs/sort/final); score them with `hf-vcr evaluate ranking` "
                                "and `hf-vcr evaluate consistency`.")
    p.add_argument("--model_dir", "--model-dir", dest="model_dir", required=True, help="saved VqaForClassification directory")
    p.add_argument("--introspect", required=True, help="VQA-Introspect json (e.g. VQAIntrospect_valv1.0.json)")
    p.add_argument("--vqa_questions", required=True, help="VQA v2 questions json of the same split")
    p.add_argument("--vqa_annotations", required=True, help="VQA v2 annotations json of the same split")
    p.add_argument("--region_features", required=True, help="region features (directory or .h5), as in training")
    p.add_argument("--output_dir", required=True, help="where the two jsonl files are written")
    p.add_argument("--tokenizer", default=None, help="tokenizer (default: the one saved with the model)")
    d = SortDataArguments()
    p.add_argument("--max_sub_questions", type=int, default=d.max_sub_questions)
    p.add_argument("--max_irrelevant_questions", type=int, default=d.max_irrelevant_questions)
    p.add_argument("--max_question_length", type=int, default=d.max_question_length)
    c = SortConfig.__dataclass_fields__
    p.add_argument("--gradcam_module", default=c["gradcam_module"].default, help=c["gradcam_module"].metadata["help"])
    p.add_argument("--cosine_eps", type=float, default=c["cosine_eps"].default)
    add_common_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from transformers import AutoTokenizer

    from ..data.region_features import RegionFeatureReader
    from ..data.vqa_introspect import SortCollator, load_vqa_introspect, tokenize_sort_examples
    from ..flows.sort import write_eval_files
    from ..models.modeling_vqa import VqaForClassification
    from ..trainers.sort_config import SortConfig
    from ..trainers.sort_trainer import SortTrainer
    from ..utils.json_files import dumps_strict
    from ..utils.runtime import announce_run

    a = make_parser().parse_args(argv)
    device = a.device or default_device()
    model = VqaForClassification.from_pretrained(a.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer or a.model_dir)
    label2id = {model.config.id2label[i]: i for i in range(model.config.num_labels)}
    data = load_vqa_introspect(a.introspect, a.vqa_questions, a.vqa_annotations)
    if a.max_items:
        data = data.select(range(min(a.max_items, len(data))))
    reader = RegionFeatureReader(a.region_features)
    missing = sorted(i for i in set(data["image_id"]) if i not in reader)
    if missing:
        raise FileNotFoundError(f"{a.region_features}: no region features for {len(missing)} images, e.g. {missing[:5]}")
    data = tokenize_sort_examples(data, tokenizer, label2id, a.max_sub_questions, a.max_irrelevant_questions, a.max_question_length)
    with tempfile.TemporaryDirectory() as scratch:
        args = SortConfig(output_dir=scratch, per_device_eval_batch_size=a.batch_size, report_to="none", use_cpu=device == "cpu",
                          disable_tqdm=a.no_progress, gradcam_module=a.gradcam_module, cosine_eps=a.cosine_eps)
        collator = SortCollator(reader, num_labels=model.config.num_labels, pad_token_id=tokenizer.pad_token_id)
        trainer = SortTrainer(model=model, args=args, eval_dataset=data, data_collator=collator, processing_class=tokenizer)
        announce_run(trainer, "predict sort")
        records = trainer.predict_sort()
    os.makedirs(a.output_dir, exist_ok=True)
    write_eval_files(records, a.output_dir)
    summary = {"output_dir": a.output_dir, "items": len(records), **SortTrainer.sort_metrics(records)}
    print(dumps_strict(summary, 2))
    return 0
