"""``hf-vcr predict eigv``: the prediction json of a saved EIGV / VideoQA model, scored by ``hf-vcr evaluate videoqa``.

NExT-QA (multiple choice): the official ``{"{video}_{qid}": {"prediction": option, "answer": option}}``.
MSVD-QA / MSRVTT-QA (open-ended): ``{question id: answer string}``, the answer decoded with the model's own
answer vocabulary (its ``id2label``). The training flow writes the same file through :func:`prediction_records`.
"""

from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np

from .common import add_common_arguments, batched_outputs, default_device


def prediction_records(keys: Sequence[str], predicted: np.ndarray, multiple_choice: bool, answers: Sequence | None = None,
                       answer_vocab: Sequence[str] | None = None) -> dict:
    """The prediction json's content from predicted indices: NExT-QA records (with the given ``answers`` when known),
    or answer strings from ``answer_vocab`` for open-ended questions."""
    predicted = np.asarray(predicted)
    if multiple_choice:
        if answers is None:
            return {k: {"prediction": int(p)} for k, p in zip(keys, predicted)}
        return {k: {"prediction": int(p), "answer": int(a)} for k, p, a in zip(keys, predicted, answers)}
    if answer_vocab is None:
        raise ValueError("open-ended predictions need the model's answer vocabulary (config.id2label)")
    return {k: answer_vocab[int(p)] for k, p in zip(keys, predicted)}


def make_parser(prog: str = "hf-vcr predict eigv") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Write the prediction json of a saved EIGV / VideoQA model (e.g. "
                                "runs/eigv/final): NExT-QA's official format, or answer strings for MSVD-QA / MSRVTT-QA. "
                                "Score it with `hf-vcr evaluate videoqa`.")
    p.add_argument("--model_dir", "--model-dir", dest="model_dir", required=True, help="saved VideoQA model directory")
    p.add_argument("--annotations", required=True, help="NExT-QA val.csv / test.csv, or an MSVD-QA / MSRVTT-QA {split}_qa.json")
    p.add_argument("--features", required=True, help="clip features: one NExT-QA h5, or APP.h5,MOT.h5")
    p.add_argument("--output", required=True, help="the prediction json to write")
    p.add_argument("--tokenizer", default=None, help="tokenizer (default: the one saved with the model)")
    p.add_argument("--max_length", type=int, default=None, help="question (+ option) tokens, as in training (default: the "
                   "training flow's default)")
    add_common_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from transformers import AutoConfig, AutoTokenizer

    from ..data.videoqa import VideoQaCollator, load_nextqa, load_open_ended_qa
    from ..flows.eigv import _features
    from ..models.modeling_videoqa import VideoQaForClassification, VideoQaForMultipleChoice
    from ..trainers.eigv_config import EigvDataArguments
    from ..utils.checkpoints import atomic_write_json
    from ..utils.json_files import dumps_strict
    from ..utils.runtime import log_runtime

    a = make_parser().parse_args(argv)
    device = a.device or default_device()
    config = AutoConfig.from_pretrained(a.model_dir)
    multiple_choice = "VideoQaForMultipleChoice" in (config.architectures or [])
    model = (VideoQaForMultipleChoice if multiple_choice else VideoQaForClassification).from_pretrained(a.model_dir).to(device)
    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer or a.model_dir)
    store = _features(a.features)
    vocab = None if multiple_choice else [model.config.id2label[i] for i in range(len(model.config.id2label))]
    data = load_nextqa(a.annotations, features=store) if multiple_choice else load_open_ended_qa(a.annotations, vocab, features=store)
    if a.max_items:
        data = data.select(range(min(a.max_items, len(data))))
    log_runtime(device, model, what="predict eigv")
    max_length = a.max_length or EigvDataArguments().max_length
    logits = batched_outputs(model, data, VideoQaCollator(tokenizer, store, max_length=max_length), a.batch_size, device,
                             desc="predict eigv", progress=not a.no_progress)["logits"]
    predicted = logits.argmax(-1)
    answers = data["answer"] if multiple_choice else None
    atomic_write_json(a.output, prediction_records(data["key"], predicted, multiple_choice, answers, vocab))
    print(dumps_strict({"predictions": a.output, "items": len(data)}))
    return 0
