"""Searches every method with every seed and tabulates the results:

    python -m drnas_tf.sweep --flagfile=flags/quickstart.flags --seeds=0,1,2 --methods=dirichlet,darts,gumbel \
        --sweep_dir=runs/sweep [--nb201_benchmark=PATH | --retrain_epochs=N [--train_flagfile=FILE]]

The search flags (from --flagfile or the command line, all of `drnas_tf.search`'s) are frozen into
SWEEP_DIR/search.flags; each run is `python -m drnas_tf.search --flagfile=SWEEP_DIR/search.flags
--method=M --seed=S --model_dir=SWEEP_DIR/M/seed_S/search`, one after the other, or one per GPU at a time with
--gpus. Its score is the NAS-Bench-201 accuracy of the final genotype when --nb201_benchmark is given (NB201
space), otherwise, with --retrain_epochs > 0, the test top-1 of `python -m drnas_tf.train` run on the genotype
for that many epochs (its results.json). SWEEP_DIR/results.csv and results.md hold one row per run (genotype,
score, search time) and the mean and standard deviation (ddof 1) per method. A finished run keeps its
SWEEP_DIR/M/seed_S/sweep_result.json, so re-running the same command only does what is missing.
"""

import json
import os
import queue
import shlex
import subprocess
import sys
import threading
import time

from absl import flags

from drnas_tf import cli, config as config_lib, search
from drnas_tf.outputs import atomic_write_text
from drnas_tf.tables import csv_text, markdown_table

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(search)  # the search flags a --flagfile gives, listed by --helpshort
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to search each method with.")
flags.DEFINE_list("methods", list(config_lib.METHOD_RELAXATIONS), "Methods to compare: "
                  + ", ".join(config_lib.METHOD_RELAXATIONS) + ".")
flags.DEFINE_string("sweep_dir", None, "Where the runs, search.flags, results.csv and results.md go (required).")
flags.DEFINE_integer("retrain_epochs", 0, "Without --nb201_benchmark: retrain each genotype for this many "
                     "epochs with `python -m drnas_tf.train` and report its test top-1 (0: no retraining).")
flags.DEFINE_string("train_flagfile", None, "Flagfile passed to `python -m drnas_tf.train` (dataset, sizes).")
flags.DEFINE_list("gpus", [], "GPU ids to run on, one run per GPU at a time (CUDA_VISIBLE_DEVICES); empty: "
                  "one run at a time on the default devices.")

RUN_OVERRIDES = ("model_dir", "method", "seed")  # set per run, never forwarded
RESULT_FILE = "sweep_result.json"
BENCHMARK_COLUMNS = tuple(f"{dataset}/{split}" for dataset in ("cifar10", "cifar100", "ImageNet16-120")
                          for split in ("valid", "test"))  # SPEC §9.1's columns


def search_flags_text():
    """The search flags given to the sweep (flagfile and command line), one per line, as a flagfile."""
    given = [flag for flag in FLAGS.get_key_flags_for_module(search)
             if flag.present and flag.name not in RUN_OVERRIDES]
    return "".join(f"{flag.serialize()}\n" for flag in sorted(given, key=lambda flag: flag.name))


def parse_runs(methods, seeds):
    """[(method, seed)] in table order; one-line errors name the flag."""
    unknown = [m for m in methods if m not in config_lib.METHOD_RELAXATIONS]
    if unknown or not methods:
        raise ValueError(f"--methods={','.join(methods)}: expected some of {', '.join(config_lib.METHOD_RELAXATIONS)}")
    try:
        seeds = [int(seed) for seed in seeds]
    except ValueError:
        raise ValueError(f"--seeds={','.join(seeds)} must be a comma-separated list of integers") from None
    if not seeds:
        raise ValueError("--seeds is empty")
    return [(method, seed) for method in methods for seed in seeds]


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
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    search_dir = os.path.join(run_dir, "search")
    log_path = os.path.join(run_dir, "search.log")
    status, seconds = _run_logged([sys.executable, "-m", "drnas_tf.search", f"--flagfile={search_flags_path}",
                                   f"--method={method}", f"--seed={seed}", f"--model_dir={search_dir}"],
                                  log_path, env)
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


def retrain(run_dir, search_dir, epochs, train_flagfile, env):
    """Runs `python -m drnas_tf.train` on the search's genotype; returns its results.json."""
    train_dir = os.path.join(run_dir, "train")
    log_path = os.path.join(run_dir, "train.log")
    command = [sys.executable, "-m", "drnas_tf.train", f"--genotype={search_dir}", f"--model_dir={train_dir}",
               f"--epochs={epochs}"] + ([f"--flagfile={train_flagfile}"] if train_flagfile else [])
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


