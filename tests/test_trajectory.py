"""Architectures sampled from the current distribution: what they are, and the statistics an epoch logs."""

import numpy as np
import pytest

from benchmark_table import synthetic_results, write_table
from drnas_tf import trajectory
from drnas_tf.spaces import build_supernet, darts, nb201
from drnas_tf.spaces.nb201 import nas_bench as benchmark


def nb201_supernet(method="dirichlet", masks=None):
    return build_supernet("nb201", 10, init_channels=4, k=1, cells_per_stage=1, masks=masks, method=method)


def set_eta(supernet, name, eta):
    supernet.arch[name].assign(np.asarray(eta, np.float32))


def test_uniform_dirichlet_explores_every_operation():
    supernet = nb201_supernet()
    set_eta(supernet, "cell", np.zeros((6, 5)))  # Dir(1): each op is an edge's argmax with probability 1/5
    genotypes, weights = trajectory.sample_genotypes(supernet, 400, (2, 0))
    assert weights["cell"].shape == (400, 6, 5)
    np.testing.assert_allclose(weights["cell"].sum(axis=2), 1.0, rtol=1e-5)
    frequencies = np.bincount(weights["cell"].argmax(axis=2).ravel(), minlength=5) / 2400
    np.testing.assert_allclose(frequencies, 0.2, atol=0.03)
    assert [g.ops for g in genotypes[:3]] == [tuple(nb201.OPS[i] for i in row)
                                              for row in weights["cell"][:3].argmax(axis=2)]
    assert len({g.to_text() for g in genotypes}) > 350  # 15,625 architectures: nearly all draws differ
    assert trajectory.op_choice_entropy(weights) == pytest.approx(np.log(5), abs=0.02)


def test_concentrated_dirichlet_narrows_and_draws_are_reproducible():
    supernet = nb201_supernet()
    eta = np.full((6, 5), -3.0)
    eta[:, 3] = 60.0  # beta: about 0.05 for four ops, 61 for nor_conv_3x3
    set_eta(supernet, "cell", eta)
    analysis = trajectory.epoch_analysis(supernet, supernet.genotype(), 50, (2, 7))
    assert analysis["trajectory"]["distinct_genotypes"] <= 3 and analysis["trajectory"]["op_entropy"] < 0.1
    again = trajectory.epoch_analysis(supernet, supernet.genotype(), 50, (2, 7))
    assert again == analysis
    other = trajectory.sample_edge_weights(supernet, 50, (2, 8))["cell"]
    assert not np.array_equal(other, trajectory.sample_edge_weights(supernet, 50, (2, 7))["cell"])


def test_pruned_operations_are_never_sampled():
    mask = np.zeros((6, 5), bool)
    mask[:, [1, 4]] = True  # only skip_connect and avg_pool_3x3 kept
    supernet = nb201_supernet(masks={"cell": mask})
    set_eta(supernet, "cell", np.zeros((6, 5)))
    genotypes, weights = trajectory.sample_genotypes(supernet, 100, (0, 0))
    assert set(op for g in genotypes for op in g.ops) == {"skip_connect", "avg_pool_3x3"}
    assert (weights["cell"][:, ~mask] == 0).all()
    assert trajectory.op_choice_entropy(weights) == pytest.approx(np.log(2), abs=0.05)


def test_softmax_samples_are_the_chosen_genotype():
    supernet = nb201_supernet(method="softmax")
    analysis = trajectory.epoch_analysis(supernet, supernet.genotype(), 20, (0, 0))
    assert analysis["trajectory"] == {"samples": 20, "distinct_genotypes": 1, "op_entropy": 0.0}


def test_darts_space_samples_darts_genotypes():
    supernet = build_supernet("darts", 10, init_channels=4, k=1, layers=3, method="gumbel")
    genotypes, weights = trajectory.sample_genotypes(supernet, 10, (0, 0))
    assert set(weights) == {"normal", "reduce"} and weights["normal"].shape == (10, 14, 7)
    assert all(isinstance(g, darts.DartsGenotype) for g in genotypes)
    assert genotypes[0] == darts.derive({name: w[0] for name, w in weights.items()})


def test_epoch_analysis_with_a_benchmark(tmp_path):
    table = benchmark.open_benchmark(write_table(tmp_path / "nb201.csv"))
    supernet = nb201_supernet()
    genotype = supernet.genotype()
    analysis = trajectory.epoch_analysis(supernet, genotype, 30, (1, 1), table)
    assert analysis["benchmark"] == synthetic_results(genotype)
    sampled = analysis["trajectory"]
    assert sampled["found"] == 30 and set(sampled["accuracy"]) == set(benchmark.METRICS)
    genotypes, _ = trajectory.sample_genotypes(supernet, 30, (1, 1))
    tests = [synthetic_results(g)["cifar10/test"] for g in genotypes]
    assert sampled["accuracy"]["cifar10/test"] == {"min": min(tests), "median": float(np.median(tests)),
                                                   "max": max(tests)}
    assert trajectory.epoch_analysis(supernet, genotype, 0, (1, 1), table).keys() == {"benchmark"}
    text = trajectory.summary_text(analysis)
    assert f"cifar10/test={synthetic_results(genotype)['cifar10/test']:.2f}" in text and "/30 distinct" in text


def test_settings_are_checked():
    with pytest.raises(ValueError, match="--nb201_benchmark needs --search_space=nb201"):
        trajectory.check_settings("darts", True, 0)
    with pytest.raises(ValueError, match="--trajectory_samples must be 0 or positive, got -1"):
        trajectory.check_settings("nb201", False, -1)
