"""`python -m drnas_tf.sweep`: methods x seeds of tiny digits searches scored by a benchmark table, and random
NB201 genotypes retrained as the chance baseline."""

import collections
import csv
import json

import pytest

from benchmark_table import synthetic_results, write_table
from cli_harness import run_module
from drnas_tf import sweep
from drnas_tf.spaces import nb201

TINY_SEARCH = """--search_space=nb201
--dataset=digits
--method=gumbel
--seed=5
--init_channels=4
--cells_per_stage=1
--ks=1
--num_keeps=5
--stage_epochs=2
--arch_warmup_epochs=0
--batch_size=32
--steps_per_epoch=2
--arch_learning_rate=3e-2
--progress=0
"""

TINY_TRAIN = """--dataset=digits
--epochs=3
--init_channels=4
--cells_per_stage=1
--batch_size=32
--steps_per_epoch=2
--cutout=0
--progress=0
"""


def result(method, seed, genotype, seconds, benchmark=None, retrain=None):
    return {"method": method, "seed": seed, "genotype": genotype, "search_seconds": seconds,
            "benchmark": benchmark, "retrain": retrain}


def test_tables_have_each_run_and_mean_std_per_method():
    results = [result("dirichlet", 0, "|a|", 10.0, retrain={"test_top1": 0.90, "train_seconds": 5.0}),
               result("dirichlet", 1, "|b|", 12.0, retrain={"test_top1": 0.94, "train_seconds": 7.0}),
               result("darts", 0, "|a|", 8.0, retrain={"test_top1": 0.5, "train_seconds": 4.0})]
    header, numbers, markdown = sweep.tables(results, ["dirichlet", "darts"])
    assert header == ["method", "seed", "genotype", "retrain test top-1 (%)", "retrain seconds", "search seconds"]
    assert numbers[:2] == [["dirichlet", 0, "|a|", 90.0, 5.0, 10.0], ["dirichlet", 1, "|b|", 94.0, 7.0, 12.0]]
    assert numbers[2] == ["dirichlet", "mean", "2 distinct", 92.0, 6.0, 11.0]
    assert numbers[3] == ["dirichlet", "std", "", round(2 ** 0.5 * 2, 4), round(2 ** 0.5, 4), round(2 ** 0.5, 4)]
    assert markdown[2] == ["**dirichlet**", "mean ± std (2 seeds)", "2 distinct", "92.00 ± 2.83", "6.00 ± 1.41",
                           "11.00 ± 1.41"]
    assert numbers[-2:] == [["darts", "mean", "1 distinct", 50.0, 4.0, 8.0], ["darts", "std", "", 0.0, 0.0, 0.0]]
    header, numbers, _ = sweep.tables([result("darts", 0, "|a|", 8.0)], ["darts"])
    assert header == ["method", "seed", "genotype", "search seconds"]


def test_tables_give_each_search_its_percentile_among_random_genotypes():
    def retrained(top1):
        return {"test_top1": top1, "train_seconds": 5.0}

    randoms = [result("random", index, f"|r{index}|", None, retrain=retrained(top1))
               for index, top1 in enumerate([0.90, 0.80, 0.90, 0.70])]
    searched = [result("dirichlet", 0, "|a|", 10.0, retrain=retrained(0.90)),
                result("dirichlet", 1, "|b|", 12.0, retrain=retrained(0.95))]
    header, numbers, markdown = sweep.tables(searched + randoms, ["dirichlet", "darts"])
    assert header == ["method", "seed", "genotype", "retrain test top-1 (%)", "retrain seconds",
                      "percentile among random (%)", "search seconds"]
    assert numbers[0][5] == 75.0 and numbers[1][5] == 100.0  # 0.90: 2 below and 2 ties of 4; 0.95: all below
    assert numbers[2] == ["dirichlet", "mean", "2 distinct", 92.5, 5.0, 87.5, 11.0]
    assert [row[:4] + row[5:] for row in numbers[4:8]] == [["random", index, f"|r{index}|", top1, None, None]
                                                           for index, top1 in enumerate([90.0, 80.0, 90.0, 70.0])]
    summary = {row[1]: row[3] for row in numbers[8:]}
    assert [row[0] for row in numbers[8:]] == ["random"] * 5
    assert summary == {"mean": 82.5, "std": round((275 / 3) ** 0.5, 4), "min": 70.0, "median": 85.0, "max": 90.0}
    assert markdown[-2] == ["**random**", "mean ± std (4 genotypes)", "4 distinct", "82.50 ± 9.57", "5.00 ± 0.00",
                            "", ""]
    assert markdown[-1] == ["**random**", "min / median / max", "", "70.00 / 85.00 / 90.00", "5.00 / 5.00 / 5.00",
                            "", ""]
    header, numbers, _ = sweep.tables(randoms, [])  # a random-only sweep: no search columns
    assert header == ["method", "seed", "genotype", "retrain test top-1 (%)", "retrain seconds"]
    assert [row[1] for row in numbers] == [0, 1, 2, 3, "mean", "std", "min", "median", "max"]


