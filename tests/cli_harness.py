"""Entry points run as a user runs them: `python -m drnas_tf.<program>` in a subprocess from the repository root.

Callers name the module in full ("drnas_tf.search"): tests/test_build_file.py reads those strings as the test's
dependencies on the entry points.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}


def module_command(module, *args):
    return [sys.executable, "-m", module, *args]


def run_module(module, *args, timeout=900):
    """Runs `python -m MODULE ARGS`; returns the CompletedProcess (text stdout and stderr)."""
    return subprocess.run(module_command(module, *args), cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def flagfile_settings(path):
    """{flag name: value text} of a flagfile; a bare boolean flag reads "true"."""
    settings = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line[2:].partition("=")
            settings[name] = value or "true"
    return settings
