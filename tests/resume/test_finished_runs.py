"""A finished run started again trains nothing and leaves its results as they were; started again with other training
arguments it refuses, in one line naming the fields, instead of mixing two runs. A second run on an output in use
(training or ``hf-vcr filter-corpus``) refuses. Outputs get the umask's modes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from hf_vcr.utils.run_guard import LOCK_NAME, OutputLockedError, RunDiffersError

from .harness import flow_args, results

_HOLD = "import sys, time; from hf_vcr.utils.run_guard import acquire_lock; acquire_lock(sys.argv[1], sys.argv[2]); " \
        "print('locked', flush=True); time.sleep(120)"


def test_finished_run_started_again(tmp_path, monkeypatch, capsys):
    from hf_vcr.flows import sort

    monkeypatch.chdir(tmp_path)
    args = flow_args("sort", "out") + ["--max_steps", "4"]
    old = os.umask(0o022)
    try:
        sort.main(args)
    finally:
        os.umask(old)
    first = results(tmp_path / "out")
    for weights in (tmp_path / "out" / "final" / "model.safetensors", tmp_path / "out" / "checkpoint-4" / "model.safetensors"):
        assert stat.S_IMODE(weights.stat().st_mode) == 0o644, weights  # safetensors alone writes 0600
    assert not list((tmp_path / "out").rglob("training_args.bin"))  # no pickle: training_args.json instead
    assert (tmp_path / "out" / "checkpoint-4" / "training_args.json").is_file()
    capsys.readouterr()
    sort.main(args)
    assert "nothing" in capsys.readouterr().out  # "finished run found ...: nothing to do" / "... nothing left to train"
    assert results(tmp_path / "out") == first
    with pytest.raises(RunDiffersError, match=r"holds a run with other arguments \(learning_rate differ\).*--overwrite_output_dir true"):
        sort.main(args + ["--learning_rate", "0.5"])
    assert results(tmp_path / "out") == first
    sort.main(args + ["--learning_rate", "0.5", "--overwrite_output_dir", "true"])  # the user's decision: replaced
    assert results(tmp_path / "out") != first


def _holder(lock: str, target: str) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, lock, target], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_training_run_on_an_output_in_use_refuses(tmp_path, monkeypatch):
    from hf_vcr.flows import sort

    monkeypatch.chdir(tmp_path)
    holder = _holder(str(tmp_path / "out" / LOCK_NAME), str(tmp_path / "out"))
    try:
        with pytest.raises(OutputLockedError, match=rf"out is in use by another run \(pid {holder.pid}\)"):
            sort.main(flow_args("sort", "out") + ["--max_steps", "2"])
    finally:
        holder.kill()
        holder.wait()
    assert not list((tmp_path / "out").glob("checkpoint-*"))


def test_a_second_filter_corpus_run_on_one_output_refuses(tmp_path):
    from hf_vcr.data.corpus_filter import filter_corpus

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"image": "a.jpg"}\n')
    output = tmp_path / "kept.jsonl"
    holder = _holder(str(output) + ".lock", str(output))
    try:
        with pytest.raises(OutputLockedError, match="kept.jsonl is in use by another"):
            filter_corpus(str(tmp_path / "no-critic"), str(corpus), str(output))
    finally:
        holder.kill()
        holder.wait()
    assert not output.exists()
