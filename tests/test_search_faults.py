"""Faults and repeatability of `python -m drnas_tf.search` as a user runs it: --deterministic runs repeat bit for
bit, and a search killed with SIGKILL at any point and re-run with the same command ends where an uninterrupted
run ends."""

import json
import os

import pytest

from cli_harness import after_checkpoint, after_first_epoch, kill_when, mid_epoch, run_module

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
