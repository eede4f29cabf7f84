"""README's "Use it from Python": its marked snippet, run exactly as written, prints what the README shows."""

import ast
import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf

from drnas_tf.data import digits
from drnas_tf.spaces import parse_genotype

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
MARK = "<!-- python api: tests/test_python_api.py runs this block as written, in an empty directory -->"
# The project modules the snippet imports, named in full so that tests/test_build_file.py gives this test's
# BUILD target their libraries (Bazel runs the snippet with only those).
SNIPPET_MODULES = {"drnas_tf.config", "drnas_tf.saved_model", "drnas_tf.spaces", "drnas_tf.data.catalog",
                   "drnas_tf.data.digits", "drnas_tf.search_model", "drnas_tf.train_model"}
# A line of output with the genotype and the two class lists left out: these vary from run to run.
VARIABLE = re.compile(r"\|\S+\||\[[0-9 ]+\]")


def readme_snippet():
    """(the marked ```python block, the ``` block after it: the output the README shows)."""
    text = open(README, encoding="utf-8").read()
    assert text.count(MARK) == 1
    after = text.split(MARK, 1)[1]
    assert after.startswith("\n```python\n"), "the mark must be right above the ```python block"
    code, rest = after[len("\n```python\n"):].split("\n```\n", 1)
    shown = rest.split("\n```\n", 1)[1].split("\n```\n", 1)[0]
    return code + "\n", shown.strip().splitlines()


def is_module(name):
    path = os.path.join(ROOT, *name.split("."))
    return os.path.isfile(path + ".py") or os.path.isfile(os.path.join(path, "__init__.py"))


def test_the_snippet_imports_the_modules_this_test_declares():
    code, _ = readme_snippet()
    imported = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.module.startswith("drnas_tf"):
            imported.update(f"{node.module}.{alias.name}" if is_module(f"{node.module}.{alias.name}") else node.module
                            for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names if alias.name.startswith("drnas_tf"))
    assert imported == SNIPPET_MODULES, "update SNIPPET_MODULES (and BUILD) to the snippet's imports"


@pytest.mark.slow
def test_readme_snippet_runs_and_prints_what_the_readme_shows(tmp_path):
    code, shown = readme_snippet()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    printed = result.stdout.strip().splitlines()
    assert [VARIABLE.sub("...", line) for line in printed] == [VARIABLE.sub("...", line) for line in shown], printed
    (genotype_text,) = re.findall(r"^genotype: (\S+)$", result.stdout, re.M)
    genotype = parse_genotype(genotype_text)
    assert genotype.space == "nb201" and genotype.to_text() == genotype_text
    # The SavedModel it wrote (in the empty directory) carries that genotype.
    exported = tf.saved_model.load(str(tmp_path / "digits_model")).signatures["metadata"]()
    assert exported["genotype"].numpy().decode() == genotype_text
    ((predicted, true),) = re.findall(r"^predicted: \[([0-9 ]+)\] true: \[([0-9 ]+)\]$", result.stdout, re.M)
    predicted, true = [int(c) for c in predicted.split()], [int(c) for c in true.split()]
    assert len(predicted) == 10 and all(0 <= c < 10 for c in predicted)
    _, test_labels = digits.load_digits_arrays("test")
    assert true == test_labels[:10].tolist()
    assert shown[-1].endswith(f"true: {test_labels[:10]}")  # the README's example shows the real labels
