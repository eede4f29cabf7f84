"""The run loop that searches and retrainings share: state.json names its checkpoint relative to the run
directory, so a run resumes from any working directory and after its directory moved; the state files of
earlier versions, which named it relative to the starting directory, still resume."""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from drnas_tf import config as config_lib, run_loop, search_task, train_task
from drnas_tf.config import Execution
from drnas_tf.spaces import darts

QUIET = Execution(progress=0)
SIZE, BATCH, STEPS = 12, 8, 2


def batches(seed, count):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count).astype(np.int32)
    images = rng.normal(size=(count, SIZE, SIZE, 3)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(BATCH)


def search_data(epoch):
    return tf.data.Dataset.zip((batches(epoch, STEPS * BATCH), batches(epoch + 50, STEPS * BATCH))), STEPS


def train_data(epoch):
    return batches(epoch, STEPS * BATCH), STEPS


def search_config(epochs):
    return config_lib.search_config("nb201", "digits", init_channels=4, cells_per_stage=1, ks=(1,),
                                    num_keeps=(5,), stage_epochs=(epochs,), batch_size=BATCH)


def read_state(model_dir):
    with open(os.path.join(model_dir, "state.json"), encoding="utf-8") as file:
        return json.load(file)


def final_eta(model_dir):
    with open(os.path.join(model_dir, "genotype.json"), encoding="utf-8") as file:
        return np.asarray(json.load(file)["arch_parameters"]["cell"])


def test_checkpoint_paths_resolve_in_every_recorded_form(tmp_path, monkeypatch):
    run = tmp_path / "run"
    os.makedirs(run / "checkpoints")
    (run / "checkpoints" / "ckpt-3.index").write_text("")
    assert run_loop.checkpoint_path(str(run), "checkpoints/ckpt-3") == str(run / "checkpoints" / "ckpt-3")
    assert run_loop.checkpoint_path(str(run), "/elsewhere/ckpt-3") == "/elsewhere/ckpt-3"
    monkeypatch.chdir(tmp_path)  # an earlier version's state: relative to where that run started
    os.makedirs(tmp_path / "old" / "checkpoints")
    (tmp_path / "old" / "checkpoints" / "ckpt-5.index").write_text("")
    assert run_loop.checkpoint_path(str(run), "old/checkpoints/ckpt-5") == "old/checkpoints/ckpt-5"


def test_a_search_resumes_from_another_directory_after_its_directory_moved(tmp_path, monkeypatch):
    reference = str(tmp_path / "reference")  # one epoch, then resumed in place for a second
    for epochs in (1, 2):
        search_task.run_search(search_config(epochs), reference, search_data, execution=QUIET,
                               trajectory_samples=0)
    os.makedirs(tmp_path / "start")
    monkeypatch.chdir(tmp_path / "start")
    search_task.run_search(search_config(1), "run", search_data, execution=QUIET, trajectory_samples=0)
    assert read_state("run")["checkpoint"] == "checkpoints/ckpt-2"  # relative to the run directory
    shutil.move(str(tmp_path / "start" / "run"), str(tmp_path / "moved"))
    monkeypatch.chdir(tmp_path)
    search_task.run_search(search_config(2), "moved", search_data, execution=QUIET, trajectory_samples=0)
    assert read_state("moved")["epoch"] == 2
    np.testing.assert_array_equal(final_eta("moved"), final_eta(reference))


def test_a_search_state_written_by_an_earlier_version_still_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    search_task.run_search(search_config(1), "runs/search", search_data, execution=QUIET, trajectory_samples=0)
    state = read_state("runs/search")
    state["checkpoint"] = os.path.join("runs/search", state["checkpoint"])  # as earlier versions recorded it
    with open("runs/search/state.json", "w", encoding="utf-8") as file:
        json.dump(state, file)
    search_task.run_search(search_config(2), "runs/search", search_data, execution=QUIET, trajectory_samples=0)
    assert read_state("runs/search")["epoch"] == 2


def test_a_retraining_resumes_after_its_directory_moved(tmp_path, monkeypatch):
    config = config_lib.train_config(darts.PUBLISHED["DARTS_V2"], "digits", init_channels=4, layers=3, epochs=2,
                                     batch_size=BATCH, auxiliary=False, cutout=0)
    reference = train_task.run_train(config, str(tmp_path / "reference"), train_data, batches(99, 16),
                                     execution=QUIET)

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        train_task.run_train(config, "run", train_data, batches(99, 16), execution=QUIET,
                             callbacks=[StopAfterFirstEpoch()])
    assert read_state("run")["epoch"] == 1
    os.makedirs(tmp_path / "elsewhere")
    shutil.move("run", str(tmp_path / "elsewhere" / "run"))
    os.makedirs(tmp_path / "other")
    monkeypatch.chdir(tmp_path / "other")
    results = train_task.run_train(config, str(tmp_path / "elsewhere" / "run"), train_data, batches(99, 16),
                                   execution=QUIET)
    assert results["test_loss"] == reference["test_loss"] and results["train_loss"] == reference["train_loss"]
