"""The resumable epoch loop that a search and a retraining share.

A run is a sequence of epochs, each one `fit` epoch of a compiled Keras model (under
MultiWorkerMirroredStrategy, where Keras 3's `fit` fails, one epoch of distributed.MultiWorkerLoop, which runs
the same train_step; only the chief writes into model_dir). After every epoch the loop saves a checkpoint and
then `state.json`, which names it: running the same command again resumes from there, mid-epoch too with
`checkpoint_every_steps`. A run supplies only what differs, as a `RunTask`: its model, its data, and what it
sets before and writes after each epoch.

What the loop owns, for both:
    state.json          how far the run got, its identity (the settings a resume must share), the
                        checkpoint's path relative to model_dir (so a run directory can move), and the task's
                        own fields
    checkpoints/        the last two checkpoints
    flags.txt           the flags the run was started with
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from drnas_tf import distributed, outputs, runtime
from drnas_tf.config import Execution

CHECKPOINT_DIR = "checkpoints"


class RunTask:
    """What a run supplies to `run_epochs`. Subclasses override what they need.

    Attributes:
        total_epochs: the number of epochs of the whole run.
        seed: seeds Keras (Python, NumPy, TF) before the model is built.
        required_state: state.json keys (besides the loop's own) that a resumable state must hold.
        nonfinite_remedy: what the one-line error of a non-finite epoch advises.
    """

    total_epochs = 0
    seed = 0
    required_state = frozenset()
    nonfinite_remedy = "lower --learning_rate"

    def identity(self):
        """What a checkpoint in model_dir must match to be resumed by this run (a JSON-able dict)."""
        raise NotImplementedError

    def prepare(self, out_dir, state):
        """Called once the directory exists and the state (None for a fresh run) is read: write config files."""

    def build_model(self, state, strategy):
        """The compiled model (with a `weight_optimizer`) to train, inside `strategy`'s scope, before restore."""
        raise NotImplementedError

    def checkpoint(self, model):
        """A tf.train.Checkpoint of everything a resume needs."""
        raise NotImplementedError

    def start_epoch(self, model, epoch, strategy):
        """Sets what the epoch needs (learning rate, schedules) and returns the model to train, which may be a
        new one (a search's next stage)."""
        return model

    def epoch_data(self, epoch):
        """(tf.data of global batches, steps) of the epoch: data that depends only on the epoch makes a resumed
        run repeat an uninterrupted one."""
        raise NotImplementedError

    def trace_key(self, model):
        """A value that changes when the train step must be traced again (None: never)."""
        return None

    def synced_variables(self, model):
        """(variables every replica must hold alike after an epoch, their description for the error)."""
        return model.trainable_variables + model.weight_optimizer.variables, "the weights and optimizer state"

    def end_fit(self, epoch, logs):
        """Called right after the epoch's `fit`, before any check."""

    def end_epoch(self, model, epoch, logs, out_dir):
        """Writes the epoch's outputs (summaries, genotypes) into out_dir, before the state is saved."""

    def state_fields(self, model, epoch, step):
        """The task's own state.json fields when `epoch` epochs and `step` steps of the next are done."""
        return {}

    def epoch_line(self, model, epoch, logs):
        """The line the chief prints after an epoch."""
        return f"epoch {epoch + 1}/{self.total_epochs} " + " ".join(f"{k}={v:.4f}" for k, v in logs.items())

    def finish(self, model, out_dir):
        """Called after the last epoch, still inside the run's write directory; its value is run_epochs's."""
        return model


def prepare_model_dir(model_dir):
    """Creates model_dir and checks that it is writable, with a one-line error otherwise."""
    try:
        os.makedirs(model_dir, exist_ok=True)
        probe = os.path.join(model_dir, f".write-test-{os.getpid()}")
        with open(probe, "w", encoding="utf-8"):
            pass
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"--model_dir={model_dir} is not writable: {error.strerror}") from None


def check_finite(logs, epoch, remedy="lower --learning_rate or --arch_learning_rate"):
    """Raises a one-line ValueError if an epoch's metrics are not finite (the last checkpoint is kept)."""
    bad = [key for key, value in logs.items() if not np.isfinite(value)]
    if bad:
        raise ValueError(f"non-finite {', '.join(bad)} in epoch {epoch + 1}; the last good checkpoint is kept "
                         f"({remedy})")


