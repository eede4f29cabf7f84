"""How far a search moved its architecture distribution, per architecture step: one JSON line per run.

    .venv/bin/python benchmarks/arch_motion.py runs/quickstart/search [MORE_RUN_DIRS...]

For each search --model_dir it reads the epoch records (genotypes/epoch_NNN.json) and flags.txt and prints:

- `arch_steps` T: the architecture updates made (the records' count of Adam steps on eta);
- `arch_lr` and `budget` = T * arch_lr: with Adam, one step moves an entry of eta by about the learning rate
  at most, so the budget bounds how far any entry can travel;
- `eta_abs_max` and `eta_spread`: the largest |eta| and the median over edges of (largest - smallest kept eta);
- `move_per_step`: the median over kept entries of |eta_final| / T (eta starts within 1e-3 of 0);
- `efficiency` = eta_abs_max / budget: the share of Adam's reach that the furthest entry used, i.e. how
  consistently its steps went one way (docs/search_dynamics.md);
- `top_probability` min/median/max over edges of the final Dirichlet mean (or softmax) of the top operation.
"""

import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from drnas_tf import cli  # noqa: E402,F401  (quiets TensorFlow's start-up logs)


def read_flags(model_dir):
    """{flag: value text} of the run's flags.txt (the search's frozen flags)."""
    values = {}
    with open(os.path.join(model_dir, "flags.txt"), encoding="utf-8") as file:
        for line in file:
            if line.startswith("--") and "=" in line:
                name, value = line[2:].rstrip("\n").split("=", 1)
                values[name] = value
    return values


def top_probabilities(record):
    """[edges] largest operation probability of every edge of a record (all cell types)."""
    from drnas_tf.outputs import operation_probabilities

    return np.concatenate([p.max(axis=1) for p in operation_probabilities(record).values()])


def motion(model_dir):
    """The figures of the module docstring for one search --model_dir."""
    paths = sorted(glob.glob(os.path.join(model_dir, "genotypes", "epoch_*.json")))
    if not paths:
        raise SystemExit(f"{model_dir} holds no genotypes/epoch_*.json: pass the --model_dir of a search")
    with open(paths[-1], encoding="utf-8") as file:
        last = json.load(file)
    flags = read_flags(model_dir)
    steps = last.get("arch_steps")
    if steps is None:
        raise SystemExit(f"{model_dir}: its records predate the arch_steps count; search it again")
    arch_lr = float(flags["arch_learning_rate"])
    final = {name: np.asarray(eta) for name, eta in last["arch_parameters"].items()}
    masks = {name: np.asarray(mask, bool) for name, mask in last["masks"].items()}
    spreads = np.concatenate([np.where(masks[n], final[n], -np.inf).max(axis=1)
                              - np.where(masks[n], final[n], np.inf).min(axis=1) for n in final])
    distances = np.concatenate([np.abs(final[n])[masks[n]] for n in final])  # eta starts at 1e-3 N(0, 1), ~0
    budget = steps * arch_lr
    eta_abs_max = float(distances.max())
    top = top_probabilities(last)
    return {"run": os.path.basename(os.path.normpath(model_dir)), "epochs": last["epoch"] + 1,
            "batch_size": int(flags["batch_size"]), "arch_steps": steps, "arch_lr": arch_lr, "budget": budget,
            "reg_scale": float(flags.get("reg_scale", "0.001")), "eta_abs_max": eta_abs_max,
            "eta_spread": float(np.median(spreads)), "move_per_step": float(np.median(distances) / max(steps, 1)),
            "efficiency": float(eta_abs_max / budget) if budget else None,
            "top_probability": [round(float(v), 3) for v in (top.min(), np.median(top), top.max())],
            "genotype": last["text"]}


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for directory in sys.argv[1:]:
        print(json.dumps(motion(directory)))
