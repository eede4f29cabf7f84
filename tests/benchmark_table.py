"""A synthetic NAS-Bench-201 table for tests: every architecture, accuracies a simple function of its ops."""

import csv
import itertools
import json

from drnas_tf.spaces import nb201
from drnas_tf.spaces.nb201 import nas_bench as benchmark

OP_SCORES = {"none": -6.0, "skip_connect": 0.0, "nor_conv_1x1": 3.0, "nor_conv_3x3": 5.0, "avg_pool_3x3": 1.0}
DATASET_OFFSETS = {"cifar10": 55.0, "cifar100": 30.0, "ImageNet16-120": 10.0}
SPLIT_OFFSETS = {"train": 4.0, "valid": 0.0, "test": 0.5}


def synthetic_results(genotype):
    """{metric: accuracy %} of a genotype: dataset offset + the sum of its ops' scores + split offset."""
    score = sum(OP_SCORES[op] for op in genotype.ops)
    return {f"{dataset}/{split}": DATASET_OFFSETS[dataset] + score + SPLIT_OFFSETS[split]
            for dataset in benchmark.DATASETS for split in benchmark.SPLITS}


def all_genotypes():
    return [nb201.Nb201Genotype(ops=ops) for ops in itertools.product(nb201.OPS, repeat=nb201.NUM_EDGES)]


def write_table(path, genotypes=None, metrics=benchmark.METRICS):
    """Writes a .csv or .jsonl table (by the path's suffix) of `genotypes` (default: all 15,625)."""
    rows = [{"arch": g.to_text(), **{m: v for m, v in synthetic_results(g).items() if m in metrics}}
            for g in (all_genotypes() if genotypes is None else genotypes)]
    with open(path, "w", encoding="utf-8", newline="") as file:
        if str(path).endswith(".csv"):
            writer = csv.DictWriter(file, fieldnames=["arch", *metrics])
            writer.writeheader()
            writer.writerows(rows)
        else:
            file.writelines(json.dumps(row) + "\n" for row in rows)
    return str(path)
