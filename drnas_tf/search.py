"""Searches an architecture: `python -m drnas_tf.search --dataset=cifar10 --model_dir=runs/c10`.

Defaults are the paper's for the search space and dataset (docs/method.md §2.2, §5.1); flagfiles in flags/ reproduce
each experiment, and flags/quickstart.flags runs on the built-in `digits` data in minutes on a CPU.
Re-running the same command with the same --model_dir resumes the search.
"""

import json
import os

from absl import flags

from drnas_tf import cli, config as config_lib, relaxations

FLAGS = flags.FLAGS
cli.define_network_flags()
cli.define_execution_flags("search")
flags.adopt_module_key_flags(cli)  # shows them in --helpshort
flags.DEFINE_enum("method", "dirichlet", list(relaxations.names()), "The relaxation: " + "; ".join(
    f"{name} ({relaxations.get(name).description})" for name in relaxations.names()) + ".")
flags.DEFINE_string("model_dir", None, "Where checkpoints, TensorBoard events and genotypes go (required).")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: TFDS's own).")
flags.DEFINE_bool("download", False, "Let TFDS download and prepare a missing dataset.")
flags.DEFINE_list("ks", None, "Partial-channel k per stage (default: DARTS 6,4; ImageNet 6,3; NB201 1; "
                  "the NB201 progressive schedule is 4,2).")
flags.DEFINE_list("num_keeps", None, "Operations kept per edge in each stage (default: DARTS 7,4; NB201 5; NB201 "
                  "progressive 5,3).")
flags.DEFINE_list("stage_epochs", None, "Epochs of each stage (default: DARTS 25,25; NB201 100; NB201 "
                  "progressive 50,50).")
flags.DEFINE_integer("arch_warmup_epochs", None, "Stage-local epochs before architecture updates (default 10; NB201 "
                     "0, its progressive schedule 10).")
flags.DEFINE_integer("batch_size", None, "Global batch of each half (default 64; ImageNet 512).")
flags.DEFINE_float("learning_rate", None, "Initial SGD learning rate (default DARTS 0.1, ImageNet 0.5, NB201 0.025).")
flags.DEFINE_float("learning_rate_min", None, "Final cosine learning rate (default 0; NB201 0.001).")
flags.DEFINE_integer("lr_warmup_epochs", None, "Linear learning-rate warm-up epochs (default 0; ImageNet 5).")
flags.DEFINE_float("momentum", None, "SGD momentum (default 0.9).")
flags.DEFINE_float("weight_decay", None, "SGD weight decay, coupled as PyTorch's (default 3e-4).")
flags.DEFINE_float("grad_clip", None, "Global-norm clip of the weight gradient (default 5).")
flags.DEFINE_enum("stage_lr", None, ["continue", "restart"], "The weights' learning rate at a progressive "
                  "stage boundary: continue the one cosine over all stages (default), or restart it at the initial "
                  "rate, as the reference's code does.")
flags.DEFINE_bool("supernet_eval", None, "After every epoch, evaluate the supernet on the epoch's architecture "
                  "batches as the reference's infer() does (eval-mode BN, a fresh draw per batch), logged as "
                  "eval/loss and eval/accuracy; valid/* are the architecture steps' own figures (default off: "
                  "about one more forward pass over half the data).")
flags.DEFINE_float("arch_learning_rate", None, "Adam learning rate of eta (default DARTS 6e-4, ImageNet 6e-3, "
                   "NB201 3e-4).")
flags.DEFINE_enum("reg_type", None, ["l2", "kl"], "Architecture regulariser (default l2).")
flags.DEFINE_float("reg_scale", None, "Regulariser scale (default 1e-3).")
flags.DEFINE_float("arch_grad_clip", None, "Global-norm clip of the architecture loss's gradient, before l2's "
                   "decay is added (default 0 = off; ImageNet 5).")


def _define_relaxation_flags():
    """--<relaxation>_<setting> for every setting of every registered relaxation (e.g. --gumbel_temperature)."""
    for method in relaxations.names():
        for setting, spec in relaxations.get(method).hyperparameters.items():
            flags.DEFINE_float(f"{method}_{setting}", None, f"--method={method}: {spec.help}")


