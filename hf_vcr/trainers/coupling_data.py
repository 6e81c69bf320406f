"""Data plumbing shared by the ARC and joint-coupling trainers.

Both methods feed several VCR views of the *same* item to several models in one step
(ARC: Q→A, QA→R and the QR→A teacher; joint coupling: Q→A and the answer-conditioned
rationale query). :func:`merge_views` puts the tokenized views of each item side by side
in one row (prefixed columns, annot_ids checked), so the views of a batch always line up
(the released direct-16 code drew them from independent shuffles); :class:`MultiViewCollator`
collates each prefix with :class:`~hf_vcr.data.collator.VcrCollator`, loading the image of an
item once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch
from datasets import Dataset, concatenate_datasets

from ..data.collator import VcrCollator

TEXT_KEYS = ("input_ids", "token_type_ids", "attention_mask", "object_ids")
# visual tensors every view of an item shares (collated once, not per view)
SHARED_VISUAL_KEYS = ("boxes", "box_mask", "pixel_values", "region_features")
SHARED_COLUMNS = ("annot_id", "boxes", "image_path", "img_fn", "width", "height")


def merge_views(views: dict[str, Dataset], extra: Dataset | None = None) -> Dataset:
    """One row per item holding every view: column ``<prefix>_<name>`` for each view's own columns.

    Raises ``ValueError`` naming the first row whose annot_ids differ between views.
    """
    prefixes = list(views)
    first = views[prefixes[0]]
    ids = first["annot_id"]
    parts = []
    for prefix in prefixes:
        ds = views[prefix]
        if len(ds) != len(first):
            raise ValueError(f"view {prefix!r} has {len(ds)} rows, view {prefixes[0]!r} has {len(first)}")
        other = ds["annot_id"]
        if other != ids:
            bad = next(i for i, (a, b) in enumerate(zip(ids, other)) if a != b)
            raise ValueError(f"views are not aligned: row {bad} is {ids[bad]!r} in {prefixes[0]!r} but {other[bad]!r} in {prefix!r}")
        own = [c for c in ds.column_names if c not in SHARED_COLUMNS]
        renamed = ds.select_columns(own).rename_columns({c: f"{prefix}_{c}" for c in own})
        parts.append(renamed)
    shared = first.select_columns([c for c in SHARED_COLUMNS if c in first.column_names])
    if extra is not None:
        parts.append(extra)
    return concatenate_datasets([shared] + parts, axis=1)


def stage_args(args, **changes):
    """A copy of the training arguments with some fields changed (one stage's output_dir, steps, ...).

    ``dataclasses.replace``, not a rebuild from ``args.to_dict()``: ``to_dict`` replaces ``hub_token`` by the
    placeholder ``"<HUB_TOKEN>"``, which the Hub then rejects."""
    return replace(args, **changes)


def view_inputs(batch: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Model keyword arguments of one view: its text tensors plus the shared visual tensors."""
    out = {k: batch[f"{prefix}_{k}"] for k in TEXT_KEYS if f"{prefix}_{k}" in batch}
    for k in SHARED_VISUAL_KEYS:
        if k in batch:
            out[k] = batch[k]
    return out


@dataclass
class MultiViewCollator:
    """Collate rows of :func:`merge_views`: ``<prefix>_input_ids [B, C, L]`` etc. for every prefix,
    ``boxes``/``box_mask``/``pixel_values`` once, plus float ``tensor_fields`` (e.g. cached teacher outputs)
    and, with ``answer_slots``, the answer-conditioned rationale template of :func:`answer_slot_batch`.
    """

    base: VcrCollator
    prefixes: Sequence[str]
    tensor_fields: Sequence[str] = ()
    answer_slots: tuple[str, str] | None = None  # (q2a prefix, joint prefix)
    max_length: int = 128
    _text: VcrCollator | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self._text = replace(self.base, visual_source="none")

    def _view(self, examples, prefix: str, collator: VcrCollator) -> dict[str, torch.Tensor]:
        sub = []
        for e in examples:
            d = {k[len(prefix) + 1:]: v for k, v in e.items() if k.startswith(prefix + "_")}
            for k in SHARED_COLUMNS:
                if k in e:
                    d[k] = e[k]
            sub.append(d)
        out = collator(sub)
        if collator is self._text and self.base.visual_source != "none":
            out["object_ids"] = _object_ids(sub, out["input_ids"].shape, self.base.max_objects, examples)
        return out

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        present = [p for p in self.prefixes if f"{p}_input_ids" in examples[0]]
        for n, prefix in enumerate(present):
            part = self._view(examples, prefix, self.base if n == 0 else self._text)
            for k, v in part.items():
                if k in SHARED_VISUAL_KEYS:
                    batch[k] = v
                else:
                    batch[f"{prefix}_{k}"] = v
        for name in self.tensor_fields:
            if name not in examples[0]:
                continue
            batch[name] = torch.tensor([e[name] for e in examples], dtype=torch.float32)
        if self.answer_slots is not None:
            q2a, joint = self.answer_slots
            batch.update(answer_slot_batch(examples, q2a, joint, self.base.pad_token_id, self.max_length,
                                           batch.get("box_mask", None)))
            batch[f"{joint}_labels"] = torch.tensor([e.get(f"{joint}_labels", -100) for e in examples], dtype=torch.long)
        return batch


def _object_ids(sub, shape, max_objects, examples) -> torch.Tensor:
    B, C, L = shape
    n = max(1, min(max_objects, max(len(e["boxes"]) for e in examples)))
    object_ids = torch.full((B, C, L), -1, dtype=torch.long)
    for i, e in enumerate(sub):
        for c, seq in enumerate(e.get("object_ids", [])):
            object_ids[i, c, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    object_ids[object_ids >= n] = -1
    return object_ids


def _segments(ids: list[int], types: list[int], objs: list[int]):
    """(cls, query tokens, query objects, sep, response tokens, response objects) of ``[CLS] q [SEP] r [SEP]``."""
    n0 = sum(1 for t in types if t == 0)
    if n0 < 2 or len(ids) < n0 + 1:
        raise ValueError("answer slots need pair encodings [CLS] query [SEP] response [SEP] with token type ids")
    return ids[0], ids[1 : n0 - 1], objs[1 : n0 - 1], ids[n0 - 1], ids[n0:-1], objs[n0:-1]


def answer_slot_batch(examples, q2a: str, joint: str, pad_id: int, max_length: int, box_mask=None) -> dict[str, torch.Tensor]:
    """Tensors for the rationale query of the joint paper (eq. 1): ``[CLS] question <answer slot> [SEP] rationale_j [SEP]``.

    From each item's Q→A encoding (question, and answer i as the response) and the first four
    choices of its joint encoding (rationale j as the response):

    - ``slot_input_ids/token_type_ids/attention_mask/object_ids [B, 4, L]``: the template per rationale j,
      with placeholder tokens in the answer slot; ``slot_index [B, L]``: slot position k, -1 elsewhere;
    - ``answer_ids/answer_mask/answer_object_ids [B, 4, L_a]``: answer i's tokens, whose (weighted)
      embeddings :class:`~hf_vcr.models.joint_coupling.AnswerConditionedRationaleScorer` writes into the slot.
    """
    B = len(examples)
    items = []
    for e in examples:
        a_ids, a_tt = e[f"{q2a}_input_ids"], e[f"{q2a}_token_type_ids"]
        a_obj = e.get(f"{q2a}_object_ids") or [[-1] * len(s) for s in a_ids]
        cls, q, q_obj, sep, _, _ = _segments(a_ids[0], a_tt[0], a_obj[0])
        answers = [_segments(a_ids[i], a_tt[i], a_obj[i])[4:] for i in range(4)]
        j_ids, j_tt = e[f"{joint}_input_ids"], e[f"{joint}_token_type_ids"]
        j_obj = e.get(f"{joint}_object_ids") or [[-1] * len(s) for s in j_ids]
        rationales = [_segments(j_ids[j], j_tt[j], j_obj[j])[4:] for j in range(4)]
        items.append((cls, sep, q, q_obj, answers, rationales))
    La = max(1, max(len(a) for it in items for a, _ in it[4]))
    answer_ids = torch.full((B, 4, La), pad_id, dtype=torch.long)
    answer_mask = torch.zeros((B, 4, La), dtype=torch.long)
    answer_obj = torch.full((B, 4, La), -1, dtype=torch.long)
    rows = []
    for b, (cls, sep, q, q_obj, answers, rationales) in enumerate(items):
        la = max(1, max(len(a) for a, _ in answers))
        for i, (a, ao) in enumerate(answers):
            answer_ids[b, i, : len(a)] = torch.tensor(a, dtype=torch.long)
            answer_mask[b, i, : len(a)] = 1
            answer_obj[b, i, : len(a)] = torch.tensor(ao, dtype=torch.long)
        head = [cls] + q + [pad_id] * la + [sep]
        head_obj = [-1] + q_obj + [-1] * la + [-1]
        head_slot = [-1] * (1 + len(q)) + list(range(la)) + [-1]
        per_choice = []
        for r, ro in rationales:
            room = max(0, max_length - len(head) - 1)
            r, ro = r[:room], ro[:room]
            per_choice.append((head + r + [sep], [0] * len(head) + [1] * (len(r) + 1), head_obj + ro + [-1]))
        rows.append((per_choice, head_slot))
    L = max(len(ids) for per_choice, _ in rows for ids, _, _ in per_choice)
    out = {
        "slot_input_ids": torch.full((B, 4, L), pad_id, dtype=torch.long),
        "slot_token_type_ids": torch.zeros((B, 4, L), dtype=torch.long),
        "slot_attention_mask": torch.zeros((B, 4, L), dtype=torch.long),
        "slot_object_ids": torch.full((B, 4, L), -1, dtype=torch.long),
        "slot_index": torch.full((B, L), -1, dtype=torch.long),
    }
    for b, (per_choice, head_slot) in enumerate(rows):
        out["slot_index"][b, : len(head_slot)] = torch.tensor(head_slot)
        for j, (ids, tt, obj) in enumerate(per_choice):
            n = len(ids)
            out["slot_input_ids"][b, j, :n] = torch.tensor(ids)
            out["slot_token_type_ids"][b, j, :n] = torch.tensor(tt)
            out["slot_attention_mask"][b, j, :n] = 1
            out["slot_object_ids"][b, j, :n] = torch.tensor(obj)
    if box_mask is not None:
        n_obj = box_mask.shape[1]
        out["slot_object_ids"][out["slot_object_ids"] >= n_obj] = -1
        answer_obj[answer_obj >= n_obj] = -1
    out.update(answer_ids=answer_ids, answer_mask=answer_mask, answer_object_ids=answer_obj)
    return out


BACKBONES = ("vcr", "visualbert")


def build_scorer(backbone: str, model_args, tokenizer):
    """A fresh multiple-choice scorer: hf_vcr's ``VcrForMultipleChoice`` or transformers' VisualBERT (adapter)."""
    if backbone == "vcr":
        from .vcr_components import build_model

        return build_model(model_args, tokenizer)
    if backbone == "visualbert":
        from ..models.adapters import VisualBertForVcr, visualbert_vcr_config

        if model_args.model_name_or_path:
            return VisualBertForVcr.from_pretrained(model_args.model_name_or_path)
        source = model_args.visual_source
        config = visualbert_vcr_config(
            vocab_size=len(tokenizer),
            visual_source=source,
            image_size=(model_args.image_size or 64,) * 2,  # 64: VcrModelArguments' size for models built from scratch
            pad_token_id=tokenizer.pad_token_id or 0,
        )
        return VisualBertForVcr(config)
    raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")


def load_scorer(path: str):
    """Load a scorer saved by the ARC / joint trainers (``VcrForMultipleChoice`` or ``VisualBertForVcr``)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    if config.model_type == "visual_bert":
        from ..models.adapters import VisualBertForVcr

        return VisualBertForVcr.from_pretrained(path)
    from ..models import VcrForMultipleChoice

    return VcrForMultipleChoice.from_pretrained(path)


def finish_coupled_run(trainer, out: str, done: str, metrics: dict, write_outputs, tokenizer, args) -> None:
    """Save f_A / f_R (+ cards) with ``write_outputs(out, model, tokenizer, metrics, args)`` on the main process and
    mark the run done. Under ZeRO-3 the partitioned weights are gathered on every rank first."""
    from ..utils.checkpoints import atomic_write_json
    from ..utils.distributed import gathered_parameters

    with gathered_parameters(trainer.model):
        if trainer.is_world_process_zero():
            write_outputs(out, trainer.accelerator.unwrap_model(trainer.model), tokenizer, metrics, args)
            atomic_write_json(done, metrics)
    trainer.accelerator.wait_for_everyone()


def save_sub_models(out: str, model, tokenizer) -> None:
    """f_A and f_R of a coupled model, each a ``from_pretrained``-loadable directory with the tokenizer."""
    from ..utils.checkpoints import save_pretrained_atomic

    for name, sub in (("f_A", model.answer_model), ("f_R", model.rationale_model)):
        path = os.path.join(out, name)
        save_pretrained_atomic(sub, path)
        tokenizer.save_pretrained(path)

