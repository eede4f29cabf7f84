"""Is the distribution learning? Architectures sampled from the current parameters, per epoch (docs/method.md §9.4).

The paper's trajectory figure draws 100 architectures from the current Dirichlet each epoch, discretises each
(per-edge argmax) and plots the range of their NAS-Bench-201 accuracies beside the accuracy of the architecture
the parameters select. Here a draw is one set of edge weights from the supernet's own relaxation (Dirichlet,
Gumbel-softmax, or the deterministic softmax of DARTS, whose samples are all the same), pruned operations
excluded, turned into a genotype by the space's derivation rule (NB201: per-edge argmax). Without a benchmark
the samples still show exploration narrowing: how many distinct genotypes they hold, and the mean over edges of
the entropy (nats) of the operation each sample picks on that edge.
"""

import numpy as np
import tensorflow as tf

from drnas_tf.spaces.nb201 import nas_bench as benchmark_lib

STATISTICS = ("min", "median", "max")


def check_settings(search_space, with_benchmark, num_samples):
    """Raises a one-line ValueError for a benchmark outside the NB201 space or a negative sample count."""
    from drnas_tf.config import NON_NEGATIVE, check_range
    from drnas_tf.spaces import get_space

    if with_benchmark and not get_space(search_space).nas_bench:
        raise ValueError("--nb201_benchmark needs --search_space=nb201 (NAS-Bench-201 holds only that space)")
    check_range("trajectory_samples", num_samples, NON_NEGATIVE)


def sample_edge_weights(supernet, num_samples, seed):
    """`num_samples` independent draws of the supernet's edge weights.

    Args:
        supernet: a supernet.Supernet (its arch parameters, masks and relaxation are used).
        num_samples: draws to take.
        seed: a pair of ints, the stateless seed of all draws.
    Returns:
        {arch tensor name: float array [samples, edges, ops]}; pruned entries are zero.
    """
    seeds = tf.random.experimental.stateless_split(tf.constant(seed, tf.int32), num=len(supernet.arch))
    weights = {}
    for index, (name, param) in enumerate(supernet.arch.items()):
        edges, ops = param.shape
        tiled = tf.tile(param, [num_samples, 1])  # [samples * edges, ops], one independent draw per row
        mask = tf.tile(tf.constant(supernet.masks[name]), [num_samples, 1])
        drawn = supernet.relaxation.edge_weights(tiled, mask, seeds[index])
        weights[name] = drawn.numpy().reshape(num_samples, edges, ops)
    return weights


def op_choice_entropy(weights):
    """Mean over all edges of the entropy (nats) of the per-edge argmax operation across the samples.

    Args:
        weights: {name: [samples, edges, ops]} as sample_edge_weights returns.
    """
    entropies = []
    for drawn in weights.values():
        choices = drawn.argmax(axis=2)  # [samples, edges]
        for edge_choices in choices.T:
            frequencies = np.bincount(edge_choices) / len(edge_choices)
            frequencies = frequencies[frequencies > 0]
            entropies.append(float(-(frequencies * np.log(frequencies)).sum()))
    return float(np.mean(entropies))


def sample_genotypes(supernet, num_samples, seed):
    """(genotypes of `num_samples` draws, the draws {name: [samples, edges, ops]})."""
    weights = sample_edge_weights(supernet, num_samples, seed)
    genotypes = [supernet.space.derive({name: drawn[sample] for name, drawn in weights.items()})
                 for sample in range(num_samples)]
    return genotypes, weights


def accuracy_statistics(results):
    """{metric: {"min", "median", "max"}} over the benchmark results (dicts) that hold the metric."""
    statistics = {}
    for metric in benchmark_lib.METRICS:
        values = [result[metric] for result in results if metric in result]
        if values:
            statistics[metric] = dict(zip(STATISTICS, (float(np.min(values)), float(np.median(values)),
                                                       float(np.max(values)))))
    return statistics


def epoch_analysis(supernet, genotype, num_samples=0, seed=(0, 0), benchmark=None):
    """What an epoch's record and TensorBoard get beside the genotype.

    Args:
        supernet: the supernet at the end of the epoch.
        genotype: the genotype its parameters select.
        num_samples: architectures to draw (0: none).
        seed: stateless seed of the draws, e.g. (run seed, epoch), so a resumed run draws the same.
        benchmark: a benchmark.Benchmark, or None.
    Returns:
        {"benchmark": the genotype's results or None} when a benchmark is given, and
        {"trajectory": {"samples", "distinct_genotypes", "op_entropy"[, "found", "accuracy"]}} when
        num_samples > 0; "found" counts the samples the benchmark holds, "accuracy" has their
        min / median / max per metric.
    """
    analysis = {}
    if benchmark is not None:
        analysis["benchmark"] = benchmark.query(genotype)
    if num_samples > 0:
        genotypes, weights = sample_genotypes(supernet, num_samples, seed)
        trajectory = {"samples": num_samples,
                      "distinct_genotypes": len({sampled.to_text() for sampled in genotypes}),
                      "op_entropy": op_choice_entropy(weights)}
        if benchmark is not None:
            found = [result for result in map(benchmark.query, genotypes) if result is not None]
            trajectory.update(found=len(found), accuracy=accuracy_statistics(found))
        analysis["trajectory"] = trajectory
    return analysis


def summary_text(analysis):
    """A short text of an epoch_analysis for the search's per-epoch line ("" when there is nothing)."""
    parts = []
    if "benchmark" in analysis:
        results = analysis["benchmark"]
        parts.append("benchmark " + (" ".join(f"{dataset}/test={results[f'{dataset}/test']:.2f}"
                                              for dataset in benchmark_lib.DATASETS
                                              if f"{dataset}/test" in results) if results else "lacks it"))
    if "trajectory" in analysis:
        sampled = analysis["trajectory"]
        parts.append(f"samples {sampled['distinct_genotypes']}/{sampled['samples']} distinct, "
                     f"op entropy {sampled['op_entropy']:.3f}")
    return "".join(f" {part}" for part in parts)
