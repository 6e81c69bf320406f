"""Run a training flow as a subprocess (``python -m hf_vcr.flows.<method>``, or ``accelerate launch --multi_gpu
--num_processes 2`` with gloo on CPU), kill it with SIGKILL at a deterministic point (``HF_VCR_TEST_KILL_AT``, read by
:func:`hf_vcr.utils.checkpoints.kill_point_for_tests`), restart it with the same command, and compare what it leaves."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "hf_vcr" / "configs"
# checkpoints, locks and the run records are the machinery, not the result
_NOT_RESULTS = ("checkpoint-", ".hf_vcr.lock", "hf_vcr_run.json", "synthetic_data", "teacher_cache")

# tiny sizes and few steps: each run takes a few seconds, most of it imports
COMMON = ["--disable_tqdm", "true", "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "1"]


def flow_args(method: str, out: Path, vcr_corpus: dict | None = None) -> list[str]:
    vcr = ["--annotations_dir", vcr_corpus["annotations_dir"], "--images_dir", vcr_corpus["images_dir"],
           "--max_train_items", "32", "--max_eval_items", "16", "--per_device_train_batch_size", "8"] if vcr_corpus else []
    args = {
        "vcr": vcr + ["--max_steps", "6"],
        # stage 1 early-stops (no eval-loss improvement is larger than the threshold) at step 6, stage 2 runs 4 steps
        "arc": vcr + ["--teacher_max_steps", "10", "--teacher_eval_steps", "2", "--teacher_patience", "2",
                      "--teacher_early_stopping_threshold", "10.0", "--max_steps", "4"],
        "joint": vcr + ["--max_steps", "6"],
        "sort": ["--synthetic_train_items", "32", "--synthetic_eval_items", "8", "--per_device_train_batch_size", "8",
                 "--hidden_size", "32", "--question_hidden_size", "32", "--attention_hidden_size", "32",
                 "--classifier_hidden_size", "64", "--max_steps", "6"],
        # the EIGV objective from step 2; a bank of 4 batches' clips, so its contents matter on resume
        "eigv": ["--synthetic_train", "32", "--synthetic_val", "16", "--per_device_train_batch_size", "8", "--hidden_size", "16",
                 "--num_attention_heads", "2", "--intermediate_size", "32", "--memory_bank_size", "512",
                 "--erm_warmup_steps", "2", "--max_steps", "6"],
        # region augmentation on (the shipped default): the collator's generator matters on resume
        "lskd": ["--synthetic_images", "40", "--synthetic_mc", "8", "--per_device_train_batch_size", "8", "--max_steps", "6"],
        "critic": ["--synthetic_items", "40", "--per_device_train_batch_size", "8", "--max_steps", "6"],
    }[method]
    return [str(CONFIGS / f"{method}_synthetic.yaml"), *args, "--output_dir", str(out), *COMMON]


def start_flow(method: str, args: list[str], *, kill_at: str | None = None, num_processes: int = 1, cwd: str | Path,
               extra_env: dict | None = None) -> subprocess.Popen:
    """Start the flow in the background (the reference run goes beside the killed ones: one core each)."""
    from tests.distributed.launch import free_port

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(extra_env or {}))
    env.pop("HF_VCR_TEST_KILL_AT", None)
    if kill_at:
        env["HF_VCR_TEST_KILL_AT"] = kill_at
    if num_processes == 1:
        cmd = [sys.executable, "-m", f"hf_vcr.flows.{method}", *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), "-m", f"hf_vcr.flows.{method}", *args]
    # output to files, not pipes: a background run must never block on a full pipe
    logs = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=logs[0], stderr=logs[1], text=True)
    proc.hf_vcr_kill_at, proc.hf_vcr_logs = kill_at, logs  # type: ignore[attr-defined]
    return proc


def _read(f) -> str:
    f.seek(0)
    text = f.read()
    f.close()
    return text


@contextmanager
def in_background(proc: subprocess.Popen):
    """Kill ``proc`` if the block fails before waiting for it."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


from tests.distributed.launch import _GLOO_TEARDOWN_ABORT  # noqa: E402


def finish_flow(proc: subprocess.Popen, timeout: int = 600) -> subprocess.CompletedProcess:
    """Wait for a started flow; with a kill point it must have died by SIGKILL there (else the point was never reached)."""
    proc.wait(timeout=timeout)
    out, err = (_read(f) for f in proc.hf_vcr_logs)  # type: ignore[attr-defined]
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    kill_at = proc.hf_vcr_kill_at  # type: ignore[attr-defined]
    if kill_at:
        killed = result.returncode == -signal.SIGKILL or (result.returncode != 0 and "SIGKILL" in result.stderr)
        assert killed, f"not killed at {kill_at} (rc {result.returncode}):\n{out[-2000:]}\n{err[-4000:]}"
    elif result.returncode != 0 and not (_GLOO_TEARDOWN_ABORT in err and "hf_vcr" in out):
        # (gloo's worker threads can abort a finished process at interpreter exit, after every output is written:
        # tests/distributed/launch.py; anything else fails)
        raise AssertionError(f"{' '.join(proc.args)} failed (rc {result.returncode}):\n{out[-3000:]}\n{err[-5000:]}")
    return result


def run_flow(method: str, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return finish_flow(start_flow(method, args, **kwargs))


_TIMING = re.compile(r"(^|_)(runtime|steps_per_second|samples_per_second|model_preparation_time)$")


def _comparable(path: Path) -> bytes:
    """A file's bytes; for JSON, without wall-clock timings (``eval_runtime``, ``*_per_second``) and without the
    tokenizer's transient truncation/padding settings (set by the last call, which a resumed run may not repeat
    when its tokenized views come from the datasets cache)."""
    data = path.read_bytes()
    if path.suffix != ".json" and path.name not in ("training_complete",):
        return data
    try:
        obj = json.loads(data)
    except ValueError:
        return data

    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items() if not _TIMING.search(str(k))}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    obj = clean(obj)
    if path.name == "tokenizer.json" and isinstance(obj, dict):
        obj.pop("truncation", None), obj.pop("padding", None)
    return json.dumps(obj, sort_keys=True).encode()


def results(out: Path) -> dict[str, str]:
    """sha256 of every file a run leaves as its result (weights, metrics, predictions, cards), by relative path."""
    found = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not any(part.startswith(_NOT_RESULTS) for part in rel.split("/")):
            found[rel] = hashlib.sha256(_comparable(path)).hexdigest()
    return found


def assert_same_results(reference: Path, resumed: Path) -> None:
    a, b = results(reference), results(resumed)
    assert a.keys() == b.keys(), f"files differ: only in reference {sorted(a.keys() - b.keys())}, only resumed {sorted(b.keys() - a.keys())}"
    assert any(k.endswith(".safetensors") for k in a), f"no weights among {sorted(a)}"
    differ = sorted(k for k in a if a[k] != b[k])
    assert not differ, f"resumed run differs from the uninterrupted one in {differ}"
