"""What every hf_vcr trainer shares: per-component loss logging, checkpoints that are
atomic and resumable, and a model card written beside the saved model."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import torch
from transformers import Trainer

from ..utils.checkpoints import find_resumable_checkpoint, mark_complete
from ..utils.distributed import fill_deepspeed_hidden_size_keys, repair_deepspeed_cpu_state


class HfVcrTrainer(Trainer):
    """A ``Trainer`` whose ``compute_loss`` returns a per-batch mean.

    Subclasses compose losses in ``compute_loss`` and call :meth:`record` with each
    component; the components are averaged over the logging interval (and across
    processes) and logged beside ``loss`` as ``<name>`` (train) or ``eval_<name>``.
    """

    # The losses are per-batch means: let Trainer divide them by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs):
        repair_deepspeed_cpu_state()
        super().__init__(*args, **kwargs)
        fill_deepspeed_hidden_size_keys(self.args, self.model)
        self._component_logs: dict[str, dict[str, list[torch.Tensor]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    # ---------------------------------------------------------------- logging
    def record(self, **components: torch.Tensor | float) -> None:
        """Store loss components of the current step for the next ``log`` call (no sync here: the step stays
        asynchronous, and ``log`` gathers every component across processes in one collective)."""
        mode = "train" if self.model.training else "eval"
        for name, value in components.items():
            if value is None:
                continue
            t = value.detach().float().reshape(()) if torch.is_tensor(value) else torch.tensor(float(value))
            self._component_logs[mode][name].append(t)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        pending = self._component_logs[mode]
        names = sorted(n for n, values in pending.items() if values)  # the same order on every process
        if names:
            device = self.accelerator.device
            local = torch.stack([torch.stack([v.to(device) for v in pending[n]]).mean() for n in names])
            # every process records the same components for the same number of steps, so the mean of the
            # processes' interval means is the mean over all steps and processes
            means = self.accelerator.gather(local).reshape(-1, len(names)).mean(0)
            logs.update({prefix + n: m for n, m in zip(names, means.tolist())})
        pending.clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------- Hub
    # ``push_to_hub`` / ``hub_model_id`` / ``hub_token`` / ``hub_private_repo`` of TrainingArguments choose the
    # repository; the final model is pushed once, with its card, by ``push_to_hub()`` (scripts call it after
    # writing the card). Intermediate checkpoints stay local.
    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        return None  # the repository is created by the final push

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        return None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call=True)

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None, **kwargs):
        """Upload ``output_dir`` (model, tokenizer, card) to ``hub_model_id`` with :func:`hf_vcr.hub.push_checkpoint`.

        A failure raises :class:`hf_vcr.hub.HubPushError` naming the step; the local files stay as they are.
        """
        from ..hub import push_checkpoint, run_repo_id

        if not self.is_world_process_zero():
            return None
        return push_checkpoint(
            self.args.output_dir,
            run_repo_id(self.args),
            commit_message=commit_message or "Upload with hf_vcr",
            token=token or self.args.hub_token,
            private=bool(private if private is not None else self.args.hub_private_repo),
            revision=revision or self.args.hub_revision,
        )

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        # push_to_hub() calls this: keep the method's card rendered from model_cards/ when there is one
        card = os.path.join(self.args.output_dir, "README.md")
        if os.path.isfile(card):
            with open(card, encoding="utf-8") as f:
                if "hf_vcr" in f.read():
                    return
        super().create_model_card(*args, **kwargs)

    # ------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            run_dir = self._get_output_dir(trial=trial)
            mark_complete(os.path.join(run_dir, f"checkpoint-{self.state.global_step}"))

    def train(self, *args: Any, **kwargs: Any):
        self._forget_evaluation_only_preparation()
        return super().train(*args, **kwargs)

    def _forget_evaluation_only_preparation(self) -> None:
        """``evaluate()`` before ``train()`` registers the bare model with ``accelerator.prepare_model(evaluation_mode=True)``,
        which marks it ``_is_accelerate_prepared``; accelerate then refuses to prepare it again, so training under
        ``accelerate launch --multi_gpu`` would run without DDP, every process stepping on its own gradients
        (tests/distributed/test_multi_gpu_scripts.py caught it in the critic script, which scores the initial model).
        Undo the mark while the model is still unwrapped; DeepSpeed builds its engine through its own path."""
        model = self.model
        if self.model_wrapped is model and getattr(model, "_is_accelerate_prepared", False) and not self.is_deepspeed_enabled:
            model._is_accelerate_prepared = False
            self.accelerator._models = [m for m in self.accelerator._models if m is not model]

    def train_resuming(self, **kwargs: Any):
        """``train()`` that resumes from the newest complete checkpoint in ``output_dir``, if any."""
        checkpoint = find_resumable_checkpoint(self.args.output_dir, remove_incomplete=self.is_world_process_zero())
        if checkpoint is not None and self.is_world_process_zero():
            print(f"hf_vcr: resuming from {checkpoint}", flush=True)
        return self.train(resume_from_checkpoint=checkpoint, **kwargs)


def sub_model_location(output_dir: str, name: str, args) -> str:
    """Where a card tells users to load sub-model ``name`` (f_A, f_R, ...) from: its Hub repository
    ``<hub_model_id>-<name>`` when the run pushes, else its local directory."""
    if getattr(args, "push_to_hub", False) and getattr(args, "hub_model_id", None):
        from ..hub import run_repo_id

        return run_repo_id(args, name)
    return os.path.join(output_dir, name)

