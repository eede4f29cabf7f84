"""Runs a whole search: progressive stages of epochs, and what each epoch writes (docs/method.md §2, §5).

The epochs, checkpoints and resume are run_loop's; this module supplies the search's part (`SearchTask`). At a
stage boundary the supernet is pruned to the next stage's num_keep operations per edge (by eta), rebuilt with
the next k, and its weights and SGD momentum are widened into it (progressive.widen_supernet); eta and Adam's
state carry over unchanged. The weights' cosine schedule runs across all stages. A resume continues across a
stage boundary too.
"""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from drnas_tf import optim, outputs, progressive, relaxations, run_loop, trajectory
from drnas_tf.config import Execution
from drnas_tf.search_model import Searcher


TRACE_DIR = "traces"  # in the run's directory: the traced train steps (Searcher.keep_traces)


def stage_of(config, epoch):
    """(stage index, first epoch of that stage) of a global epoch."""
    start = 0
    for stage, epochs in enumerate(config.schedule.stage_epochs):
        if epoch < start + epochs:
            return stage, start
        start += epochs
    raise ValueError(f"epoch {epoch} is past the {config.schedule.total_epochs} epochs of the schedule")


def build_searcher(config, stage, masks, strategy, execution=None):
    """The stage's supernet (its k and masks) wrapped in a compiled Searcher, inside `strategy`'s scope, as a
    config.Execution runs it: steps with a non-finite gradient skipped under nan_policy "skip_batch", the step
    compiled with XLA under jit_compile, the search cells recomputed in the backward pass under
    recompute_cells."""
    execution = execution or Execution()
    network = config.network
    with strategy.scope():
        supernet = network.space.build_supernet(
            network.num_classes, init_channels=network.init_channels, depth=network.depth,
            k=config.schedule.ks[stage],
            stem=network.stem, masks=masks, method=relaxations.create(config.method, **config.relaxation_options),
            recompute_cells=execution.recompute_cells, **network.space_options)
        arch, weights = config.arch, config.weights
        searcher = Searcher(supernet, arch.arch_learning_rate, arch.reg_type, arch.reg_scale, weights.learning_rate,
                            weights.momentum, weights.weight_decay, weights.grad_clip, arch.arch_grad_clip, config.seed,
                            arch.unrolled, execution.nan_policy == "skip_batch")
        searcher.compile(optimizer=searcher.weight_optimizer, jit_compile=execution.jit_compile)
    return searcher


def _momentum_slots(searcher):
    optimizer = searcher.weight_optimizer
    return {v.path: optimizer.momentums[optimizer._get_variable_index(v)]
            for v in searcher.supernet.weight_variables}


def next_stage(config, searcher, stage, strategy, execution=None):
    """Prunes, rebuilds and widens `searcher` into stage `stage` (docs/method.md §5.2); returns the new Searcher."""
    old = searcher.supernet
    masks = {name: progressive.prune_mask(param.numpy(), old.masks[name], config.schedule.num_keeps[stage])
             for name, param in old.arch.items()}
    successor = build_searcher(config, stage, masks, strategy, execution)
    rng = np.random.default_rng([config.seed, stage])
    progressive.widen_supernet(old, successor.supernet, rng, _momentum_slots(searcher), _momentum_slots(successor))
    for name, param in old.arch.items():  # pruned entries become 0, as the reference's `prune` leaves them
        successor.supernet.arch[name].assign(np.where(masks[name], param.numpy(), 0.0))
    for source, target in zip(searcher.arch_optimizer.variables, successor.arch_optimizer.variables):
        target.assign(source.numpy())
    successor.weight_optimizer.iterations.assign(searcher.weight_optimizer.iterations.numpy())
    for source, target in zip(searcher.loss_scale.variables, successor.loss_scale.variables):
        target.assign(source.numpy())
    return successor


