"""Time per search iteration (architecture step + weight step) and memory, one JSON line per configuration.

    python benchmarks/search_step.py                      # every configuration but the full-size one, one
                                                          # fresh process each
    python benchmarks/search_step.py --config=nb201_k4    # one
    python benchmarks/search_step.py --config=nb201_k4 --graph_nodes   # the train-step graph's size only
    python benchmarks/search_step.py --config=nb201_k4 --mixed_precision=mixed_bfloat16
    python benchmarks/search_step.py --config=darts_c16_l8_k4 --recompute_cells=first_stage

Synthetic 32x32 images, batch 64 for each of the two halves, architecture updates on; medians over
`--iterations` after 3 warm-up iterations. `peak_rss_mb` is the process's peak resident memory,
`rss_baseline_mb` the resident memory once TensorFlow and drnas_tf are imported (before any model),
`rss_after_build_mb` once the model and optimizers exist, `rss_after_trace_mb` once the
train step is traced (before TF optimises and runs it; without `--keep_trace_graph`, as the search does, once
the Python graph of the trace is freed too). `build_s` is the time to build the model and
optimizers, `trace_s` that of tracing the train step in Python, `first_step_s` that of the first step (tracing,
graph optimisation, first run), `first_step_cpu_s` the CPU time the process spent on it (tracing and graph
optimisation run on one thread, so on a loaded host this moves less than the wall time), `start_s` the wall
time from the process's start (interpreter, imports, building, the first step) to the end of its first step: what
a user waits from the command on. `--graph_nodes`
counts the nodes of the traced train step instead: a size that, unlike time, does not depend on the load.
The first iteration runs under runtime.returning_freed_memory, as the entry points' first step of an epoch
does (--return_freed_memory); `--keep_freed_memory` measures without it. Each iteration also times inference
(`infer_ms_median`) unless `--train_only`, which leaves the inference graph out as benchmarks/reference_step.py
does, so that peak memory compares with the reference's.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIGS = {
    "nb201_k4": dict(space="nb201", init_channels=16, cells_per_stage=5, k=4),
    "nb201_k2": dict(space="nb201", init_channels=16, cells_per_stage=5, k=2),
    "nb201_k1": dict(space="nb201", init_channels=16, cells_per_stage=5, k=1),
    "nb201_k4_unrolled": dict(space="nb201", init_channels=16, cells_per_stage=5, k=4, unrolled=True),
    "darts_c16_l8_k4": dict(space="darts", init_channels=16, layers=8, k=4),
    "darts_c18_l8_k6": dict(space="darts", init_channels=18, layers=8, k=6),
    "darts_c18_l8_k6_keep4_k3": dict(space="darts", init_channels=18, layers=8, k=3, num_keep=4),
    # The stages of the paper's searches, for benchmarks/gpu_check.sh's projections (not in the default set):
    # NB201 progressive stage 2, and the full-size CIFAR search supernet's two stages (minutes to build and trace).
    "nb201_k2_keep3": dict(space="nb201", init_channels=16, cells_per_stage=5, k=2, num_keep=3),
    "darts_c36_l20_k6": dict(space="darts", init_channels=36, layers=20, k=6),
    "darts_c36_l20_k4_keep4": dict(space="darts", init_channels=36, layers=20, k=4, num_keep=4),
}
DEFAULT_CONFIGS = ["nb201_k4", "nb201_k2", "nb201_k1", "nb201_k4_unrolled", "darts_c16_l8_k4", "darts_c18_l8_k6",
                   "darts_c18_l8_k6_keep4_k3"]
WARMUP_ITERATIONS = 3


def rss_mb():
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def seconds_since_process_start():
    """Wall seconds since this process started (interpreter start-up and imports included), from the kernel's
    record of its start: what a user waits from the command on."""
    with open("/proc/self/stat", encoding="ascii") as stat:
        started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22, in clock ticks since boot
    with open("/proc/uptime", encoding="ascii") as uptime:
        return float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK")


def peak_gpu_mb():
    """Peak memory TensorFlow allocated on the first GPU so far (None without a GPU)."""
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    return round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, 1)


def build(name, batch_size, recompute_cells="none"):
    """(searcher with arch updates on, supernet, a ((x_t, y_t), (x_v, y_v)) synthetic batch) of a configuration."""
    import numpy as np
    import tensorflow as tf

    from drnas_tf import progressive
    from drnas_tf.search_model import Searcher
    from drnas_tf.spaces import build_supernet, get_space

    config = dict(CONFIGS[name])
    space, num_keep, unrolled = config.pop("space"), config.pop("num_keep", None), config.pop("unrolled", False)
    masks = None
    if num_keep:
        rng = np.random.default_rng(0)
        masks = {cell: progressive.prune_mask(rng.normal(size=shape), np.ones(shape, bool), num_keep)
                 for cell, shape in get_space(space).arch_shapes.items()}
    supernet = build_supernet(space, 10, masks=masks, recompute_cells=recompute_cells, **config)
    searcher = Searcher(supernet, unrolled=unrolled)
    searcher.set_arch_updates(True)
    rng = np.random.default_rng(0)
    batch = tuple((tf.constant(rng.normal(size=(batch_size, 32, 32, 3)), tf.float32),
                   tf.constant(rng.integers(0, 10, batch_size), tf.int32)) for _ in range(2))
    return searcher, supernet, batch


def graph_nodes(name, batch_size):
    """Nodes of the traced train-step graph (functions it calls included): a load-independent size measure."""
    import tensorflow as tf

    searcher, _, batch = build(name, batch_size)
    graphs, nodes = [tf.function(searcher.train_step).get_concrete_function(batch).graph], 0
    while graphs:
        graph = graphs.pop()
        nodes += len(graph.get_operations())
        graphs.extend(function.graph for function in graph._functions.values() if hasattr(function, "graph"))
    return {"config": name, "graph_nodes": nodes, "batch_size": batch_size}


def measure(name, iterations, batch_size, jit_compile=False, intra_op_threads=0, inter_op_threads=0,
            disable_graph_optimizer=False, mixed_precision="float32", recompute_cells="none", keep_freed_memory=False,
            graph_optimization="auto", train_only=False, keep_trace_graph=False):
    import contextlib

    import numpy as np
    import tensorflow as tf

    from drnas_tf import runtime, runtime_call

    graph_optimization = runtime.configure_graph_optimization(graph_optimization)
    runtime.configure_precision(mixed_precision)

    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    if disable_graph_optimizer:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    from drnas_tf import progressive, search_model, spaces  # noqa: F401  (imported before the baseline)

    rss_baseline = rss_mb()
    start = time.perf_counter()
    searcher, supernet, batch = build(name, batch_size, recompute_cells)
    rss_after_build, build_s = rss_mb(), time.perf_counter() - start
    if keep_trace_graph:
        train_step = tf.function(searcher.train_step, jit_compile=jit_compile, autograph=False)
        trace = lambda signature: train_step.get_concrete_function(*signature)  # noqa: E731
    else:  # as Searcher's train function
        train_step = runtime_call.RuntimeFunction(searcher.train_step, jit_compile=jit_compile, autograph=False)
        trace = train_step.trace
    infer = None if train_only else tf.function(lambda images: supernet(images, training=False),
                                                jit_compile=jit_compile)
    # The entry points' --return_freed_memory (runtime.ReturnFreedMemory) around the first step's tracing,
    # graph optimisation and first run: here around the first iteration (train step and inference).
    first = contextlib.ExitStack()
    if not keep_freed_memory:
        first.enter_context(runtime.returning_freed_memory())
    start, start_cpu = time.perf_counter(), time.process_time()
    trace(tf.nest.map_structure(tf.type_spec_from_value, (batch,)))  # tracing alone, to see what it costs
    rss_after_trace, trace_s = rss_mb(), time.perf_counter() - start
    train_ms, infer_ms = [], []
    for i in range(WARMUP_ITERATIONS + iterations):
        start = time.perf_counter()
        float(train_step(batch)["loss"])
        if i == 0:
            first_step_s = trace_s + time.perf_counter() - start  # tracing, graph optimisation, first run
            first_step_cpu_s = time.process_time() - start_cpu
            start_s = seconds_since_process_start()
        if i >= WARMUP_ITERATIONS:
            train_ms.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        if not train_only:
            infer(batch[0][0]).numpy()
        if i == 0:
            first.close()
        if i >= WARMUP_ITERATIONS and not train_only:
            infer_ms.append(1000 * (time.perf_counter() - start))
    return {"config": name, "train_ms_median": round(float(np.median(train_ms)), 1),
            "train_ms_min": round(float(np.min(train_ms)), 1),
            "infer_ms_median": round(float(np.median(infer_ms)), 1) if infer_ms else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_baseline_mb": round(rss_baseline, 1), "rss_after_build_mb": round(rss_after_build, 1),
            "rss_after_trace_mb": round(rss_after_trace, 1),
            "build_s": round(build_s, 1), "trace_s": round(trace_s, 1),
            "first_step_s": round(first_step_s, 1), "first_step_cpu_s": round(first_step_cpu_s, 1),
            "start_s": round(start_s, 1), "iterations": iterations, "batch_size": batch_size,
            "graph_optimization_applied": graph_optimization,
            "peak_gpu_mb": peak_gpu_mb()}


def main():
    from drnas_tf import config  # imports no TensorFlow, which lean_import must import first

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), help="one configuration (default: all)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--graph_nodes", action="store_true", help="only count the train step's graph nodes")
    parser.add_argument("--jit_compile", action="store_true", help="compile the step with XLA")
    parser.add_argument("--intra_op_threads", type=int, default=0, help="0: TensorFlow's default")
    parser.add_argument("--inter_op_threads", type=int, default=0, help="0: TensorFlow's default")
    parser.add_argument("--disable_graph_optimizer", action="store_true", help="turn grappler off")
    parser.add_argument("--graph_optimization", choices=["auto", "quick", "full"], default="auto",
                        help="the entry points' --graph_optimization (auto: quick without a GPU)")
    parser.add_argument("--mixed_precision", choices=["float32", "mixed_float16", "mixed_bfloat16"],
                        default="float32", help="Keras dtype policy of the supernet")
    parser.add_argument("--keep_freed_memory", action="store_true",
                        help="leave freed heap pages to malloc in the first iteration (the entry points' "
                             "--noreturn_freed_memory)")
    parser.add_argument("--train_only", action="store_true",
                        help="no inference: time and memory of the search iteration alone, as the reference's")
    parser.add_argument("--recompute_cells", choices=config.RECOMPUTE_CELLS, default="none",
                        help="search cells recomputed in the backward pass (not with the unrolled config)")
    parser.add_argument("--keep_trace_graph", action="store_true",
                        help="call the train step as a plain tf.function, which keeps the Python graph of its "
                             "trace (the search calls it through its runtime function: drnas_tf/runtime_call.py)")
    parser.add_argument("--plain_import", action="store_true",
                        help="import TensorFlow as a plain `import tensorflow` does, with the optional "
                             "integrations the entry points leave out (drnas_tf/lean_import.py)")
    args = parser.parse_args()
    from drnas_tf import lean_import

    lean_import.prefer_onednn()  # with --plain_import too: only the optional imports differ
    if args.config and not args.plain_import:
        lean_import.import_tensorflow()  # as the entry points do
    if not args.config:
        for name in DEFAULT_CONFIGS:  # a fresh process each, so peak memory is the configuration's own
            if args.recompute_cells != "none" and CONFIGS[name].get("unrolled"):
                continue  # the second-order gradient refuses recomputed cells
            subprocess.run([sys.executable, __file__, f"--config={name}", *sys.argv[1:]], check=True)
        return
    if args.graph_nodes:
        print(json.dumps(graph_nodes(args.config, args.batch_size)), flush=True)
        return
    options = {"jit_compile": args.jit_compile, "intra_op_threads": args.intra_op_threads,
               "inter_op_threads": args.inter_op_threads, "disable_graph_optimizer": args.disable_graph_optimizer,
               "mixed_precision": args.mixed_precision, "recompute_cells": args.recompute_cells,
               "keep_freed_memory": args.keep_freed_memory, "graph_optimization": args.graph_optimization,
               "train_only": args.train_only, "keep_trace_graph": args.keep_trace_graph}
    result = measure(args.config, args.iterations, args.batch_size, **options)
    print(json.dumps({**result, **options, "plain_import": args.plain_import}), flush=True)


if __name__ == "__main__":
    main()
