"""Entry points start quietly: TensorFlow's C++ start-up notices are held back, everything else is kept in order."""

import re
import subprocess
import sys

from cli_harness import ENV, ROOT, run_module
from drnas_tf import cli, lean_import

# Lines a CPU-only TensorFlow 2.21 writes while it starts, as printed on this project's machines.
NOTICES = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796195360.067130   30960 port.cc:153] oneDNN custom operations are on. You may see slightly \
different numerical results due to floating-point round-off errors from different computation orders.
I0000 00:00:1796195360.067657   30960 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will \
not be used.
E0000 00:00:1796195362.012756   30960 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed \
call to cuInit: UNKNOWN ERROR (303)
I0000 00:00:1796195386.493901   31071 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use \
available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the \
appropriate compiler flags.
"""
REAL = "W0000 00:00:1796195362.1 30960 some_op.cc:12] a real warning\n"


def test_only_the_startup_notices_are_dropped():
    assert cli.without_startup_notices(NOTICES) == ""
    assert cli.without_startup_notices(NOTICES[:200] + "\n" + REAL) == REAL  # a cut notice line goes, REAL stays
    assert cli.without_startup_notices(REAL + "error: --seed must be\n") == REAL + "error: --seed must be\n"


def test_held_stderr_is_written_back_in_order_without_the_notices():
    script = ("import os, sys\n"
              "from drnas_tf import cli\n"
              "held = cli._StartupStderr()\n"
              f"os.write(2, {(NOTICES + REAL).encode()!r})\n"
              "print('from python', file=sys.stderr)\n"
              "held.release()\n"
              "print('after', file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == REAL + "from python\nafter\n"


def test_an_entry_point_prints_no_startup_notices_unless_verbose():
    args = ("--search_space=nb201", "--dataset=digits", "--init_channels=8", "--cells_per_stage=1")
    quiet, verbose = run_module("drnas_tf.summary", *args), run_module("drnas_tf.summary", *args, "--verbose")
    assert quiet.returncode == verbose.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert re.sub(r'"seconds": [0-9.]+', "", quiet.stdout) == re.sub(r'"seconds": [0-9.]+', "", verbose.stdout)
    assert cli.STARTUP_NOTICES.search(verbose.stderr), "this TensorFlow printed no notice to hide"
    failed = run_module("drnas_tf.summary", *args[:-1], "--cells_per_stage=0")
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1 and "--cells_per_stage" in failed.stderr


HIDDEN = lean_import.HIDDEN_WHILE_IMPORTING
LOADED = "sorted({{name.partition('.')[0] for name in sys.modules}} & {names!r})"


def _run_python(script):
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_tensorflow_imports_without_its_unused_optional_parts_which_import_normally_after():
    output = _run_python("import sys\n"
                         "from drnas_tf import lean_import\n"
                         "lean_import.import_tensorflow()\n"
                         "import tensorflow_probability as tfp\n"
                         "tfp.distributions.Dirichlet([1.0, 2.0]).sample(seed=(1, 2))\n"
                         f"print({LOADED.format(names=set(HIDDEN))})\n"
                         "print('tensorflow_probability.python.experimental' in sys.modules)\n"
                         "import matplotlib.pyplot, sklearn.datasets\n"
                         f"print({LOADED.format(names=set(HIDDEN))})\n")
    assert output[-3:] == ["[]", "False", "['matplotlib', 'scipy', 'sklearn']"]


def test_an_entry_point_imports_tensorflow_without_them():
    args = ["drnas_tf.summary", "--search_space=nb201", "--dataset=digits", "--init_channels=8", "--cells_per_stage=1"]
    loaded = LOADED.format(names={"tensorflow", "keras", "tensorflow_probability", *HIDDEN})
    output = _run_python(f"import atexit, runpy, sys\n"
                         f"atexit.register(lambda: print({loaded}))\n"
                         f"sys.argv = {args!r}\n"
                         "runpy.run_module('drnas_tf.summary', run_name='__main__', alter_sys=True)\n")
    assert output[-1] == "['keras', 'tensorflow', 'tensorflow_probability']"


def test_an_entry_point_turns_onednn_on_unless_the_environment_chose():
    """TensorFlow leaves its oneDNN kernels off by default on CPUs without AVX-512 VNNI, where a search step then
    takes 1.7-2.5 times as long; the entry points turn them on, and keep a TF_ENABLE_ONEDNN_OPTS the user set."""
    args = ["drnas_tf.summary", "--search_space=nb201", "--dataset=digits", "--init_channels=8", "--cells_per_stage=1"]
    script = ("import atexit, runpy, sys\n"
              "def report():\n"
              "    from drnas_tf import lean_import\n"
              "    print('onednn', lean_import.onednn_kernels_on())\n"
              "atexit.register(report)\n"
              f"sys.argv = {args!r}\n"
              "runpy.run_module('drnas_tf.summary', run_name='__main__', alter_sys=True)\n")
    chosen = {}
    for setting in (None, "0"):
        env = {key: value for key, value in ENV.items() if key != lean_import.ONEDNN_VARIABLE}
        if setting is not None:
            env[lean_import.ONEDNN_VARIABLE] = setting
        result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr
        chosen[setting] = result.stdout.splitlines()[-1]
    assert chosen == {None: "onednn True", "0": "onednn False"}