_define_relaxation_flags()
flags.DEFINE_float("train_portion", None, "Share of the training set that trains weights (default 0.5).")
flags.DEFINE_integer("seed", None, "Seed of initialisation, data order, sampling and widening (default: "
                     "the reference's, 2; ImageNet 0).")
flags.DEFINE_integer("steps_per_epoch", None, "Cap on steps per epoch, for short runs (default: all).")
flags.DEFINE_bool("unrolled", None, "Second-order (one-step unrolled) architecture gradient of DARTS; the "
                  "default first-order one is the paper's setting.")
flags.DEFINE_enum("recompute_cells", "none", list(config_lib.RECOMPUTE_CELLS), "Search cells that keep only "
                  "their inputs for the backward pass and compute their forward again there (gradient "
                  "checkpointing): none; first_stage, the cells before the first reduction, whose activations are "
                  "the largest; or all. Less memory, more time, the same results (docs/performance.md). Only none "
                  "with --unrolled.")
flags.DEFINE_string("xla_cache_dir", None, "With --jit_compile: where XLA's compiled steps are kept, so that a "
                    "resumed or repeated search loads them instead of compiling again (default: xla_cache in "
                    "--model_dir; empty: no cache; docs/performance.md).")
flags.DEFINE_bool("keep_traces", True, "Keep each traced train step in --trace_dir, so that a resumed search, "
                  "or one with the same settings but its seed, loads it instead of tracing it again: minutes less "
                  "before its first step on a large supernet (docs/performance.md). Not with --jit_compile, whose "
                  "steps --xla_cache_dir keeps.")
flags.DEFINE_bool("trace_ahead", True, "During an architecture warm-up (--arch_warmup_epochs), trace the step "
                  "that follows it in a background thread while the warm-up runs, so that the warm-up's end does not "
                  "wait for Python's tracing (docs/performance.md). One device (the CPU or one GPU) only.")
flags.DEFINE_string("trace_dir", None, "Where --keep_traces keeps the traced steps (default: traces in "
                    "--model_dir). Searches that share one, e.g. the seeds of a sweep, trace each step once.")
flags.DEFINE_integer("checkpoint_every_steps", 0, "Also checkpoint every this many steps inside an epoch "
                     "(0: at epoch ends only); a resumed run continues from the step.")
flags.DEFINE_integer("num_gpus", -1, "GPUs to use (-1: all visible; 0: the CPU). Several run under "
                     "MirroredStrategy, one without a tf.distribute strategy.")
flags.DEFINE_enum("strategy", "auto", list(config_lib.STRATEGIES), "tf.distribute strategy: mirrored "
                  "(this host's GPUs, MirroredStrategy when several), multi_worker (MultiWorkerMirroredStrategy "
                  "over the TF_CONFIG cluster; docs/distributed.md), or auto: multi_worker when TF_CONFIG "
                  "describes a cluster.")
flags.DEFINE_integer("progress", 1, "Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch; "
                     "1 and 2 also announce each new train step's first run and time it.")
flags.DEFINE_string("nb201_benchmark", None, "NB201 space: after every epoch, look the genotype (and the "
                    "--trajectory_samples) up in this NAS-Bench-201 benchmark: a NATS-Bench topology directory "
                    "(pip install nats_bench), a NAS-Bench-201 .pth file (pip install nas-bench-201), or a .csv "
                    "or .jsonl table (docs/analysis.md).")
flags.DEFINE_integer("trajectory_samples", 100, "After every epoch, draw this many architectures from the "
                     "current distribution and log how many are distinct, their per-edge operation entropy and, "
                     "with --nb201_benchmark, their min/median/max accuracy (100 as the paper; 0: off).")

