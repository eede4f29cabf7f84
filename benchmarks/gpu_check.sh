#!/usr/bin/env bash
# The GPU check: search-step times and peak GPU memory on one GPU, and the projected wall time of the paper's two
# progressive CIFAR-10 searches; one JSON object on stdout, in at most about 8 minutes (BUDGET_S, default 450 s,
# bounds the measuring; runs that no longer fit are reported as skipped).
#
#   make install && .venv/bin/python -m pip install 'tensorflow[and-cuda]==2.21.0'  # from the repository root
#   benchmarks/gpu_check.sh          # PYTHON=... picks another Python
#
# Each run is a fresh `benchmarks/search_step.py` process (synthetic 32x32 data, 3 warm-up iterations, median of
# 5), most important first: nb201_k4 at batch 64 and 256, with XLA (--jit_compile) and bfloat16
# (--mixed_precision=mixed_bfloat16), NB201's second stage, then the full-size DARTS-space supernet (C=36, 20
# cells) at both batches, its second stage, and with XLA and bfloat16. The projection multiplies each stage's
# median step time by its epochs (NB201 50 + 50, DARTS 25 + 25) and CIFAR-10's steps per epoch (25,000 images
# per half, full batches), plus each stage's first step (tracing and graph optimisation); it leaves out data
# loading and the per-epoch outputs. docs/performance.md explains the figures.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
BUDGET_S=${BUDGET_S:-450}

# TensorFlow's Linux wheel runs on a GPU only with its CUDA 12 libraries, which `make install` leaves out.
if ! refusal=$("$PY" - "$PY" 2>/dev/null <<'PYTHON'
import sys

import tensorflow as tf

if not tf.config.list_physical_devices("GPU"):
    print(f"gpu_check: TensorFlow sees no GPU; install its CUDA libraries with {sys.argv[1]} -m pip install "
          f"'tensorflow[and-cuda]=={tf.__version__}', then check that nvidia-smi lists the GPU")
    sys.exit(1)
PYTHON
); then
  echo "${refusal:-gpu_check: $PY cannot import TensorFlow; run make install}" >&2
  exit 1
fi
RUNS=$(mktemp)
START=$(date +%s)

run() {  # run LABEL SEARCH_STEP_FLAGS...: appends {"label", "result"|"skipped"|"failed"} to $RUNS
  local label=$1 left line
  shift
  left=$((BUDGET_S - ($(date +%s) - START)))
  if ((left < 20)); then
    echo "{\"label\": \"$label\", \"skipped\": \"over the ${BUDGET_S} s budget\"}" >>"$RUNS"
    return
  fi
  if line=$(timeout "$left" "$PY" benchmarks/search_step.py --iterations=5 "$@" 2>/dev/null | tail -n 1) &&
    [[ $line == \{* ]]; then
    echo "{\"label\": \"$label\", \"result\": $line}" >>"$RUNS"
  else
    echo "{\"label\": \"$label\", \"failed\": \"exit or timeout; rerun: $PY benchmarks/search_step.py $*\"}" >>"$RUNS"
  fi
}

run nb201_k4_b64 --config=nb201_k4 --batch_size=64
run nb201_k4_b256 --config=nb201_k4 --batch_size=256
run nb201_k4_b64_xla --config=nb201_k4 --batch_size=64 --jit_compile
run nb201_k4_b64_bf16 --config=nb201_k4 --batch_size=64 --mixed_precision=mixed_bfloat16
run nb201_k4_b256_xla_bf16 --config=nb201_k4 --batch_size=256 --jit_compile --mixed_precision=mixed_bfloat16
run nb201_k2_keep3_b64 --config=nb201_k2_keep3 --batch_size=64
run darts_full_b64 --config=darts_c36_l20_k6 --batch_size=64
run darts_full_b256 --config=darts_c36_l20_k6 --batch_size=256
run darts_full_stage2_b64 --config=darts_c36_l20_k4_keep4 --batch_size=64
run darts_full_b64_xla --config=darts_c36_l20_k6 --batch_size=64 --jit_compile
run darts_full_b64_bf16 --config=darts_c36_l20_k6 --batch_size=64 --mixed_precision=mixed_bfloat16

GPU=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
"$PY" - "$RUNS" "$GPU" "$(($(date +%s) - START))" <<'PYTHON'
import json
import sys

runs = [json.loads(line) for line in open(sys.argv[1])]
results = {run["label"]: run["result"] for run in runs if "result" in run}
IMAGES_PER_HALF = 25000  # CIFAR-10's training set, split in half (--train_portion=0.5)


def projected_hours(stages, batch):
    """stages: [(label of the stage's run, epochs)]; None when a run is missing."""
    if any(label not in results for label, _ in stages):
        return None
    steps = IMAGES_PER_HALF // batch
    seconds = sum(epochs * steps * results[label]["train_ms_median"] / 1000 + results[label]["first_step_s"]
                  for label, epochs in stages)
    return round(seconds / 3600, 2)


print(json.dumps({
    "gpu": sys.argv[2] or None, "measuring_s": int(sys.argv[3]), "runs": runs,
    "projected_hours": {
        "nb201_progressive_50+50_batch64": projected_hours([("nb201_k4_b64", 50), ("nb201_k2_keep3_b64", 50)], 64),
        "darts_cifar10_progressive_25+25_batch64": projected_hours(
            [("darts_full_b64", 25), ("darts_full_stage2_b64", 25)], 64),
    },
}, indent=1))
PYTHON
rm -f "$RUNS"
