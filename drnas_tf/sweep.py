"""Searches every method with every seed and tabulates the results:

    python -m drnas_tf.sweep --flagfile=flags/quickstart.flags --seeds=0,1,2 --methods=dirichlet,darts,gumbel \
        --sweep_dir=runs/sweep [--nb201_benchmark=PATH | --retrain_epochs=N [--train_flagfile=FILE] \
        [--random_genotypes=R [--random_seed=S]]]

The search flags (from --flagfile or the command line, all of `drnas_tf.search`'s) are frozen into
SWEEP_DIR/search.flags; each run is `python -m drnas_tf.search --trace_dir=SWEEP_DIR/traces
--flagfile=SWEEP_DIR/search.flags --method=M --seed=S --model_dir=SWEEP_DIR/M/seed_S/search`, one after the
other, or one per GPU at a time with --gpus. The runs share their traced steps: a method's searches after its
first load the steps they have in common with it instead of tracing them. Its score is the NAS-Bench-201
accuracy of the final genotype when --nb201_benchmark is given (NB201 space), otherwise, with
--retrain_epochs > 0, the test top-1 of `python -m drnas_tf.train` run on the genotype for that many epochs (its
results.json). SWEEP_DIR/results.csv and results.md hold one row per run (genotype, score, search time) and the
mean and standard deviation (ddof 1) per method. A finished run keeps its SWEEP_DIR/M/seed_S/sweep_result.json,
so re-running the same command only does what is missing.

With --random_genotypes=R (NB201 space, --retrain_epochs > 0) the sweep also retrains R genotypes drawn
uniformly from the space (an independent uniform operation on each edge; the draw is fixed by --random_seed, and
a larger R keeps the first ones) in SWEEP_DIR/random/genotype_NN, exactly as the searched genotypes are
retrained: chance's distribution of the score, which says whether a search beats picking at random. The tables
then gain the random genotypes' block (each genotype, then mean, std, min, median and max) and, for every
searched run, its percentile within that distribution, and SWEEP_DIR/results.png shows both (the random
genotypes' scores as a row of dots, each method's runs on a row of their own, labelled with their percentiles).
--methods= (empty) retrains only the random genotypes.
"""

import functools
import json
import os
import queue
import shlex
import statistics
import subprocess
import sys
import threading
import time

from absl import flags

from drnas_tf import cli, relaxations, search
from drnas_tf.config import NON_NEGATIVE, SEED, check_range
from drnas_tf.outputs import atomic_write_text
from drnas_tf.spaces import nb201
from drnas_tf.tables import csv_text, markdown_table

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(search)  # the search flags a --flagfile gives, listed by --helpshort
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to search each method with.")
flags.DEFINE_list("methods", list(relaxations.names()), "Methods to compare: "
                  + ", ".join(relaxations.names()) + " (empty: only the --random_genotypes).")
flags.DEFINE_string("sweep_dir", None, "Where the runs, search.flags, results.csv and results.md go (required).")
flags.DEFINE_integer("retrain_epochs", 0, "Without --nb201_benchmark: retrain each genotype for this many "
                     "epochs with `python -m drnas_tf.train` and report its test top-1 (0: no retraining).")
flags.DEFINE_string("train_flagfile", None, "Flagfile passed to `python -m drnas_tf.train` (dataset, sizes).")
flags.DEFINE_integer("random_genotypes", 0, "NB201 space, with --retrain_epochs: also retrain this many "
                     "uniformly random genotypes, the baseline each searched run gets a percentile within.")
flags.DEFINE_integer("random_seed", 0, "Seed of the --random_genotypes draw (the same seed draws the same ones).")
flags.DEFINE_list("gpus", [], "GPU ids to run on, one run per GPU at a time (CUDA_VISIBLE_DEVICES); empty: "
                  "one run at a time on the default devices.")

RUN_OVERRIDES = ("model_dir", "method", "seed")  # set per run, never forwarded
RESULT_FILE = "sweep_result.json"
TRACE_DIR = "traces"  # in SWEEP_DIR: the traced steps every search keeps, so each seed after the first loads them
RANDOM = "random"  # the random genotypes' "method" in results and tables, and their folder in SWEEP_DIR
BENCHMARK_COLUMNS = tuple(f"{dataset}/{split}" for dataset in ("cifar10", "cifar100", "ImageNet16-120")
                          for split in ("valid", "test"))  # the benchmark's six accuracies


