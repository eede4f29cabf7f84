"""Runs a whole search: progressive stages of `fit` epochs, checkpoints, resume, outputs (docs/method.md §2, §5).

Each epoch is one `fit` call on the search dataset (under MultiWorkerMirroredStrategy, where Keras 3's `fit`
fails, one epoch of distributed.MultiWorkerLoop, which runs the same train_step; only the chief writes into
model_dir). At a stage boundary the supernet is pruned to the next
stage's num_keep operations per edge (by eta), rebuilt with the next k, and its weights and SGD momentum are
widened into it (progressive.widen_supernet); eta and Adam's state carry over unchanged. The weights' cosine
schedule runs across all stages. After every epoch the run saves a checkpoint and then `state.json`, which
names that checkpoint: re-running the same command resumes from there, also across a stage boundary.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from drnas_tf import distributed, optim, outputs, progressive, runtime, trajectory
from drnas_tf.searcher import Searcher
from drnas_tf.supernet import build_supernet

CHECKPOINT_DIR = "checkpoints"


def stage_of(config, epoch):
    """(stage index, first epoch of that stage) of a global epoch."""
    start = 0
    for stage, epochs in enumerate(config.stage_epochs):
        if epoch < start + epochs:
            return stage, start
        start += epochs
    raise ValueError(f"epoch {epoch} is past the {config.total_epochs} epochs of the schedule")


def build_searcher(config, stage, masks, strategy, skip_nonfinite=False, jit_compile=False, recompute_cells=False):
    """The stage's supernet (its k and masks) wrapped in a compiled Searcher, inside `strategy`'s scope;
    `skip_nonfinite` skips steps with a non-finite gradient (--nan_policy=skip_batch), `jit_compile` compiles
    the step with XLA, `recompute_cells` recomputes the search cells in the backward pass."""
    network = config.network
    with strategy.scope():
        supernet = build_supernet(
            network.search_space, network.num_classes, init_channels=network.init_channels, k=config.ks[stage],
            layers=network.layers, cells_per_stage=network.cells_per_stage, stem=network.stem, masks=masks,
            method=config.relaxation, temperature=config.gumbel_temperature, nb201_bypass=network.nb201_bypass,
            recompute_cells=recompute_cells)
        searcher = Searcher(supernet, config.arch_learning_rate, config.reg_type, config.reg_scale,
                            config.learning_rate, config.momentum, config.weight_decay, config.grad_clip,
                            config.arch_grad_clip, config.seed, config.unrolled, skip_nonfinite)
        searcher.compile(optimizer=searcher.weight_optimizer, jit_compile=jit_compile)
    return searcher


def _momentum_slots(searcher):
    optimizer = searcher.weight_optimizer
    return {v.path: optimizer.momentums[optimizer._get_variable_index(v)]
            for v in searcher.supernet.weight_variables}


def next_stage(config, searcher, stage, strategy):
    """Prunes, rebuilds and widens `searcher` into stage `stage` (docs/method.md §5.2); returns the new Searcher."""
    old = searcher.supernet
    masks = {name: progressive.prune_mask(param.numpy(), old.masks[name], config.num_keeps[stage])
             for name, param in old.arch.items()}
    successor = build_searcher(config, stage, masks, strategy, searcher.skip_nonfinite, searcher.jit_compile,
                               old.recompute_cells)
    rng = np.random.default_rng([config.seed, stage])
    progressive.widen_supernet(old, successor.supernet, rng, _momentum_slots(searcher), _momentum_slots(successor))
    for name, param in old.arch.items():
        successor.supernet.arch[name].assign(param.numpy())
    for source, target in zip(searcher.arch_optimizer.variables, successor.arch_optimizer.variables):
        target.assign(source.numpy())
    successor.weight_optimizer.iterations.assign(searcher.weight_optimizer.iterations.numpy())
    for source, target in zip(searcher.loss_scale.variables, successor.loss_scale.variables):
        target.assign(source.numpy())
    return successor


def _checkpoint(searcher):
    return tf.train.Checkpoint(supernet=searcher.supernet, arch_optimizer=searcher.arch_optimizer,
                               weight_optimizer=searcher.weight_optimizer, loss_scale=searcher.loss_scale)


def _trained_variables(searcher):
    """Eta, the weights and both optimizers' states: what every replica holds alike (BN statistics are not)."""
    return (searcher.supernet.trainable_variables + searcher.arch_optimizer.variables
            + searcher.weight_optimizer.variables)


