"""What every hf_vcr trainer shares: per-component loss logging, checkpoints that are
atomic and resumable, and a model card written beside the saved model.

Exact resume. A checkpoint holds, besides what ``Trainer`` saves (weights, optimizer, scheduler, the global
random generators per process, ``trainer_state.json`` with the callbacks' states), the state of every
registered component per process (:meth:`HfVcrTrainer.register_state`: EIGV's memory bank, every random
generator of the training collator, found automatically) in ``hf_vcr_state/rank<R>.{json,safetensors}``
(no pickle). Callback states (early stopping's patience counter) are always restored. A checkpoint counts
once ``checkpoint_complete`` exists, and older checkpoints are rotated only after that. A run whose newest
checkpoint ended training (``max_steps`` reached, early stopping) loads it and trains no further.
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections import defaultdict
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from transformers import Trainer

from ..utils.checkpoints import (
    WRITING_MARKER, atomic_write_json, find_resumable_checkpoint, honour_umask, kill_point_for_tests, mark_complete,
    remove_stale_temporaries, rotate_complete_checkpoints,
)
from ..utils.distributed import fill_deepspeed_hidden_size_keys, repair_deepspeed_cpu_state
from ..utils.run_guard import RunDiffersError, differing_fields, holding_output_lock, run_fingerprint
from ..utils.secrets import (
    install_log_redaction,
    redact_mapping,
    register_argument_secrets,
)

STATE_DIR = "hf_vcr_state"
TRAINING_ARGS_JSON = "training_args.json"
_BATCH_INDEX = "_hf_vcr_batch_index"
_GENERATOR_TYPES = (random.Random, np.random.Generator, np.random.RandomState, torch.Generator)


def find_generators(obj: Any, prefix: str = "", depth: int = 2) -> dict[str, Any]:
    """The random generators held by ``obj`` (a collator) and by hf_vcr objects it holds, by attribute path."""
    found: dict[str, Any] = {}
    for name, value in sorted(vars(obj).items()) if hasattr(obj, "__dict__") else ():
        if isinstance(value, _GENERATOR_TYPES):
            found[prefix + name] = value
        elif depth > 0 and type(value).__module__.startswith("hf_vcr") and hasattr(value, "__dict__"):
            found.update(find_generators(value, f"{prefix}{name}.", depth - 1))
    return found


def generator_state(gen) -> Any:
    """A JSON value (python / numpy generators) or a uint8 tensor (torch) holding ``gen``'s state."""
    if isinstance(gen, random.Random):
        return list(gen.getstate()[1]) + [gen.getstate()[0], gen.getstate()[2]]
    if isinstance(gen, np.random.Generator):
        return gen.bit_generator.state
    if isinstance(gen, np.random.RandomState):
        name, keys, pos, has_gauss, gauss = gen.get_state()
        return [name, keys.tolist(), pos, has_gauss, gauss]
    return gen.get_state()


def set_generator_state(gen, state) -> None:
    if isinstance(gen, random.Random):
        gen.setstate((state[-2], tuple(state[:-2]), state[-1]))
    elif isinstance(gen, np.random.Generator):
        gen.bit_generator.state = state
    elif isinstance(gen, np.random.RandomState):
        name, keys, pos, has_gauss, gauss = state
        gen.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    else:
        gen.set_state(state.cpu())


