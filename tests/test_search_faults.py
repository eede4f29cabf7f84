"""Faults and repeatability of `python -m drnas_tf.search` as a user runs it: --deterministic runs repeat bit for
bit, a search killed with SIGKILL at any point and re-run with the same command ends where an uninterrupted
run ends, loading the steps the killed process traced, and under --jit_compile the re-run loads its compiled
steps from XLA's cache."""

import glob
import json
import os

import pytest

from cli_harness import after_checkpoint, after_first_epoch, kill_when, mid_epoch, run_module, saved_state

SEARCH_FLAGS = ["--search_space=nb201", "--dataset=digits", "--init_channels=8", "--cells_per_stage=1",
                "--ks=2,1", "--num_keeps=5,3", "--stage_epochs=1,1", "--arch_warmup_epochs=0",
                "--steps_per_epoch=3", "--checkpoint_every_steps=1", "--trajectory_samples=0", "--progress=0",
                "--deterministic"]


def run_search(model_dir, *extra):
    result = run_module("drnas_tf.search", *SEARCH_FLAGS, f"--model_dir={model_dir}", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.load(open(os.path.join(model_dir, "genotype.json")))


def stage_boundary(model_dir):
    return after_first_epoch(model_dir)  # stage 1 is one epoch: the run now prunes and widens


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
    assert kill_when("drnas_tf.search", [*SEARCH_FLAGS, f"--model_dir={model_dir}"], model_dir, kill_point)
    assert not os.path.exists(os.path.join(model_dir, "genotype.json")) or \
        json.load(open(os.path.join(model_dir, "genotype.json")))["epoch"] < 1  # it really stopped early
    resumed = run_search(model_dir)
    assert resumed["arch_parameters"] == reference["arch_parameters"]
    assert resumed["text"] == reference["text"]


def stage_2_stepped(directory):
    state = saved_state(directory)
    return state if state and (state["epoch"], state["step"]) == (1, 1) else None


def trace_files(model_dir):
    """{path: modification time} of the .pb files of model_dir's kept traces, and the .json files' paths: an entry
    written again has a new .pb (the .json is touched whenever its entry is loaded)."""
    paths = glob.glob(os.path.join(model_dir, "traces", "*"))
    return {path: os.stat(path).st_mtime_ns if path.endswith(".pb") else None for path in paths}


@pytest.mark.slow
def test_a_search_resumed_in_stage_2_loads_its_traced_step_and_ends_as_an_uninterrupted_run(reference, tmp_path):
    """Killed once stage 2's first step is checkpointed, and re-run: the new process loads stage 2's traced step
    from --model_dir's traces instead of tracing it, writes no entry, and ends where the uninterrupted run ends."""
    model_dir = str(tmp_path / "run")
    assert kill_when("drnas_tf.search", [*SEARCH_FLAGS, f"--model_dir={model_dir}"], model_dir, stage_2_stepped)
    entries = trace_files(model_dir)
    assert len(entries) == 4, entries  # stage 1's step and stage 2's, each a .pb and a .json
    resumed = run_module("drnas_tf.search", *SEARCH_FLAGS, "--progress=2", f"--model_dir={model_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("loaded the traced step") == 1
    assert [line.split(":")[1].split(" in ")[0] for line in resumed.stdout.splitlines()
            if line.startswith("train step ready in")] == [" loaded"]
    assert trace_files(model_dir) == entries
    record = json.load(open(os.path.join(model_dir, "genotype.json")))
    assert record["arch_parameters"] == reference["arch_parameters"] and record["arch_steps"] == 6


@pytest.mark.slow
def test_a_jit_compile_search_resumed_in_stage_2_loads_its_compiled_step_from_the_xla_cache(tmp_path):
    """Killed once stage 2's first step is checkpointed, and re-run: the new process traces stage 2's step
    first, after other traces than the killed process made (stage 1's, the Dirichlet sampler's), yet finds
    the step XLA compiled for it in --model_dir's xla_cache and writes no entry again."""
    model_dir = str(tmp_path / "run")
    flags = [*[flag for flag in SEARCH_FLAGS if flag != "--deterministic"], "--jit_compile", f"--model_dir={model_dir}"]
    assert kill_when("drnas_tf.search", flags, model_dir, stage_2_stepped)
    entries = {path: os.stat(path).st_mtime_ns for path in glob.glob(os.path.join(model_dir, "xla_cache", "*"))}
    assert len(entries) == 2, entries  # stage 1's step and stage 2's
    resumed = run_module("drnas_tf.search", *flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.load(open(os.path.join(model_dir, "genotype.json")))["arch_steps"] == 6
    assert {path: os.stat(path).st_mtime_ns for path in glob.glob(os.path.join(model_dir, "xla_cache", "*"))} \
        == entries


@pytest.mark.slow
def test_a_search_tracing_ahead_during_its_warmup_ends_where_one_tracing_later_ends(tmp_path):
    """The step with architecture updates, traced in a thread during each stage's warm-up epoch, is the step
    a search tracing it when the warm-up ends calls: the two end bit for bit alike."""
    warmup = [*SEARCH_FLAGS, "--arch_warmup_epochs=1", "--stage_epochs=2,2"]
    ahead = run_module("drnas_tf.search", *warmup, "--progress=2", f"--model_dir={tmp_path / 'ahead'}")
    later = run_module("drnas_tf.search", *warmup, "--notrace_ahead", f"--model_dir={tmp_path / 'later'}")
    assert ahead.returncode == later.returncode == 0, (ahead.stderr[-3000:], later.stderr[-3000:])
    # Each stage's step with architecture updates was ready when the warm-up ended, as its first run reports.
    assert [line.split(":")[1].split(" in ")[0] for line in ahead.stdout.splitlines()
            if line.startswith("train step ready in")] == [" traced", " prepared during the warm-up"] * 2
    records = [json.load(open(tmp_path / name / "genotype.json")) for name in ("ahead", "later")]
    assert records[0]["arch_parameters"] == records[1]["arch_parameters"] and records[0]["arch_steps"] == 6