def run_all(sweep_dir, runs, search_flags_path, retrain_epochs=0, train_flagfile=None, gpus=()):
    """Runs every (method, seed), one at a time or one per GPU; returns the results in `runs` order.

    Runs that fail do not stop the others; the first failure is raised after all have ended."""
    jobs = queue.Queue()
    for index, run in enumerate(runs):
        jobs.put((index, run))
    results, errors = [None] * len(runs), []

    def worker(gpu):
        while True:
            try:
                index, (method, seed) = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                results[index] = run_one(sweep_dir, method, seed, search_flags_path, retrain_epochs, train_flagfile,
                                         gpu)
                print(f"{method} seed {seed}: {results[index]['genotype']}", flush=True)
            except ValueError as error:
                errors.append(error)

    workers = [threading.Thread(target=worker, args=(gpu,)) for gpu in (gpus or [None])]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return [result for result in results if result is not None], errors


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


def tables(results, methods):
    """(header, per-run rows with numbers, Markdown rows): every run, then mean ± std for each method."""
    columns = score_columns(results) + [("search seconds", lambda r: r["search_seconds"])]
    header = ["method", "seed", "genotype"] + [name for name, _ in columns]
    number_rows, markdown_rows = [], []
    for method in methods:
        runs = [result for result in results if result["method"] == method]
        for run in runs:
            values = [value(run) for _, value in columns]
            number_rows.append([method, run["seed"], run["genotype"]] + [_round(v) for v in values])
            markdown_rows.append([method, run["seed"], f"`{run['genotype']}`"]
                                 + ["" if v is None else f"{v:.2f}" for v in values])
        if not runs:
            continue
        summary = []
        for _, value in columns:
            values = [v for v in map(value, runs) if v is not None]
            summary.append(_mean_std(values) if values else None)
        distinct = len({run["genotype"] for run in runs})
        number_rows.append([method, "mean", f"{distinct} distinct"] + [_round(s[0]) if s else None for s in summary])
        number_rows.append([method, "std", ""] + [_round(s[1]) if s else None for s in summary])
        markdown_rows.append([f"**{method}**", f"mean ± std ({len(runs)} seeds)", f"{distinct} distinct"]
                             + ["" if s is None else f"{s[0]:.2f} ± {s[1]:.2f}" for s in summary])
    return header, number_rows, markdown_rows


def _round(value):
    return None if value is None else round(float(value), 4)


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.sweep_dir:
        raise ValueError("--sweep_dir is required: where the runs and the result tables go")
    if FLAGS.model_dir:
        raise ValueError("--model_dir is set per run by the sweep (SWEEP_DIR/METHOD/seed_S/search); remove it")
    runs = parse_runs(FLAGS.methods, FLAGS.seeds)
    if FLAGS.retrain_epochs < 0:
        raise ValueError(f"--retrain_epochs must be 0 or positive, got {FLAGS.retrain_epochs}")
    if FLAGS.train_flagfile and not os.path.isfile(FLAGS.train_flagfile):
        raise ValueError(f"--train_flagfile={FLAGS.train_flagfile} does not exist")
    config = search.config_from_flags()  # the search flags must describe a valid search before anything runs
    from drnas_tf import trajectory
    from drnas_tf.benchmark import open_benchmark

    trajectory.check_settings(config.network.search_space, bool(FLAGS.nb201_benchmark), FLAGS.trajectory_samples)
    if FLAGS.nb201_benchmark:
        open_benchmark(FLAGS.nb201_benchmark)  # fail now, not after the first search
    os.makedirs(FLAGS.sweep_dir, exist_ok=True)
    search_flags_path = os.path.join(FLAGS.sweep_dir, "search.flags")
    atomic_write_text(search_flags_path, search_flags_text())
    results, errors = run_all(FLAGS.sweep_dir, runs, search_flags_path, FLAGS.retrain_epochs,
                              FLAGS.train_flagfile, FLAGS.gpus)
    header, number_rows, markdown_rows = tables(results, FLAGS.methods)
    command = " ".join(["python -m drnas_tf.sweep"] + [shlex.quote(arg) for arg in sys.argv[1:]])
    atomic_write_text(os.path.join(FLAGS.sweep_dir, "results.csv"), csv_text(header, number_rows))
    markdown = f"Command: `{command}`\n\n" + markdown_table(header, markdown_rows)
    atomic_write_text(os.path.join(FLAGS.sweep_dir, "results.md"), markdown)
    print(markdown, end="")
    if errors:
        raise errors[0]


if __name__ == "__main__":
    cli.run(main, "drnas_tf.sweep")