def config_from_flags():
    """The SearchConfig the flags describe (paper defaults for whatever is not given)."""
    return config_lib.search_config(
        FLAGS.search_space, FLAGS.dataset, FLAGS.method,
        relaxation_options={setting: FLAGS[f"{FLAGS.method}_{setting}"].value
                            for setting in relaxations.get(FLAGS.method).hyperparameters},
        **config_lib.settings_from_flags(config_lib.SearchConfig, FLAGS))


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.model_dir:
        raise ValueError("--model_dir is required: where the search writes checkpoints and genotypes")
    config = config_from_flags()
    from drnas_tf import distributed, runtime, search_task, second_order, trajectory
    from drnas_tf.data.pipelines import search_datasets, search_parts
    from drnas_tf.spaces.nb201.nas_bench import open_benchmark

    execution = config_lib.Execution.from_flags(FLAGS)
    second_order.check_unrolled(config.arch.unrolled, runtime.configure(execution, config.seed),
                                execution.recompute_cells)
    strategy = distributed.make_strategy(FLAGS.strategy, FLAGS.num_gpus)
    runtime.check_jit_compile(execution.jit_compile, strategy, execution.deterministic)
    name = config.network.dataset
    data = config.data
    parts = None if name == "imagenet" else search_parts(name, data.data_dir, data.train_portion, data.download)

    def epoch_data(epoch):
        """The epoch's pipeline, seeded by (seed, epoch) so a resumed run sees the same batches."""
        dataset, steps, _ = search_datasets(name, config.schedule.batch_size, data_dir=data.data_dir,
                                            train_portion=data.train_portion, seed=config.seed * 1000 + epoch,
                                            download=data.download, split_seed=config.seed, parts=parts)
        return dataset, min(steps, config.schedule.steps_per_epoch or steps)

    trajectory.check_settings(config.network.search_space, bool(FLAGS.nb201_benchmark), FLAGS.trajectory_samples)
    epoch_data(0)  # fail on missing data or a too-large batch before building anything
    benchmark = open_benchmark(FLAGS.nb201_benchmark) if FLAGS.nb201_benchmark else None
    genotype = search_task.run_search(config, FLAGS.model_dir, epoch_data, FLAGS.flags_into_string(), strategy,
                                      execution, benchmark=benchmark, trajectory_samples=FLAGS.trajectory_samples)
    print(f"final genotype: {genotype.to_text()}")
    record_path = os.path.join(FLAGS.model_dir, "genotype.json")
    if os.path.exists(record_path):  # a worker other than the chief may not see the chief's model_dir
        print_top_operations(record_path)
    print(f"written to {record_path}")


XLA_CACHE_FLAG = "--tf_xla_persistent_cache_directory"


def configure_xla_cache():
    """Under --jit_compile, turns on XLA's persistent compilation cache in --xla_cache_dir (default: xla_cache
    in --model_dir): each step XLA compiles is written there, and a later process that compiles the same step,
    a resumed search say, loads it instead of compiling it again.

    TensorFlow reads TF_XLA_FLAGS once, when it starts, so this runs before (cli.run's before_tensorflow). A
    cache directory the user set in TF_XLA_FLAGS is kept. An entry is looked up by the step function's name and
    argument shapes and used only if the XLA program it was compiled from equals the new one, so a stale entry
    costs a compilation, never a wrong result; the step's function is named by its content
    (runtime_call.register_by_content) for the names to match across processes."""
    if not (FLAGS.jit_compile and FLAGS.model_dir) or FLAGS.xla_cache_dir == "":
        return
    directory = os.path.abspath(FLAGS.xla_cache_dir or os.path.join(FLAGS.model_dir, "xla_cache"))
    settings = os.environ.get("TF_XLA_FLAGS", "")
    if XLA_CACHE_FLAG not in settings:
        os.environ["TF_XLA_FLAGS"] = f"{settings} {XLA_CACHE_FLAG}={directory}".strip()


def print_top_operations(record_path):
    """Prints each edge's top operation and runner-up with their probabilities: how decided the search is."""
    from drnas_tf import outputs

    with open(record_path, encoding="utf-8") as file:
        record = json.load(file)
    print(f"operation probabilities per edge ({outputs.relaxation_of(record).probability_name}), top and "
          "runner-up:")
    rows = outputs.top_operations(record)
    width = max(len(row[0]) for row in rows)
    for edge, top, top_probability, second, second_probability in rows:
        print(f"  {edge:>{width}}: {top} {top_probability:.2f}   {second} {second_probability:.2f}")


if __name__ == "__main__":
    cli.run(main, "drnas_tf.search", before_tensorflow=configure_xla_cache)
