"""benchmarks/paired_step.py: each lever it switches off is an attribute the code reads at trace time, switched
back afterwards, and a run prints its JSON line."""

import contextlib
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from drnas_tf import ops
from drnas_tf.ops import operations

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "paired_step.py")


def paired_step():
    spec = importlib.util.spec_from_file_location("paired_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("lever,module,attribute,off", [
    ("shared_relu", ops, "one_relu_per_input", contextlib.nullcontext),
    ("narrow_together", ops, "NARROW_CHANNELS", 0),
    ("grouped_pointwise", operations, "GROUPED_POINTWISE", False)])
def test_a_lever_is_off_inside_the_block_only(lever, module, attribute, off):
    on = getattr(module, attribute)
    assert on is not off
    with paired_step().lever_off(lever):
        assert getattr(module, attribute) is off
    assert getattr(module, attribute) is on


def test_the_levers_are_those_named_here():
    assert sorted(paired_step().LEVERS) == ["grouped_pointwise", "narrow_together", "shared_relu"]


@pytest.mark.slow
def test_a_run_prints_both_versions_and_their_ratios():
    result = subprocess.run([sys.executable, SCRIPT, "--config=nb201_k4", "--lever=shared_relu", "--pairs=2",
                             "--batch_size=8"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    line = json.loads(result.stdout.splitlines()[-1])
    assert {k: line[k] for k in ("config", "lever", "pairs", "batch_size")} == {
        "config": "nb201_k4", "lever": "shared_relu", "pairs": 2, "batch_size": 8}
    assert line["with_ms_median"] > 0 and line["without_ms_median"] > 0
    low, high = line["ratio_quartiles"]
    assert 0 < low <= line["ratio_median"] <= high