def _run_identity(config):
    """What a checkpoint in model_dir must match to be resumed by this config."""
    network = config.network
    return {"search_space": network.search_space, "dataset": network.dataset, "init_channels": network.init_channels,
            "layers": network.layers if network.search_space == "darts" else network.cells_per_stage,
            "ks": list(config.ks), "num_keeps": list(config.num_keeps), "method": config.method,
            "unrolled": config.unrolled}


def load_state(model_dir, config):
    """The saved state of an earlier search in model_dir (masks as bool arrays), None if there is none."""
    state = outputs.read_run_state(model_dir, _run_identity(config), {"masks", "epoch", "stage", "checkpoint"})
    if state is not None:
        state["masks"] = {name: np.asarray(mask, dtype=bool) for name, mask in state["masks"].items()}
    return state


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


def run_search(config, model_dir, epoch_data, flags_text="", strategy=None, verbose=1,
               checkpoint_every_steps=0, callbacks=(), benchmark=None, trajectory_samples=0, nan_policy="stop",
               jit_compile=False, recompute_cells=False, return_freed_memory=True):
    """Searches (or resumes a search) and returns the final genotype.

    Args:
        config: a config.SearchConfig.
        model_dir: where checkpoints, TensorBoard events and genotypes go (under MultiWorkerMirroredStrategy
            the chief's; the other workers read it to resume and write into a temporary directory,
            distributed.write_dir).
        epoch_data: epoch -> (dataset, steps): tf.data of ((x_train, y_train), (x_valid, y_valid)) global
            batches for that epoch, and how many steps to take. Data that depends only on the epoch makes a
            resumed run repeat an uninterrupted one.
        flags_text: the flags, frozen into model_dir/flags.txt.
        strategy: a tf.distribute strategy (default: the current one).
        verbose: Keras progress output (0, 1 or 2).
        checkpoint_every_steps: also checkpoint inside epochs, every this many steps (0: epoch ends only).
        callbacks: more Keras callbacks for every epoch's `fit` (or distributed.MultiWorkerLoop's epoch).
        benchmark: a benchmark.Benchmark (NB201 space only): every epoch's genotype, and the sampled
            architectures, are looked up in it.
        trajectory_samples: architectures drawn from the current distribution after every epoch
            (trajectory.epoch_analysis; 0: none), seeded by (seed, epoch).
        nan_policy: "stop": the first batch with a NaN or Inf loss ends the run with a ValueError and the last
            good checkpoint stays the one resumed; "skip_batch": steps with a non-finite gradient are skipped
            (and counted as skipped_steps in the epoch's logs).
        jit_compile: compile the train step with XLA (one device only).
        recompute_cells: compute each search cell's forward again in the backward pass instead of keeping
            its activations (Supernet's `recompute_cells`): less memory, more time.
        return_freed_memory: hand freed heap pages back to the OS during each epoch's first step
            (runtime.ReturnFreedMemory): a lower peak RSS.
    """
    runtime.check_nan_policy(nan_policy)
    trajectory.check_settings(config.network.search_space, benchmark is not None, trajectory_samples)
    strategy = strategy or tf.distribute.get_strategy()
    with distributed.write_dir(model_dir, strategy) as out_dir:
        prepare_model_dir(out_dir)
        if flags_text:
            outputs.atomic_write_text(os.path.join(out_dir, "flags.txt"), flags_text)
        keras.utils.set_random_seed(config.seed)
        state = load_state(model_dir, config)
        stage = state["stage"] if state else 0
        searcher = build_searcher(config, stage, state["masks"] if state else None, strategy,
                                  skip_nonfinite=nan_policy == "skip_batch", jit_compile=jit_compile,
                                  recompute_cells=recompute_cells)
        outputs.restore_run(_checkpoint(searcher), state, model_dir, strategy, searcher.weight_optimizer)
        first_epoch, first_step = (state["epoch"], state.get("step", 0)) if state else (0, 0)
        manager = tf.train.CheckpointManager(_checkpoint(searcher), os.path.join(out_dir, CHECKPOINT_DIR), 2)
        summaries = outputs.SearchSummaries(out_dir)
        loop = distributed.epoch_loop(strategy)
        genotype = searcher.supernet.genotype()
        for epoch in range(first_epoch, config.total_epochs):
            epoch_stage, stage_start = stage_of(config, epoch)
            if epoch_stage != stage:
                searcher, stage = next_stage(config, searcher, epoch_stage, strategy), epoch_stage
                manager = tf.train.CheckpointManager(_checkpoint(searcher), os.path.join(out_dir, CHECKPOINT_DIR),
                                                     2)
            searcher.set_arch_updates(epoch - stage_start >= config.arch_warmup_epochs)
            learning_rate = optim.cosine_learning_rate(epoch, config.total_epochs, config.learning_rate,
                                                       config.learning_rate_min, config.lr_warmup_epochs)
            searcher.weight_optimizer.learning_rate = learning_rate
            dataset, steps = epoch_data(epoch)
            skip = first_step if epoch == first_epoch else 0

            def save(steps_done, epoch=epoch, manager=manager, searcher=searcher, stage=stage):
                _save_state(out_dir, config, manager, searcher, stage, epoch, steps_done)

            epoch_callbacks = runtime.epoch_callbacks(callbacks, epoch, nan_policy, manager, checkpoint_every_steps,
                                                      steps, skip, save, return_freed_memory)
            logs = loop.fit_epoch(searcher, dataset.skip(skip), steps - skip, epoch, epoch_callbacks, verbose,
                                  trace_key=searcher.arch_updates)
            check_finite(logs, epoch)
            distributed.check_in_sync(strategy, _trained_variables(searcher), "the architecture parameters, "
                                      f"weights and optimizer states after epoch {epoch + 1}")
            genotype = searcher.supernet.genotype()
            analysis = trajectory.epoch_analysis(searcher.supernet, genotype, trajectory_samples,
                                                 (config.seed, epoch), benchmark)
            summaries.log_epoch(epoch, logs, {"weights": learning_rate, "arch": config.arch_learning_rate},
                                searcher.supernet, genotype, analysis)
            outputs.write_genotype(out_dir, outputs.genotype_record(
                genotype, searcher.supernet, epoch, stage, config.ks[stage], analysis,
                arch_steps=searcher.arch_optimizer.iterations.numpy()))
            _save_state(out_dir, config, manager, searcher, stage, epoch + 1, 0)
            if distributed.is_chief(strategy):
                print(f"epoch {epoch + 1}/{config.total_epochs} stage {stage + 1} k={config.ks[stage]} "
                      + " ".join(f"{key}={value:.4f}" for key, value in logs.items()) + f" lr={learning_rate:.5f} "
                      + f"genotype={genotype.to_text()}" + trajectory.summary_text(analysis), flush=True)
    return genotype


def _save_state(model_dir, config, manager, searcher, stage, epoch, step):
    """Saves a checkpoint, then state.json naming it: `epoch` epochs and `step` steps of the next are done."""
    checkpoint_path = manager.save(checkpoint_number=int(searcher.weight_optimizer.iterations.numpy()))
    outputs.atomic_write_text(os.path.join(model_dir, outputs.STATE_FILE), json.dumps({
        "identity": _run_identity(config), "epoch": epoch, "step": step, "stage": stage, "k": config.ks[stage],
        "masks": {name: mask.tolist() for name, mask in searcher.supernet.masks.items()},
        "checkpoint": checkpoint_path}))


def check_finite(logs, epoch, remedy="lower --learning_rate or --arch_learning_rate"):
    """Raises a one-line ValueError if an epoch's metrics are not finite (the last checkpoint is kept)."""
    bad = [key for key, value in logs.items() if not np.isfinite(value)]
    if bad:
        raise ValueError(f"non-finite {', '.join(bad)} in epoch {epoch + 1}; the last good checkpoint is kept "
                         f"({remedy})")
