"""TensorFlow, Keras and TensorFlow Probability imported as the entry points want them: with TensorFlow's oneDNN
CPU kernels on, and without the optional parts drnas_tf never uses.

TensorFlow turns its oneDNN kernels on by default only on x86 CPUs with AVX-512 VNNI (or BF16, AMX). On other
CPUs a search step takes 1.7-2.5 times as long without them (docs/performance.md), so `import_tensorflow` turns them
on unless TF_ENABLE_ONEDNN_OPTS is already set; TensorFlow reads it once, when it loads. `onednn_kernels_on`
says whether they run, for the code whose behaviour depends on it.

When they are installed, `import tensorflow` also imports scikit-learn (for Keras's scikit-learn wrappers),
matplotlib (Keras's image gallery), SciPy (legacy Keras's sparse-input check) and h5py (legacy Keras's HDF5
model files). Each library guards the import and carries on without it; together they hold resident memory in
every process that imports TensorFlow, for features no entry point calls (docs/performance.md, Memory).
`import_tensorflow` hides them while the three frameworks import, then lets them import normally: the report
draws with matplotlib later in the same process. Keras's scikit-learn wrappers and image gallery stay off in that
process, which is why only entry points and benchmarks call it, never a module a user imports.
"""

import contextlib
import os
import sys

HIDDEN_WHILE_IMPORTING = ("sklearn", "matplotlib", "scipy", "h5py")
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def prefer_onednn():
    """Turns TensorFlow's oneDNN CPU kernels on for this process unless the environment already chose (the
    user's TF_ENABLE_ONEDNN_OPTS=0 is kept). It has effect only before TensorFlow loads."""
    os.environ.setdefault(ONEDNN_VARIABLE, "1")


def onednn_kernels_on():
    """Whether this process's TensorFlow runs its oneDNN CPU kernels (loads TensorFlow if needed). They differ
    from its other CPU kernels in more than speed: only they differentiate a grouped convolution, and their ReLU
    maps NaN to 0."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow built without the query
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


class _Hide:
    """A meta path finder under which importing one of `names` (or a submodule) fails as if it were absent."""

    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is hidden while TensorFlow imports", name=fullname)
        return None


@contextlib.contextmanager
def _hidden(names):
    """Within the block, `names` cannot be imported (unless one already was)."""
    finder = _Hide(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def import_tensorflow():
    """Imports TensorFlow, Keras and TensorFlow Probability's distributions with oneDNN preferred
    (`prefer_onednn`) and HIDDEN_WHILE_IMPORTING hidden; returns TensorFlow. A no-op where TensorFlow is already
    imported: its optional imports have happened then.

    TensorFlow Probability comes first: imported after TensorFlow, it also loads its `experimental` and `layers`
    packages at once (for SavedModels that hold its objects), which drnas_tf does not use.
    """
    if "tensorflow" not in sys.modules:
        prefer_onednn()
        with _hidden(HIDDEN_WHILE_IMPORTING):
            import tensorflow_probability  # noqa: F401
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
            import tensorflow_probability.python.distributions  # noqa: F401  (imports TF-Keras)
    return sys.modules["tensorflow"]
