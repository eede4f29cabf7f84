"""Retrains a genotype from scratch: epochs of `fit`, checkpoints, resume, TensorBoard, results.json
(docs/method.md §8).

Each epoch sets the learning rate (cosine, or ImageNet's linear decay, with an optional warm-up) and the
drop-path probability drop_path_prob * epoch / epochs, then runs one `fit` epoch of the `Trainer` (under
MultiWorkerMirroredStrategy, one epoch of distributed.MultiWorkerLoop with the same train_step). After every
epoch the run saves a checkpoint and then `state.json`, which names it: re-running the same command resumes
from there (mid-epoch too, with --checkpoint_every_steps). At the end the network is tested on the held-out
split and `results.json` is written atomically.

What a model_dir holds:
    train_config.json   the genotype and network settings (what `export` rebuilds the network from)
    state.json, checkpoints/   resume state and the latest checkpoints (network and SGD momentum)
    tensorboard/        train loss and accuracy, learning rate, drop-path probability; test metrics at the end
    results.json        test_top1, test_top5 (fractions), test_loss, epochs, train_seconds, genotype, ...
"""

import dataclasses
import json
import os
import time

import keras
import tensorflow as tf

from drnas_tf import distributed, networks, optim, outputs, runtime
from drnas_tf.search_run import check_finite, prepare_model_dir
from drnas_tf.trainer import Trainer

CONFIG_FILE = "train_config.json"
RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoints"
EVAL_BATCH_SIZE = 256


def learning_rate_at(config, epoch):
    """The SGD learning rate of `epoch` under the config's schedule and warm-up."""
    if config.lr_schedule == "linear":
        return optim.linear_learning_rate(epoch, config.epochs, config.learning_rate, config.lr_warmup_epochs)
    return optim.cosine_learning_rate(epoch, config.epochs, config.learning_rate, config.learning_rate_min,
                                      config.lr_warmup_epochs)


def drop_path_at(config, epoch):
    """The reference's drop-path schedule: drop_path_prob * epoch / epochs (0 in the first epoch)."""
    return config.drop_path_prob * epoch / config.epochs


def build_network(config):
    """The discrete network `config` describes (built, with every variable)."""
    network = config.network
    depth = ({"cells_per_stage": network.cells_per_stage} if network.search_space == "nb201"
             else {"layers": network.layers, "stem": network.stem, "auxiliary": config.auxiliary})
    return networks.build_network(config.genotype, network.num_classes, init_channels=network.init_channels,
                                  **depth)


def build_trainer(config, strategy, skip_nonfinite=False, jit_compile=False):
    """The network wrapped in a compiled Trainer, inside `strategy`'s scope; `skip_nonfinite` skips steps with
    a non-finite gradient (--nan_policy=skip_batch), `jit_compile` compiles the step with XLA."""
    with strategy.scope():
        trainer = Trainer(build_network(config), config.learning_rate, config.momentum, config.weight_decay,
                          config.grad_clip, config.label_smoothing, config.auxiliary_weight, config.seed,
                          skip_nonfinite)
        trainer.compile(optimizer=trainer.weight_optimizer, jit_compile=jit_compile)
    return trainer


def config_record(config):
    """The JSON-able description of a run that `export` and a resume read back (train_config.json)."""
    record = dataclasses.asdict(dataclasses.replace(config, genotype=None))
    record["genotype"] = json.loads(config.genotype.to_json())
    record["genotype_text"] = config.genotype.to_text()
    record["network"]["image_size"] = list(config.network.image_size)
    return record


def _run_identity(config):
    """What a checkpoint in model_dir must match to be resumed by this config."""
    network = config.network
    return {"genotype": config.genotype.to_text(), "dataset": network.dataset,
            "init_channels": network.init_channels,
            "layers": network.layers if network.search_space == "darts" else network.cells_per_stage,
            "auxiliary": config.auxiliary, "epochs": config.epochs}


def load_state(model_dir, config):
    """The saved state of an earlier retraining run in model_dir, None if there is none."""
    return outputs.read_run_state(model_dir, _run_identity(config),
                                  {"epoch", "step", "checkpoint", "train_seconds"})


def _checkpoint(trainer):
    return tf.train.Checkpoint(network=trainer.network, optimizer=trainer.weight_optimizer,
                               loss_scale=trainer.loss_scale)