class _GeneratorsState:
    """``state_dict`` / ``load_state_dict`` over a set of generators (a collator's)."""

    def __init__(self, generators: dict[str, Any]):
        self.generators = generators

    def state_dict(self) -> dict[str, Any]:
        return {name: generator_state(g) for name, g in self.generators.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, g in self.generators.items():
            set_generator_state(g, state[name])


class _TrackedCollator:
    """The training collator, tagging each batch with its call index and remembering its generators' state after
    each call. The data loader collates ahead of training (accelerate fetches one batch early, ``Trainer`` a whole
    accumulation window), so the state to checkpoint is the one after the last batch *trained on*, not the current."""

    def __init__(self, collator, state: _GeneratorsState):
        self.collator, self.state, self.calls, self.after = collator, state, 0, {}

    def __call__(self, examples):
        batch = self.collator(examples)
        index, self.calls = self.calls, self.calls + 1
        self.after[index] = self.state.state_dict()
        batch[_BATCH_INDEX] = index
        return batch

    def consumed(self, index: int) -> dict[str, Any] | None:
        for old in [i for i in self.after if i < index]:
            del self.after[old]
        # None when the batch was collated in a data-loader worker (dataloader_num_workers > 0), whose generators
        # this process never sees: exact resume of collator generators needs dataloader_num_workers 0 (the default)
        return self.after.pop(index, None)


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
        install_log_redaction()
        register_argument_secrets(self.args)
        self._stateful: dict[str, Any] = {}
        self._tracked: _TrackedCollator | None = None
        self._collator_state: dict[str, Any] | None = None  # generators after the last batch trained on
        generators = find_generators(self.data_collator) if self.data_collator is not None else {}
        if generators:
            self._collator_generators = _GeneratorsState(generators)
            self._eval_collator = copy.deepcopy(self.data_collator)  # evaluation never draws from training's generators
            self.register_state("collator", _CollatorState(self))

    # ---------------------------------------------------------- exact resume
    def register_state(self, name: str, component: Any) -> None:
        """Save ``component.state_dict()`` in every checkpoint (per process) and ``load_state_dict`` it on resume.

        The state is a flat dict of tensors and JSON values (tensors go to safetensors, the rest to JSON)."""
        self._stateful[name] = component

    def get_train_dataloader(self):
        if not hasattr(self, "_collator_generators"):
            return super().get_train_dataloader()
        collator = self.data_collator
        self._tracked = _TrackedCollator(collator, self._collator_generators)
        self.data_collator = self._tracked
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = collator

    def _with_eval_collator(self, make, *args, **kwargs):
        if not hasattr(self, "_eval_collator"):
            return make(*args, **kwargs)
        collator, self.data_collator = self.data_collator, copy.deepcopy(self._eval_collator)
        try:
            return make(*args, **kwargs)
        finally:
            self.data_collator = collator

    def get_eval_dataloader(self, eval_dataset=None):
        return self._with_eval_collator(super().get_eval_dataloader, eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return self._with_eval_collator(super().get_test_dataloader, test_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):
        index = inputs.pop(_BATCH_INDEX, None)
        if index is not None and self._tracked is not None:
            self._collator_state = self._tracked.consumed(int(index)) or self._collator_state
        loss = super().training_step(model, inputs, num_items_in_batch)
        kill_point_for_tests("step", self.state.global_step + 1)
        return loss

    def _save_component_states(self, checkpoint_dir: str) -> None:
        from safetensors.torch import save_file

        if not self._stateful:
            return
        tensors, plain = {}, {}
        for name, component in self._stateful.items():
            for key, value in component.state_dict().items():
                if torch.is_tensor(value):
                    tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
                else:
                    plain[f"{name}.{key}"] = value
        folder = os.path.join(checkpoint_dir, STATE_DIR)
        os.makedirs(folder, exist_ok=True)
        rank = self.args.process_index
        save_file(tensors, os.path.join(folder, f"rank{rank}.safetensors"))
        atomic_write_json(os.path.join(folder, f"rank{rank}.json"), plain)

    def _load_component_states(self, checkpoint_dir: str) -> None:
        from safetensors.torch import load_file

        if not self._stateful:
            return
        folder, rank = os.path.join(checkpoint_dir, STATE_DIR), self.args.process_index
        path = os.path.join(folder, f"rank{rank}.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{checkpoint_dir}: no {STATE_DIR}/rank{rank}.json: this checkpoint lacks the state of "
                                    f"{sorted(self._stateful)} for process {rank} (saved with another number of processes?)")
        with open(path, encoding="utf-8") as f:
            flat: dict[str, Any] = json.load(f)
        # on this process's device (a memory bank lives beside the model); generator states are moved back to CPU
        tensors = load_file(os.path.join(folder, f"rank{rank}.safetensors"))
        flat.update({k: v.to(self.args.device) for k, v in tensors.items()})
        for name, component in self._stateful.items():
            own = {k[len(name) + 1:]: v for k, v in flat.items() if k.startswith(name + ".")}
            component.load_state_dict(own)

    def _load_callback_state(self) -> None:
        # hf_vcr always restores callback states (early stopping's patience counter, ...): a resumed run must take
        # the decisions the uninterrupted run took, whatever ``restore_callback_states_from_checkpoint`` says
        flag = self.args.restore_callback_states_from_checkpoint
        self.args.restore_callback_states_from_checkpoint = True
        try:
            super()._load_callback_state()
        finally:
            self.args.restore_callback_states_from_checkpoint = flag

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

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """``Trainer._save`` with ``training_args.json`` (secrets redacted) instead of the pickled ``training_args.bin``
        (a pickle that holds ``hub_token`` in clear)."""
        super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:
            from transformers.trainer import TRAINING_ARGS_NAME

            atomic_write_json(os.path.join(output_dir, TRAINING_ARGS_JSON), redact_mapping(self.args.to_dict()))
            pickled = os.path.join(output_dir, TRAINING_ARGS_NAME)
            if os.path.isfile(pickled):
                os.remove(pickled)
            for name in os.listdir(output_dir):  # safetensors writes 0600 whatever the umask
                if os.path.isfile(os.path.join(output_dir, name)):
                    honour_umask(os.path.join(output_dir, name))

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
        """``Trainer._save_checkpoint``, then the component states, then the completion marker once every process has
        written its part, and only then the rotation of older (complete) checkpoints."""
        step = self.state.global_step
        run_dir = self._get_output_dir(trial=trial)
        folder = os.path.join(run_dir, f"checkpoint-{step}")
        if self.args.should_save:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, WRITING_MARKER), "w") as f:
                f.write(f"{os.getpid()}\n")
        limit = self.args.save_total_limit
        self.args.save_total_limit = None  # transformers would rotate before the new checkpoint is marked complete
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        self._save_component_states(folder)
        kill_point_for_tests("before_mark", step)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            honour_umask(folder)
            mark_complete(folder)
            rotate_complete_checkpoints(run_dir, limit, keep=self.state.best_model_checkpoint)
        kill_point_for_tests("after_save", step)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        self._forget_evaluation_only_preparation()
        with self._holding_output_dir():
            if isinstance(resume_from_checkpoint, str):
                # before the first batch is collated: Trainer restores its own generators only after fetching the
                # first batches of the resumed epoch, which the collator's generators would already have drawn
                self._load_component_states(resume_from_checkpoint)
            return super().train(resume_from_checkpoint, *args, **kwargs)

    @contextmanager
    def _holding_output_dir(self):
        """One run per output_dir: the main process of the launch holds the lock while training (a flow that took it
        with ``guard_run`` keeps it; every other rank of the same launch must not block itself) and clears the
        ``.tmp-*`` leftovers of killed atomic writes."""
        main = self.args.should_save and self.args.process_index == 0
        with holding_output_lock(self.args.output_dir, take=main):
            if main:
                remove_stale_temporaries(self.args.output_dir)
            yield

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
        """``train()`` that resumes from the newest complete checkpoint in ``output_dir``, if any.

        A checkpoint saved when training ended (``max_steps`` reached or early stopping) is loaded instead, best model
        included, and nothing more is trained: a run killed after its final checkpoint ends as the uninterrupted run."""
        with self._holding_output_dir():
            self.accelerator.wait_for_everyone()
            checkpoint = find_resumable_checkpoint(self.args.output_dir, remove_incomplete=self.is_world_process_zero())
            if checkpoint is not None:
                self._check_same_arguments(checkpoint)
            if checkpoint is not None and self._ended_training(checkpoint) and not self.is_deepspeed_enabled:
                return self._load_final_checkpoint(checkpoint)
            if checkpoint is not None and self.is_world_process_zero():
                print(f"hf_vcr: resuming from {checkpoint}", flush=True)
            return self.train(resume_from_checkpoint=checkpoint, **kwargs)

    def _check_same_arguments(self, checkpoint: str) -> None:
        """Refuse to resume (one line naming the fields) a checkpoint saved with other training arguments: the result
        would mix two runs. Secrets, output, logging, saving and pushing fields may differ."""
        saved_path = os.path.join(checkpoint, TRAINING_ARGS_JSON)
        if not os.path.isfile(saved_path):
            return
        with open(saved_path, encoding="utf-8") as f:
            saved = run_fingerprint(json.load(f))
        now = run_fingerprint(json.loads(json.dumps(redact_mapping(self.args.to_dict()), default=str)))
        fields = differing_fields(saved, now)
        if fields:
            raise RunDiffersError(
                f"{checkpoint} was saved with other training arguments ({', '.join(fields[:8])}{', ...' if len(fields) > 8 else ''} "
                f"differ): resuming would mix two runs; choose another output_dir or remove {self.args.output_dir}")

    @staticmethod
    def _ended_training(checkpoint: str) -> bool:
        from transformers.trainer import TRAINER_STATE_NAME

        with open(os.path.join(checkpoint, TRAINER_STATE_NAME), encoding="utf-8") as f:
            state = json.load(f)
        control = state.get("stateful_callbacks", {}).get("TrainerControl", {}).get("args", {})
        return bool(control.get("should_training_stop")) or state.get("global_step", 0) >= state.get("max_steps", 0) > 0

    def _load_final_checkpoint(self, checkpoint: str):
        from transformers.trainer import TRAINER_STATE_NAME, TrainerState
        from transformers.trainer_utils import TrainOutput

        if self.is_world_process_zero():
            print(f"hf_vcr: {checkpoint} ended training (max_steps or early stopping): nothing left to train", flush=True)
        self._load_from_checkpoint(checkpoint)
        # what train() does to the model before its first step, so the saved config equals an uninterrupted run's
        from transformers import PreTrainedTokenizerBase, ProcessorMixin
        from transformers.trainer_utils import align_special_tokens

        if isinstance(self.processing_class, (PreTrainedTokenizerBase, ProcessorMixin)) and hasattr(self.model, "config"):
            align_special_tokens(self.model, self.processing_class)
        self.state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
        best = self.state.best_model_checkpoint
        if self.args.load_best_model_at_end and best is not None and os.path.isdir(best):
            self._load_best_model()
        losses = [h["train_loss"] for h in self.state.log_history if "train_loss" in h]
        return TrainOutput(self.state.global_step, losses[-1] if losses else float("nan"), {})


class _CollatorState:
    """The training collator's generators as they were after the last batch trained on (see :class:`_TrackedCollator`)."""

    def __init__(self, trainer: HfVcrTrainer):
        self.trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        state = self.trainer._collator_state
        return state if state is not None else self.trainer._collator_generators.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer._collator_generators.load_state_dict(state)
        self.trainer._collator_state = state


def sub_model_location(output_dir: str, name: str, args) -> str:
    """Where a card tells users to load sub-model ``name`` (f_A, f_R, ...) from: its Hub repository
    ``<hub_model_id>-<name>`` when the run pushes, else its local directory."""
    if getattr(args, "push_to_hub", False) and getattr(args, "hub_model_id", None):
        from ..hub import run_repo_id

        return run_repo_id(args, name)
    return os.path.join(output_dir, name)

