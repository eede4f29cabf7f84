"""Retrains a genotype from scratch: the Trainer, its schedules, TensorBoard, results.json (docs/method.md §8).

The epochs, checkpoints and resume are run_loop's; this module supplies the retraining's part (`TrainTask`).
Each epoch sets the learning rate (cosine, or ImageNet's linear decay, with an optional warm-up) and the
drop-path probability drop_path_prob * epoch / epochs before its `fit` epoch of the `Trainer`. At the end the
network is tested on the held-out split and `results.json` is written atomically.

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

import tensorflow as tf

from drnas_tf import config as config_lib, distributed, optim, outputs, run_loop
from drnas_tf.config import Execution
from drnas_tf.train_model import Trainer

CONFIG_FILE = "train_config.json"
RESULTS_FILE = "results.json"
CHECKPOINT_DIR = run_loop.CHECKPOINT_DIR
EVAL_BATCH_SIZE = 256


def learning_rate_at(config, epoch):
    """The SGD learning rate of `epoch` under the config's schedule and warm-up."""
    weights, epochs = config.weights, config.schedule.epochs
    if weights.lr_schedule == "linear":
        return optim.linear_learning_rate(epoch, epochs, weights.learning_rate, weights.lr_warmup_epochs)
    return optim.cosine_learning_rate(epoch, epochs, weights.learning_rate, weights.learning_rate_min,
                                      weights.lr_warmup_epochs)


def drop_path_at(config, epoch):
    """The reference's drop-path schedule: drop_path_prob * epoch / epochs (0 in the first epoch)."""
    return config.regularization.drop_path_prob * epoch / config.schedule.epochs


def build_network(config):
    """The discrete network `config` describes (built, with every variable)."""
    network = config.network
    options = {"auxiliary": config.regularization.auxiliary} if "auxiliary" in network.space.retrain_options else {}
    return network.space.build_network(config.genotype, network.num_classes, init_channels=network.init_channels,
                                       depth=network.depth, stem=network.stem, **options)


def build_trainer(config, strategy, execution=None):
    """The network wrapped in a compiled Trainer, inside `strategy`'s scope, as a config.Execution runs it: steps
    with a non-finite gradient skipped under nan_policy "skip_batch", the step compiled with XLA under
    jit_compile."""
    execution = execution or Execution()
    with strategy.scope():
        weights, regularization = config.weights, config.regularization
        trainer = Trainer(build_network(config), weights.learning_rate, weights.momentum, weights.weight_decay,
                          weights.grad_clip, regularization.label_smoothing, regularization.auxiliary_weight,
                          config.seed, execution.nan_policy == "skip_batch")
        trainer.compile(optimizer=trainer.weight_optimizer, jit_compile=execution.jit_compile)
    return trainer


def config_record(config):
    """The JSON-able description of a run that `export` and a resume read back (train_config.json)."""
    record = {"genotype": json.loads(config.genotype.to_json()), "network": dataclasses.asdict(config.network),
              **config_lib.flat_settings(config), "genotype_text": config.genotype.to_text()}
    record["network"]["image_size"] = list(config.network.image_size)
    return record


def restore_network(network, checkpoint_path):
    """Restores a network's variables from a training checkpoint (the optimizer's slots are not read)."""
    try:
        tf.train.Checkpoint(network=network).restore(checkpoint_path).expect_partial() \
            .assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as error:
        raise ValueError(f"cannot restore {checkpoint_path}: {str(error).splitlines()[0]}") from None


def default_data(config):
    """(epoch_data, test_data) of the config's dataset: epoch -> (batches, steps), and the held-out batches."""
    from drnas_tf.data import pipelines

    name = config.network.dataset
    data = config.data
    arrays = None if name == "imagenet" else pipelines.train_arrays(name, data.data_dir, data.download)

    def epoch_data(epoch):
        """The epoch's pipeline, seeded by (seed, epoch) so a resumed run sees the same batches."""
        dataset, steps = pipelines.train_dataset(name, config.schedule.batch_size, config.seed * 1000 + epoch,
                                                 config.regularization.cutout, config.regularization.color_jitter,
                                                 data.data_dir, data.download, arrays)
        return dataset, min(steps, config.schedule.steps_per_epoch or steps)

    test_data = pipelines.eval_dataset(name, data.eval_split, EVAL_BATCH_SIZE, data.data_dir, data.download)
    return epoch_data, test_data


