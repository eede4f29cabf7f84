"""`python -m drnas_tf.summary` as a user runs it: the JSON last line, and one-line errors."""

import json

import pytest

from cli_harness import run_module


def test_supernet_summary_reports_sizes_as_last_json_line():
    result = run_module("drnas_tf.summary", "--search_space=nb201", "--dataset=cifar100", "--k=2", "--image_size=33x20")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["network"] == "supernet"
    assert report["trainable_params"] == 482356  # NB201 C=16 N=5 k=2, 100 classes (tests/supernet)
    assert report["arch_params"] == 30
    assert report["image_size"] == [33, 20] and report["k"] == 2 and report["num_classes"] == 100
    assert report["macs"] > 0


def test_pruned_supernet_summary_counts_only_kept_ops():
    full = run_module("drnas_tf.summary", "--search_space=nb201", "--dataset=digits", "--cells_per_stage=1", "--k=1")
    pruned = run_module("drnas_tf.summary", "--search_space=nb201", "--dataset=digits", "--cells_per_stage=1", "--k=1",
                        "--num_keep=1")
    full, pruned = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (full, pruned))
    assert pruned["num_keep"] == 1 and pruned["trainable_params"] < full["trainable_params"]
    assert pruned["macs"] < full["macs"]


def test_discrete_network_summary_of_a_published_genotype():
    result = run_module("drnas_tf.summary", "--genotype=DARTS_V2", "--auxiliary")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["network"] == "discrete" and report["layers"] == 20 and report["init_channels"] == 36
    assert report["trainable_params"] == 3349342  # the DARTS paper's 3.3 M, exactly as its code counts
    assert report["aux_params"] > 0 and report["arch_params"] == 0
    assert report["genotype"].startswith("Genotype(normal=[('sep_conv_3x3', 0)")


@pytest.mark.parametrize("flags,message", [
    (["--genotype=NotAGenotype"], "genotype 'NotAGenotype'"),
    (["--genotype=|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "conv_7x7"),
    (["--search_space=nb201", "--k=3"], "k=3 must be a positive divisor"),
    (["--search_space=nb201", "--dataset=imagenet"], "needs darts"),
    (["--genotype=DARTS_V2", "--k=4"], "--k describes a supernet"),
    (["--search_space=nb201", "--num_keep=9"], "num_keep=9"),
    (["--search_space=nb201", "--image_size=big"], "--image_size='big'"),
])
def test_bad_input_exits_nonzero_with_one_line(flags, message):
    result = run_module("drnas_tf.summary", *flags)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("drnas_tf.summary: error: ")]
    assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
