"""The project as an installable library: a wheel built from the repository holds the drnas_tf package only, and
installed into a fresh virtualenv it imports and runs from outside the repository.

Nothing is downloaded: the wheel is built with the running interpreter's setuptools (--no-build-isolation), and
the fresh virtualenv sees the dependencies already installed beside that interpreter through a .pth file, so
`pip install --no-index` succeeds only if they satisfy every range pyproject.toml declares.
"""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Not part of the source: the virtualenv, git, run outputs, Bazel's links and earlier build outputs.
NOT_SOURCE = {".git", ".venv", "runs", "build", "dist", ".pytest_cache"}
ENV = {**{key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")},
       "TF_CPP_MIN_LOG_LEVEL": "3", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def run(command, cwd, timeout=600):
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=ENV, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def not_source(directory, names):
    skipped = {name for name in names if name == "__pycache__" or name.endswith(".egg-info")}
    if os.path.samefile(directory, ROOT):
        skipped |= {name for name in names if name in NOT_SOURCE or name.startswith("bazel-")}
    return skipped


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel `pip wheel .` builds in a copy of the repository (so the build writes nothing here)."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=not_source)
    run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", tmp / "wheels"], cwd=source)
    (path,) = (tmp / "wheels").glob("drnas_tf-*.whl")
    return path


def test_the_wheel_holds_the_drnas_tf_package_only(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"drnas_tf", wheel.name.split("-py3")[0] + ".dist-info"}, top_level
    assert "drnas_tf/spaces/nb201/network.py" in names and "drnas_tf/summary.py" in names
    assert not any(name.startswith(("tests/", "benchmarks/", "flags/")) for name in names)
    requires = {line.split(":", 1)[1].strip().split("<")[0].split(">")[0].split(";")[0]
                for line in metadata.splitlines() if line.startswith("Requires-Dist:")}
    assert {"tensorflow", "tensorflow-probability", "keras", "scikit-learn"} <= requires, requires


@pytest.mark.slow
def test_installed_into_a_fresh_virtualenv_it_runs_outside_the_repository(wheel, tmp_path):
    fresh = tmp_path / "venv"
    run([sys.executable, "-m", "venv", fresh], cwd=tmp_path)  # its pip comes from ensurepip, offline
    python = fresh / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path)
    installed = importlib.metadata.distribution("tensorflow").locate_file("")  # where the dependencies are
    with open(os.path.join(purelib.stdout.strip(), "project_dependencies.pth"), "w", encoding="utf-8") as file:
        file.write(f"{installed}\n")
    run([python, "-m", "pip", "install", "--no-index", wheel], cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert not os.path.realpath(elsewhere).startswith(os.path.realpath(ROOT) + os.sep)
    where = run([python, "-c", "import drnas_tf; print(drnas_tf.__file__)"], cwd=elsewhere)
    assert os.path.realpath(where.stdout.strip()).startswith(os.path.realpath(fresh) + os.sep), where.stdout
    summary = run([python, "-m", "drnas_tf.summary", "--search_space=nb201", "--dataset=digits", "--init_channels=8",
                   "--cells_per_stage=1"], cwd=elsewhere)
    described = json.loads(summary.stdout.strip().splitlines()[-1])
    assert described["trainable_params"] > 0 and described["arch_params"] > 0
    # The quickstart's flagfiles live in the repository's flags/, which the package does not hold: one line.
    quickstart = subprocess.run([python, "-m", "drnas_tf.quickstart", f"--model_dir={elsewhere / 'quickstart'}"],
                                cwd=elsewhere, env=ENV, capture_output=True, text=True, timeout=300)
    assert quickstart.returncode == 2, quickstart.stderr[-2000:]
    assert quickstart.stderr.strip().splitlines()[-1].startswith(
        "drnas_tf.quickstart: error: --search_flagfile=flags/quickstart.flags does not exist;"), quickstart.stderr
    assert os.listdir(elsewhere) == []