class TrainTask(run_loop.RunTask):
    """A retraining as run_loop runs it: the Trainer, the learning rate and drop-path schedules per epoch,
    TensorBoard scalars and the training time; at the end the test on the held-out split and results.json."""

    required_state = frozenset({"step", "train_seconds"})

    def __init__(self, config, epoch_data, test_data, execution=None):
        self.config, self._epoch_data, self.test_data = config, epoch_data, test_data
        self.execution = execution
        self.total_epochs, self.seed = config.schedule.epochs, config.seed
        self.strategy, self.writer, self.logs = None, None, {}
        self.train_seconds, self.started, self.learning_rate, self.drop_prob = 0.0, None, None, None

    def identity(self):
        network = self.config.network
        return {"genotype": self.config.genotype.to_text(), "dataset": network.dataset,
                "init_channels": network.init_channels,
                "layers": network.depth, "auxiliary": self.config.regularization.auxiliary,
                "epochs": self.config.schedule.epochs}

    def prepare(self, out_dir, state):
        outputs.atomic_write_text(os.path.join(out_dir, CONFIG_FILE), json.dumps(config_record(self.config),
                                                                                 indent=1))
        if state:
            self.train_seconds, self.logs = state["train_seconds"], state.get("train_logs", {})
        self.writer = tf.summary.create_file_writer(os.path.join(out_dir, "tensorboard"))

    def build_model(self, state, strategy):
        self.strategy = strategy
        return build_trainer(self.config, strategy, self.execution)

    def checkpoint(self, model):
        return tf.train.Checkpoint(network=model.network, optimizer=model.weight_optimizer,
                                   loss_scale=model.loss_scale)

    def start_epoch(self, model, epoch, strategy):
        self.learning_rate, self.drop_prob = learning_rate_at(self.config, epoch), drop_path_at(self.config, epoch)
        model.weight_optimizer.learning_rate = self.learning_rate
        if hasattr(model.network, "set_drop_path_prob"):
            model.network.set_drop_path_prob(self.drop_prob)
        self.started = time.time()
        return model

    def epoch_data(self, epoch):
        return self._epoch_data(epoch)

    def end_fit(self, epoch, logs):
        self.train_seconds += time.time() - self.started
        self.started, self.logs = None, logs

    def end_epoch(self, model, epoch, logs, out_dir):
        with self.writer.as_default(step=epoch):
            tf.summary.scalar("train/loss", logs["loss"])
            tf.summary.scalar("train/accuracy", logs["accuracy"])
            tf.summary.scalar("learning_rate", self.learning_rate)
            tf.summary.scalar("drop_path_prob", self.drop_prob)
        self.writer.flush()

    def state_fields(self, model, epoch, step):
        seconds = self.train_seconds + (time.time() - self.started if self.started is not None else 0.0)
        return {"train_seconds": round(seconds, 3), "train_logs": self.logs}

    def epoch_line(self, model, epoch, logs):
        return (super().epoch_line(model, epoch, logs)
                + f" lr={self.learning_rate:.5f} drop_path={self.drop_prob:.3f}")

    def finish(self, model, out_dir):
        config = self.config
        test = _evaluate(config, model, self.test_data, self.strategy)
        with self.writer.as_default(step=config.schedule.epochs):
            for key in ("loss", "top1", "top5"):
                tf.summary.scalar(f"test/{key}", test[key])
        self.writer.flush()
        results = {"test_top1": float(test["top1"]), "test_top5": float(test["top5"]),
                   "test_loss": float(test["loss"]), "epochs": config.schedule.epochs,
                   "train_seconds": round(self.train_seconds, 2), "genotype": config.genotype.to_text(),
                   "dataset": config.network.dataset, "eval_split": config.data.eval_split,
                   "params": model.network.count_params_excluding_aux()}
        if self.logs:
            results.update(train_loss=self.logs["loss"], train_accuracy=self.logs["accuracy"])
        outputs.atomic_write_text(os.path.join(out_dir, RESULTS_FILE), json.dumps(results, indent=1))
        return results


def run_train(config, model_dir, epoch_data=None, test_data=None, flags_text="", strategy=None, execution=None,
              callbacks=()):
    """Retrains (or resumes retraining) `config.genotype`, tests it, writes results.json and returns it.

    Args:
        config: a config.TrainConfig.
        model_dir, flags_text, strategy, execution, callbacks: as run_loop.run_epochs.
        epoch_data: epoch -> (dataset, steps): tf.data of (images, labels) global batches and how many steps
            to take (default: the config's dataset, default_data).
        test_data: tf.data of held-out (images, labels) batches (default: the config's eval split).

    Returns:
        The results dict written to results.json: test_top1, test_top5 (fractions), test_loss, epochs,
        train_seconds, genotype (text), dataset, eval_split, params (auxiliary head excluded), and the last
        epoch's train_loss and train_accuracy.
    """
    if epoch_data is None or test_data is None:
        default_epochs, default_test = default_data(config)
        epoch_data, test_data = epoch_data or default_epochs, test_data or default_test
    epoch_data(0)  # fail on missing data or a too-large batch before building anything
    task = TrainTask(config, epoch_data, test_data, execution)
    return run_loop.run_epochs(task, model_dir, execution, flags_text, strategy, callbacks)


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
