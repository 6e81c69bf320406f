"""``JointTrainer``: Q→A and QA→R trained end to end, the rationale model reading the *predicted* answer.

"Enforcing Reasoning in Visual Commonsense Reasoning", section 3 (couplings) and 4.3 (the
75% baseline). Evaluation is deterministic (no Gumbel noise, no sampling): the rationale model
scores every rationale under each answer (one-hot; QA→R with the right answer, the 16-way
scores) and under the answer ``eval_answer_feed`` names (the noise-free mixture or the predicted
answer), which gives Q→AR.
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
from ..utils.runtime import announce_run
from .base import HfVcrTrainer, sub_model_location
from .coupling_data import MultiViewCollator, finish_coupled_run, merge_views, save_sub_models, stage_args, view_inputs
from .joint_config import JointConfig


def mixture_weights(answer_logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Eq. 1's weights without noise, ``softmax(z_A / τ)``: the softmax coupling at τ = 1, and the Gumbel coupling's
    expectation-free counterpart at its final τ (the released evaluation adds noise; hf_vcr's is deterministic)."""
    return softmax_weights(answer_logits.float() / tau)

DONE = "training_complete"


def rationale_labels(joint_labels: torch.Tensor) -> torch.Tensor:
    return torch.where(joint_labels >= 0, joint_labels % 4, torch.full_like(joint_labels, -100))


