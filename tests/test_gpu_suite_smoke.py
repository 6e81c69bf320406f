"""The GPU suite (benchmarks/gpu_suite.sh) cannot rot: its --smoke mode runs every method's real training step
on the CPU at tiny sizes, and its FLOP formulas must agree with torch's FLOP counter on those steps."""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
METHODS = ("vcr", "arc", "joint", "sort", "eigv", "lskd", "critic")
NUMBER = r"([-+0-9.eE]+|nan|inf)"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    figures = tmp_path_factory.mktemp("gpu_suite") / "figures.json"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_suite.sh", "--smoke", "--peak-tflops", "1", "--json", str(figures)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    return proc, figures


def test_smoke_prints_every_method_and_the_summary(smoke_run):
    proc, figures = smoke_run
    out = proc.stdout
    assert proc.returncode == 0, f"gpu_suite.sh --smoke failed:\n{out[-3000:]}\n{proc.stderr[-3000:]}"
    assert "gpu_suite.sh:" not in out + proc.stderr, "--smoke must not install anything"
    for method in METHODS:
        line = re.search(rf"^\[{method}\] samples/s={NUMBER} .*peak_mem={NUMBER} .*MFU={NUMBER}% .*flops_check={NUMBER}", out, re.MULTILINE)
        assert line, f"no figures line for {method}:\n{out}"
        samples, peak, mfu, check = (float(x) for x in line.groups())
        assert math.isfinite(samples) and samples > 0, f"{method}: samples/s {samples}"
        assert math.isfinite(peak) and peak > 0 and math.isfinite(mfu) and mfu > 0, f"{method}: {line.group(0)}"
        # the FLOPs the suite divides by (counted from the configuration) are the FLOPs the step really runs
        assert abs(check - 1.0) < 0.03, f"{method}: FLOP formula / FlopCounterMode = {check}"
    assert "| method | samples/s | step ms | peak memory GiB | model TFLOP/step | MFU | flops check |" in out
    assert re.search(r"^gpu suite done: 7/7 methods ran; benchmarks run: 0/0$", out, re.MULTILINE), out[-2000:]
    data = json.loads(figures.read_text())
    assert data["dtype"] == "bf16" and set(data["methods"]) == set(METHODS)
    assert all(r["status"] == "ok" and r["model_flops_per_step"] > 0 for r in data["methods"].values())


def test_peak_table_picks_the_device(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    suite = importlib.import_module("gpu_suite")
    expected = {
        "NVIDIA H100 80GB HBM3": 989.4,
        "NVIDIA H100 PCIe": 756.5,
        "NVIDIA H100 NVL": 835.5,
        "NVIDIA H200 NVL": 835.5,
        "NVIDIA H200": 989.4,
        "NVIDIA GH200 480GB": 989.4,
        "NVIDIA A100-SXM4-80GB": 312.0,
        "NVIDIA A100 80GB PCIe": 312.0,
        "NVIDIA L40S": 362.05,
        "NVIDIA L4": 121.0,
        "NVIDIA A10G": None,
        "NVIDIA A10": 125.0,
        "NVIDIA GeForce RTX 4090": 165.2,
    }
    for name, tflops in expected.items():
        label, peak = suite.peak_for_name(name)
        assert peak == tflops, f"{name}: {label}"
    assert suite.peak_for_name("NVIDIA H100 80GB HBM3 MIG 1g.10gb")[0].endswith("(MIG slice: MFU is relative to the whole GPU)")
    assert suite.peak_for_name("Some Future GPU")[1] is None


def test_out_of_memory_falls_back_to_the_next_size(monkeypatch, tmp_path):
    """A candidate size that does not fit gives way to the next one, and the result says so."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    suite = importlib.import_module("gpu_suite")
    built = []

    def fake_case(size, device, workdir, bf16):
        built.append(size["name"])
        if size["name"] == "big":
            raise suite.torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return suite.Case(trainer=None, batches=[], samples=size["batch"], unit="items", flops=1, sizes=size["name"])

    monkeypatch.setitem(suite.CASES, "fake", fake_case)
    monkeypatch.setitem(suite.SIZES["base"], "fake", [dict(name="big", batch=8), dict(name="small", batch=4)])
    monkeypatch.setattr(suite, "time_case", lambda case, *a: {"samples_per_s": case.samples / 0.5})
    args = suite.argparse.Namespace(batch_size=None, warmup=0, steps=1, no_flops_check=True)
    result = suite.run_method("fake", "base", suite.torch.device("cpu"), False, args, str(tmp_path))
    assert built == ["big", "small"]
    assert result["sizes"] == "small" and result["samples_per_s"] == 8.0
    assert result["fallback"].startswith("candidate 1 ran out of memory (CUDA out of memory")

    monkeypatch.setitem(suite.SIZES["base"], "fake", [dict(name="big", batch=8)])
    with pytest.raises(RuntimeError, match="every candidate size ran out of memory"):
        suite.run_method("fake", "base", suite.torch.device("cpu"), False, args, str(tmp_path))
