#!/usr/bin/env python
"""The GPU suite: one training step of each of the seven methods at base size, timed, with peak GPU memory
and model-FLOPs utilisation; then the ``bench_*.py`` benchmarks at their default sizes.

    bash benchmarks/gpu_suite.sh                 # CUDA machine: installs the checkout, then runs this
    python benchmarks/gpu_suite.py [--methods vcr,eigv] [--steps 10] [--peak-tflops 989]
    python benchmarks/gpu_suite.py --smoke       # tiny sizes on the CPU, seconds (CI runs it)

Each method's step is what ``Trainer.train`` runs: ``create_optimizer``, ``accelerator.prepare`` (bf16
autocast), then per step ``Trainer.training_step`` of the method's own trainer (``VcrTrainer``, ``ArcTrainer``,
``JointTrainer``, ``SortTrainer``, ``EigvTrainer``, ``QFormerDistillTrainer``, ``CriticTrainer``: its
``compute_loss``, backward through the accelerator) and the optimizer step, on random-initialised models and
synthetic batches already on the device (data loading and host-to-device copies excluded; sizes in
``gpu_suite_cases.SIZES``). TF32 is on for CUDA.

Per method it prints ``samples/s`` (batch / median step time after warm-up), the peak GPU memory allocated
during the steps (weights, gradients and optimizer state included), and MFU = model FLOPs per step / step
time / the GPU's peak dense bf16 FLOP/s (``PEAK_BF16_TFLOPS``, chosen by ``torch.cuda.get_device_name()``;
``--peak-tflops`` for other devices). Model FLOPs are counted from the configuration
(``gpu_suite_flops``: every matmul, 3x forward where it trains); ``flops_check`` is the ratio of FLOPs
counted by ``torch.utils.flop_counter`` on one real step to that formula (cuDNN's GRU is invisible to the
counter, so SOrT's check reads below 1 on a GPU).

Model FLOPs per step (B batch; matmuls only, x3 where weights and inputs take gradients; full derivations in
``gpu_suite_flops``):

* vcr: ``6 N_text B C L + 12 layers B C L^2 d`` (text encoder) + fusion (``6 x 9 d^2`` per token, ``6 x 2 d^2``
  per object per choice, ``12 L N d`` per sequence) + ``4 B N (R + 5) d`` (region projections, no input gradient);
* arc: two vcr scorers (f_A on Q→A, f_R on QA→R) + KD-R's ``h_C . h_R`` scores (the teacher is cached);
* joint: the vcr scorer on Q→A + the weighted answer embeddings (eq. 1) + the vcr scorer on the 4 rationale
  queries with the answer slot;
* sort: GRU ``6 x 3 H (E + H)`` per token, top-down attention over the regions of every question, fusion,
  classifier ``6 (h c + c n)`` per question, + Grad-CAM's ``dy/dA`` and its backward (``2 c n + 3 h c``);
* eigv: clip projection of the video and of the memory-bank clips (``4 K Dv d`` each, no input gradient), the
  text encoder on ``B C`` sequences, grounding twice, the fusion transformer on ``B (2 + N) C`` sequences of
  ``1 + K + L`` tokens, scorer and InfoNCE;
* lskd: the frozen ViT forward (``2 N_vit P`` per image + attention), ITC (queries, text, ``3x``), hard-negative
  similarities (no gradient), ITM on ``3B`` query+text rows, ITG on ``B`` rows + the LM head (``6 H V`` per token);
* critic: the ViT trained (``6 N_vit P`` per image + attention), one query+text Q-Former pass, the heads.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

import torch
from gpu_suite_cases import CASES, SIZES, Case

METHODS = tuple(CASES)
HERE = os.path.dirname(os.path.abspath(__file__))

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets (half the "with sparsity" figure), TFLOP/s.
# Matched in order against torch.cuda.get_device_name(): more specific names first; None: no published figure.
PEAK_BF16_TFLOPS = (
    ("GH200", "GH200", 989.4),
    ("H200 NVL", "H200 NVL", 835.5),
    ("H200", "H200 SXM", 989.4),
    ("H100 PCIe", "H100 PCIe", 756.5),
    ("H100 NVL", "H100 NVL", 835.5),
    ("H100", "H100 SXM", 989.4),
    ("H800", "H800 SXM", 989.4),
    ("B200", "B200", 2250.0),
    ("A100", "A100", 312.0),
    ("A800", "A800", 312.0),
    ("L40S", "L40S", 362.05),
    ("L40", "L40", 181.05),
    ("L4", "L4", 121.0),
    ("A10G", "A10G", None),
    ("A10", "A10", 125.0),
    ("RTX 4090", "RTX 4090", 165.2),
    ("RTX 6000 Ada", "RTX 6000 Ada", 364.2),
    ("A6000", "RTX A6000", 154.8),
)


def benchmark_scripts() -> list[str]:
    """Every ``benchmarks/bench_*.py`` (run at its default sizes), the quick ones first: alphabetical order puts
    the 200,000-item loader benchmark last."""
    return sorted(f for f in os.listdir(HERE) if f.startswith("bench_") and f.endswith(".py"))


def peak_for_name(name: str) -> tuple[str, float | None]:
    """(the peak used, in words; TFLOP/s or None) for a ``torch.cuda.get_device_name()``."""
    for key, label, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            if tflops is None:
                return f"{label}: no published bf16 peak (pass --peak-tflops)", None
            mig = " (MIG slice: MFU is relative to the whole GPU)" if "MIG" in name else ""
            return f"{label} bf16 dense {tflops:g} TFLOP/s{mig}", tflops
    return f"unknown GPU {name!r} (pass --peak-tflops)", None


def peak_for(device: torch.device, override: float | None) -> tuple[str, float | None]:
    if override:
        return f"--peak-tflops {override:g}", override
    if device.type != "cuda":
        return "none for a CPU (pass --peak-tflops)", None
    return peak_for_name(torch.cuda.get_device_name(device))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prepare(trainer) -> None:
    """What ``Trainer.train`` does before its first step on one device: the optimizer from ``create_optimizer``,
    then ``accelerator.prepare`` of model and optimizer (which wraps the forward in bf16 autocast)."""
    trainer.create_optimizer()
    trainer.model_wrapped, trainer.optimizer = trainer.accelerator.prepare(trainer.model, trainer.optimizer)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's own loop; training_step divides by it


def train_step(trainer, batch) -> torch.Tensor:
    """``Trainer.training_step`` (compute_loss, accelerator backward) + the optimizer step."""
    loss = trainer.training_step(trainer.model_wrapped, dict(batch))
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    return loss


def counted_flops(trainer, batch) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        trainer.training_step(trainer.model_wrapped, dict(batch))
    trainer.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_case(case: Case, device: torch.device, warmup: int, steps: int, check_flops: bool) -> dict:
    trainer = case.trainer
    prepare(trainer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup):
        loss = train_step(trainer, case.batches[i % len(case.batches)])
    synchronize(device)
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        loss = train_step(trainer, case.batches[i % len(case.batches)])
        synchronize(device)
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        peak_note = "GiB allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        peak_note = "GiB process max RSS"
    step = statistics.median(times)
    result = {"step_s": step, "samples_per_s": case.samples / step, "peak_mem_gib": peak, "peak_mem_note": peak_note,
              "model_flops_per_step": case.flops, "achieved_tflops": case.flops / step / 1e12, "loss": float(loss)}
    if check_flops:
        try:
            result["flops_check"] = counted_flops(trainer, case.batches[0]) / case.flops
        except Exception as e:  # noqa: BLE001  (a kernel the counter has no formula for must not lose the timings)
            result["flops_check"] = float("nan")
            result["flops_check_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return result


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_method(name: str, preset: str, device: torch.device, bf16: bool, args, workdir: str) -> dict:
    """Build and time ``name`` at the first of its candidate sizes that fits in memory."""
    candidates = SIZES[preset][name]
    notes = []
    for n, size in enumerate(candidates):
        if args.batch_size:
            size = dict(size, batch=args.batch_size)
        release(device)
        oom, case = None, None
        try:
            case = CASES[name](size, device, os.path.join(workdir, name), bf16)
            result = time_case(case, device, args.warmup, args.steps, not args.no_flops_check)
            result.update(sizes=case.sizes, unit=case.unit, batch=case.samples)
        except torch.cuda.OutOfMemoryError as e:  # the next, smaller candidate
            oom = str(e).splitlines()[0]
        case = None  # drop the model, its gradients and optimizer state before the next candidate or method
        if oom is None:
            if notes:
                result["fallback"] = "; ".join(notes)
            release(device)
            return result
        notes.append(f"candidate {n + 1} ran out of memory ({oom[:120]})")
    release(device)
    raise RuntimeError("every candidate size ran out of memory: " + "; ".join(notes))


def fmt(result: dict, peak: float | None) -> str:
    mfu = f"{100 * result['achieved_tflops'] / peak:.3g}%" if peak else "n/a"
    check = f"  flops_check={result['flops_check']:.3f}" if "flops_check" in result else ""
    if "flops_check_error" in result:
        check = f"  flops_check=n/a ({result['flops_check_error']})"
    return (f"samples/s={result['samples_per_s']:.2f}  step={1000 * result['step_s']:.1f} ms  "
            f"peak_mem={result['peak_mem_gib']:.2f} {result['peak_mem_note']}  "
            f"model_TFLOP/step={result['model_flops_per_step'] / 1e12:.4g}  achieved_TFLOP/s={result['achieved_tflops']:.4g}  "
            f"MFU={mfu}{check}")


def run_benchmarks(deadline: float, cap_s: float) -> list[dict]:
    """Each ``bench_*.py`` at its default sizes, in its own process, within what is left of the time budget."""
    out = []
    for script in benchmark_scripts():
        left = deadline - time.monotonic()
        if left < 20:
            out.append({"bench": script, "status": "skipped (time budget spent)", "last_line": ""})
            print(f"[bench] {script}: skipped (time budget spent)", flush=True)
            continue
        t0 = time.monotonic()
        # a session of its own: on time-out the benchmark's own workers (datasets num_proc, subprocesses) go too
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=min(cap_s, left))
            lines = [x for x in stdout.strip().splitlines() if x.strip()]
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {(stderr.strip().splitlines() or [''])[-1]}"
            last = lines[-1] if lines else ""
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            status, last = f"timed out after {min(cap_s, left):.0f} s", ""
        out.append({"bench": script, "status": status, "last_line": last, "wall_s": time.monotonic() - t0})
        print(f"[bench] {script} ({time.monotonic() - t0:.0f} s, {status}): {last}", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (seconds); skips the bench_*.py benchmarks")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 3; smoke 1)")
    p.add_argument("--steps", type=int, default=None, help="timed steps, median reported (default 10; smoke 2)")
    p.add_argument("--device", default=None, help="default: cuda when available (cpu with --smoke)")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16",
                   help="bf16: autocast through accelerate, as TrainingArguments(bf16=True) trains (the CPU smoke run too)")
    p.add_argument("--batch-size", type=int, default=None, help="override every method's batch size (default: gpu_suite_cases.SIZES)")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s of the device (TFLOP/s) when not in the table")
    p.add_argument("--no-flops-check", action="store_true", help="skip the FlopCounterMode step")
    p.add_argument("--no-benchmarks", action="store_true", help="do not run benchmarks/bench_*.py")
    p.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget; benchmarks that would overrun it are skipped")
    p.add_argument("--bench-timeout-s", type=float, default=150.0, help="most seconds one bench_*.py may take")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    preset = "smoke" if args.smoke else "base"
    device = torch.device(args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda"))
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 3)
    args.steps = args.steps if args.steps is not None else (2 if args.smoke else 10)
    bf16 = args.dtype != "fp32"
    if bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        print("this GPU has no bf16: running in fp32", flush=True)
        bf16 = False
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in CASES]
    if unknown:
        p.error(f"unknown methods {unknown}; choose from {','.join(METHODS)}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if device.type == "cpu" and args.smoke:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    from transformers.utils import logging as hf_logging

    import hf_vcr  # noqa: F401  (registers the Auto classes)

    hf_logging.set_verbosity_error()
    peak_name, peak = peak_for(device, args.peak_tflops)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"gpu suite ({preset}): device {dev_name}; {'bf16 autocast' if bf16 else 'fp32'}"
          f"{', TF32 on' if device.type == 'cuda' else ''}; torch {torch.__version__}; peak: {peak_name}", flush=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as workdir:
        for name in methods:
            t0 = time.monotonic()
            try:
                r = run_method(name, preset, device, bf16, args, workdir)
                print(f"[{name}] {r['sizes']}" + (f" ({r['fallback']})" if "fallback" in r else ""), flush=True)
                print(f"[{name}] {fmt(r, peak)}  ({time.monotonic() - t0:.1f} s)", flush=True)
                r["status"] = "ok"
            except Exception as e:  # noqa: BLE001  (one method's failure must not hide the others' figures)
                first = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                print(f"[{name}] FAILED {first}", flush=True)
                traceback.print_exc(file=sys.stderr)
                r = {"status": "failed", "error": first}
            results[name] = r
    bench = [] if args.smoke or args.no_benchmarks else run_benchmarks(deadline, args.bench_timeout_s)

    print(f"\nsummary ({dev_name}, {'bf16' if bf16 else 'fp32'}; MFU against {peak_name})")
    print("| method | samples/s | step ms | peak memory GiB | model TFLOP/step | MFU | flops check |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if r["status"] != "ok":
            print(f"| {name} | FAILED: {r['error']} | | | | | |")
            continue
        mfu = f"{100 * r['achieved_tflops'] / peak:.3g}%" if peak else "n/a"
        check = f"{r['flops_check']:.3f}" if "flops_check" in r else "n/a"
        print(f"| {name} | {r['samples_per_s']:.2f} {r['unit']}/s | {1000 * r['step_s']:.1f} | {r['peak_mem_gib']:.2f} | "
              f"{r['model_flops_per_step'] / 1e12:.4g} | {mfu} | {check} |")
    if bench:
        print("\n| benchmark | status | last line printed |\n|---|---|---|")
    for b in bench:
        print(f"| {b['bench']} | {b['status']} | {b['last_line']} |")
    failed = [n for n, r in results.items() if r["status"] != "ok"]
    ok = all(math.isfinite(r["samples_per_s"]) for r in results.values() if r["status"] == "ok")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev_name, "peak": peak_name, "dtype": "bf16" if bf16 else "fp32", "methods": results,
                       "benchmarks": bench}, f, indent=1)
    bench_ok = sum(b["status"] == "ok" for b in bench)
    print(f"gpu suite done: {len(results) - len(failed)}/{len(results)} methods ran"
          + (f", failed: {', '.join(failed)}" if failed else "") + f"; benchmarks run: {bench_ok}/{len(bench)}")
    return 0 if not failed and ok else 1


if __name__ == "__main__":
    sys.exit(main())
