"""`python -m drnas_tf.report` on epoch records written by the search's own output code."""


import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

from benchmark_table import synthetic_results, write_table
from cli_harness import run_module
from drnas_tf import outputs, report, trajectory
from drnas_tf.spaces import build_supernet, parse_genotype
from drnas_tf.spaces.nb201 import EDGES as NB201_EDGES, nas_bench as benchmark

EPOCHS = 4


def write_records(model_dir, supernet, table=None, samples=0):
    """Epoch records as run_search writes them, with eta moving towards nor_conv_3x3 on every edge."""
    for epoch in range(EPOCHS):
        for name, param in supernet.arch.items():
            eta = np.zeros(param.shape, np.float32)
            eta[:, 3] = 2.0 * epoch
            param.assign(eta)
        genotype = supernet.genotype()
        analysis = trajectory.epoch_analysis(supernet, genotype, samples, (0, epoch), table)
        outputs.write_genotype(model_dir, outputs.genotype_record(genotype, supernet, epoch, 0, 1, analysis))


@pytest.fixture(scope="module")
def nb201_run(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("nb201"))
    table = benchmark.open_benchmark(write_table(tmp_path_factory.mktemp("table") / "nb201.csv"))
    supernet = build_supernet("nb201", 10, init_channels=4, k=1, cells_per_stage=1)
    write_records(model_dir, supernet, table, samples=30)
    return model_dir


def test_records_give_probabilities_and_a_table(nb201_run):
    records = report.load_records(nb201_run)
    assert [r["epoch"] for r in records] == list(range(EPOCHS))
    first, last = (outputs.operation_probabilities(r)["cell"] for r in (records[0], records[-1]))
    np.testing.assert_allclose(first, 0.2, rtol=1e-6)  # eta = 0: Dir(1), mean uniform
    np.testing.assert_allclose(last[:, 3], 7 / 11, rtol=1e-6)  # beta = elu(6) + 1 = 7 against four ones
    header, rows = report.summary_rows(records)
    assert header[:6] == ["epoch", "stage", "k", "top p min/median/max", "distinct / samples", "op entropy"]
    assert rows[0][3] == "0.20/0.20/0.20" and rows[-1][3] == f"{7 / 11:.2f}/{7 / 11:.2f}/{7 / 11:.2f}"
    assert "cifar100 test" in header and "samples ImageNet16-120 test min/median/max" in header
    best = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert rows[-1][header.index("genotype")] == f"`{best}`"
    expected = synthetic_results(parse_genotype(best))
    assert rows[-1][header.index("cifar10 test")] == f"{expected['cifar10/test']:.2f}"


def test_report_command_writes_the_figure_and_prints_the_table(nb201_run, tmp_path):
    output = str(tmp_path / "figure.png")
    result = run_module("drnas_tf.report", nb201_run, f"--output={output}", "--split=valid")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| epoch | stage | k | top p min/median/max | distinct / samples | op entropy | "
                               "cifar10 valid |")
    assert len([line for line in lines if line.startswith("| ")]) == 2 + EPOCHS  # header, rule, epochs
    assert lines[-1] == f"figure written to {output}"
    image = matplotlib.image.imread(output)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 1000
    assert image[..., :3].std() > 0.05  # something was drawn


def test_darts_records_without_analysis(tmp_path):
    supernet = build_supernet("darts", 10, init_channels=4, k=1, layers=3, method="softmax")
    write_records(str(tmp_path), supernet)
    records = report.load_records(str(tmp_path))
    probabilities = outputs.operation_probabilities(records[-1])
    assert set(probabilities) == {"normal", "reduce"}
    np.testing.assert_allclose(probabilities["normal"][:, 3], np.exp(6) / (np.exp(6) + 6), rtol=1e-5)  # softmax
    header, rows = report.summary_rows(records)
    assert header == ["epoch", "stage", "k", "top p min/median/max", "genotype"] and len(rows) == EPOCHS
    report.render(records, str(tmp_path / "darts.png"))
    assert matplotlib.image.imread(str(tmp_path / "darts.png")).shape[1] > 1000
    figure = report.build_figure(records)
    try:
        assert_no_empty_panel(figure)
        assert_grid_filled_row_by_row(figure)
        top = top_probability_axes(figure)
        assert len(edge_lines(top)) == 28 and top.get_legend() is None and "28 edges, no legend" in top.get_title()
        assert len(figure.axes) == 1 + 28  # no benchmark, no samples: top panel and edge panels only
    finally:
        plt.close(figure)


def assert_no_empty_panel(figure):
    """Every axes draws something: a grid cell with an empty frame is what the layout must not produce."""
    for axes in figure.axes:
        assert axes.lines or axes.collections, f"empty panel {axes.get_title()!r}"


def assert_grid_filled_row_by_row(figure):
    """The panels' grid cells run from the first cell without a gap and leave less than one row free: no row
    is mostly empty, as a top row of benchmark panels above wider rows of edge panels would be."""
    specs = [axes.get_subplotspec() for axes in figure.axes]  # a twin axis shares its panel's cell
    assert all(spec is not None and spec.get_gridspec() is specs[0].get_gridspec() for spec in specs)
    rows, columns = specs[0].get_gridspec().get_geometry()
    cells = {cell for spec in specs for cell in range(spec.num1, spec.num2 + 1)}
    assert cells == set(range(len(cells))), f"empty cells between panels in a {rows}x{columns} grid"
    assert rows * columns - len(cells) < columns, f"{len(cells)} panels in a {rows}x{columns} grid"


