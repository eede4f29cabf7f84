"""`python -m drnas_tf.search` as a user runs it: a short digits search, flagfiles, one-line errors."""

import glob
import json
import os
import types

import pytest

from benchmark_table import synthetic_results, write_table
from cli_harness import ROOT, flagfile_settings, run_module
from drnas_tf import config as config_lib, outputs
from drnas_tf.spaces import nb201

LIST_FLAGS = {"ks", "num_keeps", "stage_epochs"}
RUN_FLAGS = {"progress", "num_gpus", "model_dir", "download"}  # not part of a SearchConfig


def search_settings(path):
    """A search flagfile as search_config arguments."""
    return {name: value.split(",") if name in LIST_FLAGS else value
            for name, value in flagfile_settings(path).items() if name not in RUN_FLAGS}


SEARCH_FLAGFILES = sorted(p for p in glob.glob(os.path.join(ROOT, "flags", "*.flags")) if "_supernet" not in p)


@pytest.mark.parametrize("path", SEARCH_FLAGFILES, ids=os.path.basename)
def test_flagfiles_describe_valid_searches(path):
    settings = search_settings(path)
    space, dataset, method = settings.pop("search_space"), settings.pop("dataset"), settings.pop("method")
    converters = {"init_channels": int, "layers": int, "cells_per_stage": int, "arch_warmup_epochs": int,
                  "batch_size": int, "lr_warmup_epochs": int, "seed": int, "steps_per_epoch": int,
                  "reg_type": str, "nb201_bypass": str}
    kwargs = {name: converters.get(name, float)(value) if not isinstance(value, list) else value
              for name, value in settings.items()}
    config = config_lib.search_config(space, dataset, method, **kwargs)
    assert config.schedule.total_epochs >= 1


def test_paper_flagfiles_equal_the_defaults():
    """A bare --search_space=nb201 runs the reference's main NB201 command (k=1, 5 operations, 100 epochs, no
    warm-up); the progressive schedule lives in the *_progressive flagfiles."""
    for name, space, dataset in (("darts_cifar10", "darts", "cifar10"), ("darts_imagenet", "darts", "imagenet"),
                                 ("nb201_cifar10", "nb201", "cifar10"), ("nb201_cifar100", "nb201", "cifar100")):
        settings = search_settings(os.path.join(ROOT, "flags", f"{name}.flags"))
        defaults = types.SimpleNamespace(**config_lib.flat_settings(config_lib.search_config(space, dataset)))
        for flag in ("ks", "num_keeps", "stage_epochs"):
            assert tuple(int(value) for value in settings[flag]) == getattr(defaults, flag), (name, flag)
        assert int(settings["arch_warmup_epochs"]) == defaults.arch_warmup_epochs
        assert float(settings["arch_learning_rate"]) == defaults.arch_learning_rate
    nb201 = config_lib.search_config("nb201", "cifar10")
    assert (nb201.schedule.ks, nb201.schedule.num_keeps, nb201.schedule.stage_epochs,
            nb201.schedule.arch_warmup_epochs) == ((1,), (5,), (100,), 0)
    assert nb201.network.k == 1
    progressive = search_settings(os.path.join(ROOT, "flags", "nb201_cifar10_progressive.flags"))
    assert (progressive["ks"], progressive["num_keeps"], progressive["stage_epochs"]) == (
        ["4", "2"], ["5", "3"], ["50", "50"]) and progressive["arch_warmup_epochs"] == "10"


def test_short_digits_search_end_to_end(tmp_path):
    model_dir = str(tmp_path / "run")
    flags = ["--search_space=nb201", "--dataset=digits", f"--model_dir={model_dir}", "--init_channels=8",
             "--cells_per_stage=1", "--ks=2,1", "--num_keeps=5,3", "--stage_epochs=1,1", "--arch_warmup_epochs=0",
             "--steps_per_epoch=3", "--progress=0", "--trajectory_samples=10", "--recompute_cells=first_stage",
             f"--nb201_benchmark={write_table(tmp_path / 'nb201.jsonl')}"]  # recomputed cells: through both stages
    result = run_module("drnas_tf.search", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.load(open(os.path.join(model_dir, "genotype.json")))
    assert record["space"] == "nb201" and record["epoch"] == 1 and record["k"] == 1
    assert record["arch_steps"] == 6  # 2 epochs of 3 steps, no warm-up: one architecture step per step
    assert record["benchmark"] == synthetic_results(nb201.parse_text(record["text"]))
    assert record["trajectory"]["found"] == 10
    assert "final genotype: |" in result.stdout
    lines = result.stdout.splitlines()
    start = lines.index("operation probabilities per edge (Dirichlet mean), top and runner-up:")
    printed = [line.split() for line in lines[start + 1:start + 7]]
    expected = outputs.top_operations(record)
    assert [(edge[:-1], top, float(p)) for edge, top, p, _, _ in printed] == [
        (edge, top, round(p, 2)) for edge, top, p, _, _ in expected]
    assert "/10 distinct, op entropy" in result.stdout and "benchmark cifar10/test=" in result.stdout
    assert "--dataset=digits" in open(os.path.join(model_dir, "flags.txt")).read()
    assert f"final genotype: {record['text']}\n" in result.stdout
    again = run_module("drnas_tf.search", *flags)  # finished: resuming does nothing more and says the same
    assert again.returncode == 0 and json.load(open(os.path.join(model_dir, "genotype.json"))) == record
    assert f"final genotype: {record['text']}\n" in again.stdout


def test_helpshort_lists_the_analysis_flags():
    result = run_module("drnas_tf.search", "--helpshort")
    assert "--nb201_benchmark" in result.stdout and "--trajectory_samples" in result.stdout
