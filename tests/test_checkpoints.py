"""Atomic writes and the completion marker that makes a checkpoint resumable."""

from __future__ import annotations

import os

import pytest

from hf_vcr.utils.checkpoints import atomic_directory, atomic_write_json, find_resumable_checkpoint, mark_complete


def test_only_complete_checkpoints_are_resumed(tmp_path):
    for step in (10, 20, 30):
        (tmp_path / f"checkpoint-{step}").mkdir()
    mark_complete(str(tmp_path / "checkpoint-10"))
    mark_complete(str(tmp_path / "checkpoint-20"))
    # checkpoint-30 was being written when the run died
    assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-20")
    assert not (tmp_path / "checkpoint-30").exists()
    assert find_resumable_checkpoint(str(tmp_path / "missing")) is None


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