def test_figure_places_searched_runs_among_random_ones(tmp_path):
    import matplotlib.image

    def retrained(top1):
        return {"test_top1": top1, "train_seconds": 5.0}

    runs = [result("random", index, f"|r{index}|", None, retrain=retrained(top1))
            for index, top1 in enumerate([0.90, 0.80, 0.90, 0.70])]
    runs += [result("dirichlet", 0, "|a|", 10.0, retrain=retrained(0.95)),
             result("darts", 0, "|b|", 10.0, retrain=retrained(0.80))]
    path = tmp_path / "results.png"
    sweep.render_against_random(runs, str(path))
    image = matplotlib.image.imread(str(path))
    assert image.shape[1] == 800 and image[..., :3].std() > 0.05
    figure = sweep.against_random_figure(runs)
    (axes,) = figure.axes
    assert [label.get_text() for label in axes.get_yticklabels()] == [
        "4 random", "dirichlet\npercentiles 100", "darts\npercentiles 38"]  # 0.80: 1 below and 1 tie of 4
    points = [collection.get_offsets().tolist() for collection in axes.collections]
    assert points == [[[90.0, 0], [80.0, 0], [90.0, 0], [70.0, 0]], [[95.0, 1]], [[80.0, 2]]]


def test_percentile_counts_ties_as_half():
    population = [0.7, 0.8, 0.8, 0.9]
    assert [sweep.percentile_within(value, population) for value in (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0)] == [
        0.0, 12.5, 25.0, 50.0, 75.0, 87.5, 100.0]
    assert sweep.percentile_within(0.5, [0.5, 0.5, 0.5]) == 50.0


def test_random_genotypes_are_seeded_and_uniform_per_edge():
    first = sweep.random_genotype_texts(5, seed=0)
    assert first == sweep.random_genotype_texts(5, seed=0) != sweep.random_genotype_texts(5, seed=1)
    assert sweep.random_genotype_texts(3, seed=0) == first[:3]  # a larger count keeps the first draws
    draws = [nb201.parse_text(text).ops for text in sweep.random_genotype_texts(2000, seed=7)]
    for edge in range(nb201.NUM_EDGES):
        counts = collections.Counter(ops[edge] for ops in draws)
        assert set(counts) == set(nb201.OPS)
        # 400 expected per op; the binomial's std is ~18, so 5 of them is never hit by a fair draw
        assert all(abs(count - 400) < 90 for count in counts.values()), (edge, counts)


def test_a_stored_random_result_is_reused_only_for_the_same_genotype(tmp_path):
    first, other = sweep.random_genotype_texts(2, seed=0)
    run_dir = tmp_path / "random" / "genotype_03"
    run_dir.mkdir(parents=True)
    stored = result("random", 3, first, None, retrain={"test_top1": 0.5, "train_seconds": 1.0, "epochs": 1})
    (run_dir / "sweep_result.json").write_text(json.dumps(stored))
    assert sweep.run_random(str(tmp_path), 3, first, retrain_epochs=1) == stored
    assert sweep.progress_line(stored) == f"random genotype 03: {first} test top-1 50.00 %"
    with pytest.raises(ValueError, match="genotype_03/sweep_result.json holds .*another --random_seed"):
        sweep.run_random(str(tmp_path), 3, other, retrain_epochs=1)


def test_retrain_result_is_read_from_results_json(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"test_top1": 0.875, "test_top5": 0.99, "epochs": 3,
                                                       "train_seconds": 41.5, "genotype": "|x|"}))
    assert sweep.read_retrain_result(str(tmp_path)) == {"test_top1": 0.875, "train_seconds": 41.5, "epochs": 3}
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="cannot read the retraining result .*results.json: 'test_top1'"):
        sweep.read_retrain_result(str(tmp_path))


