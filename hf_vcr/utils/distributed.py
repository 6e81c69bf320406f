"""Process-state repairs for launch modes that accelerate gets wrong on CPU."""

from __future__ import annotations

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


def use_cpu_processes_without_accelerator(deepspeed_requested: bool) -> None:
    """Make ``accelerate launch --multi_gpu`` / ``torchrun`` on a machine without GPUs a real multi-process run.

    Without a GPU, accelerate (1.15) only recognises the launch as distributed when it is told to
    use the CPU; otherwise every process records one process, the Trainer still wraps the model in
    DDP, and the processes train on the same, unsharded batches. Setting ``ACCELERATE_USE_CPU``
    (what ``accelerate launch --cpu`` sets) before the TrainingArguments build their state gives a
    gloo group with sharded data. DeepSpeed runs keep their own path (see
    :func:`repair_deepspeed_cpu_state`).
    """
    import torch

    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if launched and not deepspeed_requested and not torch.cuda.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
