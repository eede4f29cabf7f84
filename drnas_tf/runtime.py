"""How a run executes, whatever it trains: threads, graph optimisation, precision, XLA, determinism, and the
callbacks of an epoch.

Shared by search and retraining: `configure` (threads, graph optimisation, precision, determinism of a
config.Execution) before any op, `check_jit_compile`, and `epoch_callbacks`: `FiniteLossGuard` first under
--nan_policy=stop (under skip_batch the model skips the step itself, see optim.apply_if_finite),
`StepCheckpoint` for --checkpoint_every_steps, `ReturnFreedMemory` for --return_freed_memory.
"""

import contextlib
import ctypes
import threading

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context as eager_context

from drnas_tf.config import GRAPH_OPTIMIZATIONS, PRECISIONS


def configure(execution, seed):
    """Applies a config.Execution's threads, graph optimisation, precision and determinism (seeding everything
    with `seed`); call before any op runs. Returns the compute dtype."""
    configure_threads(execution.intra_op_threads, execution.inter_op_threads)
    configure_graph_optimization(execution.graph_optimization)
    compute_dtype = configure_precision(execution.mixed_precision)
    configure_determinism(seed, execution.deterministic)
    return compute_dtype


def configure_threads(intra_op_threads=0, inter_op_threads=0):
    """TF's CPU thread pools (0 keeps TF's default); call before any op runs. Negative counts are refused."""
    for name, value in (("intra_op_threads", intra_op_threads), ("inter_op_threads", inter_op_threads)):
        if value < 0:
            raise ValueError(f"--{name} must be 0 (TensorFlow's default) or positive, got {value}")
    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)


# The grappler passes that --graph_optimization=quick turns off through tf.config, and the options of TF's
# RewriterConfig that tf.config does not reach (set on the eager context's ConfigProto instead).
QUICK_PASSES_OFF = ("layout_optimizer", "remapping", "loop_optimization")
QUICK_REWRITE_OPTIONS = {"meta_optimizer_iterations": rewriter_config_pb2.RewriterConfig.ONE,
                         "disable_tfg_optimizer": True,
                         "memory_optimization": rewriter_config_pb2.RewriterConfig.NO_MEM_OPT}


def configure_graph_optimization(mode):
    """Sets how much grappler does to every tf.function instantiated from now on (--graph_optimization);
    returns the mode applied, "quick" or "full".

    TensorFlow optimises each traced step once, before its first run, and on a CPU most of that time goes to
    work that changes little there: a second round of every pass, an MLIR round trip that only re-sorts the
    graph, the memory optimiser (whose swapping is for GPUs), and the layout, remapping and loop passes.
    "quick" leaves those out, keeping pruning, common subexpressions, constant folding, the arithmetic and
    dependency optimisers, function inlining and the implementation selector (which swaps in the CPU kernel of
    the Dirichlet's gamma sampler: without it every draw changes); "full" is TensorFlow's default; "auto" is
    quick where no GPU is visible (on a GPU the layout and remapping passes pay). A step's numbers are the
    same either way up to float32 rounding (grappler's second round changes the last bit of some); the
    measured effect is in docs/performance.md. tf.config reaches only the passes; the iteration count, the MLIR
    round trip and the memory optimiser are fields of the eager context's ConfigProto, which TensorFlow copies
    into each function call's options.
    """
    if mode not in GRAPH_OPTIMIZATIONS:
        raise ValueError(f"--graph_optimization={mode!r} must be one of: {', '.join(GRAPH_OPTIMIZATIONS)}")
    if mode == "auto":
        mode = "full" if tf.config.list_physical_devices("GPU") else "quick"
    quick = mode == "quick"
    ctx = eager_context.context()
    config = config_pb2.ConfigProto()
    if ctx._config is not None:
        config.CopyFrom(ctx._config)
    rewrite_options = config.graph_options.rewrite_options
    for name, value in QUICK_REWRITE_OPTIONS.items():
        if quick:
            setattr(rewrite_options, name, value)
        else:
            rewrite_options.ClearField(name)
    ctx._config = config
    # After the ConfigProto: this also drops the thread's cached function call options, rebuilt from both.
    tf.config.optimizer.set_experimental_options({name: not quick for name in QUICK_PASSES_OFF})
    return mode


def configure_precision(policy):
    """Sets Keras's global dtype policy (--mixed_precision) before any model is built: the networks compute in
    float16 or bfloat16 with float32 variables; the models keep losses (and the search eta and its draws) in
    float32 and scale float16 losses (docs/performance.md). Returns the compute dtype.

    A mixed policy also turns off grappler's arithmetic optimizer, whose rewrites cost half precision
    accuracy: with it a float16 search step's eta update strays far from float32's, without it as little as
    when run eagerly (docs/performance.md gives the measurement)."""
    if policy not in PRECISIONS:
        raise ValueError(f"--mixed_precision={policy!r} must be one of: {', '.join(PRECISIONS)}")
    keras.mixed_precision.set_dtype_policy(policy)
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": policy == "float32"})
    return keras.mixed_precision.dtype_policy().compute_dtype


def check_jit_compile(jit_compile, strategy, deterministic=False):
    """Refuses --jit_compile where no step would be compiled with XLA: under a multi-replica strategy (XLA
    compiles a one-device step only) and with --deterministic (Keras compiles nothing with XLA under TensorFlow's
    op determinism, silently)."""
    if jit_compile and strategy.num_replicas_in_sync > 1:
        raise ValueError(f"--jit_compile needs one device, but the run has {strategy.num_replicas_in_sync} "
                         "replicas (XLA cannot compile MirroredStrategy's step); pass --num_gpus=1 or drop it")
    if jit_compile and deterministic:
        raise ValueError("--jit_compile does nothing with --deterministic (Keras turns XLA off under TensorFlow's "
                         "op determinism); drop one of them")


