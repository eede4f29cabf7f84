"""Faults and repeatability of `python -m drnas_tf.train` as a user runs it: --deterministic runs repeat bit for
bit, and a retraining killed with SIGKILL at any point and re-run with the same command ends where an
uninterrupted run ends."""

import json
import os

import pytest

from cli_harness import after_checkpoint, after_first_epoch, kill_when, mid_epoch, run_module

NB201 = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|skip_connect~2|"
TRAIN_FLAGS = [f"--genotype={NB201}", "--dataset=digits", "--init_channels=8", "--cells_per_stage=1",
               "--epochs=2", "--steps_per_epoch=3", "--batch_size=16", "--checkpoint_every_steps=1",
               "--progress=0", "--deterministic"]
COMPARED = ("test_top1", "test_top5", "test_loss", "train_loss", "train_accuracy", "params")


def run_train(model_dir, *extra):
    result = run_module("drnas_tf.train", *TRAIN_FLAGS, f"--model_dir={model_dir}", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.load(open(os.path.join(model_dir, "results.json")))
    return {key: results[key] for key in COMPARED}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_train(str(tmp_path_factory.mktemp("reference")))


@pytest.mark.slow
def test_deterministic_runs_repeat_bit_for_bit_and_another_seed_differs(reference, tmp_path):
    assert run_train(str(tmp_path / "again")) == reference  # exact: JSON keeps every float bit
    assert run_train(str(tmp_path / "other"), "--seed=3")["test_loss"] != reference["test_loss"]


@pytest.mark.slow
@pytest.mark.parametrize("kill_point", [mid_epoch, after_checkpoint, after_first_epoch], ids=lambda f: f.__name__)
def test_sigkill_then_rerun_equals_an_uninterrupted_run(reference, tmp_path, kill_point):
    model_dir = str(tmp_path / "run")
    assert kill_when("drnas_tf.train", [*TRAIN_FLAGS, f"--model_dir={model_dir}"], model_dir, kill_point)
    assert not os.path.exists(os.path.join(model_dir, "results.json"))  # it really stopped early
    assert run_train(model_dir) == reference
