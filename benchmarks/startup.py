"""How long a user waits for the first step: from the command to the first finished step, at a stage boundary,
and on resume, through the real `python -m drnas_tf.search`.

    .venv/bin/python benchmarks/startup.py                      # the full-size CIFAR supernet on digits' images
    .venv/bin/python benchmarks/startup.py --size=small         # an NB201 supernet, for a quick look
    .venv/bin/python benchmarks/startup.py --graph_optimization=full   # the search's flag, passed on
    .venv/bin/python benchmarks/startup.py --nokeep_traces             # the re-run traces again
    .venv/bin/python benchmarks/startup.py --warmup_steps=10           # the end of an architecture warm-up
    .venv/bin/python benchmarks/startup.py --warmup_steps=10 --notrace_ahead

The search runs two one-epoch stages (k 6 -> 4 and 7 -> 4 operations for the DARTS space, as the paper's CIFAR
schedule) of 3 steps each, with architecture updates from the start and `--checkpoint_every_steps=1`, so that
`state.json` is rewritten after every step; the script polls it. digits' images are 32x32, as CIFAR's, and the
time to the first step does not depend on the data. It prints one JSON line:

- `first_step_s`: command to the first step's state (process start, imports, data, building the supernet,
  tracing, graph optimisation, the step and its checkpoint);
- `next_step_s`: the second step, for scale;
- `stage_boundary_s`: the end of stage 1 to the first step of stage 2 (pruning, rebuilding, widening, tracing
  and graph optimisation again);
- `resume_first_step_s`: the command, re-run after a SIGKILL one step into stage 2, to its first step (it
  loads the step the killed process traced, unless `--nokeep_traces`);
- `another_seed_first_step_s`: then a new search with `--seed=1` in a new `--model_dir`, given the first one's
  traces as `--trace_dir` (as a sweep's seeds share theirs), to its first step (it loads stage 1's step, unless
  `--nokeep_traces`).

With `--warmup_steps=N` it measures the end of an architecture warm-up instead: stage 1 is one warm-up epoch of N
steps (architecture updates off) and one epoch with them, and the line gives `first_step_s`, `next_step_s` and
`warmup_end_s`, the warm-up's last step to the first step after it (tracing the step with architecture updates,
unless `--trace_ahead`, the default, traced it during the warm-up, then graph optimisation); the search is killed
there. `later_warmup_steps_s` is the warm-up's steps after its first, during which the step is traced ahead.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {
    "full": ["--search_space=darts", "--init_channels=36", "--layers=20", "--ks=6,4", "--num_keeps=7,4"],
    "small": ["--search_space=nb201", "--init_channels=16", "--cells_per_stage=5", "--ks=4,2", "--num_keeps=5,3"],
}
STEPS = 3


def search_command(args, model_dir, *settings):
    """`python -m drnas_tf.search` on digits at the chosen size with `settings`, writing state.json every step."""
    return [sys.executable, "-m", "drnas_tf.search", "--dataset=digits", *SIZES[args.size], "--batch_size=64",
            "--checkpoint_every_steps=1", "--progress=0", f"--graph_optimization={args.graph_optimization}",
            f"--model_dir={model_dir}", *settings]


def launch(command):
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def state(model_dir):
    """(epochs done, steps into the next) of the run's state.json, or None before it exists."""
    try:
        with open(os.path.join(model_dir, "state.json"), encoding="utf-8") as file:
            saved = json.load(file)
    except (OSError, ValueError):
        return None
    return saved["epoch"], saved["step"]