def search_flags_text():
    """The search flags given to the sweep (flagfile and command line), one per line, as a flagfile."""
    given = [flag for flag in FLAGS.get_key_flags_for_module(search)
             if flag.present and flag.name not in RUN_OVERRIDES]
    return "".join(f"{flag.serialize()}\n" for flag in sorted(given, key=lambda flag: flag.name))


def parse_runs(methods, seeds):
    """[(method, seed)] in table order (none for empty --methods); one-line errors name the flag."""
    unknown = [m for m in methods if m not in relaxations.names()]
    if unknown:
        raise ValueError(f"--methods={','.join(methods)}: expected some of {', '.join(relaxations.names())}")
    try:
        seeds = [int(seed) for seed in seeds]
    except ValueError:
        raise ValueError(f"--seeds={','.join(seeds)} must be a comma-separated list of integers") from None
    if not seeds:
        raise ValueError("--seeds is empty")
    for seed in seeds:
        check_range("seeds", seed, SEED)
    return [(method, seed) for method in methods for seed in seeds]


def random_genotype_texts(count, seed):
    """`count` NB201 genotype texts drawn uniformly (nb201.random_genotype) from one generator seeded by `seed`.

    One generator for the whole draw: the same seed gives the same genotypes, and a larger count only appends,
    so raising --random_genotypes on an existing sweep keeps the finished ones."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [nb201.random_genotype(rng).to_text() for _ in range(count)]


def percentile_within(value, population):
    """The share (%) of `population` strictly below `value`, ties counting half: 50 for a typical draw."""
    below = sum(other < value for other in population)
    ties = sum(other == value for other in population)
    return 100.0 * (below + 0.5 * ties) / len(population)


def _env(gpu):
    """The environment of a run's processes: the sweep's, limited to one GPU when --gpus gave one."""
    return dict(os.environ, **({"CUDA_VISIBLE_DEVICES": str(gpu)} if gpu is not None else {}))


def _run_logged(command, log_path, env):
    """Runs a command with its output in log_path; returns (exit status, seconds)."""
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    return status, time.monotonic() - start


def _last_error_line(log_path):
    with open(log_path, encoding="utf-8", errors="replace") as log:
        lines = [line.strip() for line in log if line.strip()]
    return lines[-1] if lines else "no output"


def run_one(sweep_dir, method, seed, search_flags_path, retrain_epochs=0, train_flagfile=None, gpu=None):
    """Searches (and retrains) one (method, seed) unless its sweep_result.json exists; returns that result."""
    run_dir = os.path.join(sweep_dir, method, f"seed_{seed}")
    result_path = os.path.join(run_dir, RESULT_FILE)
    if os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as file:
            return json.load(file)
    os.makedirs(run_dir, exist_ok=True)
    env = _env(gpu)
    search_dir = os.path.join(run_dir, "search")
    log_path = os.path.join(run_dir, "search.log")
    # The shared trace directory goes first, so that one in the search flags wins (absl: the last value).
    status, seconds = _run_logged([sys.executable, "-m", "drnas_tf.search",
                                   f"--trace_dir={os.path.join(sweep_dir, TRACE_DIR)}",
                                   f"--flagfile={search_flags_path}", f"--method={method}", f"--seed={seed}",
                                   f"--model_dir={search_dir}"], log_path, env)
    if status:
        raise ValueError(f"search {method} seed {seed} failed (exit {status}; {log_path}): "
                         f"{_last_error_line(log_path)}")
    with open(os.path.join(search_dir, "genotype.json"), encoding="utf-8") as file:
        record = json.load(file)
    result = {"method": method, "seed": seed, "genotype": record["text"], "search_seconds": seconds,
              "benchmark": record.get("benchmark"), "retrain": None}
    if "benchmark" not in record and retrain_epochs > 0:
        result["retrain"] = retrain(run_dir, search_dir, retrain_epochs, train_flagfile, env)
    atomic_write_text(result_path, json.dumps(result, indent=1))
    return result


def run_random(sweep_dir, index, genotype, retrain_epochs, train_flagfile=None, gpu=None):
    """Retrains random genotype `index` (a text) as run_one retrains a searched one, unless its result exists.

    A stored result for another genotype (the sweep re-run with another --random_seed) is an error rather than
    a silent mix of two draws."""
    run_dir = os.path.join(sweep_dir, RANDOM, f"genotype_{index:02d}")
    result_path = os.path.join(run_dir, RESULT_FILE)
    if os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as file:
            result = json.load(file)
        if result["genotype"] != genotype:
            raise ValueError(f"{result_path} holds {result['genotype']}, not the drawn {genotype}: another "
                             "--random_seed was used in this --sweep_dir")
        return result
    os.makedirs(run_dir, exist_ok=True)
    env = _env(gpu)
    result = {"method": RANDOM, "seed": index, "genotype": genotype, "search_seconds": None, "benchmark": None,
              "retrain": retrain(run_dir, genotype, retrain_epochs, train_flagfile, env)}
    atomic_write_text(result_path, json.dumps(result, indent=1))
    return result


def retrain(run_dir, genotype, epochs, train_flagfile, env):
    """Runs `python -m drnas_tf.train --genotype=GENOTYPE` (a search's model_dir or a text); returns results.json.

    The flagfile goes first: absl lets the last value win, so the sweep's --epochs beats the flagfile's."""
    train_dir = os.path.join(run_dir, "train")
    log_path = os.path.join(run_dir, "train.log")
    command = ([sys.executable, "-m", "drnas_tf.train"] + ([f"--flagfile={train_flagfile}"] if train_flagfile else [])
               + [f"--genotype={genotype}", f"--model_dir={train_dir}", f"--epochs={epochs}"])
    status, _ = _run_logged(command, log_path, env)
    if status:
        raise ValueError(f"retraining {run_dir} failed (exit {status}; {log_path}): {_last_error_line(log_path)}")
    return read_retrain_result(train_dir)


def read_retrain_result(train_dir):
    """The results.json `python -m drnas_tf.train` writes: test_top1 (a fraction) and train_seconds at least."""
    path = os.path.join(train_dir, "results.json")
    try:
        with open(path, encoding="utf-8") as file:
            results = json.load(file)
        return {"test_top1": float(results["test_top1"]), "train_seconds": float(results["train_seconds"]),
                "epochs": results.get("epochs")}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"cannot read the retraining result {path}: {error}") from None


def run_all(sweep_dir, runs, search_flags_path, retrain_epochs=0, train_flagfile=None, gpus=(),
            random_genotypes=()):
    """Runs every (method, seed), then retrains every random genotype (texts), one at a time or one per GPU.

    Returns (the results in that order, the errors): runs that fail do not stop the others."""
    tasks = [functools.partial(run_one, sweep_dir, method, seed, search_flags_path, retrain_epochs, train_flagfile)
             for method, seed in runs]
    tasks += [functools.partial(run_random, sweep_dir, index, genotype, retrain_epochs, train_flagfile)
              for index, genotype in enumerate(random_genotypes)]
    jobs = queue.Queue()
    for index, task in enumerate(tasks):
        jobs.put((index, task))
    results, errors = [None] * len(tasks), []

    def worker(gpu):
        while True:
            try:
                index, task = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                results[index] = task(gpu=gpu)
                print(progress_line(results[index]), flush=True)
            except ValueError as error:
                errors.append(error)

    workers = [threading.Thread(target=worker, args=(gpu,)) for gpu in (gpus or [None])]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return [result for result in results if result is not None], errors


def progress_line(result):
    """What the sweep prints as a run finishes: which run, its genotype and, once retrained, its test top-1."""
    name = (f"{RANDOM} genotype {result['seed']:02d}" if result["method"] == RANDOM
            else f"{result['method']} seed {result['seed']}")
    score = f" test top-1 {100 * result['retrain']['test_top1']:.2f} %" if result.get("retrain") else ""
    return f"{name}: {result['genotype']}{score}"


def _mean_std(values):
    """(mean, sample standard deviation; 0 for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def score_columns(results):
    """The score columns of the table: benchmark accuracies (%), or the retrained test top-1 (%)."""
    if any(result.get("benchmark") for result in results):
        return [(f"{column} (%)", lambda run, column=column: (run.get("benchmark") or {}).get(column))
                for column in BENCHMARK_COLUMNS]
    if any(result.get("retrain") for result in results):
        return [("retrain test top-1 (%)", lambda run: _retrain_value(run, "test_top1", 100.0)),
                ("retrain seconds", lambda run: _retrain_value(run, "train_seconds"))]
    return []


def _retrain_value(run, key, scale=1.0):
    return scale * run["retrain"][key] if run.get("retrain") else None


SUMMARY = (("mean", lambda values: _mean_std(values)[0]), ("std", lambda values: _mean_std(values)[1]))
RANGE = (("min", min), ("median", statistics.median), ("max", max))  # the random genotypes' spread, too


def tables(results, methods):
    """(header, per-run rows with numbers, Markdown rows): every run, then mean ± std for each method.

    With random genotypes among the results, each searched run also gets its percentile within their test
    top-1s, and their own block follows the methods', with min, median and max after mean ± std."""
    randoms = [result for result in results if result["method"] == RANDOM]
    searched = [result for result in results if result["method"] != RANDOM]
    columns = score_columns(results)
    if randoms and searched:
        population = [run["retrain"]["test_top1"] for run in randoms]
        columns.append(("percentile among random (%)", lambda run: percentile_within(run["retrain"]["test_top1"],
                        population) if run["method"] != RANDOM and run.get("retrain") else None))
    if searched or not randoms:
        columns.append(("search seconds", lambda run: run["search_seconds"]))
    header = ["method", "seed", "genotype"] + [name for name, _ in columns]
    number_rows, markdown_rows = [], []
    for method in list(methods) + ([RANDOM] if randoms else []):
        runs = [result for result in results if result["method"] == method]
        for run in runs:
            values = [value(run) for _, value in columns]
            number_rows.append([method, run["seed"], run["genotype"]] + [_round(v) for v in values])
            markdown_rows.append([method, run["seed"], f"`{run['genotype']}`"]
                                 + ["" if v is None else f"{v:.2f}" for v in values])
        if not runs:
            continue
        stats = SUMMARY + (RANGE if method == RANDOM else ())
        per_column = [[v for v in map(value, runs) if v is not None] for _, value in columns]
        figures = {name: [stat(values) if values else None for values in per_column] for name, stat in stats}
        distinct = len({run["genotype"] for run in runs})
        for name, _ in stats:
            label = f"{distinct} distinct" if name == "mean" else ""
            number_rows.append([method, name, label] + [_round(figure) for figure in figures[name]])
        unit = "genotypes" if method == RANDOM else "seeds"
        markdown_rows.append([f"**{method}**", f"mean ± std ({len(runs)} {unit})", f"{distinct} distinct"]
                             + _joined(figures, ("mean", "std"), " ± "))
        if method == RANDOM:
            markdown_rows.append([f"**{method}**", "min / median / max", ""]
                                 + _joined(figures, ("min", "median", "max"), " / "))
    return header, number_rows, markdown_rows


def _joined(figures, names, separator):
    """Markdown cells joining the named figures of each column, e.g. "92.00 ± 2.83"; empty where none."""
    return ["" if figures[names[0]][column] is None
            else separator.join(f"{figures[name][column]:.2f}" for name in names)
            for column in range(len(figures[names[0]]))]


def _round(value):
    return None if value is None else round(float(value), 4)


def render_against_random(results, path):
    """Writes `against_random_figure(results)` to `path` as PNG."""
    import matplotlib.pyplot as plt

    figure = against_random_figure(results)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def against_random_figure(results):
    """A matplotlib Figure: the random genotypes' retrained test top-1 as a row of dots, and each method's
    searched runs on a row of their own, whose label gives their percentiles among the random ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    random_scores = [100 * r["retrain"]["test_top1"] for r in results if r["method"] == RANDOM]
    methods = list(dict.fromkeys(r["method"] for r in results if r["method"] != RANDOM))
    labels = [f"{len(random_scores)} random"]
    figure, axes = plt.subplots(figsize=(8, 1.0 + 0.6 * (len(methods) + 1)), constrained_layout=True)
    axes.scatter(random_scores, [0] * len(random_scores), color="grey", alpha=0.6)
    for row, method in enumerate(methods, start=1):
        runs = [r for r in results if r["method"] == method and r.get("retrain")]
        scores = [100 * r["retrain"]["test_top1"] for r in runs]
        axes.scatter(scores, [row] * len(scores), zorder=3)
        percentiles = "/".join(f"{percentile_within(score, random_scores):.0f}" for score in scores)
        labels.append(f"{method}\npercentiles {percentiles}")  # in seed order
    axes.set_yticks(range(len(labels)), labels)
    axes.set_ylim(-0.6, len(labels) - 0.4)
    axes.set_xlabel("retrained test top-1 (%)")
    axes.set_title("searched genotypes among random ones")
    axes.grid(axis="x", alpha=0.3)
    return figure


def check_random_flags(random_genotypes, searches, search_space, retrain_epochs, benchmark):
    """One-line errors for a --random_genotypes request the sweep cannot score against the searches."""
    check_range("random_genotypes", random_genotypes, NON_NEGATIVE)
    if not random_genotypes and not searches:
        raise ValueError("--methods is empty and --random_genotypes=0: nothing to run; expected some of "
                         + ", ".join(relaxations.names()))
    if random_genotypes and search_space != nb201.Nb201Genotype.space:
        raise ValueError(f"--random_genotypes needs --search_space=nb201, got {search_space}")
    if random_genotypes and not retrain_epochs:
        raise ValueError("--random_genotypes needs --retrain_epochs > 0: random genotypes are scored by retraining")
    if random_genotypes and benchmark:
        raise ValueError("--random_genotypes with --nb201_benchmark: the searches would be scored by the benchmark "
                         "and the random genotypes by retraining; leave out --nb201_benchmark")


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.sweep_dir:
        raise ValueError("--sweep_dir is required: where the runs and the result tables go")
    if FLAGS.model_dir:
        raise ValueError("--model_dir is set per run by the sweep (SWEEP_DIR/METHOD/seed_S/search); remove it")
    runs = parse_runs(FLAGS.methods, FLAGS.seeds)
    check_range("retrain_epochs", FLAGS.retrain_epochs, NON_NEGATIVE)
    check_range("random_seed", FLAGS.random_seed, SEED)
    if FLAGS.train_flagfile and not os.path.isfile(FLAGS.train_flagfile):
        raise ValueError(f"--train_flagfile={FLAGS.train_flagfile} does not exist")
    config = search.config_from_flags()  # the search flags must describe a valid search before anything runs
    check_random_flags(FLAGS.random_genotypes, bool(runs), config.network.search_space, FLAGS.retrain_epochs,
                       bool(FLAGS.nb201_benchmark))
    from drnas_tf import trajectory
    from drnas_tf.spaces.nb201.nas_bench import open_benchmark

    trajectory.check_settings(config.network.search_space, bool(FLAGS.nb201_benchmark), FLAGS.trajectory_samples)
    if FLAGS.nb201_benchmark:
        open_benchmark(FLAGS.nb201_benchmark)  # fail now, not after the first search
    os.makedirs(FLAGS.sweep_dir, exist_ok=True)
    search_flags_path = os.path.join(FLAGS.sweep_dir, "search.flags")
    atomic_write_text(search_flags_path, search_flags_text())
    results, errors = run_all(FLAGS.sweep_dir, runs, search_flags_path, FLAGS.retrain_epochs,
                              FLAGS.train_flagfile, FLAGS.gpus,
                              random_genotype_texts(FLAGS.random_genotypes, FLAGS.random_seed))
    header, number_rows, markdown_rows = tables(results, FLAGS.methods)
    command = " ".join(["python -m drnas_tf.sweep"] + [shlex.quote(arg) for arg in sys.argv[1:]])
    atomic_write_text(os.path.join(FLAGS.sweep_dir, "results.csv"), csv_text(header, number_rows))
    markdown = f"Command: `{command}`\n\n" + markdown_table(header, markdown_rows)
    atomic_write_text(os.path.join(FLAGS.sweep_dir, "results.md"), markdown)
    print(markdown, end="")
    if any(r["method"] == RANDOM and r.get("retrain") for r in results):
        render_against_random(results, os.path.join(FLAGS.sweep_dir, "results.png"))
        print(f"figure written to {os.path.join(FLAGS.sweep_dir, 'results.png')}")
    if errors:
        raise errors[0]


if __name__ == "__main__":
    cli.run(main, "drnas_tf.sweep")
