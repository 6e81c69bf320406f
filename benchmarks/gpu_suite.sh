#!/usr/bin/env bash
# The GPU suite: one training step of each method (vcr, arc, joint, sort, eigv, lskd, critic) at base size in bf16
# with TF32, printing samples/s, peak GPU memory and model-FLOPs utilisation, then benchmarks/bench_*.py at their
# default sizes, all within GPU_SUITE_BUDGET_S seconds (default 480, install included).
#
#   bash benchmarks/gpu_suite.sh                    # on a CUDA machine, from a checkout
#   bash benchmarks/gpu_suite.sh --smoke            # tiny sizes on the CPU, seconds, installs nothing (CI)
#   bash benchmarks/gpu_suite.sh --methods lskd,critic --json figures.json
#
# Every argument goes to benchmarks/gpu_suite.py (see its --help). PYTHON picks the interpreter (default: python).
# Outside --smoke the checkout is installed first (editable), leaving the machine's torch as it is; where the
# install cannot run (no network, no pip) the checkout is put on PYTHONPATH instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python}"
BUDGET_S="${GPU_SUITE_BUDGET_S:-480}"
START=$(date +%s)

SMOKE=0
for arg in "$@"; do
  if [[ "$arg" == "--smoke" ]]; then SMOKE=1; fi
done

install_checkout() {
  local installed
  installed="$("$PY" -c 'import os, hf_vcr; print(os.path.dirname(os.path.dirname(os.path.abspath(hf_vcr.__file__))))' 2>/dev/null || true)"
  if [[ "$installed" == "$ROOT" ]]; then
    echo "gpu_suite.sh: hf_vcr already installed from this checkout"
    return 0
  fi
  if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "gpu_suite.sh: torch is not installed; install the CUDA build for this machine first" >&2
    exit 2
  fi
  local constraints
  constraints="$(mktemp)"
  # pin the machine's torch (CUDA build) so that pip never replaces it
  "$PY" -c 'import torch; print(f"torch=={torch.__version__}")' > "$constraints"
  if "$PY" -c 'import transformers, datasets, accelerate, evaluate, peft, huggingface_hub, safetensors' 2>/dev/null; then
    # the dependencies are there: install the checkout alone (works offline)
    "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . && return 0
  else
    "$PY" -m pip install --quiet -c "$constraints" -e . && return 0
  fi
  echo "gpu_suite.sh: pip install failed; running the checkout from PYTHONPATH" >&2
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
}

if [[ $SMOKE == 0 ]]; then
  install_checkout
  if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_suite.sh: no CUDA device visible: the base sizes will run on the CPU (use --smoke for a quick check)" >&2
  fi
fi

ELAPSED=$(( $(date +%s) - START ))
exec "$PY" benchmarks/gpu_suite.py --budget-s "$(( BUDGET_S - ELAPSED ))" "$@"
