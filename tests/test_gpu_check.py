"""benchmarks/gpu_check.sh measures only on a GPU: where TensorFlow sees none (`make install` leaves out its CUDA
libraries) it says how to install them, in one line, rather than timing the CPU under the GPU check's name."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gpu_check(python):
    return subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHON": python})


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="TensorFlow sees a GPU here")
def test_without_a_gpu_it_names_the_install_and_measures_nothing():
    result = gpu_check(sys.executable)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"gpu_check: TensorFlow sees no GPU; install its CUDA libraries with {sys.executable} -m pip install "
        f"'tensorflow[and-cuda]=={tf.__version__}', then check that nvidia-smi lists the GPU"]


def test_without_tensorflow_it_says_so(tmp_path):
    no_tensorflow = tmp_path / "python"
    no_tensorflow.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; sys.exit(1)' \"$@\"\n")
    no_tensorflow.chmod(0o755)
    result = gpu_check(str(no_tensorflow))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [f"gpu_check: {no_tensorflow} cannot import TensorFlow; run make install"]
