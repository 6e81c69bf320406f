"""``ArcTrainer``: ARC's stage 2 (f_A and f_R trained together against the QR→A teacher), and
:func:`run_arc`, Algorithm 1 in one call (stage 1 teacher with early stopping, the teacher
cache, stage 2), resumable in whichever stage it was stopped.

"Joint Answering and Explanation for Visual Commonsense Reasoning", section IV.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from datasets import Dataset
from safetensors.torch import load_file, save_file
from transformers import EarlyStoppingCallback, set_seed

from ..data.collator import VcrCollator
from ..data.vcr import tokenize_view
from ..losses.arc import arc_objective, kd_answer_loss, kd_rationale_loss, kd_rationale_loss_released, select_choice
from ..losses.multiple_choice import multiple_choice_loss
from ..metrics.vcr import accuracies_from_scores
from ..utils.checkpoints import atomic_directory, atomic_write_json, save_pretrained_atomic
from ..utils.distributed import gathered_parameters, prepare_frozen_model
from .arc_config import ArcConfig
from ..utils.runtime import announce_run
from .base import HfVcrTrainer, sub_model_location
from .coupling_data import MultiViewCollator, finish_coupled_run, merge_views, save_sub_models, stage_args, view_inputs
from .vcr_trainer import VcrTrainer, multiple_choice_accuracy

DONE = "training_complete"
CACHE_DIR = "teacher_cache"


@contextlib.contextmanager
def _without_zero3_init():
    """Load the frozen teacher whole: under ZeRO-3, ``from_pretrained`` would enter ``deepspeed.zero.Init``
    and partition it, and the cached teacher runs outside any DeepSpeed engine."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


class ArcModel(nn.Module):
    """f_A (Q→A) and f_R (QA→R) trained together; with ``projection_dim`` also the linear projections of the
    released KD-R variant. ``forward`` runs the views present in the batch (prefix ``a`` = Q→A, ``r`` = QA→R,
    ``j`` = the 16 (answer, rationale) pairs used to score rationales under the predicted answer)."""

    def __init__(self, answer_model: nn.Module, rationale_model: nn.Module, projection_dim: int | None = None,
                 teacher_dim: int | None = None):
        super().__init__()
        self.answer_model = answer_model
        self.rationale_model = rationale_model
        if projection_dim is not None:
            hidden = rationale_model.config.hidden_size
            self.teacher_projection = nn.Linear(teacher_dim or hidden, projection_dim)
            self.student_projection = nn.Linear(hidden, projection_dim)
        else:
            self.teacher_projection = self.student_projection = None

    def forward(self, **batch) -> dict[str, torch.Tensor]:
        out = {}
        if "a_input_ids" in batch:
            a = self.answer_model(**view_inputs(batch, "a"))
            out["answer_logits"] = a["logits"]
        if "r_input_ids" in batch:
            r = self.rationale_model(**view_inputs(batch, "r"))
            out["rationale_logits"], out["rationale_pooled"] = r["logits"], r["pooled_output"]
        if "j_input_ids" in batch:
            out["pair_rationale_logits"] = self.rationale_model(**view_inputs(batch, "j"))["logits"]
        return out


