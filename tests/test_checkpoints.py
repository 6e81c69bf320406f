"""Atomic writes, the completion marker that makes a checkpoint resumable, rotation of complete checkpoints only,
the output lock, the run guard (finished run / changed arguments), leftovers of killed writes, and the umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import save_file

from hf_vcr.utils.checkpoints import (
    WRITING_MARKER, atomic_directory, atomic_write_json, find_resumable_checkpoint, mark_complete, rotate_complete_checkpoints,
)
from hf_vcr.utils.run_guard import (
    LOCK_NAME, RUN_ARGS, OutputLockedError, RunDiffersError, acquire_lock, guard_run, mark_run_complete, release_output_lock,
)


def _started(path):
    path.mkdir()
    (path / WRITING_MARKER).write_text("1\n")


def test_only_complete_checkpoints_are_resumed(tmp_path):
    for step in (10, 20, 30):
        _started(tmp_path / f"checkpoint-{step}")
    mark_complete(str(tmp_path / "checkpoint-10"))
    mark_complete(str(tmp_path / "checkpoint-20"))
    # checkpoint-30 was being written when the run died
    assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-20")
    assert not (tmp_path / "checkpoint-30").exists()
    assert find_resumable_checkpoint(str(tmp_path / "missing")) is None


def test_a_plain_trainer_checkpoint_is_kept_with_a_warning_and_not_resumed(tmp_path):
    _started(tmp_path / "checkpoint-10")
    mark_complete(str(tmp_path / "checkpoint-10"))
    foreign = tmp_path / "checkpoint-40"  # a complete checkpoint of transformers' own Trainer: no hf_vcr marker
    foreign.mkdir()
    (foreign / "trainer_state.json").write_text("{}")
    with pytest.warns(UserWarning, match="checkpoint-40 has no hf_vcr completion marker.*kept"):
        assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-10")
    assert (foreign / "trainer_state.json").exists()


def test_rotation_counts_and_deletes_complete_checkpoints_only(tmp_path):
    for step in (1, 2, 3):
        _started(tmp_path / f"checkpoint-{step}")
        mark_complete(str(tmp_path / f"checkpoint-{step}"))
    _started(tmp_path / "checkpoint-4")  # being written: must not count as the newest
    (tmp_path / "checkpoint-5").mkdir()  # foreign
    deleted = rotate_complete_checkpoints(str(tmp_path), 1, keep=str(tmp_path / "checkpoint-1"))
    assert sorted(os.path.basename(p) for p in deleted) == ["checkpoint-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "checkpoint-3", "checkpoint-4", "checkpoint-5"]


def test_atomic_directory_keeps_the_old_copy_on_failure(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(str(target)) as tmp:
        (open(os.path.join(tmp, "w.bin"), "w")).write("v1")
    with pytest.raises(RuntimeError):
        with atomic_directory(str(target)) as tmp:
            (open(os.path.join(tmp, "w.bin"), "w")).write("half")
            raise RuntimeError("killed while saving")
    assert (target / "w.bin").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_write_json(tmp_path):
    path = tmp_path / "m.json"
    atomic_write_json(str(path), {"a": 1})
    assert path.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_atomic_outputs_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(str(tmp_path / "m.json"), {"a": 1})
        with atomic_directory(str(tmp_path / "model")) as tmp:
            save_file({"w": torch.zeros(2)}, os.path.join(tmp, "model.safetensors"))  # safetensors writes 0600
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "model" / "model.safetensors").stat().st_mode) == 0o644


_HOLD = textwrap.dedent("""
    import sys, time
    from hf_vcr.utils.run_guard import acquire_lock
    acquire_lock(sys.argv[1], sys.argv[2])
    print("locked", flush=True)
    time.sleep(60)
