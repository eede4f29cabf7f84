"""`python -m drnas_tf.summary` as a user runs it: the JSON last line, and one-line errors."""

import json


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
