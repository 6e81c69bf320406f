"""Process-state repairs for launch modes that accelerate gets wrong on CPU."""

from __future__ import annotations

import copy
import os

import torch.distributed as dist


def repair_deepspeed_cpu_state() -> None:
    """Give accelerate's ``PartialState`` the real world size and rank under DeepSpeed on CPU.

    With DeepSpeed and no GPU, accelerate (1.15) lets DeepSpeed initialise a
    gloo process group of N ranks but records ``num_processes=1, process_index=0`` in every
    process: every rank then believes it is the main one (all write checkpoints) and gathers
    fail with "invalid output tensor list". The group itself is right, so the state is read
    back from it. A no-op everywhere else.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    state = PartialState()
    if state.distributed_type != DistributedType.DEEPSPEED:
        return
    world, rank = dist.get_world_size(), dist.get_rank()
    if state.num_processes != world:
        state.num_processes = world
        state.process_index = rank
        state.local_process_index = int(os.environ.get("LOCAL_RANK", rank))


def default_to_cpu(deepspeed_requested: bool) -> bool:
    """Whether TrainingArguments should default to ``use_cpu=True``: on a machine without GPUs, unless DeepSpeed runs.

    Without a GPU, accelerate (1.15) only recognises ``accelerate launch --multi_gpu`` / ``torchrun``
    as distributed when told to use the CPU; otherwise every process records one process, the
    Trainer still wraps the model in DDP, and the processes train on the same, unsharded batches.
    ``use_cpu=True`` gives a gloo group with sharded data (and lets ``--bf16`` use CPU autocast).
    DeepSpeed runs keep their own path (see :func:`repair_deepspeed_cpu_state`).
    """
    import torch

    return not deepspeed_requested and not torch.cuda.is_available()


def largest_hidden_size(model) -> int | None:
    """The largest ``hidden_size`` among the configs of ``model`` and its sub-models (text configs included)."""
    sizes = []
    for module in model.modules():
        config = getattr(module, "config", None)
        for c in (config, getattr(config, "text_config", None)):
            h = getattr(c, "hidden_size", None)
            if isinstance(h, int):
                sizes.append(h)
    return max(sizes) if sizes else None


def zero_bucket_sizes(h: int) -> dict[str, int]:
    """DeepSpeed's hidden-size-based ``zero_optimization`` entries, as transformers derives them: h², 0.9 h², 10 h."""
    return {"reduce_bucket_size": h * h, "stage3_prefetch_bucket_size": int(0.9 * h * h), "stage3_param_persistence_threshold": 10 * h}


def prepare_frozen_model(accelerator, model):
    """A frozen model that runs beside the trained one (ARC's live QR→A teacher), prepared as TRL prepares
    reference models.

    Without DeepSpeed: ``accelerator.prepare_model(evaluation_mode=True)`` (device placement and mixed precision,
    no DDP wrapper: it has no gradients to synchronise). Under DeepSpeed: an inference engine of its own built
    from a copy of the training config. Under ZeRO-3 it stays at stage 3, so its weights are partitioned over
    the processes like the student's and gathered layer by layer in its forward, with buckets sized from its
    hidden size; under ZeRO-1/2 it drops to stage 0, since partitioning gradients and optimizer states means
    nothing for a model that has neither and each process keeps it whole. The optimizer and scheduler
    sections are removed, and ``"auto"`` entries transformers has not filled yet fall back to DeepSpeed's defaults.
    """
    model.eval()
    model.requires_grad_(False)
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return accelerator.prepare_model(model, evaluation_mode=True)
    import deepspeed

    config = copy.deepcopy(plugin.deepspeed_config)
    for key in ("optimizer", "scheduler"):
        config.pop(key, None)
    zero = config.setdefault("zero_optimization", {})
    h = largest_hidden_size(model)
    if zero.get("stage", 0) == 3:
        if h:
            zero.update(zero_bucket_sizes(h))
    else:
        zero["stage"] = 0
    for section in (config, zero, config.get("bf16", {}), config.get("fp16", {})):
        for key in [k for k, v in section.items() if v == "auto"]:
            del section[key]
    engine, *_ = deepspeed.initialize(model=model, config=config)
    engine.eval()
    return engine


def fill_deepspeed_hidden_size_keys(args, model) -> None:
    """Fill DeepSpeed's hidden-size-based ``"auto"`` entries for composite models without a top-level config.

    transformers derives ``reduce_bucket_size`` (h²), ``stage3_prefetch_bucket_size`` (0.9 h²) and
    ``stage3_param_persistence_threshold`` (10 h) from ``model.config.hidden_size`` and refuses to
    start when the model has no config (ARC's f_A + f_R, the joint coupling model, ...). Here h is
    the largest ``hidden_size`` among the sub-models' configs, the same rule transformers applies
    to one model. A no-op without DeepSpeed or when the model has a top-level config.
    """
    ds = getattr(args, "hf_deepspeed_config", None)
    if ds is None or model is None or getattr(model, "config", None) is not None:
        return
    h = largest_hidden_size(model)
    if h is None:
        return
    for key, value in zero_bucket_sizes(h).items():
        if key == "reduce_bucket_size" or ds.is_zero3():
            ds.fill_only(f"zero_optimization.{key}", value)


def gathered_parameters(model):
    """Under ZeRO-3, ``model``'s partitioned parameters gathered whole for the duration of the context (a
    collective: enter it on every rank, e.g. around rank 0's evaluation and ``save_pretrained``); a no-op
    context otherwise."""
    import contextlib

    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    if model is None or not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


def gather_whole_model_after_training(trainer) -> None:
    """After ``trainer.train()`` under ZeRO-3, make the model's parameters whole for good on every rank (a
    collective): the engine's parameter hooks are removed (they would re-partition the weights after each
    sub-module's forward and all-gather them again, which hangs when only rank 0 evaluates) and the
    parameters stay gathered. Call on every rank before rank-0-only evaluation or saving; a no-op otherwise."""
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return
    engine = getattr(trainer, "model_wrapped", None)
    if engine is not None and hasattr(engine, "destroy"):
        engine.destroy()
    gathered_parameters(trainer.accelerator.unwrap_model(trainer.model)).__enter__()


def end_distributed() -> None:
    """Close the process group at the end of a run (after a barrier), so gloo's threads are joined before the
    interpreter exits instead of aborting the process ("terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