def restore_network(network, checkpoint_path):
    """Restores a network's variables from a training checkpoint (the optimizer's slots are not read)."""
    try:
        tf.train.Checkpoint(network=network).restore(checkpoint_path).expect_partial() \
            .assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as error:
        raise ValueError(f"cannot restore {checkpoint_path}: {str(error).splitlines()[0]}") from None


def default_data(config):
    """(epoch_data, test_data) of the config's dataset: epoch -> (batches, steps), and the held-out batches."""
    from drnas_tf.data import search_data

    name = config.network.dataset
    arrays = None if name == "imagenet" else search_data.train_arrays(name, config.data_dir, config.download)

    def epoch_data(epoch):
        """The epoch's pipeline, seeded by (seed, epoch) so a resumed run sees the same batches."""
        dataset, steps = search_data.train_dataset(name, config.batch_size, config.seed * 1000 + epoch,
                                                   config.cutout, config.color_jitter, config.data_dir,
                                                   config.download, arrays)
        return dataset, min(steps, config.steps_per_epoch or steps)

    test_data = search_data.eval_dataset(name, config.eval_split, EVAL_BATCH_SIZE, config.data_dir,
                                         config.download)
    return epoch_data, test_data


def run_train(config, model_dir, epoch_data=None, test_data=None, flags_text="", strategy=None, verbose=1,
              checkpoint_every_steps=0, callbacks=(), nan_policy="stop", jit_compile=False,
              return_freed_memory=True):
    """Retrains (or resumes retraining) `config.genotype`, tests it, writes results.json and returns it.

    Args:
        config: a config.TrainConfig.
        model_dir: where checkpoints, TensorBoard events and results go (under MultiWorkerMirroredStrategy
            the chief's; the other workers read it to resume and write into a temporary directory,
            distributed.write_dir).
        epoch_data: epoch -> (dataset, steps): tf.data of (images, labels) global batches and how many steps
            to take (default: the config's dataset, default_data).
        test_data: tf.data of held-out (images, labels) batches (default: the config's eval split).
        flags_text: the flags, frozen into model_dir/flags.txt.
        strategy: a tf.distribute strategy (default: the current one).
        verbose: Keras progress output (0, 1 or 2).
        checkpoint_every_steps: also checkpoint inside epochs, every this many steps (0: epoch ends only).
        callbacks: more Keras callbacks for every epoch's `fit` (or distributed.MultiWorkerLoop's epoch).
        nan_policy: "stop": the first batch with a NaN or Inf loss ends the run with a ValueError and the last
            good checkpoint stays the one resumed; "skip_batch": steps with a non-finite gradient are skipped
            (and counted as skipped_steps in the epoch's logs).
        jit_compile: compile the train step with XLA (one device only).
        return_freed_memory: hand freed heap pages back to the OS during each epoch's first step
            (runtime.ReturnFreedMemory): a lower peak RSS.

    Returns:
        The results dict written to results.json: test_top1, test_top5 (fractions), test_loss, epochs,
        train_seconds, genotype (text), dataset, eval_split, params (auxiliary head excluded), and the last
        epoch's train_loss and train_accuracy.
    """
    runtime.check_nan_policy(nan_policy)
    strategy = strategy or tf.distribute.get_strategy()
    if epoch_data is None or test_data is None:
        default_epochs, default_test = default_data(config)
        epoch_data, test_data = epoch_data or default_epochs, test_data or default_test
    epoch_data(0)  # fail on missing data or a too-large batch before building anything
    with distributed.write_dir(model_dir, strategy) as out_dir:
        prepare_model_dir(out_dir)
        state = load_state(model_dir, config)
        if flags_text:
            outputs.atomic_write_text(os.path.join(out_dir, "flags.txt"), flags_text)
        outputs.atomic_write_text(os.path.join(out_dir, CONFIG_FILE), json.dumps(config_record(config), indent=1))
        keras.utils.set_random_seed(config.seed)
        trainer = build_trainer(config, strategy, skip_nonfinite=nan_policy == "skip_batch",
                                jit_compile=jit_compile)
        outputs.restore_run(_checkpoint(trainer), state, model_dir, strategy, trainer.weight_optimizer)
        first_epoch, first_step, train_seconds, logs = 0, 0, 0.0, {}
        if state:
            first_epoch, first_step, train_seconds = state["epoch"], state["step"], state["train_seconds"]
            logs = state.get("train_logs", {})
        manager = tf.train.CheckpointManager(_checkpoint(trainer), os.path.join(out_dir, CHECKPOINT_DIR), 2)
        writer = tf.summary.create_file_writer(os.path.join(out_dir, "tensorboard"))
        loop = distributed.epoch_loop(strategy)
        for epoch in range(first_epoch, config.epochs):
            learning_rate, drop_prob = learning_rate_at(config, epoch), drop_path_at(config, epoch)
            trainer.weight_optimizer.learning_rate = learning_rate
            if hasattr(trainer.network, "set_drop_path_prob"):
                trainer.network.set_drop_path_prob(drop_prob)
            dataset, steps = epoch_data(epoch)
            skip = first_step if epoch == first_epoch else 0
            started = time.time()

            def save(steps_done, epoch=epoch, started=started):
                _save_state(out_dir, config, manager, trainer, epoch, steps_done,
                            train_seconds + time.time() - started, logs)

            epoch_callbacks = runtime.epoch_callbacks(callbacks, epoch, nan_policy, manager, checkpoint_every_steps,
                                                      steps, skip, save, return_freed_memory)
            logs = loop.fit_epoch(trainer, dataset.skip(skip), steps - skip, epoch, epoch_callbacks, verbose)
            train_seconds += time.time() - started
            check_finite(logs, epoch, "lower --learning_rate")
            distributed.check_in_sync(strategy, trainer.trainable_variables + trainer.weight_optimizer.variables,
                                      f"the weights and optimizer state after epoch {epoch + 1}")
            with writer.as_default(step=epoch):
                tf.summary.scalar("train/loss", logs["loss"])
                tf.summary.scalar("train/accuracy", logs["accuracy"])
                tf.summary.scalar("learning_rate", learning_rate)
                tf.summary.scalar("drop_path_prob", drop_prob)
            writer.flush()
            _save_state(out_dir, config, manager, trainer, epoch + 1, 0, train_seconds, logs)
            if distributed.is_chief(strategy):
                print(f"epoch {epoch + 1}/{config.epochs} "
                      + " ".join(f"{key}={value:.4f}" for key, value in logs.items())
                      + f" lr={learning_rate:.5f} drop_path={drop_prob:.3f}", flush=True)
        test = _evaluate(config, trainer, test_data, strategy)
        with writer.as_default(step=config.epochs):
            for key in ("loss", "top1", "top5"):
                tf.summary.scalar(f"test/{key}", test[key])
        writer.flush()
        results = {"test_top1": float(test["top1"]), "test_top5": float(test["top5"]),
                   "test_loss": float(test["loss"]), "epochs": config.epochs, "train_seconds": round(train_seconds, 2),
                   "genotype": config.genotype.to_text(), "dataset": config.network.dataset,
                   "eval_split": config.eval_split, "params": trainer.network.count_params_excluding_aux()}
        if logs:
            results.update(train_loss=logs["loss"], train_accuracy=logs["accuracy"])
        outputs.atomic_write_text(os.path.join(out_dir, RESULTS_FILE), json.dumps(results, indent=1))
    return results


