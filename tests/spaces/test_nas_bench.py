"""Benchmark look-ups: tables written here, and stand-ins with the nats_bench / nas_201_api query methods."""

import sys
import types

import pytest

from benchmark_table import all_genotypes, synthetic_results, write_table
from drnas_tf.spaces import nb201
from drnas_tf.spaces.nb201 import nas_bench as benchmark

BEST = nb201.parse_text("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                        "skip_connect~2|")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_table_answers_every_architecture(tmp_path, suffix):
    table = benchmark.open_benchmark(write_table(tmp_path / f"nb201{suffix}"))
    assert isinstance(table, benchmark.TableBenchmark) and len(table.table) == 5**6
    for genotype in all_genotypes()[::997] + [BEST]:
        assert table.query(genotype) == synthetic_results(genotype)
    assert table.query(BEST.to_text()) == table.query(BEST)


def test_partial_table_misses_architectures_and_metrics(tmp_path):
    path = write_table(tmp_path / "part.jsonl", [BEST], metrics=("cifar10/test", "cifar100/test"))
    table = benchmark.open_benchmark(path)
    assert table.query(BEST) == {"cifar10/test": 71.5, "cifar100/test": 46.5}
    assert table.query(nb201.Nb201Genotype(ops=("none",) * 6)) is None


@pytest.mark.parametrize("contents,message", [
    ("arch,cifar10/tset\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n", "line 2: unknown column 'cifar10/tset'"),
    ("arch,cifar10/test\n|none~0|+|none~0|none~1|,1\n", "line 2: NB201 genotype '|none~0|+|none~0|none~1|' has 2 nodes"),
    ("cifar10/test\n1\n", "line 2: no 'arch' column"),
    ("arch,cifar10/test\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,high\n", "line 2: could not convert"),
    ("arch,cifar10/test\n", "holds no architectures"),
])
def test_bad_csv_tables_give_one_line(tmp_path, contents, message):
    path = tmp_path / "bad.csv"
    path.write_text(contents)
    with pytest.raises(ValueError, match="--nb201_benchmark=.*bad.csv") as error:
        benchmark.open_benchmark(str(path))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_jsonl_and_paths(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"arch": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"}\n[1]\n')
    with pytest.raises(ValueError, match="bad.jsonl line 2: expected a JSON object"):
        benchmark.open_benchmark(str(tmp_path / "bad.jsonl"))
    with pytest.raises(ValueError, match="does not exist"):
        benchmark.open_benchmark(str(tmp_path / "missing.csv"))
    (tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2").write_text("")
    with pytest.raises(ValueError, match="neither a NATS-Bench topology directory"):
        benchmark.open_benchmark(str(tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2"))


class StandInApi:
    """The documented query methods of nats_bench's NATStopology and nas_201_api's NASBench201API, answering
    from synthetic_results: get_more_info's keys per dataset follow the packages' code (cifar10-valid has
    the validation accuracy, cifar10 the test accuracy of the model trained on train+valid)."""

    def __init__(self, path, *args, **kwargs):
        self.path, self.args, self.kwargs, self.calls = path, args, kwargs, []
        self.archs = [g.to_text() for g in all_genotypes()]

    def query_index_by_arch(self, arch):
        return self.archs.index(arch) if arch in self.archs else -1

    def get_more_info(self, index, dataset, iepoch=None, hp="12", is_random=True):
        self.calls.append((dataset, hp, is_random))
        results = synthetic_results(nb201.parse_text(self.archs[index]))
        name = "cifar10" if dataset == "cifar10-valid" else dataset
        info = {"train-loss": 0.1, "train-accuracy": results[f"{name}/train"] - (dataset == "cifar10-valid"),
                "train-all-time": 100.0}
        if dataset != "cifar10":
            info.update({"valid-loss": 0.2, "valid-accuracy": results[f"{name}/valid"]})
        if dataset != "cifar10-valid":
            info.update({"test-loss": 0.2, "test-accuracy": results[f"{name}/test"]})
        return info


def check_api_benchmark(opened, path):
    assert isinstance(opened, benchmark.ApiBenchmark) and opened.api.path == path
    assert opened.query(BEST) == synthetic_results(BEST)  # train from 'cifar10', not 'cifar10-valid'
    assert sorted(set(opened.api.calls)) == [(d, "200", False) for d in ("ImageNet16-120", "cifar10",
                                                                          "cifar10-valid", "cifar100")]
    calls = len(opened.api.calls)
    opened.query(BEST.to_text())
    assert len(opened.api.calls) == calls  # cached
    opened.api.archs.remove(BEST.to_text())
    assert benchmark.ApiBenchmark(opened.api).query(BEST) is None  # index -1: not in the benchmark


def test_nats_bench_directory_in_fast_mode(tmp_path, monkeypatch):
    created = []

    def create(path, search_space, fast_mode=False, verbose=True):
        created.append((search_space, fast_mode, verbose))
        return StandInApi(path)

    monkeypatch.setitem(sys.modules, "nats_bench", types.SimpleNamespace(create=create))
    opened = benchmark.open_benchmark(str(tmp_path))
    assert created == [("tss", True, False)]
    check_api_benchmark(opened, str(tmp_path))


def test_nas_bench_201_pth_file(tmp_path, monkeypatch):
    path = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "nas_201_api", types.SimpleNamespace(NASBench201API=StandInApi))
    opened = benchmark.open_benchmark(str(path))
    assert opened.api.kwargs == {"verbose": False}
    check_api_benchmark(opened, str(path))


def test_missing_packages_name_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "nas_201_api", None)
    with pytest.raises(ValueError, match=r"needs the nats_bench package, which is not installed: "
                                         r"pip install nats_bench$"):
        benchmark.open_benchmark(str(tmp_path))
    (tmp_path / "b.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"pip install nas-bench-201$"):
        benchmark.open_benchmark(str(tmp_path / "b.pth"))