def wait_for(process, model_dir, wanted, timeout):
    """The time at which state.json first reads `wanted` (polled every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state(model_dir) == wanted:
            return time.monotonic()
        if process.poll() is not None:
            raise SystemExit(f"the search ended before state {wanted}: exit {process.returncode}")
        time.sleep(0.1)
    raise SystemExit(f"no state {wanted} within {timeout} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for each state")
    parser.add_argument("--graph_optimization", choices=["auto", "quick", "full"], default="auto",
                        help="the search's --graph_optimization")
    parser.add_argument("--nokeep_traces", action="store_true",
                        help="the search's --nokeep_traces: the re-run traces its step again instead of loading it")
    parser.add_argument("--warmup_steps", type=int, default=0,
                        help="measure the end of a warm-up epoch of this many steps instead (module docstring)")
    parser.add_argument("--notrace_ahead", action="store_true",
                        help="the search's --notrace_ahead: the warm-up's end traces the step that follows it")
    args = parser.parse_args()
    if 0 < args.warmup_steps < STEPS:  # the second step's state must be seen before the epoch's end replaces it
        parser.error(f"--warmup_steps must be 0 or at least {STEPS}")
    if args.warmup_steps:
        warmup_end(args)
        return
    model_dir = tempfile.mkdtemp(prefix="startup-")
    command = search_command(args, model_dir, "--stage_epochs=1,1", f"--steps_per_epoch={STEPS}",
                             "--arch_warmup_epochs=0", "--nokeep_traces" if args.nokeep_traces else "--keep_traces")
    start = time.monotonic()
    process = launch(command)
    first = wait_for(process, model_dir, (0, 1), args.timeout)
    second = wait_for(process, model_dir, (0, 2), args.timeout)
    stage_end = wait_for(process, model_dir, (1, 0), args.timeout)
    boundary = wait_for(process, model_dir, (1, 1), args.timeout)
    process.send_signal(signal.SIGKILL)  # one step into stage 2; the same command resumes there
    process.wait()
    start_resume = time.monotonic()
    process = launch(command)
    resumed = wait_for(process, model_dir, (1, 2), args.timeout)
    process.wait()
    seed_dir = tempfile.mkdtemp(prefix="startup-seed-")
    start_seed = time.monotonic()
    traces = os.path.join(model_dir, "traces")
    process = launch([*command, "--seed=1", f"--model_dir={seed_dir}", f"--trace_dir={traces}"])
    another = wait_for(process, seed_dir, (0, 1), args.timeout)
    process.send_signal(signal.SIGKILL)
    process.wait()
    print(json.dumps({"size": args.size, "graph_optimization": args.graph_optimization,
                      "keep_traces": not args.nokeep_traces,
                      "first_step_s": round(first - start, 1), "next_step_s": round(second - first, 1),
                      "stage_boundary_s": round(boundary - stage_end, 1),
                      "resume_first_step_s": round(resumed - start_resume, 1),
                      "another_seed_first_step_s": round(another - start_seed, 1), "model_dir": model_dir}))


def warmup_end(args):
    model_dir = tempfile.mkdtemp(prefix="startup-warmup-")
    start = time.monotonic()
    process = launch(search_command(args, model_dir, "--stage_epochs=2,1", f"--steps_per_epoch={args.warmup_steps}",
                                    "--arch_warmup_epochs=1",
                                    "--notrace_ahead" if args.notrace_ahead else "--trace_ahead"))
    first = wait_for(process, model_dir, (0, 1), args.timeout)
    second = wait_for(process, model_dir, (0, 2), args.timeout)
    warmup_done = wait_for(process, model_dir, (1, 0), args.timeout)
    after = wait_for(process, model_dir, (1, 1), args.timeout)
    process.send_signal(signal.SIGKILL)
    process.wait()
    print(json.dumps({"size": args.size, "graph_optimization": args.graph_optimization,
                      "trace_ahead": not args.notrace_ahead, "warmup_steps": args.warmup_steps,
                      "first_step_s": round(first - start, 1), "next_step_s": round(second - first, 1),
                      "later_warmup_steps_s": round(warmup_done - first, 1),
                      "warmup_end_s": round(after - warmup_done, 1), "model_dir": model_dir}))


if __name__ == "__main__":
    main()