""")


def test_a_second_process_is_refused_and_a_killed_holder_frees_the_lock(tmp_path):
    lock = str(tmp_path / "out" / LOCK_NAME)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, lock, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=rf"out is in use by another run \(pid {holder.pid}\)"):
            acquire_lock(lock, str(tmp_path / "out"))
    finally:
        holder.kill()  # SIGKILL: the OS drops the lock
        holder.wait()
    acquire_lock(lock, str(tmp_path / "out"))  # now free
    acquire_lock(lock, str(tmp_path / "out"))  # idempotent within a process
    release_output_lock(str(tmp_path / "out"))


@dataclass
class _Args:
    learning_rate: float = 1e-3
    seed: int = 0
    hub_token: str | None = None
    output_dir: str = "x"
    logging_steps: int = 10


def test_guard_run_finished_changed_and_overwritten(tmp_path, capsys):
    out = str(tmp_path / "run")
    status = guard_run(out, _Args(hub_token="hf_" + "a" * 34))
    assert not status.finished and status.resume_from is None
    recorded = json.loads((tmp_path / "run" / RUN_ARGS).read_text())
    assert "hub_token" not in recorded["arguments"] and "output_dir" not in recorded["arguments"]
    (tmp_path / "run" / ".tmp-killed-model").mkdir()  # a killed atomic write
    mark_run_complete(out, _Args(), metrics={"accuracy": 50.0})
    # same arguments (a new token, other logging): nothing to do, and the leftover is gone
    status = guard_run(out, _Args(hub_token="hf_" + "b" * 34, logging_steps=1))
    assert status.finished and status.metrics == {"accuracy": 50.0}
    assert f"finished run found in {out}: nothing to do" in capsys.readouterr().out
    assert not (tmp_path / "run" / ".tmp-killed-model").exists()
    with pytest.raises(RunDiffersError, match=r"holds a run with other arguments \(learning_rate, seed differ\).*--overwrite_output_dir true"):
        guard_run(out, _Args(learning_rate=0.1, seed=1))
    status = guard_run(out, _Args(learning_rate=0.1, seed=1), overwrite=True)
    assert not status.finished
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted([LOCK_NAME, RUN_ARGS])
    release_output_lock(out)


def test_guard_run_refuses_to_resume_an_unfinished_run_with_other_arguments(tmp_path):
    out = str(tmp_path / "run")
    guard_run(out, _Args())
    with pytest.raises(RunDiffersError, match="learning_rate"):
        guard_run(out, _Args(learning_rate=0.5))
    release_output_lock(out)


def test_generator_states_round_trip_through_json_and_safetensors(tmp_path):
    import random

    import numpy as np
    from safetensors.torch import load_file

    from hf_vcr.trainers.base import find_generators, generator_state, set_generator_state

    class Inner:
        __module__ = "hf_vcr.test"

        def __init__(self):
            self.gen = torch.Generator().manual_seed(3)

    class Collator:
        __module__ = "hf_vcr.test"

        def __init__(self):
            self.rng, self.np_rng, self.legacy, self.inner = random.Random(1), np.random.default_rng(2), np.random.RandomState(4), Inner()

    a, b = Collator(), Collator()
    gens_a, gens_b = find_generators(a), find_generators(b)
    assert sorted(gens_a) == ["inner.gen", "legacy", "np_rng", "rng"]
    for g in gens_a.values():  # advance a's generators
        g.random() if isinstance(g, (random.Random, np.random.Generator, np.random.RandomState)) else torch.rand(3, generator=g)
    plain = {k: generator_state(g) for k, g in gens_a.items() if k != "inner.gen"}
    plain = json.loads(json.dumps(plain))
    save_file({"gen": generator_state(gens_a["inner.gen"])}, str(tmp_path / "s.safetensors"))
    for k, g in gens_b.items():
        set_generator_state(g, plain[k] if k in plain else load_file(str(tmp_path / "s.safetensors"))["gen"])
    assert a.rng.random() == b.rng.random() and a.np_rng.random() == b.np_rng.random() and a.legacy.rand() == b.legacy.rand()
    assert torch.equal(torch.rand(4, generator=a.inner.gen), torch.rand(4, generator=b.inner.gen))