def coupled_metrics(eval_pred) -> dict[str, float]:
    """Q→A, QA→R and Q→AR (rationale chosen under the *predicted* answer) from
    predictions ``(answer_logits [N, 4], rationale_logits [N, 16])`` and labels ``4a + r``."""
    answer_logits, rationale_logits = eval_pred.predictions[:2]
    labels = np.asarray(eval_pred.label_ids)
    valid = labels >= 0
    return accuracies_from_scores(answer_logits[valid], rationale_logits[valid].reshape(-1, 4, 4), labels[valid] // 4, labels[valid] % 4)


class ArcTrainer(HfVcrTrainer):
    """Stage 2 of ARC's Algorithm 1: ``L = αKD-A + (1-α)CE_A + βKD-R + (1-β)CE_R`` (eq. 12-14).

    The teacher's outputs come from the batch (``teacher_logits [B, 4]``, ``teacher_feature [B, 4, H]``: f_C's
    fused features of all four answers, from the cache) or, when ``teacher_model`` is given and the batch has
    none, from the frozen f_C run on the QR→A view (prefix ``c``). The paper's KD-R reads the feature at the
    answer label; the released one needs all four (its answer direction). CE_A, CE_R, KD-A and KD-R are
    logged separately (``ce_a``, ``ce_r``, ``kd_a``, ``kd_r``; the released KD-R's two directions as
    ``kd_r_answer`` and ``kd_r_rationale``).
    """

    def __init__(self, *args, teacher_model: nn.Module | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher_model = None
        if teacher_model is not None:
            self.teacher_model = prepare_frozen_model(self.accelerator, teacher_model)

    def teacher_outputs(self, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        if "teacher_logits" in inputs:
            return inputs["teacher_logits"], inputs["teacher_feature"]
        if self.teacher_model is None:
            raise ValueError("ARC stage 2 needs teacher_logits/teacher_feature in the batch (the cache) or a teacher_model")
        with torch.no_grad():
            out = self.teacher_model(**view_inputs(inputs, "c"))
        return out["logits"].float(), out["pooled_output"].float()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args: ArcConfig = self.args
        outputs = model(**{k: v for k, v in inputs.items() if not k.startswith(("c_", "j_"))})
        t_logits, t_feature = self.teacher_outputs(inputs)
        ce_a = multiple_choice_loss(outputs["answer_logits"], inputs["a_labels"])
        ce_r = multiple_choice_loss(outputs["rationale_logits"], inputs["r_labels"])
        kd_a = kd_answer_loss(outputs["answer_logits"], t_logits, args.kd_temperature, args.kd_scale_by_t2)
        if t_feature.dim() != 3:
            raise ValueError(f"ARC needs f_C's features of all four answers [B, 4, H], got {tuple(t_feature.shape)}; a "
                             f"teacher cache written by an older hf_vcr holds one feature per item: delete "
                             f"<output_dir>/{CACHE_DIR} to recompute it")
        a_labels, r_labels = inputs["a_labels"], inputs["r_labels"]
        extra = {}
        if args.kd_r_variant == "paper":
            # eq. 10: h^C is f_C's feature of (Q, R, I, A_gt); an item without an answer label has none
            r_for_kd = torch.where(a_labels != -100, r_labels, torch.full_like(r_labels, -100))
            kd_r = kd_rationale_loss(select_choice(t_feature, a_labels), outputs["rationale_pooled"], r_for_kd)
        else:
            unwrapped = self.accelerator.unwrap_model(model)
            kd_r, kd_r_answer, kd_r_rationale = kd_rationale_loss_released(
                t_feature, a_labels, outputs["rationale_pooled"], r_labels, unwrapped.teacher_projection,
                unwrapped.student_projection, args.kd_r_temperature,
            )
            extra = {"kd_r_answer": kd_r_answer, "kd_r_rationale": kd_r_rationale}
        loss, l_qa, l_qar = arc_objective(ce_a, kd_a, ce_r, kd_r, args.alpha, args.beta)
        self.record(ce_a=ce_a, ce_r=ce_r, kd_a=kd_a, kd_r=kd_r, loss_qa=l_qa, loss_qar=l_qar, **extra)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation runs only f_A and f_R (the teacher is removed at test time); the loss is CE_A + CE_R."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            out = model(**inputs)
            loss = multiple_choice_loss(out["answer_logits"], inputs["a_labels"])
            if "rationale_logits" in out:
                loss = loss + multiple_choice_loss(out["rationale_logits"], inputs["r_labels"])
        if prediction_loss_only:
            return loss.detach(), None, None
        return loss.detach(), (out["answer_logits"].detach(), out["pair_rationale_logits"].detach()), inputs["j_labels"]


# ----------------------------------------------------------------------------- teacher cache


@torch.no_grad()
def compute_teacher_outputs(teacher: nn.Module, view: Dataset, collator: VcrCollator, batch_size: int = 64,
                            device: str | torch.device = "cpu") -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """f_C's logits ``[N, 4]`` and fused features of all four answers ``[N, 4, H]`` for every item of a tokenized
    QR→A view, in order, in evaluation mode (eq. 10's h^C is the row of the answer label; the released KD-R's
    answer direction scores all four)."""
    teacher.eval()
    loader = torch.utils.data.DataLoader(view, batch_size=batch_size, shuffle=False, collate_fn=collator)
    logits, features = [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        if (labels < 0).any():
            raise ValueError("the ARC teacher cache needs answer labels for every training item")
        out = teacher(**batch)
        logits.append(out["logits"].float().cpu())
        features.append(out["pooled_output"].float().cpu())
    return list(view["annot_id"]), torch.cat(logits), torch.cat(features)


def save_teacher_cache(path: str, annot_ids: Sequence[str], logits: torch.Tensor, features: torch.Tensor) -> None:
    """Write the cache directory atomically: ``cache.safetensors`` (logits, features) + ``annot_ids.json``."""
    if len(set(annot_ids)) != len(annot_ids):
        raise ValueError("the teacher cache is keyed by annot_id, which must be unique in the training split")
    with atomic_directory(path) as tmp:
        save_file({"logits": logits.contiguous(), "features": features.contiguous()}, os.path.join(tmp, "cache.safetensors"))
        with open(os.path.join(tmp, "annot_ids.json"), "w") as f:
            json.dump(list(annot_ids), f)


def load_teacher_cache(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """annot_id -> (logits [4], features of the four answers [4, H])."""
    file = os.path.join(path, "cache.safetensors")
    tensors = load_file(file)
    with open(os.path.join(path, "annot_ids.json")) as f:
        ids = json.load(f)
    logits, features = tensors["logits"].numpy(), tensors["features"].numpy()
    if features.ndim != 3 or features.shape[:2] != logits.shape or len(ids) != logits.shape[0]:
        raise ValueError(f"{file}: features {tuple(features.shape)} and logits {tuple(logits.shape)} for {len(ids)} annot_ids; "
                         "expected [N, 4, H] and [N, 4] (a cache from an older hf_vcr kept one feature per item): delete "
                         f"{path} to recompute it")
    return {k: (logits[i], features[i]) for i, k in enumerate(ids)}


def cache_columns(cache: dict, annot_ids: Sequence[str], where: str) -> Dataset:
    """``teacher_logits``/``teacher_feature`` columns for ``annot_ids`` (error naming the first missing id)."""
    missing = [a for a in annot_ids if a not in cache]
    if missing:
        raise KeyError(f"{where}: the teacher cache has no entry for annot_id {missing[0]!r} ({len(missing)} missing); "
                       "delete the cache directory to recompute it")
    return Dataset.from_dict({
        "teacher_logits": [cache[a][0].tolist() for a in annot_ids],
        "teacher_feature": [cache[a][1].tolist() for a in annot_ids],
    })


# ----------------------------------------------------------------------------- Algorithm 1


def _scheduler_kwargs(args: ArcConfig) -> dict:
    kwargs = args.lr_scheduler_kwargs or {}
    return dict(json.loads(kwargs) if isinstance(kwargs, str) else kwargs)


def run_arc(
    args: ArcConfig,
    train: Dataset,
    evaluation: Dataset,
    tokenizer,
    build: Callable[[], nn.Module],
    *,
    max_length: int = 64,
    reference_style: str = "r2c",
    collator_kwargs: dict | None = None,
    callbacks: dict[str, list] | None = None,
) -> dict[str, float]:
    """ARC's Algorithm 1 in one call; returns the validation metrics (q2a, qa2r, q2ar, qr2a).

    ``build()`` returns a fresh scorer (f_A, f_R and f_C share the architecture). Layout of
    ``args.output_dir``: ``stage1/`` (teacher checkpoints), ``f_C/`` (the teacher, with ``training_complete``),
    ``teacher_cache/``, ``stage2/`` (checkpoints), then ``f_A/``, ``f_R/``, ``README.md``, ``metrics.json``,
    ``training_complete``. A run stopped anywhere resumes where it stopped.
    """
    callbacks = callbacks or {}
    out = args.output_dir
    done = os.path.join(out, DONE)
    if os.path.isfile(done):
        with open(done) as f:
            return json.load(f)
    probe = build()
    base = VcrCollator.for_model(probe.config, pad_token_id=tokenizer.pad_token_id or 0, **(collator_kwargs or {}))
    kw = dict(max_length=max_length, reference_style=reference_style, max_objects=probe.config.max_objects)
    del probe

    def views(ds, names):
        with args.main_process_first(desc="tokenizing ARC views"):
            return {n: tokenize_view(ds, tokenizer, n, **kw) for n in names}

    train_views = views(train, ["q2a", "qa2r", "qr2a"])
    eval_views = views(evaluation, ["q2a", "qa2r", "qr2a", "joint"])

    # ---- stage 1: f_C (QR→A), eq. 15, until the validation loss stops improving
    f_c_dir = os.path.join(out, "f_C")
    if not os.path.isfile(os.path.join(f_c_dir, DONE)):
        steps = args.teacher_eval_steps
        stage1_args = stage_args(
            args,
            output_dir=os.path.join(out, "stage1"),
            num_train_epochs=args.teacher_num_train_epochs,
            max_steps=args.teacher_max_steps,
            learning_rate=args.learning_rate if args.teacher_learning_rate is None else args.teacher_learning_rate,
            eval_strategy="steps" if steps else "epoch",
            save_strategy="steps" if steps else "epoch",
            eval_steps=steps,
            save_steps=steps or args.save_steps,
            load_best_model_at_end=True,
            metric_for_best_model="eval_loss",
            greater_is_better=False,
            save_total_limit=max(2, args.save_total_limit or 2),
            # stage 1 watches the validation loss: a plateau schedule (the recipes') must then reduce on a minimum
            **({"lr_scheduler_kwargs": {**_scheduler_kwargs(args), "mode": "min"}}
               if str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)) == "reduce_lr_on_plateau" else {}),
        )
        set_seed(args.seed)
        teacher = build()
        stage1 = VcrTrainer(
            model=teacher,
            args=stage1_args,
            train_dataset=train_views["qr2a"],
            eval_dataset=eval_views["qr2a"],
            data_collator=base,
            processing_class=tokenizer,
            compute_metrics=multiple_choice_accuracy,
            callbacks=[EarlyStoppingCallback(args.teacher_patience, args.teacher_early_stopping_threshold)] + callbacks.get("stage1", []),
        )
        announce_run(stage1, "ARC stage 1 (QR→A teacher)")
        stage1.train_resuming()
        metrics1 = stage1.evaluate()
        with gathered_parameters(stage1.model):
            if stage1.is_world_process_zero():
                save_pretrained_atomic(stage1.model, f_c_dir)
                tokenizer.save_pretrained(f_c_dir)
                atomic_write_json(os.path.join(f_c_dir, DONE), {"qr2a": metrics1.get("eval_accuracy"), "eval_loss": metrics1.get("eval_loss"),
                                                                 "epochs": stage1.state.epoch, "steps": stage1.state.global_step})
        stage1.accelerator.wait_for_everyone()
    with open(os.path.join(f_c_dir, DONE)) as f:
        stage1_metrics = json.load(f)
    from .coupling_data import load_scorer

    with _without_zero3_init():
        teacher = load_scorer(f_c_dir)

    # ---- the teacher's logits and fused features, computed once for the training set
    cache_dir = os.path.join(out, CACHE_DIR)
    if args.teacher_mode == "cached":
        with args.main_process_first(desc="caching the ARC teacher"):
            if not os.path.isfile(os.path.join(cache_dir, "cache.safetensors")):
                ids, logits, feats = compute_teacher_outputs(teacher.to(args.device), train_views["qr2a"], base,
                                                             args.per_device_eval_batch_size, device=args.device)
                teacher.to("cpu")
                save_teacher_cache(cache_dir, ids, logits, feats)
        cache = load_teacher_cache(cache_dir)
        extra = cache_columns(cache, train_views["q2a"]["annot_id"], os.path.join(cache_dir, "annot_ids.json"))
        train_ds = merge_views({"a": train_views["q2a"], "r": train_views["qa2r"]}, extra=extra)
        tensor_fields, prefixes = ("teacher_logits", "teacher_feature"), ("a", "r")
    else:
        train_ds = merge_views({"a": train_views["q2a"], "r": train_views["qa2r"], "c": train_views["qr2a"]})
        tensor_fields, prefixes = (), ("a", "r", "c")
    eval_ds = merge_views({"a": eval_views["q2a"], "r": eval_views["qa2r"], "j": eval_views["joint"]})

    # ---- stage 2: f_A and f_R together, eq. 12-14
    set_seed(args.seed)
    f_a, f_r = build(), build()
    projection = None
    if args.kd_r_variant == "released":
        projection = args.kd_r_projection_dim or f_r.config.hidden_size
    model = ArcModel(f_a, f_r, projection, teacher_dim=teacher.config.hidden_size)
    stage2_args = stage_args(args, output_dir=os.path.join(out, "stage2"))
    trainer = ArcTrainer(
        model=model,
        args=stage2_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=MultiViewCollator(base, prefixes + ("j",), tensor_fields=tensor_fields),
        compute_metrics=coupled_metrics,
        teacher_model=teacher if args.teacher_mode == "live" else None,
        callbacks=callbacks.get("stage2", []),
    )
    announce_run(trainer, "ARC stage 2 (Q→A + QA→R)")
    trainer.train_resuming()
    metrics = {k.removeprefix("eval_"): v for k, v in trainer.evaluate().items()}
    metrics["qr2a"] = stage1_metrics.get("qr2a")
    from functools import partial

    from .vcr_components import card_datasets

    finish_coupled_run(trainer, out, done, metrics, partial(write_arc_outputs, data=card_datasets(train, evaluation)), tokenizer, args)
    return metrics


def write_arc_outputs(out: str, model: ArcModel, tokenizer, metrics: dict, args: ArcConfig, data: dict | None = None) -> None:
    """f_A and f_R (``from_pretrained``-loadable) beside f_C, and the model cards; ``data``: the cards' dataset names
    (:func:`~hf_vcr.trainers.vcr_components.card_datasets`)."""
    from ..model_card import train_command, write_model_card
    from .vcr_components import card_datasets, trained_schedule

    save_sub_models(out, model, tokenizer)
    common = dict(
        paper_title="Joint Answering and Explanation for Visual Commonsense Reasoning (ARC)",
        paper_url="https://github.com/SDLZY/ARC",
        architecture=type(model.answer_model).__name__,
        task_type="multiple-choice",
        **(data or card_datasets(None, None)),
        train_command=train_command("train_arc.py"),
        hyperparameters={**{k: getattr(args, k) for k in ("alpha", "beta", "kd_temperature", "kd_scale_by_t2", "kd_r_variant",
                                                           "teacher_mode", "learning_rate", "num_train_epochs", "max_steps",
                                                           "teacher_num_train_epochs", "teacher_max_steps", "teacher_patience",
                                                           "per_device_train_batch_size", "gradient_accumulation_steps",
                                                           "warmup_steps", "seed", "backbone")},
                         **trained_schedule(out, metrics)},
        metrics={k: metrics.get(k) for k in ("q2a", "qa2r", "q2ar", "qr2a") if metrics.get(k) is not None},
    )
    write_model_card(
        out,
        model_name=os.path.basename(os.path.abspath(out)),
        method="ARC",
        method_summary="Q→A (f_A) and QA→R (f_R) scorers trained together with ARC: a QR→A teacher f_C distils its answer "
                       "distribution into f_A (KD-A) and its fused feature into f_R (KD-R). At test time only f_A and f_R run.",
        sub_models={"f_A (Q→A)": os.path.join(out, "f_A"), "f_R (QA→R)": os.path.join(out, "f_R"),
                    "f_C (QR→A teacher, training only)": os.path.join(out, "f_C")},
        load_path=sub_model_location(out, "f_A", args),
        **common,
    )
    for name, role in (("f_A", "Q→A"), ("f_R", "QA→R"), ("f_C", "QR→A teacher")):
        write_model_card(os.path.join(out, name), model_name=f"{os.path.basename(os.path.abspath(out))}-{name}", method="ARC",
                         method_summary=f"the {role} scorer of an ARC run.", load_path=sub_model_location(out, name, args), **common)