def checkpoint_path(model_dir, recorded):
    """The checkpoint a state.json names: recorded relative to model_dir, absolute, or (as earlier versions
    wrote it) relative to the directory that run was started from."""
    if os.path.isabs(recorded):
        return recorded
    in_model_dir = os.path.join(model_dir, recorded)
    if tf.io.gfile.exists(in_model_dir + ".index") or not tf.io.gfile.exists(recorded + ".index"):
        return in_model_dir
    return recorded


def load_state(model_dir, task):
    """The state.json of an earlier run of `task` in model_dir, None if there is none; its checkpoint path is
    resolved (checkpoint_path)."""
    state = outputs.read_run_state(model_dir, task.identity(), {"epoch", "checkpoint", *task.required_state})
    if state is not None:
        state["checkpoint"] = checkpoint_path(model_dir, state["checkpoint"])
    return state


def _save_state(out_dir, task, manager, model, epoch, step):
    """Saves a checkpoint, then state.json naming it: `epoch` epochs and `step` steps of the next are done."""
    path = manager.save(checkpoint_number=int(model.weight_optimizer.iterations.numpy()))
    state = {"identity": task.identity(), "epoch": epoch, "step": step,
             "checkpoint": os.path.relpath(path, out_dir), **task.state_fields(model, epoch, step)}
    outputs.atomic_write_text(os.path.join(out_dir, outputs.STATE_FILE), json.dumps(state))


def run_epochs(task, model_dir, execution=None, flags_text="", strategy=None, callbacks=()):
    """Runs (or resumes) `task`'s epochs in model_dir and returns `task.finish`'s value.

    Args:
        task: a RunTask.
        model_dir: where checkpoints, state.json and the task's outputs go (under MultiWorkerMirroredStrategy
            the chief's; the other workers read it to resume and write into a temporary directory,
            distributed.write_dir).
        execution: a config.Execution: progress output, step checkpoints, the NaN policy, freed memory
            (default: config.Execution()).
        flags_text: the flags, frozen into model_dir/flags.txt.
        strategy: a tf.distribute strategy (default: the current one).
        callbacks: more Keras callbacks for every epoch's `fit` (or distributed.MultiWorkerLoop's epoch).
    """
    execution = execution or Execution()
    strategy = strategy or tf.distribute.get_strategy()
    with distributed.write_dir(model_dir, strategy) as out_dir:
        prepare_model_dir(out_dir)
        state = load_state(model_dir, task)  # before writing anything: a refused resume changes nothing
        if flags_text:
            outputs.atomic_write_text(os.path.join(out_dir, "flags.txt"), flags_text)
        task.prepare(out_dir, state)
        keras.utils.set_random_seed(task.seed)
        model = task.build_model(state, strategy)
        outputs.restore_run(task.checkpoint(model), state, model_dir, strategy, model.weight_optimizer)
        first_epoch, first_step = (state["epoch"], state.get("step", 0)) if state else (0, 0)
        manager, managed = None, None
        loop = distributed.epoch_loop(strategy)
        for epoch in range(first_epoch, task.total_epochs):
            model = task.start_epoch(model, epoch, strategy)
            if model is not managed:
                manager = tf.train.CheckpointManager(task.checkpoint(model), os.path.join(out_dir, CHECKPOINT_DIR),
                                                     2)
                managed = model
            dataset, steps = task.epoch_data(epoch)
            skip = first_step if epoch == first_epoch else 0

            def save(steps_done, epoch=epoch, manager=manager, model=model):
                _save_state(out_dir, task, manager, model, epoch, steps_done)

            epoch_callbacks = runtime.epoch_callbacks(callbacks, epoch, execution, manager, steps, skip, save,
                                                      task.total_epochs)
            logs = loop.fit_epoch(model, dataset.skip(skip), steps - skip, epoch, epoch_callbacks, execution.progress,
                                  trace_key=task.trace_key(model))
            task.end_fit(epoch, logs)
            check_finite(logs, epoch, task.nonfinite_remedy)
            variables, description = task.synced_variables(model)
            distributed.check_in_sync(strategy, variables, f"{description} after epoch {epoch + 1}")
            task.end_epoch(model, epoch, logs, out_dir)
            _save_state(out_dir, task, manager, model, epoch + 1, 0)
            if distributed.is_chief(strategy):
                print(task.epoch_line(model, epoch, logs), flush=True)
        return task.finish(model, out_dir)
