"""Faults and repeatability of `python -m drnas_tf.search` as a user runs it: --deterministic runs repeat bit for
bit, and a search killed with SIGKILL at any point and re-run with the same command ends where an uninterrupted
run ends."""

import glob
import json
import os
import signal
import subprocess
import time

import pytest

from cli_harness import ENV, ROOT, module_command, run_module

SEARCH_FLAGS = ["--search_space=nb201", "--dataset=digits", "--init_channels=8", "--cells_per_stage=1",
                "--ks=2,1", "--num_keeps=5,3", "--stage_epochs=1,1", "--arch_warmup_epochs=0",
                "--steps_per_epoch=3", "--checkpoint_every_steps=1", "--trajectory_samples=0", "--verbose=0",
                "--deterministic"]


def run_search(model_dir, *extra):
    result = run_module("drnas_tf.search", *SEARCH_FLAGS, f"--model_dir={model_dir}", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.load(open(os.path.join(model_dir, "genotype.json")))


def kill_when(model_dir, ready):
    """Starts the search, SIGKILLs it as soon as `ready(model_dir)` holds; returns what the poll saw."""
    command = module_command("drnas_tf.search", *SEARCH_FLAGS, f"--model_dir={model_dir}")
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            seen = ready(model_dir)
            if seen:
                process.send_signal(signal.SIGKILL)
                return seen
            assert process.poll() is None, "the search ended before the kill point"
            time.sleep(0.005)
        raise AssertionError("kill point not reached in 300 s")
    finally:
        process.kill()
        process.wait()


def saved_state(model_dir):
    try:
        return json.load(open(os.path.join(model_dir, "state.json")))
    except (OSError, ValueError):
        return None


def mid_epoch(model_dir):
    state = saved_state(model_dir)
    return state if state and (state["epoch"], state["step"]) == (0, 1) else None


def after_checkpoint(model_dir):
    """The second checkpoint's files are there (state.json may not name it yet)."""
    index = glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-2.index"))
    return index or None


def stage_boundary(model_dir):
    state = saved_state(model_dir)
    return state if state and state["epoch"] == 1 else None  # stage 1 done: the run now prunes and widens


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_search(str(tmp_path_factory.mktemp("reference")))


@pytest.mark.slow
def test_deterministic_runs_repeat_bit_for_bit_and_another_seed_differs(reference, tmp_path):
    again = run_search(str(tmp_path / "again"))
    assert again["arch_parameters"] == reference["arch_parameters"]  # exact: the JSON holds every float32 bit
    assert again["text"] == reference["text"]
    other = run_search(str(tmp_path / "other"), "--seed=3")
    assert other["arch_parameters"] != reference["arch_parameters"]


@pytest.mark.slow
@pytest.mark.parametrize("kill_point", [mid_epoch, after_checkpoint, stage_boundary], ids=lambda f: f.__name__)
def test_sigkill_then_rerun_equals_an_uninterrupted_run(reference, tmp_path, kill_point):
    model_dir = str(tmp_path / "run")
    assert kill_when(model_dir, kill_point)
    assert not os.path.exists(os.path.join(model_dir, "genotype.json")) or \
        json.load(open(os.path.join(model_dir, "genotype.json")))["epoch"] < 1  # it really stopped early
    resumed = run_search(model_dir)
    assert resumed["arch_parameters"] == reference["arch_parameters"]
    assert resumed["text"] == reference["text"]