@pytest.mark.slow
def test_sweep_with_a_benchmark_end_to_end(tmp_path):
    flagfile = tmp_path / "tiny.flags"
    flagfile.write_text(TINY_SEARCH)
    table = write_table(tmp_path / "nb201.csv")
    sweep_dir = tmp_path / "sweep"
    args = [f"--flagfile={flagfile}", "--seeds=0,1", "--methods=dirichlet,darts", f"--sweep_dir={sweep_dir}",
            f"--nb201_benchmark={table}", "--gpus=0,1"]
    completed = run_module("drnas_tf.sweep", *args)
    assert completed.returncode == 0, completed.stderr[-3000:]
    frozen = (sweep_dir / "search.flags").read_text()
    assert "--nb201_benchmark=" in frozen and "--init_channels=4" in frozen
    assert "--method" not in frozen and "--seed=" not in frozen and "--sweep_dir" not in frozen
    rows = list(csv.DictReader(open(sweep_dir / "results.csv")))
    assert [(r["method"], r["seed"]) for r in rows] == [("dirichlet", "0"), ("dirichlet", "1"), ("dirichlet", "mean"),
                                                        ("dirichlet", "std"), ("darts", "0"), ("darts", "1"),
                                                        ("darts", "mean"), ("darts", "std")]
    for row in rows[:2] + rows[4:6]:
        record = json.load(open(sweep_dir / row["method"] / f"seed_{row['seed']}" / "search" / "genotype.json"))
        assert record["relaxation"] == row["method"]  # the relaxation registry's name, as --method
        assert row["genotype"] == record["text"]
        expected = synthetic_results(nb201.parse_text(row["genotype"]))
        assert float(row["cifar100/test (%)"]) == expected["cifar100/test"]
        assert float(row["search seconds"]) > 1
    test_values = [float(r["ImageNet16-120/valid (%)"]) for r in rows[:2]]
    assert float(rows[2]["ImageNet16-120/valid (%)"]) == pytest.approx(sum(test_values) / 2, abs=1e-4)
    markdown = (sweep_dir / "results.md").read_text()
    assert markdown.startswith("Command: `python -m drnas_tf.sweep --flagfile=")
    assert "| **darts** | mean ± std (2 seeds) |" in markdown and markdown in completed.stdout
    logs = sorted(sweep_dir.glob("*/seed_*/search.log"))
    stamps = [log.stat().st_mtime_ns for log in logs]
    again = run_module("drnas_tf.sweep", *args)  # finished runs are reused, not searched again
    assert again.returncode == 0 and len(logs) == 4 and [log.stat().st_mtime_ns for log in logs] == stamps
    assert list(csv.DictReader(open(sweep_dir / "results.csv"))) == rows


@pytest.mark.slow
def test_the_seeds_of_a_sweep_share_their_traced_step_and_each_computes_as_a_search_of_its_own(tmp_path):
    flagfile = tmp_path / "tiny.flags"
    flagfile.write_text(TINY_SEARCH + "--deterministic\n")
    sweep_dir = tmp_path / "sweep"
    completed = run_module("drnas_tf.sweep", f"--flagfile={flagfile}", "--seeds=0,1", "--methods=dirichlet",
                           f"--sweep_dir={sweep_dir}")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert len(list((sweep_dir / "traces").glob("*.json"))) == 1  # one stage, no warm-up: one step
    assert "loaded the traced step" not in (sweep_dir / "dirichlet" / "seed_0" / "search.log").read_text()
    assert (sweep_dir / "dirichlet" / "seed_1" / "search.log").read_text().count("loaded the traced step") == 1
    alone = tmp_path / "alone"
    searched = run_module("drnas_tf.search", f"--flagfile={flagfile}", "--method=dirichlet", "--seed=1",
                          f"--model_dir={alone}")
    assert searched.returncode == 0, searched.stderr[-3000:]
    assert "loaded the traced step" not in searched.stdout
    swept = json.load(open(sweep_dir / "dirichlet" / "seed_1" / "search" / "genotype.json"))
    assert swept["arch_parameters"] == json.load(open(alone / "genotype.json"))["arch_parameters"]


