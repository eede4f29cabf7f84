"""What every entry point shares: absl start-up, quiet TensorFlow start-up, and one readable line for errors
(the traceback with --verbose).

Entry points import this module before TensorFlow. TensorFlow's C++ start-up notices (oneDNN, CUDA drivers not
found, `failed call to cuInit` on a machine without a GPU, CPU instruction sets) are written to the process's
stderr before any log level applies, so TF_CPP_MIN_LOG_LEVEL cannot hide them: unless --verbose is on the
command line, an entry point's stderr goes to a file from this import until TensorFlow has started (`run`
imports it and lists its devices), and then everything but those notices is written out, in order.
"""

import atexit
import os
import re
import sys
import tempfile

VERBOSE = bool({"--verbose", "--verbose=true", "--verbose=1"} & set(sys.argv))
if not VERBOSE:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The start-up notices of a CPU-only TensorFlow; any other line, warnings included, is kept.
STARTUP_NOTICES = re.compile("|".join([
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"\] oneDNN custom operations are on",
    r"\] Could not find cuda drivers on your machine",
    r"\] failed call to cuInit",
    r"\] This TensorFlow binary is optimized to use available CPU instructions",
    r"^To enable the following instructions: .* rebuild TensorFlow",
]))


def without_startup_notices(text):
    """`text` less the lines that are TensorFlow's start-up notices (STARTUP_NOTICES)."""
    return "".join(line for line in text.splitlines(keepends=True) if not STARTUP_NOTICES.search(line))


class _StartupStderr:
    """Holds the process's stderr (file descriptor 2, which TensorFlow's C++ writes to) in a file until `release`,
    which writes it back without the start-up notices."""

    def __init__(self):
        sys.stderr.flush()
        self._held = tempfile.TemporaryFile()
        self._stderr = os.dup(2)
        os.dup2(self._held.fileno(), 2)

    def release(self):
        if self._held is None:
            return
        sys.stderr.flush()
        os.dup2(self._stderr, 2)
        os.close(self._stderr)
        self._held.seek(0)
        text = without_startup_notices(self._held.read().decode("utf-8", "replace"))
        self._held.close()
        self._held = None
        sys.stderr.write(text)
        sys.stderr.flush()


