"""Entry points run as a user runs them: `python -m drnas_tf.<program>` in a subprocess from the repository root.

Callers name the module in full ("drnas_tf.search"): tests/test_build_file.py reads those strings as the test's
dependencies on the entry points.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}


def module_command(module, *args):
    return [sys.executable, "-m", module, *args]


def run_module(module, *args, timeout=900):
    """Runs `python -m MODULE ARGS`; returns the CompletedProcess (text stdout and stderr)."""
    return subprocess.run(module_command(module, *args), cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def kill_when(module, args, model_dir, ready, timeout=300):
    """Starts `python -m MODULE ARGS`, SIGKILLs it as soon as `ready(model_dir)` holds; returns what the poll saw."""
    process = subprocess.Popen(module_command(module, *args), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            seen = ready(model_dir)
            if seen:
                process.send_signal(signal.SIGKILL)
                return seen
            assert process.poll() is None, f"{module} ended before the kill point"
            time.sleep(0.005)
        raise AssertionError(f"kill point not reached in {timeout} s")
    finally:
        process.kill()
        process.wait()


def saved_state(model_dir):
    """A run's state.json, None while there is none (or it cannot be read yet)."""
    try:
        return json.load(open(os.path.join(model_dir, "state.json")))
    except (OSError, ValueError):
        return None


# Kill points for kill_when, for runs that checkpoint every step (--checkpoint_every_steps=1).
def mid_epoch(model_dir):
    """One step of the first epoch is checkpointed and named in state.json."""
    state = saved_state(model_dir)
    return state if state and (state["epoch"], state["step"]) == (0, 1) else None


def after_checkpoint(model_dir):
    """The second checkpoint's files are there (state.json may not name it yet)."""
    return glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-2.index")) or None


def after_first_epoch(model_dir):
    """The first epoch is done and saved: the run now starts the second (for a search, a new stage)."""
    state = saved_state(model_dir)
    return state if state and state["epoch"] == 1 else None


def flagfile_settings(path):
    """{flag name: value text} of a flagfile; a bare boolean flag reads "true"."""
    settings = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line[2:].partition("=")
            settings[name] = value or "true"
    return settings
