"""A built-in lever's effect on the search iteration, with the lever and without it traced in one process and
called alternately: the instrument for a change of a few percent, which runs in separate processes cannot
resolve (docs/performance.md, How to measure).

    python benchmarks/paired_step.py --config=nb201_k1 --lever=shared_relu --pairs=16
    python benchmarks/paired_step.py --config=darts_c18_l8_k6 --lever=narrow_together --pairs=12

The same model, batch and iteration as benchmarks/search_step.py (architecture step plus weight step, without
inference). Each version is called twice to warm up, then once per pair, the order alternating from pair to
pair. Prints one JSON line: each version's median milliseconds and the median and quartiles of the per-pair
ratios, with the lever over without it (below 1: the lever is faster).
"""

import argparse
import contextlib
import importlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# lever -> (module, attribute, the value that turns the lever off while the step is traced)
LEVERS = {
    "shared_relu": ("drnas_tf.ops", "one_relu_per_input", contextlib.nullcontext),
    "narrow_together": ("drnas_tf.ops", "NARROW_CHANNELS", 0),
    "grouped_pointwise": ("drnas_tf.ops.operations", "GROUPED_POINTWISE", False),
}
WARMUP_CALLS = 2


@contextlib.contextmanager
def lever_off(lever):
    """Within the block the lever is off: its attribute holds the value that turns it off."""
    module_name, attribute, off = LEVERS[lever]
    module = importlib.import_module(module_name)
    on = getattr(module, attribute)
    setattr(module, attribute, off)
    try:
        yield
    finally:
        setattr(module, attribute, on)


def measure(config, lever, pairs, batch_size):
    import numpy as np

    from drnas_tf import runtime, runtime_call
    from search_step import build

    runtime.configure_graph_optimization("auto")
    searcher, _, batch = build(config, batch_size)
    steps = {"with": runtime_call.RuntimeFunction(searcher.train_step, autograph=False)}
    float(steps["with"](batch)["loss"])  # traces it
    with lever_off(lever):
        steps["without"] = runtime_call.RuntimeFunction(searcher.train_step, autograph=False)
        float(steps["without"](batch)["loss"])
    for _ in range(WARMUP_CALLS):
        for step in steps.values():
            float(step(batch)["loss"])
    times = {name: [] for name in steps}
    for pair in range(pairs):
        for name in (("with", "without") if pair % 2 == 0 else ("without", "with")):
            start = time.perf_counter()
            float(steps[name](batch)["loss"])
            times[name].append(1000 * (time.perf_counter() - start))
    ratios = np.array(times["with"]) / np.array(times["without"])
    return {"config": config, "lever": lever, "pairs": pairs, "batch_size": batch_size,
            "with_ms_median": round(float(np.median(times["with"])), 1),
            "without_ms_median": round(float(np.median(times["without"])), 1),
            "ratio_median": round(float(np.median(ratios)), 3),
            "ratio_quartiles": [round(float(q), 3) for q in np.percentile(ratios, [25, 75])]}


def main():
    from search_step import CONFIGS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), required=True)
    parser.add_argument("--lever", choices=sorted(LEVERS), required=True)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    from drnas_tf import lean_import

    lean_import.import_tensorflow()  # as the entry points do
    print(json.dumps(measure(args.config, args.lever, args.pairs, args.batch_size)), flush=True)


if __name__ == "__main__":
    main()
