"""`python -m drnas_tf.report` on epoch records written by the search's own output code."""


import matplotlib.image
import numpy as np
import pytest

from benchmark_table import synthetic_results, write_table
from cli_harness import run_module
from drnas_tf import benchmark, outputs, report, trajectory
from drnas_tf.spaces import parse_genotype
from drnas_tf.supernet import build_supernet

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
    first, last = (report.operation_probabilities(r)["cell"] for r in (records[0], records[-1]))
    np.testing.assert_allclose(first, 0.2, rtol=1e-6)  # eta = 0: Dir(1), mean uniform
    np.testing.assert_allclose(last[:, 3], 7 / 11, rtol=1e-6)  # beta = elu(6) + 1 = 7 against four ones
    header, rows = report.summary_rows(records)
    assert header[:5] == ["epoch", "stage", "k", "distinct / samples", "op entropy"]
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
    assert lines[0].startswith("| epoch | stage | k | distinct / samples | op entropy | cifar10 valid |")
    assert len([line for line in lines if line.startswith("| ")]) == 2 + EPOCHS  # header, rule, epochs
    assert lines[-1] == f"figure written to {output}"
    image = matplotlib.image.imread(output)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 1000
    assert image[..., :3].std() > 0.05  # something was drawn


def test_darts_records_without_analysis(tmp_path):
    supernet = build_supernet("darts", 10, init_channels=4, k=1, layers=3, method="softmax")
    write_records(str(tmp_path), supernet)
    records = report.load_records(str(tmp_path))
    probabilities = report.operation_probabilities(records[-1])
    assert set(probabilities) == {"normal", "reduce"}
    np.testing.assert_allclose(probabilities["normal"][:, 3], np.exp(6) / (np.exp(6) + 6), rtol=1e-5)  # softmax
    header, rows = report.summary_rows(records)
    assert header == ["epoch", "stage", "k", "genotype"] and len(rows) == EPOCHS
    report.render(records, str(tmp_path / "darts.png"))
    assert matplotlib.image.imread(str(tmp_path / "darts.png")).shape[1] > 1000


def test_bad_input_is_one_line(tmp_path):
    result = run_module("drnas_tf.report", str(tmp_path / "missing"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("holds no genotypes/epoch_*.json: pass the --model_dir of a search")
    result = run_module("drnas_tf.report")
    assert result.returncode == 2 and "expected one MODEL_DIR" in result.stderr
