"""`python -m drnas_tf.train` as a user runs it: results.json, flagfiles, a search's model_dir, one-line errors."""

import glob
import json
import os
import types

import pytest

from cli_harness import ROOT, flagfile_settings, run_module
from drnas_tf import config as config_lib
from drnas_tf.spaces import parse_genotype

NB201 = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|skip_connect~2|"
TRAIN_FLAGFILES = sorted(glob.glob(os.path.join(ROOT, "flags", "train", "*.flags")))
NETWORK_FLAGS = {"init_channels", "layers", "cells_per_stage"}


@pytest.mark.parametrize("path", TRAIN_FLAGFILES, ids=os.path.basename)
def test_train_flagfiles_describe_valid_runs(path):
    settings = flagfile_settings(path)
    settings.pop("progress", None)
    genotype = parse_genotype(settings.pop("genotype", NB201 if "digits" in path else "DrNAS_cifar10"))
    converters = {"lr_schedule": str, "eval_split": str, "color_jitter": lambda v: v == "true",
                  "auxiliary": lambda v: v == "true", "learning_rate": float, "learning_rate_min": float,
                  "weight_decay": float, "label_smoothing": float, "auxiliary_weight": float,
                  "drop_path_prob": float, "momentum": float, "grad_clip": float}
    dataset = settings.pop("dataset")
    config = config_lib.train_config(genotype, dataset, **{
        name: converters.get(name, int)(value) for name, value in settings.items()})
    assert config.schedule.epochs >= 1


def test_paper_flagfiles_equal_the_defaults():
    for name, dataset in (("cifar10", "cifar10"), ("imagenet", "imagenet")):
        settings = flagfile_settings(os.path.join(ROOT, "flags", "train", f"{name}.flags"))
        defaults = types.SimpleNamespace(**config_lib.flat_settings(
            config_lib.train_config(parse_genotype(settings["genotype"]), dataset)))
        assert int(settings["epochs"]) == defaults.epochs and int(settings["batch_size"]) == defaults.batch_size
        assert float(settings["learning_rate"]) == defaults.learning_rate
        assert float(settings["weight_decay"]) == defaults.weight_decay


def test_short_digits_run_writes_results_json(tmp_path):
    search_dir = tmp_path / "search"
    search_dir.mkdir()
    (search_dir / "genotype.json").write_text(json.dumps({"space": "nb201", "arch": NB201}))
    model_dir = tmp_path / "run"
    flags = [f"--genotype={search_dir}", "--dataset=digits", f"--model_dir={model_dir}", "--init_channels=4",
             "--cells_per_stage=1", "--epochs=2", "--steps_per_epoch=2", "--batch_size=16", "--progress=0"]
    result = run_module("drnas_tf.train", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.load(open(model_dir / "results.json"))
    assert 0.0 <= results["test_top1"] <= results["test_top5"] <= 1.0
    assert results["epochs"] == 2 and results["train_seconds"] > 0 and results["genotype"] == NB201
    assert results["eval_split"] == "test" and results["dataset"] == "digits"
    assert json.loads(result.stdout.strip().splitlines()[-1]) == results
    # Finished: resuming only re-tests, with the same numbers (execution flags such as this one may change).
    again = run_module("drnas_tf.train", *flags, "--noreturn_freed_memory")
    assert again.returncode == 0, again.stderr[-3000:]
    assert {k: v for k, v in json.load(open(model_dir / "results.json")).items() if k != "train_seconds"} == {
        k: v for k, v in results.items() if k != "train_seconds"}
