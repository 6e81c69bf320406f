"""Thread count and the run summary line (hf_vcr.utils.runtime), used by ``hf-vcr predict`` and every flow."""

from __future__ import annotations

import pytest
import torch

from hf_vcr.utils.runtime import choose_num_threads, count_parameters, name_progress_bars, runtime_summary


def test_omp_num_threads_wins_and_must_be_a_positive_integer():
    assert choose_num_threads({"OMP_NUM_THREADS": "3"}, cores=64, cpus=64, processes=8, load=0) == 3
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='two'"):
        choose_num_threads({"OMP_NUM_THREADS": "two"})


@pytest.mark.parametrize("cores,cpus,processes,load,want", [
    (16, 32, 1, 0.0, 16),   # hyper-threads not counted
    (16, 4, 1, 0.0, 4),     # a container / taskset affinity of 4 CPUs
    (16, 16, 4, 0.0, 4),    # 4 local processes share the cores
    (2, 2, 1, 1.2, 1),      # a 2-core machine with one core busy elsewhere
    (2, 2, 1, 9.0, 1),      # never fewer than one
    (8, 8, 3, 0.0, 2),
    (0, 6, 1, 0.0, 6),      # physical cores unknown (0): the usable CPUs
])
def test_threads_are_the_idle_physical_cores_divided_among_local_processes(cores, cpus, processes, load, want):
    assert choose_num_threads({}, cores=cores, cpus=cpus, processes=processes, load=load) == want


def test_summary_names_device_threads_and_parameters():
    model = torch.nn.Linear(1000, 1000)
    line = runtime_summary("cpu", model, what="q2a")
    assert line == f"hf_vcr: q2a: device=cpu threads={torch.get_num_threads()} parameters=1.00M"
    assert count_parameters(model) == 1_001_000


def test_progress_bars_are_named_after_the_task(tmp_path):
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import ProgressCallback

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, disable_tqdm=False)
    trainer = Trainer(model=torch.nn.Linear(2, 2), args=args)
    name_progress_bars(trainer, "qa2r")
    bars = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, ProgressCallback)]
    assert len(bars) == 1 and bars[0].name == "qa2r"

    class State:
        is_world_process_zero, max_steps = True, 3

    bars[0].on_train_begin(args, State(), None)
    assert bars[0].training_bar.desc.startswith("qa2r train")
    bars[0].training_bar.close()
