"""NAS-Bench-201 results of NB201-space genotypes, looked up by their `Structure.tostr` text
(docs/method.md §6, §9.4).

Three sources, picked by what the path is:
- a directory: the NATS-Bench topology benchmark (`NATS-tss-v1_0-3ffb9-simple`), read by the `nats_bench`
  package in fast mode (`pip install nats_bench`);
- a `.pth` file: the NAS-Bench-201 file (`NAS-Bench-201-v1_1-096897.pth`), read by the `nas_201_api` package
  (`pip install nas-bench-201`);
- a `.csv` or `.jsonl` file: a table a user extracted, one architecture per row (`TABLE_COLUMNS`).

Every source answers with the same metrics: train, valid and test accuracy (%, as the benchmarks report them)
of the 200-epoch training on cifar10, cifar100 and ImageNet16-120, averaged over the benchmark's trials.
CIFAR-10 follows the NAS-Bench-201 convention: `valid` is the `cifar10-valid` run's validation accuracy,
`train` and `test` come from the `cifar10` run (trained on train+valid, tested on the test set).
The packages are imported only when such a path is given; nothing here parses printed strings.
"""

import csv
import json
import os

from drnas_tf.spaces.nb201 import genotype as nb201

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
SPLITS = ("train", "valid", "test")
METRICS = tuple(f"{dataset}/{split}" for dataset in DATASETS for split in SPLITS)
ARCH_COLUMN = "arch"
TABLE_COLUMNS = (ARCH_COLUMN,) + METRICS
TABLE_SUFFIXES = (".csv", ".jsonl")
HP = "200"  # the benchmarks' 200-epoch training schedule
# (dataset argument of get_more_info, key of its result) for each metric; see the module docstring.
_API_QUERIES = {
    "cifar10/train": ("cifar10", "train-accuracy"),
    "cifar10/valid": ("cifar10-valid", "valid-accuracy"),
    "cifar10/test": ("cifar10", "test-accuracy"),
    **{f"{dataset}/{split}": (dataset, f"{split}-accuracy") for dataset in DATASETS[1:] for split in SPLITS},
}


class Benchmark:
    """Looks up genotypes; answers are cached per architecture text.

    Subclasses implement `_lookup(arch_text)`, returning {metric: accuracy %} (a subset of METRICS) or None
    when the benchmark does not hold the architecture.
    """

    source = ""

    def __init__(self):
        self._cache = {}

    def query(self, genotype):
        """{metric: accuracy in %} of an Nb201Genotype (or its text), None if the benchmark lacks it."""
        text = genotype if isinstance(genotype, str) else genotype.to_text()
        if text not in self._cache:
            self._cache[text] = self._lookup(text)
        return self._cache[text]

    def _lookup(self, arch_text):
        raise NotImplementedError


class TableBenchmark(Benchmark):
    """A CSV or JSON-lines table: an `arch` column (NB201 text) and any of the METRICS columns (accuracy %).

    Args:
        path: the table file; `.csv` has a header row, `.jsonl` one JSON object per line.
    """

    def __init__(self, path):
        super().__init__()
        self.source = path
        rows = _read_csv(path) if path.endswith(".csv") else _read_jsonl(path)
        self.table = {}
        for line, row in rows:
            where = f"--nb201_benchmark={path} line {line}"
            unknown = sorted(set(row) - set(TABLE_COLUMNS))
            if unknown:
                raise ValueError(f"{where}: unknown column {unknown[0]!r}; expected {ARCH_COLUMN!r} and any of "
                                 f"{', '.join(METRICS)}")
            if ARCH_COLUMN not in row:
                raise ValueError(f"{where}: no {ARCH_COLUMN!r} column")
            try:
                arch = nb201.parse_text(str(row[ARCH_COLUMN])).to_text()
                self.table[arch] = {name: float(value) for name, value in row.items()
                                    if name != ARCH_COLUMN and value not in ("", None)}
            except (ValueError, TypeError) as error:
                raise ValueError(f"{where}: {error}") from None
        if not self.table:
            raise ValueError(f"--nb201_benchmark={path} holds no architectures")

    def _lookup(self, arch_text):
        return self.table.get(arch_text)


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        return [(number, row) for number, row in enumerate(reader, start=2)]


def _read_jsonl(path):
    rows = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"--nb201_benchmark={path} line {number}: not JSON ({error})") from None
            if not isinstance(row, dict):
                raise ValueError(f"--nb201_benchmark={path} line {number}: expected a JSON object")
            rows.append((number, row))
    return rows


class ApiBenchmark(Benchmark):
    """An API object of the `nats_bench` or `nas_201_api` package (their `query_index_by_arch` and
    `get_more_info(index, dataset, hp=..., is_random=False)` methods).

    Args:
        api: the API object.
        source: the path it was read from, for messages.
    """

    def __init__(self, api, source=""):
        super().__init__()
        self.api, self.source = api, source

    def _lookup(self, arch_text):
        index = self.api.query_index_by_arch(arch_text)
        if index is None or index < 0:
            return None
        infos = {}
        metrics = {}
        for metric, (dataset, key) in _API_QUERIES.items():
            if dataset not in infos:
                infos[dataset] = self.api.get_more_info(index, dataset, hp=HP, is_random=False)
            if infos[dataset].get(key) is not None:
                metrics[metric] = float(infos[dataset][key])
        return metrics


def _import_error(path, package, extra):
    return ValueError(f"--nb201_benchmark={path} needs the {package} package, which is not installed: "
                      f"pip install {extra}")


def open_nats_bench(path):
    """The NATS-Bench topology benchmark directory, in fast mode (loads each architecture when queried)."""
    try:
        import nats_bench
    except ImportError:
        raise _import_error(path, "nats_bench", "nats_bench") from None
    return ApiBenchmark(nats_bench.create(path, "tss", fast_mode=True, verbose=False), path)


def open_nas_bench_201(path):
    """The NAS-Bench-201 `.pth` file (loads the whole file, several GB of memory)."""
    try:
        from nas_201_api import NASBench201API
    except ImportError:
        raise _import_error(path, "nas_201_api", "nas-bench-201") from None
    return ApiBenchmark(NASBench201API(path, verbose=False), path)


def open_benchmark(path):
    """The Benchmark a path holds (see the module docstring); errors are one line naming the path."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"--nb201_benchmark={path} does not exist")
    if os.path.isdir(path):
        return open_nats_bench(path)
    if path.endswith(".pth"):
        return open_nas_bench_201(path)
    if path.endswith(TABLE_SUFFIXES):
        try:
            return TableBenchmark(path)
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise ValueError(f"cannot read --nb201_benchmark={path}: {error}") from None
    raise ValueError(f"--nb201_benchmark={path} is neither a NATS-Bench topology directory, a NAS-Bench-201 .pth "
                     f"file nor a {' or '.join(TABLE_SUFFIXES)} table")