def configure_determinism(seed, deterministic):
    """Seeds Python, NumPy and TF (keras.utils.set_random_seed); with `deterministic` also turns on
    tf.config.experimental.enable_op_determinism(), so every op gives bit-identical results run to run.

    Data order, augmentation and the relaxation's draws are seeded from the run's seed by the pipelines and
    the stateless per-pass seeds (search_model.Searcher.sampling_seed) in any case; op determinism removes what
    is left: reductions whose order depends on threads (GPU atomics, some CPU kernels).
    """
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


class FiniteLossGuard(keras.callbacks.Callback):
    """Stops `fit` with a ValueError at the first batch whose logged losses are not finite.

    Put it before any callback that saves, so that no checkpoint of the broken state is written.

    Args:
        where: a short description of the epoch for the message (e.g. "epoch 3").
        last_checkpoint: () -> path of the last good checkpoint (or None), named in the message.
    """

    def __init__(self, where, last_checkpoint):
        super().__init__()
        self.where, self.last_checkpoint = where, last_checkpoint

    def on_train_batch_end(self, batch, logs=None):
        bad = [key for key, value in (logs or {}).items() if "loss" in key and not np.isfinite(float(value))]
        if bad:
            raise ValueError(f"non-finite {', '.join(bad)} at step {batch + 1} of {self.where}; stopped, the last "
                             f"good checkpoint ({self.last_checkpoint() or 'none yet'}) is kept (lower "
                             "--learning_rate or --arch_learning_rate, or pass --nan_policy=skip_batch)")


class StepCheckpoint(keras.callbacks.Callback):
    """Calls `save(steps_done)` every `every` steps inside an epoch (the epoch's end saves anyway)."""

    def __init__(self, every, steps, already_done, save):
        super().__init__()
        self.every, self.steps, self.already_done, self.save = every, steps, already_done, save

    def on_train_batch_end(self, batch, logs=None):
        done = self.already_done + batch + 1
        if done % self.every == 0 and done < self.steps:
            self.save(done)


def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def returning_freed_memory(period=0.5):
    """While inside, a thread hands the C heap's free pages back to the OS every `period` seconds (glibc's
    malloc_trim(0); nothing where there is none).

    For a step's first call: TensorFlow traces the step and optimises its graph (tens of seconds for a DARTS
    supernet, with many short-lived buffers), then the step's tensors are allocated. malloc keeps the freed
    buffers, many in other threads' arenas, so the tensors take new pages and the peak RSS holds both
    (docs/performance.md measures the difference). Later steps reuse their own freed tensors, so they need
    none of it (and it would cost page faults there).
    """
    trim = _malloc_trim()
    if trim is None:
        yield
        return
    stop = threading.Event()

    def trim_until_stopped():
        while not stop.wait(period):
            trim(0)

    thread = threading.Thread(target=trim_until_stopped, name="return_freed_memory", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        trim(0)


class ReturnFreedMemory(keras.callbacks.Callback):
    """`returning_freed_memory` around the first step of an epoch (--return_freed_memory): the step where a new
    step function is traced and optimised (a run's start, a resume, a new search stage).

    It starts at batch 0's begin and stops at the next batch's begin or the epoch's end. It has no batch-end
    hook, which would make Keras dispatch every batch's end synchronously."""

    def __init__(self, period=0.5):
        super().__init__()
        self.period, self._context = period, None

    def on_train_batch_begin(self, batch, logs=None):
        self._stop()
        if batch == 0:
            self._context = returning_freed_memory(self.period)
            self._context.__enter__()

    def on_epoch_end(self, epoch, logs=None):
        self._stop()

    def on_train_end(self, logs=None):
        self._stop()

    def _stop(self):
        if self._context is not None:
            context, self._context = self._context, None
            context.__exit__(None, None, None)


class EpochProgress(keras.callbacks.ProgbarLogger):
    """Keras's progress output naming the run's own epoch and total. Each epoch is its own `fit` call
    (initial_epoch=e, epochs=e + 1), whose default logger would print "Epoch 3/3" during epoch 3 of 20."""

    def __init__(self, total_epochs):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params):
        super().set_params({**params, "epochs": self.total_epochs})


def epoch_callbacks(extra, epoch, execution, manager, steps, skip, save, total_epochs=None):
    """One epoch's callbacks under a config.Execution: ReturnFreedMemory with return_freed_memory,
    FiniteLossGuard under nan_policy "stop" (before anything can save the broken state), `extra`,
    StepCheckpoint(save) with checkpoint_every_steps (`skip` of the epoch's `steps` steps are done), and
    EpochProgress(total_epochs) when there is progress output and a total is given."""
    callbacks = list(extra)
    if execution.nan_policy == "stop":
        callbacks.insert(0, FiniteLossGuard(f"epoch {epoch + 1}", lambda: manager.latest_checkpoint))
    if execution.return_freed_memory:
        callbacks.insert(0, ReturnFreedMemory())
    if execution.checkpoint_every_steps:
        callbacks.append(StepCheckpoint(execution.checkpoint_every_steps, steps, skip, save))
    if execution.progress and total_epochs:
        callbacks.append(EpochProgress(total_epochs))
    return callbacks
