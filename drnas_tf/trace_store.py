"""Traced steps kept on disk, so that a resumed search calls the step its interrupted process traced instead of
tracing it again, and searches that share a directory trace a step they have in common once (docs/performance.md,
Start-up).

A traced step is a set of FunctionDefs, the one to call among them, and the tensors it captured, which for a
search step are all variables. `TraceStore.save` writes the functions and names each captured variable by its
path; `TraceStore.load` registers the functions in TensorFlow's runtime and returns a callable that passes this
process's variables of the same paths. What the step computes is then the same, to the last bit; what is
skipped is the Python tracing, which is most of the wait for the first step of a large supernet.

An entry is found by a digest of everything the trace depends on: the caller's key (the run's settings, the
stage, whether architecture updates are on), the input signature, the drnas_tf sources, the versions of
TensorFlow, Keras and TFP, the kinds of device visible and the oneDNN setting. An entry that does not match
is never read; the `KEEP` entries of a directory written or loaded last are kept. Each file is written under a
temporary name and renamed, so processes sharing a directory never read a partly written one.
"""

import hashlib
import importlib.metadata
import json
import os

import keras
import tensorflow as tf
from google.protobuf import message
from tensorflow.core.framework import function_pb2
from tensorflow.python.eager import context

from drnas_tf import runtime_call

KEEP = 8  # entries kept in a directory (a search writes up to 4); those used least recently are deleted


class TraceStore:
    """Traced steps in `directory`, keyed by `key` (JSON-able) and the environment (module docstring).

    Args:
        directory: where entries are kept (made when the first is written).
        key: what the trace depends on besides the input signature and the environment.
        variables: a callable returning every variable a trace may capture.
    """

    def __init__(self, directory, key, variables):
        self.directory, self._variables = directory, variables
        self._key = json.dumps({"key": key, "environment": environment()}, sort_keys=True, default=repr)

    def path(self, signature):
        """The entry's path for an input signature, without its two suffixes (.pb and .json)."""
        text = json.dumps([self._key, repr(tuple(signature))])
        return os.path.join(self.directory, hashlib.sha256(text.encode()).hexdigest()[:32])

    def load(self, signature):
        """A callable running the step stored for `signature` with this process's variables; None without one."""
        path = self.path(signature)
        try:
            with open(path + ".json", encoding="utf-8") as file:
                entry = json.load(file)
            with open(path + ".pb", "rb") as file:
                library = function_pb2.FunctionDefLibrary.FromString(file.read())
        except (OSError, ValueError, message.DecodeError):  # none yet, or a partly written one
            return None
        if not (isinstance(entry, dict) and {"function", "captures", "outputs"} <= set(entry)):
            return None
        handles = _handles_by_path(self._variables())
        if any(handles.get(name) is None for name in entry["captures"]):
            return None
        runtime = context.context()
        try:
            for definition in library.function:
                if not runtime.has_function(definition.signature.name):  # the same entry, loaded before
                    runtime.add_function_def(definition)
        except tf.errors.OpError:
            return None
        try:
            os.utime(path + ".json")  # used now: kept longer than entries unused since (`_keep_newest`)
        except OSError:
            pass
        print(f"loaded the traced step {path}.pb instead of tracing it again", flush=True)
        return _call(entry["function"].encode(), [handles[name] for name in entry["captures"]], entry["outputs"])

    def save(self, signature, concrete):
        """Writes `concrete` (a ConcreteFunction traced for `signature`) unless it captured something other than a
        variable of `variables`, or its inputs or outputs are not as `load` calls it."""
        atomic = getattr(concrete, "_inference_function", None)
        outputs = concrete.structured_outputs
        handles = _handles_by_path(self._variables())
        paths = {id(handle): name for name, handle in handles.items() if handle is not None}
        captures = [paths.get(id(tensor)) for tensor in concrete.captured_inputs]
        flat_inputs = tf.nest.flatten(tuple(signature), expand_composites=True)
        if (atomic is None or None in captures or concrete.graph.deferred_external_captures
                or atomic.call_options.control_captures or not isinstance(outputs, dict)
                or not all(isinstance(value, tf.Tensor) for value in outputs.values())
                or len(flat_inputs) + len(captures) != len(concrete.inputs)
                or len(outputs) != len(atomic.function_type.flat_outputs)):
            return
        library = runtime_call.function_library(atomic)
        path = self.path(signature)
        # Each function renamed after the entry: a name TensorFlow gave it counts the traces of its process, so
        # another process may have registered a different function under it.
        suffix = "_" + os.path.basename(path)
        definitions = []
        for definition in library.values():
            renamed = function_pb2.FunctionDef()
            renamed.CopyFrom(definition)
            renamed.signature.name += suffix
            for node in renamed.node_def:
                for value in node.attr.values():
                    runtime_call.rename_functions(value, lambda called: called + suffix if called in library
                                                  else called)
            definitions.append(renamed)
        try:
            os.makedirs(self.directory, exist_ok=True)
            _write(path + ".pb", function_pb2.FunctionDefLibrary(function=definitions).SerializeToString())
            _write(path + ".json", json.dumps({  # written last: it marks a complete entry
                "function": tf.compat.as_str(atomic.name) + suffix, "captures": captures,
                "outputs": sorted(outputs)}).encode())
            _keep_newest(self.directory, KEEP)
        except OSError as error:  # a store that cannot be written costs the next process a trace, no more
            print(f"the traced step was not kept in {self.directory}: {error}", flush=True)


def environment():
    """What a trace depends on beyond its caller's settings: the code, the libraries, the devices, oneDNN."""
    package = os.path.dirname(os.path.abspath(__file__))
    sources = hashlib.sha256()
    for root, directories, files in os.walk(package):
        directories.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(root, name), "rb") as file:
                    sources.update(name.encode() + file.read())
    try:  # not the module's version: TFP is imported only when a relaxation first draws
        probability = importlib.metadata.version("tensorflow-probability")
    except importlib.metadata.PackageNotFoundError:
        probability = None
    return {"sources": sources.hexdigest(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "tensorflow_probability": probability,
            "devices": sorted({device.device_type for device in tf.config.list_logical_devices()}),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "policy": keras.config.dtype_policy().name}


def _handles_by_path(variables):
    """{path: resource handle} of the variables; None for a path two different variables share."""
    handles = {}
    for variable in variables:
        path, handle = getattr(variable, "path", variable.name), variable.handle
        if path in handles and handles[path] is not handle:
            handle = None
        handles[path] = handle
    return handles


def _call(name, captures, output_names):
    runtime = context.context()

    def call(*args):
        outputs = runtime.call_function(name, [*tf.nest.flatten(args, expand_composites=True), *captures],
                                        len(output_names))
        return dict(zip(output_names, outputs))

    return call


def _write(path, data):
    """Writes `data` to `path` through a temporary file of this process, renamed: readers see all or nothing."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _keep_newest(directory, keep):
    """Deletes all but the `keep` entries of `directory` whose .json was written or loaded last."""
    entries = []
    for name in os.listdir(directory):
        if name.endswith(".json"):
            try:
                entries.append((os.path.getmtime(os.path.join(directory, name)), name[:-5]))
            except OSError:  # deleted meanwhile by another process sharing the directory
                pass
    for _, stem in sorted(entries)[:-keep]:
        for suffix in (".json", ".pb"):
            try:
                os.remove(os.path.join(directory, stem + suffix))
            except OSError:
                pass