def top_probability_axes(figure):
    (axes,) = [a for a in figure.axes if a.get_title().startswith("top operation probability per edge")]
    return axes


def edge_lines(axes):
    """The per-edge lines of the top-probability panel (the dashed uniform levels left out)."""
    return [line for line in axes.lines if not line.get_label().startswith("uniform")]


def test_nb201_figure_has_every_panel_and_no_empty_one(nb201_run):
    records = report.load_records(nb201_run)
    figure = report.build_figure(records)
    try:
        assert_no_empty_panel(figure)
        assert_grid_filled_row_by_row(figure)
        titles = [axes.get_title() for axes in figure.axes]
        for dataset in benchmark.DATASETS:
            assert f"{dataset} test accuracy (%)" in titles
        assert "sampled architectures" in titles
        assert [t for t in titles if t.startswith("edge ")] == [f"edge {e}" for e in NB201_EDGES]
        top = top_probability_axes(figure)
        assert [line.get_label() for line in edge_lines(top)] == list(NB201_EDGES)
        assert top.get_ylim() == (0, 1)
        (uniform,) = [line for line in top.lines if line.get_label().startswith("uniform")]
        assert uniform.get_linestyle() == "--" and np.allclose(uniform.get_ydata(), 0.2)
        # 3 trajectory + exploration (+ its twin axis) + top + 6 edge panels, 4 per row: 3 rows, 1 free cell
        assert len(figure.axes) == 3 + 2 + 1 + 6
        figure.canvas.draw()  # constrained layout places the axes when drawn
        boxes = [axes.get_position() for axes in figure.axes]
        assert len({round(box.x0, 3) for box in boxes}) == 4 and len({round(box.y1, 3) for box in boxes}) == 3
    finally:
        plt.close(figure)


def test_top_probability_is_the_largest_dirichlet_mean_of_each_edge():
    """Hand-made eta over 2 epochs with one pruned operation: maxima of (elu(eta) + 1) / sum over kept ops."""
    masks = np.ones((6, 5), bool)
    masks[1, 4] = False  # pruned: its (large) eta must not count
    etas = [np.zeros((6, 5), np.float32), np.zeros((6, 5), np.float32)]
    etas[1][0] = [-1.0, 0.0, 0.5, 2.0, 0.0]
    etas[1][1] = [1.0, 0.0, 0.0, 0.0, 9.0]
    etas[1][2] = [-2.0, -2.0, -2.0, -2.0, -2.0]
    records = [{"space": "nb201", "epoch": epoch, "relaxation": "dirichlet", "masks": {"cell": masks.tolist()},
                "arch_parameters": {"cell": eta.tolist()}} for epoch, eta in enumerate(etas)]
    expected = []
    for eta in etas:
        beta = np.where(eta > 0, eta + 1, np.exp(eta)) * masks  # elu(eta) + 1
        expected.append((beta / beta.sum(axis=1, keepdims=True)).max(axis=1))
    # by hand for epoch 2: edge 0 = 3 / (e^-1 + 1 + 1.5 + 3 + 1), edge 1 = 2 / (2 + 1 + 1 + 1), edge 2 uniform
    np.testing.assert_allclose(expected[1][:3], [3 / (np.exp(-1) + 6.5), 0.4, 0.2])
    figure = report.build_figure(records)
    try:
        assert_no_empty_panel(figure)
        assert_grid_filled_row_by_row(figure)
        lines = edge_lines(top_probability_axes(figure))
        assert len(lines) == 6
        for edge, line in enumerate(lines):
            np.testing.assert_array_equal(line.get_xdata(), [1, 2])
            np.testing.assert_allclose(line.get_ydata(), [expected[0][edge], expected[1][edge]], rtol=1e-6)
    finally:
        plt.close(figure)


def test_bad_input_is_one_line(tmp_path):
    result = run_module("drnas_tf.report", str(tmp_path / "missing"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("holds no genotypes/epoch_*.json: pass the --model_dir of a search")
    result = run_module("drnas_tf.report")
    assert result.returncode == 2 and "expected one MODEL_DIR" in result.stderr


def test_top_operations_names_each_edge_top_and_runner_up():
    eta = np.zeros((6, 5))
    eta[0] = [0.0, 0.0, -1.0, 2.0, 0.5]  # beta = 1, 1, e^-1, 3, 1.5
    record = {"space": "nb201", "relaxation": "dirichlet", "arch_parameters": {"cell": eta.tolist()},
              "masks": {"cell": np.ones((6, 5), bool).tolist()}}
    rows = outputs.top_operations(record)
    total = 1 + 1 + np.exp(-1) + 3 + 1.5
    assert rows[0][:3] == ("1<-0", "nor_conv_3x3", pytest.approx(3 / total))
    assert rows[0][3:] == ("avg_pool_3x3", pytest.approx(1.5 / total))
    assert [row[0] for row in rows] == list(NB201_EDGES)
    assert rows[1] == ("2<-0", "none", pytest.approx(0.2), "skip_connect", pytest.approx(0.2))  # ties: lower index
