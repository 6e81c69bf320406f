"""``JointTrainer``: Q→A and QA→R trained end to end, the rationale model reading the *predicted* answer.

"Enforcing Reasoning in Visual Commonsense Reasoning", section 3 (couplings) and 4.3 (the
75% baseline). Evaluation is deterministic and feeds the predicted answer: the rationale
model scores every rationale under each answer (one-hot, no Gumbel noise, no sampling) and
Q→AR reads the row of the predicted answer.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from datasets import Dataset
from transformers import set_seed

from ..data.collator import VcrCollator
from ..data.vcr import tokenize_view
from ..losses.joint import (
    baseline75_answers,
    direct16_loss,
    gumbel_softmax_weights,
    gumbel_temperature,
    joint_objective,
    rationale_nll_per_answer,
    rl_expectation_loss,
    softmax_weights,
)
from ..losses.multiple_choice import multiple_choice_loss
from ..models.joint_coupling import AnswerConditionedRationaleScorer, all_answers_weights, one_hot_weights
from .arc_trainer import coupled_metrics
from .base import HfVcrTrainer, sub_model_location
from .coupling_data import MultiViewCollator, finish_coupled_run, merge_views, save_sub_models, stage_args, view_inputs
from .joint_config import JointConfig

DONE = "training_complete"


def rationale_labels(joint_labels: torch.Tensor) -> torch.Tensor:
    return torch.where(joint_labels >= 0, joint_labels % 4, torch.full_like(joint_labels, -100))


class JointCouplingModel(nn.Module):
    """The answer model f_A and the answer-conditioned rationale model f_R.

    ``forward(coupling=..., **batch)`` returns ``answer_logits [B, 4]`` and, by coupling:
    ``rationale_logits [B, 4]`` (softmax, gumbel, baseline75: one weighting of the answers) or
    ``pair_rationale_logits [B, 4, 4]`` (rl, direct16, eval: rationale j under answer i),
    plus ``weights`` / ``samples`` where used.
    """

    def __init__(self, answer_model: nn.Module, rationale_model: nn.Module):
        super().__init__()
        self.answer_model = answer_model
        self.rationale_model = rationale_model
        self.scorer = AnswerConditionedRationaleScorer()

    def forward(self, coupling: str = "eval", tau: float = 1.0, num_samples: int = 64, p_correct: float = 0.75,
                generator: torch.Generator | None = None, **batch) -> dict[str, torch.Tensor]:
        z_a = self.answer_model(**view_inputs(batch, "a"))["logits"]
        B = z_a.shape[0]
        out: dict[str, torch.Tensor] = {"answer_logits": z_a}
        if coupling in ("softmax", "gumbel", "baseline75"):
            if coupling == "softmax":
                weights = softmax_weights(z_a)
            elif coupling == "gumbel":
                weights = gumbel_softmax_weights(z_a, tau)
            else:
                given = baseline75_answers(batch["a_labels"], p_correct, generator)
                weights = one_hot_weights(given)[:, 0].to(z_a.device)
            out["weights"] = weights
            out["rationale_logits"] = self.scorer(self.rationale_model, batch, weights[:, None])[0][:, 0]
        elif coupling in ("rl", "direct16", "eval"):
            out["pair_rationale_logits"] = self.scorer(self.rationale_model, batch, all_answers_weights(B, device=z_a.device))[0]
            if coupling == "rl":
                probs = torch.softmax(z_a.detach().float(), dim=-1)
                out["samples"] = torch.multinomial(probs, num_samples, replacement=True, generator=generator)  # [B, N]
        else:
            raise ValueError(f"unknown coupling {coupling!r}")
        return out


class JointTrainer(HfVcrTrainer):
    """Composes the joint-coupling losses; ``args`` is a :class:`JointConfig`."""

    def current_tau(self) -> float:
        args: JointConfig = self.args
        return gumbel_temperature(self.state.epoch or 0.0, args.gumbel_tau_start, args.gumbel_tau_end, args.gumbel_anneal_epochs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args: JointConfig = self.args
        coupling = args.coupling
        tau = self.current_tau()
        outputs = model(coupling=coupling, tau=tau, num_samples=args.rl_num_samples, p_correct=args.baseline_p_correct, **inputs)
        a_lab, r_lab = inputs["a_labels"], rationale_labels(inputs["j_labels"])
        z_a = outputs["answer_logits"]
        ce_a = multiple_choice_loss(z_a, a_lab)
        if coupling == "direct16":
            loss = direct16_loss(z_a, outputs["pair_rationale_logits"], inputs["j_labels"])
            idx = torch.arange(z_a.shape[0], device=z_a.device)
            ce_r = multiple_choice_loss(outputs["pair_rationale_logits"][idx, a_lab.clamp(min=0)], r_lab)
            self.record(ce_a=ce_a, ce_r=ce_r, ce_16=loss)
        elif coupling == "rl":
            nll = rationale_nll_per_answer(outputs["pair_rationale_logits"], r_lab)
            surrogate, expected = rl_expectation_loss(z_a, nll, outputs["samples"], args.rl_baseline)
            loss = joint_objective(ce_a, surrogate, args.loss_weights)
            self.record(ce_a=ce_a, ce_r_expected=expected)
        else:
            ce_r = multiple_choice_loss(outputs["rationale_logits"], r_lab)
            loss = joint_objective(ce_a, ce_r, args.loss_weights)
            self.record(ce_a=ce_a, ce_r=ce_r, **({"tau": tau} if coupling == "gumbel" else {}))
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Deterministic: every answer fed one-hot (no noise, no sampling); the loss is CE_A + CE_R under the predicted answer."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            out = model(coupling="eval", **inputs)
            z_a, pair = out["answer_logits"], out["pair_rationale_logits"]
            idx = torch.arange(z_a.shape[0], device=z_a.device)
            loss = multiple_choice_loss(z_a, inputs["a_labels"]) + multiple_choice_loss(
                pair[idx, z_a.argmax(-1)], rationale_labels(inputs["j_labels"])
            )
        if prediction_loss_only:
            return loss.detach(), None, None
        return loss.detach(), (z_a.detach(), pair.flatten(1).detach()), inputs["j_labels"]


def joint_metrics(eval_pred) -> dict[str, float]:
    """Q→A, QA→R (right answer fed), Q→AR and QA→R with the predicted answer fed."""
    metrics = coupled_metrics(eval_pred)
    answer_logits, pair = eval_pred.predictions[:2]
    labels = np.asarray(eval_pred.label_ids)
    valid = labels >= 0
    a_hat = answer_logits[valid].argmax(-1)
    pair = pair[valid].reshape(-1, 4, 4)
    metrics["qa2r_predicted_answer"] = float(100.0 * (pair[np.arange(len(a_hat)), a_hat].argmax(-1) == labels[valid] % 4).mean())
    return metrics


def build_joint_datasets(train: Dataset, evaluation: Dataset, tokenizer, *, max_length: int, reference_style: str,
                         max_objects: int) -> tuple[Dataset, Dataset]:
    kw = dict(max_length=max_length, reference_style=reference_style, max_objects=max_objects)
    out = []
    for ds in (train, evaluation):
        q2a = tokenize_view(ds, tokenizer, "q2a", **kw)
        joint = tokenize_view(ds, tokenizer, "joint", **kw)
        out.append(merge_views({"a": q2a, "j": joint}))
    return out[0], out[1]


def make_joint_collator(model_config, tokenizer, max_length: int = 128, **collator_kwargs) -> MultiViewCollator:
    base = VcrCollator.for_model(model_config, pad_token_id=tokenizer.pad_token_id or 0, **collator_kwargs)
    return MultiViewCollator(base, ("a",), answer_slots=("a", "j"), max_length=max_length)


def run_joint(
    args: JointConfig,
    train: Dataset,
    evaluation: Dataset,
    tokenizer,
    build: Callable[[], nn.Module],
    *,
    max_length: int = 64,
    reference_style: str = "r2c",
    collator_kwargs: dict | None = None,
    callbacks: list | None = None,
) -> dict[str, float]:
    """Train f_A and f_R jointly with ``args.coupling``; returns validation metrics. Output: ``f_A/``, ``f_R/``,
    ``README.md``, ``training_complete``; checkpoints in ``checkpoints/`` (a killed run resumes)."""
    out = args.output_dir
    done = os.path.join(out, DONE)
    if os.path.isfile(done):
        with open(done) as f:
            return json.load(f)
    set_seed(args.seed)
    model = JointCouplingModel(build(), build())
    cfg = model.answer_model.config
    with args.main_process_first(desc="tokenizing joint views"):
        train_ds, eval_ds = build_joint_datasets(train, evaluation, tokenizer, max_length=max_length,
                                                 reference_style=reference_style, max_objects=cfg.max_objects)
    trainer = JointTrainer(
        model=model,
        args=stage_args(args, output_dir=os.path.join(out, "checkpoints")),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=make_joint_collator(cfg, tokenizer, max_length=2 * max_length, **(collator_kwargs or {})),
        compute_metrics=joint_metrics,
        callbacks=callbacks,
    )
    trainer.train_resuming()
    metrics = {k.removeprefix("eval_"): v for k, v in trainer.evaluate().items()}
    finish_coupled_run(trainer, out, done, metrics, write_joint_outputs, tokenizer, args)
    return metrics


def write_joint_outputs(out: str, model: JointCouplingModel, tokenizer, metrics: dict, args: JointConfig) -> None:
    from ..model_card import train_command, write_model_card

    save_sub_models(out, model, tokenizer)
    common = dict(
        paper_title="Enforcing Reasoning in Visual Commonsense Reasoning",
        architecture=type(model.answer_model).__name__,
        task_type="multiple-choice",
        dataset_name="VCR",
        train_command=train_command("train_joint.py"),
        hyperparameters={k: getattr(args, k) for k in ("coupling", "loss_ratio", "gumbel_tau_start", "gumbel_tau_end",
                                                        "gumbel_anneal_epochs", "rl_num_samples", "learning_rate",
                                                        "num_train_epochs", "per_device_train_batch_size", "seed", "backbone")},
        metrics={k: metrics.get(k) for k in ("q2a", "qa2r", "q2ar", "qa2r_predicted_answer") if metrics.get(k) is not None},
    )
    summary = (f"Q→A (f_A) and QA→R (f_R) trained end to end with '{args.coupling}' coupling: f_R reads the question "
               "followed by the (weighted, sampled or predicted) answer rather than the right one.")
    write_model_card(out, model_name=os.path.basename(os.path.abspath(out)), method="Joint Q→AR coupling", method_summary=summary,
                     sub_models={"f_A (Q→A)": os.path.join(out, "f_A"), "f_R (answer-conditioned QA→R)": os.path.join(out, "f_R")}, load_path=sub_model_location(out, "f_A", args), **common)
    for name in ("f_A", "f_R"):
        write_model_card(os.path.join(out, name), model_name=f"{os.path.basename(os.path.abspath(out))}-{name}",
                         method="Joint Q→AR coupling", method_summary=summary, load_path=sub_model_location(out, name, args), **common)