@pytest.mark.slow
def test_random_only_sweep_end_to_end(tmp_path):
    search_flags, train_flags = tmp_path / "tiny.flags", tmp_path / "train.flags"
    search_flags.write_text(TINY_SEARCH)
    train_flags.write_text(TINY_TRAIN)
    sweep_dir = tmp_path / "sweep"
    args = [f"--flagfile={search_flags}", "--methods=", "--random_genotypes=2", "--random_seed=3",
            "--retrain_epochs=1", f"--train_flagfile={train_flags}", f"--sweep_dir={sweep_dir}"]
    completed = run_module("drnas_tf.sweep", *args)
    assert completed.returncode == 0, completed.stderr[-3000:]
    genotypes = sweep.random_genotype_texts(2, seed=3)
    rows = list(csv.DictReader(open(sweep_dir / "results.csv")))
    assert list(rows[0]) == ["method", "seed", "genotype", "retrain test top-1 (%)", "retrain seconds"]
    assert [(r["method"], r["seed"]) for r in rows] == [("random", "0"), ("random", "1"), ("random", "mean"),
                                                        ("random", "std"), ("random", "min"), ("random", "median"),
                                                        ("random", "max")]
    for index, (row, genotype) in enumerate(zip(rows, genotypes)):
        trained = json.load(open(sweep_dir / "random" / f"genotype_{index:02d}" / "train" / "results.json"))
        assert row["genotype"] == genotype == trained["genotype"]
        assert trained["epochs"] == 1  # --retrain_epochs, not the train flagfile's --epochs
        assert float(row["retrain test top-1 (%)"]) == round(100 * trained["test_top1"], 4)
        assert f"random genotype {index:02d}: {genotype} test top-1 {100 * trained['test_top1']:.2f} %" in (
            completed.stdout)
    assert "| **random** | min / median / max |" in (sweep_dir / "results.md").read_text()
    logs = sorted(sweep_dir.glob("random/genotype_*/train.log"))
    stamps = [log.stat().st_mtime_ns for log in logs]
    again = run_module("drnas_tf.sweep", *args)  # finished genotypes are reused, not retrained
    assert again.returncode == 0 and len(logs) == 2 and [log.stat().st_mtime_ns for log in logs] == stamps
    assert list(csv.DictReader(open(sweep_dir / "results.csv"))) == rows


@pytest.mark.parametrize("args,message", [
    (["--methods=dirichlet,random"], "--methods=dirichlet,random: expected some of dirichlet, darts, gumbel"),
    (["--seeds=0,x"], "--seeds=0,x must be a comma-separated list of integers"),
    (["--retrain_epochs=-1"], "--retrain_epochs must be 0 or positive"),
    (["--model_dir=/tmp/run"], "--model_dir is set per run by the sweep"),
    (["--search_space=darts", "--nb201_benchmark=/tmp"], "--nb201_benchmark needs --search_space=nb201"),
    (["--search_space=nb201", "--dataset=digits", "--ks=3", "--num_keeps=5", "--stage_epochs=1"],
     "k=3 does not divide"),
    (["--methods="], "--methods is empty and --random_genotypes=0: nothing to run"),
    (["--random_genotypes=-1"], "--random_genotypes must be 0 or positive, got -1"),
    (["--seeds=0,-3"], "--seeds must be in [0, 4294967295], got -3"),
    (["--random_seed=-1"], "--random_seed must be in [0, 4294967295], got -1"),
    (["--random_genotypes=2", "--retrain_epochs=1"], "--random_genotypes needs --search_space=nb201, got darts"),
    (["--random_genotypes=2", "--search_space=nb201", "--dataset=digits"], "--random_genotypes needs --retrain_epochs"),
    (["--random_genotypes=2", "--retrain_epochs=1", "--search_space=nb201", "--dataset=digits",
      "--nb201_benchmark=/tmp"], "--random_genotypes with --nb201_benchmark"),
])
def test_bad_flags_exit_nonzero_with_one_line(args, message, tmp_path):
    completed = run_module("drnas_tf.sweep", f"--sweep_dir={tmp_path / 'sweep'}", *args)
    assert completed.returncode == 2, completed.stderr[-2000:]
    lines = [line for line in completed.stderr.splitlines() if line.startswith("drnas_tf.sweep: error: ")]
    assert len(lines) == 1 and message in lines[0], completed.stderr[-2000:]
    assert not (tmp_path / "sweep").exists()


def test_sweep_dir_is_required_and_helpshort_lists_the_flags():
    completed = run_module("drnas_tf.sweep", "--seeds=0")
    assert completed.returncode == 2 and "--sweep_dir is required" in completed.stderr
    helpshort = run_module("drnas_tf.sweep", "--helpshort").stdout
    for name in ("--seeds", "--methods", "--retrain_epochs", "--gpus", "--nb201_benchmark", "--stage_epochs",
                 "--random_genotypes", "--random_seed"):
        assert name in helpshort
