"""The official DrNAS code's search iteration on the CPU, timed as benchmarks/search_step.py times ours.

    REFERENCE_PYTHON benchmarks/reference_step.py --reference_dir=PATH --config=nb201_k4

PATH is a checkout of the official PyTorch code (https://github.com/xiangning-chen/DrNAS); REFERENCE_PYTHON a
Python with PyTorch (CPU build) and NumPy. Nothing of the reference is copied here: its modules are imported
from PATH. To run them on a CPU, `.cuda()` is made a no-op and, when torchvision is missing, an empty module
stands in for it (the reference imports it for data transforms only).

One iteration is the body of the reference's training loop with architecture updates on: its `Architect.step`
on a validation batch (first-order; Adam with the coupled l2 anchor), then the weight step (forward, backward,
`clip_grad_norm_` to 5, SGD with momentum 0.9 and weight decay 3e-4). Configurations are search_step.py's
(`CONFIGS`): NB201 `TinyNetwork(C, N=5, species="dirichlet", k)`, DARTS-space `Network(C, 10, layers, k=k)`,
with `num_keep` applied through the reference's own `pruning`. Synthetic 32x32 images, batch 64 per half,
3 warm-up iterations, then the median of `--iterations`; one JSON line with the keys search_step.py prints
(`train_ms_median`, `peak_rss_mb`, `rss_baseline_mb` once torch and the reference are imported,
`rss_after_build_mb`, `build_s`, `first_step_s`, `start_s`). Unrolled configurations are not supported (the
reference's second-order code does not run on these networks).
"""

import argparse
import json
import os
import resource
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from search_step import (CONFIGS, WARMUP_ITERATIONS, rss_mb,  # noqa: E402  (no TensorFlow at import)
                         seconds_since_process_start)


def import_reference(reference_dir, space):
    """(the space's network module, the root's architect module) of the checkout, on the CPU."""
    import torch

    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    try:
        import torchvision  # noqa: F401
    except ImportError:
        stub = types.ModuleType("torchvision")
        stub.transforms = types.ModuleType("torchvision.transforms")
        sys.modules.update({"torchvision": stub, "torchvision.transforms": stub.transforms})
    space_dir = os.path.join(reference_dir, "201-space" if space == "nb201" else "DARTS-space")
    sys.path[:0] = [space_dir, reference_dir]
    import architect

    if space == "nb201":
        import cell_operations
        import search_model
        return search_model, cell_operations, architect
    import model_search
    return model_search, None, architect


def build(reference_dir, name, batch_size):
    """(model, architect, weight optimizer, the two synthetic batches) of a configuration."""
    import numpy as np
    import torch

    config = dict(CONFIGS[name])
    if config.get("unrolled"):
        raise SystemExit(f"{name}: the reference's second-order step does not run on these networks")
    space = config["space"]
    network, operations, architect = import_reference(reference_dir, space)
    criterion = torch.nn.CrossEntropyLoss()
    torch.manual_seed(0)
    if space == "nb201":
        model = network.TinyNetwork(C=config["init_channels"], N=config["cells_per_stage"], max_nodes=4, num_classes=10,
                                    criterion=criterion, search_space=operations.NAS_BENCH_201, k=config["k"],
                                    species="dirichlet")
    else:
        model = network.Network(config["init_channels"], 10, config["layers"], criterion, k=config["k"])
    if config.get("num_keep"):
        model.pruning(config["num_keep"])
    weights = model.get_weights() if hasattr(model, "get_weights") else model.parameters()
    optimizer = torch.optim.SGD(weights, 0.025, momentum=0.9, weight_decay=3e-4)
    settings = types.SimpleNamespace(momentum=0.9, weight_decay=3e-4, reg_type="l2", reg_scale=1e-3,
                                     arch_learning_rate=3e-4, unrolled=False)
    rng = np.random.default_rng(0)
    batches = [(torch.tensor(rng.normal(size=(batch_size, 3, 32, 32)), dtype=torch.float32),
                torch.tensor(rng.integers(0, 10, batch_size))) for _ in range(2)]
    return model, architect.Architect(model, settings), optimizer, criterion, batches


def iteration(model, architect, optimizer, criterion, batches):
    """The reference's loop body: the architecture step, then the weight step."""
    import torch

    (images, labels), (valid_images, valid_labels) = batches
    model.train()
    architect.step(images, labels, valid_images, valid_labels, 0.025, optimizer, unrolled=False)
    optimizer.zero_grad()
    architect.optimizer.zero_grad()
    loss = criterion(model(images), labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    return loss.item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference_dir", required=True, help="checkout of the official DrNAS code")
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS))
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args()
    import numpy as np

    import_reference(args.reference_dir, CONFIGS[args.config]["space"])
    rss_baseline = rss_mb()
    start = time.perf_counter()
    model, architect, optimizer, criterion, batches = build(args.reference_dir, args.config, args.batch_size)
    rss_after_build, build_s = rss_mb(), time.perf_counter() - start
    times = []
    for i in range(WARMUP_ITERATIONS + args.iterations):
        start = time.perf_counter()
        iteration(model, architect, optimizer, criterion, batches)
        if i == 0:
            first_step_s = time.perf_counter() - start
            start_s = seconds_since_process_start()
        if i >= WARMUP_ITERATIONS:
            times.append(1000 * (time.perf_counter() - start))
    print(json.dumps({"config": args.config, "program": "reference", "train_ms_median": round(float(np.median(times)), 1),
                      "train_ms_min": round(float(np.min(times)), 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "rss_baseline_mb": round(rss_baseline, 1), "rss_after_build_mb": round(rss_after_build, 1),
                      "build_s": round(build_s, 1), "first_step_s": round(first_step_s, 1),
                      "start_s": round(start_s, 1), "iterations": args.iterations,
                      "batch_size": args.batch_size}), flush=True)


if __name__ == "__main__":
    main()