def _started_as_entry_point():
    """Whether this process runs one of drnas_tf's entry points (not, say, a test importing this module)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return bool(spec and spec.name.startswith("drnas_tf."))


_startup_stderr = _StartupStderr() if not VERBOSE and _started_as_entry_point() else None
if _startup_stderr:
    atexit.register(_startup_stderr.release)


def release_startup_stderr():
    """Starts TensorFlow (imports it and lists its devices, where CUDA is probed) while stderr is held, then
    writes out what was held without TensorFlow's start-up notices. A no-op with --verbose or outside an
    entry point."""
    if _startup_stderr:
        import tensorflow as tf

        tf.config.list_physical_devices()
        _startup_stderr.release()


from absl import app, flags, logging  # noqa: E402

from drnas_tf import lean_import
from drnas_tf.data.catalog import DATASETS
from drnas_tf.spaces import SPACE_NAMES

flags.DEFINE_bool("verbose", False, "On an error, print its traceback after the one-line message; also keeps "
                  "TensorFlow's INFO logs and start-up notices.")


def define_network_flags(supernet=True):
    """The flags that pick a network: space, dataset and sizes (None: the paper's default for them).

    With supernet=False (a discrete network, whose genotype fixes the space) --search_space and
    --nb201_bypass are left out.
    """
    if supernet:
        flags.DEFINE_enum("search_space", "darts", SPACE_NAMES, "Search space.")
    flags.DEFINE_enum("dataset", "cifar10", list(DATASETS), "Dataset: sets classes, input size and stem.")
    flags.DEFINE_integer("init_channels", None, "C, channels of the first stage (default: the paper's for the "
                         "space and dataset: DARTS 36 on CIFAR, 48 on ImageNet; NB201 16).")
    flags.DEFINE_integer("layers", None, "DARTS space: number of cells (default 20 on CIFAR, 14 on ImageNet).")
    flags.DEFINE_integer("cells_per_stage", None, "NB201 space: search cells per stage, N (default 5).")
    if supernet:
        flags.DEFINE_enum("nb201_bypass", "sum", ["sum", "mean"], "NB201 partial-channel bypass: 'sum' as the "
                          "reference, 'mean' rescaled by 1/inputs of the node (docs/differences.md).")


def define_execution_flags(run):
    """How a search or retraining run executes: determinism, NaN policy, CPU threads, precision, memory, XLA.
    `run` names it in help."""
    from drnas_tf.config import GRAPH_OPTIMIZATIONS, NAN_POLICIES, PRECISIONS

    flags.DEFINE_bool("deterministic", False, "Turn on TF op determinism (tf.config.experimental."
                      f"enable_op_determinism) on top of the seeded data order, augmentation and draws: the same "
                      f"{run} command gives bit-identical results (slower on GPU).")
    flags.DEFINE_enum("nan_policy", "stop", list(NAN_POLICIES), "A NaN or Inf loss: 'stop' ends the run with an "
                      "error and keeps the last good checkpoint; 'skip_batch' skips that step and counts it.")
    flags.DEFINE_integer("intra_op_threads", 0, "Threads inside one op (0: TensorFlow's default, one per core; "
                         "docs/performance.md).")
    flags.DEFINE_integer("inter_op_threads", 0, "Ops run in parallel (0: TensorFlow's default; "
                         "docs/performance.md).")
    flags.DEFINE_enum("mixed_precision", "float32", list(PRECISIONS),
                      "Compute dtype of the network: mixed_float16 (with dynamic loss scaling) or mixed_bfloat16 "
                      f"for GPUs; variables{', losses and the architecture draws' if run == 'search' else ' and losses'} "
                      "stay float32 (docs/performance.md).")
    flags.DEFINE_bool("return_freed_memory", True, "During each epoch's first step, where TensorFlow traces and "
                      "optimises the step's graph, hand the C heap's freed pages back to the OS every half second "
                      "(glibc malloc_trim): a lower peak RSS at no measured cost (docs/performance.md).")
    flags.DEFINE_enum("graph_optimization", "auto", list(GRAPH_OPTIMIZATIONS), "How much TensorFlow's graph "
                      "optimiser (grappler) does to each traced step: 'quick' leaves out what costs start-up time "
                      "and does not pay on a CPU (its second round of passes, the MLIR round trip, the memory, "
                      "layout, remapping and loop passes), so the first step after each trace comes sooner (the "
                      "same numbers up to float32 rounding); 'full' is TensorFlow's default; 'auto' is quick "
                      "without a GPU and full with one (docs/performance.md).")
    flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA. One device only (XLA cannot "
                      "compile MirroredStrategy's cross-replica step), not with --deterministic; slower than the "
                      "default on CPU (docs/performance.md).")


def run(main, program, before_tensorflow=None):
    """Runs an absl `main`; an error exits non-zero with one line `PROGRAM: error: ...` on stderr.

    before_tensorflow: None, or a function of no arguments called once the flags are parsed and before
    TensorFlow starts: for settings TensorFlow reads once, when it starts (XLA's flags).

    Library code raises ValueError with a one-line message that names the flag or file at fault (exit 2). An
    OSError (disk full, permissions) or a TensorFlow runtime error (out of memory) also gives one line (exit 1),
    as does an unexpected error, which also says how to see its traceback. Ctrl-C exits 130: checkpoints are
    written atomically, so re-running the command resumes. --verbose prints the traceback after the line.
    """

    def guarded(argv):
        if before_tensorflow is not None:
            before_tensorflow()
        lean_import.import_tensorflow()  # before any module of the entry point's main imports TensorFlow
        release_startup_stderr()
        verbose = flags.FLAGS.verbose
        if not (verbose or flags.FLAGS["verbosity"].present):
            logging.set_verbosity(logging.WARNING)  # TF's checkpointing logs INFO lines every save
        try:
            return main(argv)
        except KeyboardInterrupt:
            _fail(program, "interrupted; re-run the same command to resume from the last checkpoint", 130, verbose)
        except ValueError as error:
            _fail(program, error, 2, verbose)
        except OSError as error:
            _fail(program, error, 1, verbose)
        except Exception as error:  # noqa: BLE001 - one line instead of a traceback wall; --verbose shows it
            import tensorflow as tf

            if isinstance(error, tf.errors.OpError):
                _fail(program, f"{type(error).__name__}: {error.message.splitlines()[0]}", 1, verbose)
            _fail(program, f"unexpected {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''} "
                  "(re-run with --verbose for the traceback, and please report it)", 1, verbose)

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            print(f"{program}: error: {error} (see --helpshort)", file=sys.stderr)
            sys.exit(2)

    app.run(guarded, flags_parser=parse)


def _fail(program, message, code, verbose):
    print(f"{program}: error: {message}", file=sys.stderr)
    if verbose:
        import traceback

        traceback.print_exc()
    sys.exit(code)
