"""A repository holding a Python toolchain that runs the project's virtualenv interpreter.

Bazel 4's default toolchain runs whatever `python3` is on the test's PATH, which lacks TensorFlow and the
other packages of requirements.txt. This one runs `$DRNAS_TF_PYTHON` when that is set (pass it with
`--repo_env=DRNAS_TF_PYTHON=/abs/path/to/python`, e.g. in user.bazelrc), else `.venv/bin/python` in the
workspace, the virtualenv `make install` creates. The path is used as given, not resolved: a virtualenv's
python finds its packages through the path it was started by.
"""

_INTERPRETER_ENV = "DRNAS_TF_PYTHON"

_BUILD = """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

py_runtime(
    name = "runtime",
    interpreter_path = "{interpreter}",
    python_version = "PY3",
    stub_shebang = "#!{interpreter}",
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
"""

def _venv_python_impl(repository_ctx):
    interpreter = repository_ctx.os.environ.get(_INTERPRETER_ENV)
    if not interpreter:
        workspace = repository_ctx.path(Label("//:WORKSPACE")).dirname
        interpreter = "{}/.venv/bin/python".format(workspace)
    if not interpreter.startswith("/"):
        fail("{}={} must be an absolute path to a Python interpreter".format(_INTERPRETER_ENV, interpreter))
    if not repository_ctx.path(interpreter).exists:
        fail(("no Python interpreter at {path}: run `make install` to create the virtualenv, or point " +
              "{env} at one that has requirements.txt installed (--repo_env={env}=/abs/path/to/python)").format(
            path = interpreter,
            env = _INTERPRETER_ENV,
        ))
    repository_ctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(repository_ctx.name))
    repository_ctx.file("BUILD", _BUILD.format(interpreter = interpreter))

venv_python = repository_rule(
    implementation = _venv_python_impl,
    environ = [_INTERPRETER_ENV],
)