class JointCouplingModel(nn.Module):
    """The answer model f_A and the answer-conditioned rationale model f_R.

    ``forward(coupling=..., **batch)`` returns ``answer_logits [B, 4]`` and, by coupling:
    ``rationale_logits [B, 4]`` (softmax, gumbel, baseline75: one weighting of the answers) or
    ``pair_rationale_logits [B, 4, 4]`` (rl, direct16, eval: rationale j under answer i),
    plus ``weights`` / ``samples`` where used. At ``coupling="eval"`` with ``eval_feed="mixture"`` also
    ``fed_rationale_logits [B, 4]``, the rationales scored under ``softmax(z_A / tau)`` in the same pass.
    """

    def __init__(self, answer_model: nn.Module, rationale_model: nn.Module):
        super().__init__()
        self.answer_model = answer_model
        self.rationale_model = rationale_model
        self.scorer = AnswerConditionedRationaleScorer()

    def forward(self, coupling: str = "eval", tau: float = 1.0, num_samples: int = 64, p_correct: float = 0.75,
                generator: torch.Generator | None = None, eval_feed: str = "predicted", **batch) -> dict[str, torch.Tensor]:
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
        elif coupling == "eval" and eval_feed == "mixture":
            weights = torch.cat([all_answers_weights(B, device=z_a.device), mixture_weights(z_a, tau)[:, None]], 1)
            logits = self.scorer(self.rationale_model, batch, weights)[0]  # [B, 5, 4]: one pass
            out["pair_rationale_logits"], out["fed_rationale_logits"] = logits[:, :4], logits[:, 4]
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

    _update_steps_per_epoch: int | None = None

    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        self._update_steps_per_epoch = values[1]  # optimizer steps per epoch: the Gumbel schedule's clock
        return values

    def current_tau(self) -> float:
        """τ of the optimizer step being accumulated: ``global_step / optimizer steps per epoch`` epochs into training,
        the same for every micro-batch of the step (``state.epoch`` would lag by one step under gradient accumulation)."""
        args: JointConfig = self.args
        epochs = self.state.global_step / self._update_steps_per_epoch if self._update_steps_per_epoch else 0.0
        return gumbel_temperature(epochs, args.gumbel_tau_start, args.gumbel_tau_end, args.gumbel_anneal_epochs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args: JointConfig = self.args
        coupling = args.coupling
        tau = self.current_tau()
        outputs = model(coupling=coupling, tau=tau, num_samples=args.rl_num_samples, p_correct=args.baseline_p_correct, **inputs)
        a_lab, r_lab = inputs["a_labels"], rationale_labels(inputs["j_labels"])
        z_a = outputs["answer_logits"]
        ce_a = multiple_choice_loss(z_a, a_lab)
        if coupling == "direct16":
            ce_16 = direct16_loss(outputs["pair_rationale_logits"], inputs["j_labels"])
            loss = joint_objective(ce_a, ce_16, args.loss_weights)
            idx = torch.arange(z_a.shape[0], device=z_a.device)
            ce_r = multiple_choice_loss(outputs["pair_rationale_logits"][idx, a_lab.clamp(min=0)], r_lab)
            self.record(ce_a=ce_a, ce_r=ce_r, ce_16=ce_16)
        elif coupling == "rl":
            nll = rationale_nll_per_answer(outputs["pair_rationale_logits"], r_lab)
            surrogate, expected = rl_expectation_loss(z_a, nll, outputs["samples"], args.rl_baseline, valid=r_lab != -100)
            loss = joint_objective(ce_a, surrogate, args.loss_weights)
            self.record(ce_a=ce_a, ce_r_expected=expected)
        else:
            ce_r = multiple_choice_loss(outputs["rationale_logits"], r_lab)
            loss = joint_objective(ce_a, ce_r, args.loss_weights)
            self.record(ce_a=ce_a, ce_r=ce_r, **({"tau": tau} if coupling == "gumbel" else {}))
        return (loss, outputs) if return_outputs else loss

    def eval_tau(self) -> float:
        args: JointConfig = self.args
        return args.gumbel_tau_end if args.coupling == "gumbel" else 1.0

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Deterministic (no noise, no sampling): every answer fed one-hot, plus the ``eval_answer_feed`` answer; the
        loss is CE_A + CE_R under the fed answer. Predictions: ``(z_A [B, 4], 16 pair scores [B, 16], fed [B, 4])``."""
        args: JointConfig = self.args
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            out = model(coupling="eval", tau=self.eval_tau(), eval_feed=args.eval_answer_feed, **inputs)
            z_a, pair = out["answer_logits"], out["pair_rationale_logits"]
            if "fed_rationale_logits" in out:
                fed = out["fed_rationale_logits"]
            else:
                fed = pair[torch.arange(z_a.shape[0], device=z_a.device), z_a.argmax(-1)]
            loss = multiple_choice_loss(z_a, inputs["a_labels"]) + multiple_choice_loss(fed, rationale_labels(inputs["j_labels"]))
        if prediction_loss_only:
            return loss.detach(), None, None
        return loss.detach(), (z_a.detach(), pair.flatten(1).detach(), fed.detach()), inputs["j_labels"]


def joint_metrics(eval_pred) -> dict[str, float]:
    """Q→A, QA→R (right answer fed), Q→AR and QA→R with the evaluation's answer fed (``eval_answer_feed``), and
    ``q2ar_pairs16``: the argmax over the 16 pair scores is the right pair (the released direct16 evaluation)."""
    metrics = coupled_metrics(eval_pred)
    answer_logits, pair = eval_pred.predictions[:2]
    labels = np.asarray(eval_pred.label_ids)
    valid = labels >= 0
    a, r = labels[valid] // 4, labels[valid] % 4
    a_hat = answer_logits[valid].argmax(-1)
    pair = pair[valid].reshape(-1, 4, 4)
    fed = eval_pred.predictions[2][valid] if len(eval_pred.predictions) > 2 else pair[np.arange(len(a_hat)), a_hat]
    r_hat = fed.argmax(-1)
    metrics["qa2r_predicted_answer"] = float(100.0 * (r_hat == r).mean())
    metrics["q2ar"] = float(100.0 * ((a_hat == a) & (r_hat == r)).mean())
    metrics["q2ar_pairs16"] = float(100.0 * (pair.reshape(len(a), 16).argmax(-1) == labels[valid]).mean())
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
    announce_run(trainer, f"joint ({args.coupling})")
    trainer.train_resuming()
    metrics = {k.removeprefix("eval_"): v for k, v in trainer.evaluate().items()}
    from functools import partial

    from .vcr_components import card_datasets

    finish_coupled_run(trainer, out, done, metrics, partial(write_joint_outputs, data=card_datasets(train, evaluation)), tokenizer, args)
    return metrics


def write_joint_outputs(out: str, model: JointCouplingModel, tokenizer, metrics: dict, args: JointConfig, data: dict | None = None) -> None:
    from ..model_card import train_command, write_model_card
    from .vcr_components import card_datasets, trained_schedule

    save_sub_models(out, model, tokenizer)
    common = dict(
        paper_title="Enforcing Reasoning in Visual Commonsense Reasoning",
        architecture=type(model.answer_model).__name__,
        task_type="multiple-choice",
        **(data or card_datasets(None, None)),
        train_command=train_command("train_joint.py"),
        hyperparameters={k: getattr(args, k) for k in ("coupling", "loss_ratio", "gumbel_tau_start", "gumbel_tau_end",
                                                        "gumbel_anneal_epochs", "rl_num_samples", "rl_baseline",
                                                        "eval_answer_feed", "learning_rate",
                                                        "num_train_epochs", "max_steps", "per_device_train_batch_size",
                                                        "gradient_accumulation_steps", "warmup_steps", "seed", "backbone")}
        | trained_schedule(out, metrics),
        metrics={k: metrics.get(k) for k in ("q2a", "qa2r", "q2ar", "qa2r_predicted_answer") if metrics.get(k) is not None},
    )
    summary = (f"Q→A (f_A) and QA→R (f_R) trained end to end with '{args.coupling}' coupling: f_R reads the question "
               "followed by the (weighted, sampled or predicted) answer rather than the right one.")
    write_model_card(out, model_name=os.path.basename(os.path.abspath(out)), method="Joint Q→AR coupling", method_summary=summary,
                     sub_models={"f_A (Q→A)": os.path.join(out, "f_A"), "f_R (answer-conditioned QA→R)": os.path.join(out, "f_R")}, load_path=sub_model_location(out, "f_A", args), **common)
    for name in ("f_A", "f_R"):
        write_model_card(os.path.join(out, name), model_name=f"{os.path.basename(os.path.abspath(out))}-{name}",
                         method="Joint Q→AR coupling", method_summary=summary, load_path=sub_model_location(out, name, args), **common)
