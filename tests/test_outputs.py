"""The search's TensorBoard summaries (outputs.py): entropies against hand-computed values, labelled heatmaps."""

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from drnas_tf import outputs
from drnas_tf.spaces import build_supernet
from drnas_tf.spaces.nb201 import EDGES, OPS

# Edge 0: beta = elu(eta) + 1 = (2, 1, 1, 0.5, 0.5), mean (0.4, 0.2, 0.2, 0.1, 0.1). Edge 1: the same eta with
# operation 0 pruned, mean (0, 1/3, 1/3, 1/6, 1/6). Edges 2-5: eta = 0, beta = 1, the uniform mean 1/5.
ETA_ROW = [1.0, 0.0, 0.0, math.log(0.5), math.log(0.5)]
# Shannon entropy of the mean: -(0.4 ln 0.4 + 2 * 0.2 ln 0.2 + 2 * 0.1 ln 0.1); 2/3 ln 3 + 1/3 ln 6; ln 5.
OP_ENTROPY = [1.4708085, 1.3296613] + [1.6094379] * 4
# Differential entropy ln B(a) + (a0 - K) psi(a0) - sum (a_i - 1) psi(a_i): Dir(2, 1, 1, .5, .5) gives
# 2 ln Gamma(.5) - ln 24 - psi(2) + psi(.5); Dir(1, 1, .5, .5) gives 2 ln Gamma(.5) - ln 2 - psi(3) + psi(.5);
# Dir(1, 1, 1, 1, 1) gives -ln 24.
DIFFERENTIAL_ENTROPY = [-4.4196183, -2.4347117] + [-3.1780538] * 4


@pytest.fixture(scope="module")
def supernet():
    mask = np.ones((6, 5), bool)
    mask[1, 0] = False
    model = build_supernet("nb201", 10, init_channels=4, k=1, cells_per_stage=1, masks={"cell": mask})
    eta = np.zeros((6, 5), np.float32)
    eta[:2] = ETA_ROW
    model.arch["cell"].assign(eta)
    return model


def test_operation_entropy_is_shannon_entropy_of_the_kept_operations():
    probabilities = [[0.2] * 5, [1 / 3, 0, 1 / 3, 0, 1 / 3], [0.5, 0.25, 0.25, 0, 0], [0, 0, 1, 0, 0]]
    np.testing.assert_allclose(outputs.operation_entropy(probabilities), [1.6094379, 1.0986123, 1.0397208, 0],
                               atol=1e-7)


def test_edge_statistics_of_a_known_concentration(supernet):
    cell = outputs.edge_statistics(supernet)["cell"]
    np.testing.assert_allclose(cell["concentration"][:2], [[2, 1, 1, 0.5, 0.5], [0, 1, 1, 0.5, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(cell["mean"][:3], [[0.4, 0.2, 0.2, 0.1, 0.1], [0, 1 / 3, 1 / 3, 1 / 6, 1 / 6],
                                                  [0.2] * 5], rtol=1e-6)
    np.testing.assert_allclose(cell["op_entropy"], OP_ENTROPY, rtol=1e-6)
    np.testing.assert_allclose(cell["differential_entropy"], DIFFERENTIAL_ENTROPY, rtol=1e-5)


def pixel(image, shape, edge, op, x, y):
    """The RGB pixel of a heatmap image at fraction (x, y) of cell (edge, op), from the fixed margins."""
    (width, height), (left, right, top, bottom) = outputs.heatmap_size(shape), outputs.HEATMAP_MARGINS
    cell_width = (width - left - right) * outputs.HEATMAP_DPI / shape[1]
    cell_height = (height - top - bottom) * outputs.HEATMAP_DPI / shape[0]
    column = int(left * outputs.HEATMAP_DPI + (op + x) * cell_width)
    row = int(top * outputs.HEATMAP_DPI + (edge + y) * cell_height)
    return image[row, column, :3].astype(int)


def test_heatmap_names_operations_and_edges_prints_values_and_hatches_pruned_cells(supernet):
    cell = outputs.edge_statistics(supernet)["cell"]
    mask = supernet.masks["cell"]
    figure = outputs.heatmap_figure(cell["mean"], mask, OPS, list(EDGES), "cell: Dirichlet mean, epoch 3",
                                    "probability", vmax=1.0)
    axes, bar = figure.axes
    assert [label.get_text() for label in axes.get_xticklabels()] == list(OPS)
    assert [label.get_text() for label in axes.get_yticklabels()] == ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
    assert axes.get_title() == "cell: Dirichlet mean, epoch 3" and bar.get_ylabel() == "probability"
    printed = [text.get_text() for text in axes.texts]
    assert len(printed) == 29 and printed[:9] == ["0.40", "0.20", "0.20", "0.10", "0.10", "0.33", "0.33", "0.17",
                                                   "0.17"]
    image = tf.image.decode_png(outputs.png(figure)).numpy()
    assert image.shape[:2] == (252, 512)  # (0.35 + 1.0 + 6 * 0.3, 1.3 + 1.1 + 5 * 0.8) inches at 80 dpi
    viridis = matplotlib.colormaps["viridis"]
    for edge, op in [(0, 0), (1, 1), (1, 3)]:  # a corner of the cell, clear of the printed value
        expected = np.round(np.array(viridis(cell["mean"][edge, op])[:3]) * 255)
        np.testing.assert_allclose(pixel(image, (6, 5), edge, op, 0.15, 0.2), expected, atol=3)
    pruned = [pixel(image, (6, 5), 1, 0, x, y) for x in np.linspace(0.1, 0.9, 9) for y in np.linspace(0.2, 0.8, 4)]
    assert all(r == g == b for r, g, b in pruned)  # white and grey hatching, no colour of the scale
    assert min(r for r, _, _ in pruned) < 250 < max(r for r, _, _ in pruned)  # hatched, not blank


def read_events(log_dir):
    events = event_accumulator.EventAccumulator(log_dir, size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    return events


def test_log_epoch_writes_both_entropies_and_the_heatmap_images(supernet, tmp_path):
    figures = plt.get_fignums()
    summaries = outputs.SearchSummaries(str(tmp_path))
    summaries.log_epoch(3, {"loss": 2.0}, {"weights": 0.1}, supernet, supernet.genotype())
    assert plt.get_fignums() == figures  # no pyplot figure left open
    events = read_events(str(tmp_path / "tensorboard"))

    def scalar(tag):
        (event,) = events.Tensors(tag)
        assert event.step == 3
        return float(tf.make_ndarray(event.tensor_proto))

    assert scalar("arch/cell/mean_op_entropy") == pytest.approx(np.mean(OP_ENTROPY), rel=1e-6)
    assert scalar("arch/cell/mean_differential_entropy") == pytest.approx(np.mean(DIFFERENTIAL_ENTROPY), rel=1e-5)
    for edge in range(6):
        assert scalar(f"arch/cell/op_entropy/edge_{edge:02d}") == pytest.approx(OP_ENTROPY[edge], rel=1e-6)
        assert scalar(f"arch/cell/differential_entropy/edge_{edge:02d}") == pytest.approx(
            DIFFERENTIAL_ENTROPY[edge], rel=1e-5)
    tags = events.Tags()["tensors"]
    assert not [tag for tag in tags if tag.endswith("mean_entropy") or "/entropy/" in tag]
    for tag in ("arch/cell/dirichlet_mean", "arch/cell/concentration"):
        (event,) = events.Tensors(tag)
        width, height, encoded = tf.make_ndarray(event.tensor_proto)
        assert (int(width), int(height)) == (512, 252)
        assert tf.image.decode_png(encoded).shape == (252, 512, 3)