def _evaluate(config, trainer, test_data, strategy):
    """{loss, top1, top5} of the trained network on the held-out batches.

    Under MultiWorkerMirroredStrategy (where Keras 3's `evaluate` fails as `fit` does) every worker tests the
    whole split on a copy of its network outside the strategy: the weights are the same on every worker, the
    BatchNorm statistics each worker's own (the chief's are the ones saved and reported).
    """
    if not distributed.is_multi_worker(strategy):
        return trainer.evaluate(test_data, verbose=0, return_dict=True)
    local = build_trainer(config, tf.distribute.get_strategy())
    local.network.set_weights(trainer.network.get_weights())
    return local.evaluate(test_data, verbose=0, return_dict=True)


def _save_state(model_dir, config, manager, trainer, epoch, step, train_seconds, train_logs):
    """Saves a checkpoint, then state.json naming it: `epoch` epochs and `step` steps of the next are done."""
    checkpoint_path = manager.save(checkpoint_number=int(trainer.weight_optimizer.iterations.numpy()))
    outputs.atomic_write_text(os.path.join(model_dir, outputs.STATE_FILE), json.dumps({
        "identity": _run_identity(config), "epoch": epoch, "step": step, "checkpoint": checkpoint_path,
        "train_seconds": round(train_seconds, 3), "train_logs": train_logs}))
