"""Traced steps kept on disk: a second Searcher with the same key loads the first one's step instead of tracing
it and computes the same numbers to the last bit, also with another seed; another key, or another signature,
traces again; a directory keeps the entries written or loaded last."""

import os

import keras
import numpy as np
import tensorflow as tf

from drnas_tf import trace_store
from drnas_tf.search_model import Searcher
from drnas_tf.spaces.nb201.supernet import Nb201Supernet

BATCH = 8


def batches(steps, size=12):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2 * steps * BATCH, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, 10, len(images)).astype(np.int32)
    half = len(images) // 2
    train = tf.data.Dataset.from_tensor_slices((images[:half], labels[:half])).batch(BATCH)
    valid = tf.data.Dataset.from_tensor_slices((images[half:], labels[half:])).batch(BATCH)
    return tf.data.Dataset.zip((train, valid))


def search(directory, key, size=12, seed=0):
    """(variables, per-step losses, traces) of two steps of a fresh seeded Searcher keeping its traces."""
    keras.utils.set_random_seed(seed)
    searcher = Searcher(Nb201Supernet(10, 8, 1, 2), arch_learning_rate=0.05, weight_learning_rate=0.1, seed=seed)
    searcher.compile(optimizer=searcher.weight_optimizer)
    searcher.set_arch_updates(True)
    searcher.keep_traces(directory, key)
    train_function = searcher.make_train_function()
    iterator = iter(batches(2, size))
    losses = [float(train_function(iterator)["loss"]) for _ in range(2)]
    return [v.numpy() for v in searcher.variables], losses, searcher.traces


def entries(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".json"))


def test_a_second_searcher_loads_the_step_and_repeats_it_bit_for_bit(tmp_path):
    first, first_losses, first_traces = search(str(tmp_path), "run")
    assert first_traces == 1 and len(entries(tmp_path)) == 1
    second, second_losses, second_traces = search(str(tmp_path), "run")
    assert second_traces == 0  # train_step's Python never ran: the step came from the store
    assert second_losses == first_losses
    for mine, theirs in zip(second, first, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert len(entries(tmp_path)) == 1


def test_a_searcher_with_another_seed_loads_the_step_and_computes_what_its_own_trace_does(tmp_path):
    # The seed is a variable the step reads, so a sweep's seeds share one trace; each still draws its own.
    search(str(tmp_path / "shared"), "run", seed=0)
    loaded, loaded_losses, loaded_traces = search(str(tmp_path / "shared"), "run", seed=2**32 - 1)
    traced, traced_losses, traced_traces = search(str(tmp_path / "own"), "run", seed=2**32 - 1)
    assert (loaded_traces, traced_traces) == (0, 1)
    assert loaded_losses == traced_losses != search(str(tmp_path / "shared"), "run", seed=0)[1]
    for mine, theirs in zip(loaded, traced, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_another_key_or_signature_traces_again(tmp_path):
    search(str(tmp_path), "run")
    assert search(str(tmp_path), "another run")[2] == 1
    assert search(str(tmp_path), "run", size=16)[2] == 1  # other image sizes: another input signature
    assert len(entries(tmp_path)) == 3


def test_a_directory_keeps_its_newest_entries(tmp_path):
    for i in range(trace_store.KEEP + 2):
        for suffix in (".json", ".pb"):
            path = tmp_path / f"entry{i}{suffix}"
            path.write_text("{}")
            os.utime(path, (1000 + i, 1000 + i))
    trace_store._keep_newest(str(tmp_path), trace_store.KEEP)
    kept = sorted(os.listdir(tmp_path))
    assert kept == sorted(f"entry{i}{suffix}" for i in range(2, trace_store.KEEP + 2) for suffix in (".json", ".pb"))


def test_loading_an_entry_keeps_it_among_the_newest(tmp_path):
    search(str(tmp_path), "run")
    (used,) = entries(tmp_path)
    os.utime(tmp_path / used, (1000, 1000))
    search(str(tmp_path), "run")  # loads it
    for i in range(trace_store.KEEP - 1):  # then newer entries written by others
        for suffix in (".json", ".pb"):
            (tmp_path / f"entry{i}{suffix}").write_text("{}")
            os.utime(tmp_path / f"entry{i}{suffix}", (2000 + i, 2000 + i))
    (tmp_path / "oldest.json").write_text("{}")
    os.utime(tmp_path / "oldest.json", (1500, 1500))
    trace_store._keep_newest(str(tmp_path), trace_store.KEEP)
    assert used in entries(tmp_path) and "oldest.json" not in entries(tmp_path)


def test_a_truncated_entry_is_not_read(tmp_path):
    search(str(tmp_path), "run")
    (name,) = entries(tmp_path)
    with open(tmp_path / name.replace(".json", ".pb"), "r+b") as file:
        file.truncate(100)
    assert search(str(tmp_path), "run")[2] == 1
