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