def searcher_checkpoint(searcher):
    """What a search checkpoint holds: the supernet (eta included), both optimizers and the loss scale."""
    return tf.train.Checkpoint(supernet=searcher.supernet, arch_optimizer=searcher.arch_optimizer,
                               weight_optimizer=searcher.weight_optimizer, loss_scale=searcher.loss_scale)


class SearchTask(run_loop.RunTask):
    """A search as run_loop runs it: the stage's Searcher, pruned and widened at stage boundaries; after every
    epoch the TensorBoard summaries, genotype.json and the trajectory analysis."""

    required_state = frozenset({"masks", "stage"})
    nonfinite_remedy = "lower --learning_rate or --arch_learning_rate"

    def __init__(self, config, epoch_data, benchmark=None, trajectory_samples=0, execution=None):
        self.config, self._epoch_data, self.benchmark = config, epoch_data, benchmark
        self.trajectory_samples, self.execution = trajectory_samples, execution or Execution()
        self.total_epochs, self.seed = config.schedule.total_epochs, config.seed
        self.stage, self.summaries, self.genotype, self.learning_rate, self.analysis = 0, None, None, None, None
        self.trace_directory = None

    def identity(self):
        network = self.config.network
        return {"search_space": network.search_space, "dataset": network.dataset,
                "init_channels": network.init_channels, "layers": network.depth, "ks": list(self.config.schedule.ks),
                "num_keeps": list(self.config.schedule.num_keeps), "method": self.config.method,
                "unrolled": self.config.arch.unrolled}

    def prepare(self, out_dir, state):
        self.summaries = outputs.SearchSummaries(out_dir)
        if self.execution.keep_traces:
            self.trace_directory = self.execution.trace_dir or os.path.join(out_dir, TRACE_DIR)

    def build_model(self, state, strategy):
        self.stage = state["stage"] if state else 0
        searcher = build_searcher(self.config, self.stage, state["masks"] if state else None, strategy,
                                  self.execution)
        return self._configured(searcher)

    def _configured(self, searcher):
        """The searcher, reporting each new step's first run unless progress output is off, and keeping its traced
        steps in the trace directory (Searcher.keep_traces), keyed by the run's settings but its seed, which the
        step reads from a variable, the stage and op determinism: a search with another seed in the same
        directory loads them too. The other execution settings that change a trace reach the key through the
        searcher (the NaN policy), its supernet (precision, recomputed cells) or not at all (jit_compile keeps no
        trace)."""
        searcher.report_first_steps = bool(self.execution.progress)
        if self.trace_directory:
            settings = dataclasses.asdict(self.config)
            del settings["seed"]
            searcher.keep_traces(self.trace_directory, json.dumps(
                {"config": settings, "stage": self.stage, "deterministic": self.execution.deterministic},
                sort_keys=True, default=repr))
        return searcher

    def checkpoint(self, model):
        return searcher_checkpoint(model)

    def start_epoch(self, model, epoch, strategy):
        config = self.config
        stage, stage_start = stage_of(config, epoch)
        if stage != self.stage:
            model, self.stage = next_stage(config, model, stage, strategy, self.execution), stage
            model = self._configured(model)
        warmup = config.schedule.arch_warmup_epochs
        # During a warm-up that the stage outlasts, the step that follows it is traced while the warm-up runs.
        model.set_arch_updates(epoch - stage_start >= warmup, trace_ahead=self.execution.trace_ahead
                               and warmup < config.schedule.stage_epochs[stage])
        model.supernet.relaxation.start_epoch(epoch, config.schedule.total_epochs)
        weights, total = config.weights, config.schedule.total_epochs
        if stage > 0 and config.schedule.stage_lr == "restart":
            self.learning_rate = optim.restarted_cosine_learning_rate(epoch, stage_start, total,
                                                                      weights.learning_rate, weights.learning_rate_min)
        else:
            self.learning_rate = optim.cosine_learning_rate(epoch, total, weights.learning_rate,
                                                            weights.learning_rate_min, weights.lr_warmup_epochs)
        model.weight_optimizer.learning_rate = self.learning_rate
        return model

    def epoch_data(self, epoch):
        return self._epoch_data(epoch)

    def trace_key(self, model):
        return model.arch_updates

    def synced_variables(self, model):
        """Eta, the weights and both optimizers' states: what every replica holds alike (BN statistics are not)."""
        variables = (model.supernet.trainable_variables + model.arch_optimizer.variables
                     + model.weight_optimizer.variables)
        return variables, "the architecture parameters, weights and optimizer states"

    def evaluate(self, model, epoch):
        """{eval_loss, eval_accuracy}: the supernet on the epoch's architecture batches, as the reference's
        infer() (Searcher.test_step)."""
        dataset, steps = self._epoch_data(epoch)
        model.evaluation_batches.assign(0)
        results = model.evaluate(dataset.map(lambda train, valid: valid), steps=steps, verbose=0, return_dict=True)
        return {"eval_loss": results["loss"], "eval_accuracy": results["accuracy"]}

    def end_epoch(self, model, epoch, logs, out_dir):
        config = self.config
        if config.schedule.supernet_eval:
            logs.update(self.evaluate(model, epoch))
        self.genotype = model.supernet.genotype()
        self.analysis = trajectory.epoch_analysis(model.supernet, self.genotype, self.trajectory_samples,
                                                  (config.seed, epoch), self.benchmark)
        self.summaries.log_epoch(epoch, logs, {"weights": self.learning_rate, "arch": config.arch.arch_learning_rate},
                                 model.supernet, self.genotype, self.analysis)
        outputs.write_genotype(out_dir, outputs.genotype_record(
            self.genotype, model.supernet, epoch, self.stage, config.schedule.ks[self.stage], self.analysis,
            arch_steps=model.arch_optimizer.iterations.numpy()))

    def state_fields(self, model, epoch, step):
        return {"stage": self.stage, "k": self.config.schedule.ks[self.stage],
                "masks": {name: mask.tolist() for name, mask in model.supernet.masks.items()}}

    def epoch_line(self, model, epoch, logs):
        k = self.config.schedule.ks[self.stage]
        return (f"epoch {epoch + 1}/{self.total_epochs} stage {self.stage + 1} k={k} "
                + " ".join(f"{key}={value:.4f}" for key, value in logs.items())
                + f" lr={self.learning_rate:.5f} genotype={self.genotype.to_text()}"
                + trajectory.summary_text(self.analysis))

    def finish(self, model, out_dir):
        # Derived from the model, whose architecture parameters the run restored: a finished search re-run
        # restores them and runs no epoch, and reports the genotype its genotype.json holds.
        return model.supernet.genotype()


def run_search(config, model_dir, epoch_data, flags_text="", strategy=None, execution=None, callbacks=(),
               benchmark=None, trajectory_samples=0):
    """Searches (or resumes a search) and returns the final genotype.

    Args:
        config: a config.SearchConfig.
        model_dir, execution, flags_text, strategy, callbacks: as run_loop.run_epochs.
        epoch_data: epoch -> (dataset, steps): tf.data of ((x_train, y_train), (x_valid, y_valid)) global
            batches for that epoch, and how many steps to take. Data that depends only on the epoch makes a
            resumed run repeat an uninterrupted one.
        benchmark: a nas_bench.Benchmark (NB201 space only): every epoch's genotype, and the sampled
            architectures, are looked up in it.
        trajectory_samples: architectures drawn from the current distribution after every epoch
            (trajectory.epoch_analysis; 0: none), seeded by (seed, epoch).
    """
    trajectory.check_settings(config.network.search_space, benchmark is not None, trajectory_samples)
    task = SearchTask(config, epoch_data, benchmark, trajectory_samples, execution)
    return run_loop.run_epochs(task, model_dir, execution, flags_text, strategy, callbacks)
