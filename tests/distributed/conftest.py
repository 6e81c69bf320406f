"""One-process reference runs, shared by the multi-process (DDP) and the DeepSpeed script tests: each is
the script with the doubled per-device batch that an N-process run must reproduce."""

from __future__ import annotations

import pytest

from .launch import REPO, SGD, launch, vcr_script_args

S = "scripts"


@pytest.fixture(scope="session")
def distributed_root(tmp_path_factory):
    return tmp_path_factory.mktemp("distributed_scripts")


def arc_args(root) -> list[str]:
    return vcr_script_args(root, "arc_synthetic.yaml") + ["--teacher_max_steps", "2"]


def joint_args(root) -> list[str]:
    return vcr_script_args(root, "joint_synthetic.yaml") + ["--coupling", "softmax"]


def critic_args() -> list[str]:
    # weight decay 0: the critic leaves the retrieval heads (ITM, projections) unused, and torch's SGD skips
    # parameters without a gradient while DeepSpeed's flat buffers give them zero gradients and decay them
    return [str(REPO / S / "configs" / "critic_synthetic.yaml"), "--synthetic_items", "32", "--learning_rate", "0.05",
            "--weight_decay", "0", "--save_strategy", "no", *SGD]


def one_process_run(root, script: str, args: list[str], name: str):
    """The script in one process with the doubled per-device batch (8), into ``root / name``."""
    out = root / name
    launch(script if script.startswith("hf-vcr ") else f"{S}/{script}", args + ["--per_device_train_batch_size", "8", "--output_dir", str(out)], 1, str(root))
    return out


@pytest.fixture(scope="session")
def arc_one(distributed_root):
    return one_process_run(distributed_root, "train_arc.py", arc_args(distributed_root), "arc_one")


@pytest.fixture(scope="session")
def joint_one(distributed_root):
    return one_process_run(distributed_root, "train_joint.py", joint_args(distributed_root), "joint_one")


@pytest.fixture(scope="session")
def critic_one(distributed_root):
    return one_process_run(distributed_root, "train_critic.py", critic_args(), "critic_one")
