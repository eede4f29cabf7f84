"""The whole pipeline as a newcomer runs it (`make quickstart`), smaller: search -> retrain -> export -> classify."""

import os
import re
import subprocess
import sys

import pytest

from drnas_tf.spaces import parse_genotype

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quickstart_pipeline_end_to_end(tmp_path):
    small_search = ["--search_flag=--cells_per_stage=1", "--search_flag=--init_channels=8",
                    "--search_flag=--stage_epochs=2", "--search_flag=--arch_warmup_epochs=1",
                    "--search_flag=--steps_per_epoch=2", "--search_flag=--progress=0"]
    small_train = ["--train_flag=--cells_per_stage=1", "--train_flag=--init_channels=8", "--train_flag=--epochs=2",
                   "--train_flag=--steps_per_epoch=3", "--train_flag=--progress=0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-m", "drnas_tf.quickstart", f"--model_dir={tmp_path}",
                             "--compare_random", *small_search, *small_train], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for step in ("drnas_tf.search", "drnas_tf.train", "drnas_tf.export"):
        assert f"$ python -m {step} " in result.stdout  # each step echoed as the command a user would type
    found = parse_genotype(str(tmp_path / "search"))
    lines = re.findall(r"^\s*(searched|random) genotype (\S+): digits test accuracy ([0-9.]+)$", result.stdout, re.M)
    assert [name for name, _, _ in lines] == ["searched", "random"], result.stdout[-2000:]
    assert parse_genotype(lines[0][1]) == found and parse_genotype(lines[1][1]).space == "nb201"
    for _, _, accuracy in lines:
        assert 0.0 <= float(accuracy) <= 1.0
    for part in ("train", "export_train", "train_random", "export_train_random"):
        assert os.path.isdir(tmp_path / part)
