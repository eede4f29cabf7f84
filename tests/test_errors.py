"""Bad input, as a user types it: every case exits non-zero with one `PROGRAM: error: ...` line naming the flag or
file at fault, no traceback (unless --verbose) and no output left behind. docs/errors.md lists each message.

Most cases fail while the flags are checked, before TensorFlow is imported, in a fraction of a second.
"""

import os

import pytest

from cli_harness import ROOT, run_module
from drnas_tf import cli

NB201 = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|skip_connect~2|"
SMALL_NB201 = ["--search_space=nb201", "--dataset=digits"]
FLAG_PARSING = 2  # absl's parse errors, reported through cli.run as one line too

# (program, flags, message fragment, exit code). {tmp} is a fresh directory holding `empty/` (an empty data
# dir), `afile` (a plain file) and the files a case needs; {tmp}/run is the --model_dir unless a case gives one.
CASES = [
    # Unknown names.
    ("drnas_tf.search", ["--dataset=mnist"], "flag --dataset=mnist: value should be one of", FLAG_PARSING),
    ("drnas_tf.search", ["--search_space=nasnet"], "flag --search_space=nasnet: value should be one of", FLAG_PARSING),
    ("drnas_tf.search", ["--dataset=digits", "--batch_size=-3"], "--batch_size must be positive, got -3", 2),
    ("drnas_tf.search", ["--dataset=digits", "--no_such_flag=1"], "Unknown command line flag 'no_such_flag'", FLAG_PARSING),
    ("drnas_tf.search", ["--dataset=digits", "extra"], "unexpected arguments: extra", 2),
    ("drnas_tf.search", ["--dataset=digits", "--model_dir="], "--model_dir is required", 2),
    # Data.
    ("drnas_tf.search", ["--dataset=cifar10", "--data_dir={tmp}/empty"], "dataset cifar10 (cifar10) is not prepared in", 2),
    ("drnas_tf.search", ["--dataset=imagenet", "--data_dir={tmp}/empty"], "place ILSVRC2012_img_train.tar and "
     "ILSVRC2012_img_val.tar in the TFDS manual dir", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--batch_size=700"], "fewer than one batch", 2),
    # The supernet and the stage schedule.
    ("drnas_tf.search", [*SMALL_NB201, "--ks=3", "--num_keeps=5", "--stage_epochs=1"], "k=3 does not divide the 16 channels", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--ks=4", "--num_keeps=6", "--stage_epochs=1"],
     "--num_keeps=6 must be non-increasing, between 1 and the 5 operations of the nb201 space", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--ks=4,2", "--num_keeps=3,5", "--stage_epochs=1,1"],
     "--num_keeps=3,5 must be non-increasing", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--ks=4,2", "--num_keeps=5", "--stage_epochs=1,1"],
     "need one value per stage; got 2, 1 and 2", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--ks=2,4", "--num_keeps=5,3", "--stage_epochs=1,1"],
     "--ks=2,4 must be positive and non-increasing", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--ks=4,2", "--num_keeps=5,3", "--stage_epochs=0,3"],
     "--stage_epochs=0,3 must all be positive", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--ks=a,b"], "--ks must be a comma-separated list of integers", 2),
    ("drnas_tf.search", ["--search_space=nb201", "--dataset=imagenet"], "--dataset=imagenet needs darts", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--layers=8"], "--layers does not apply to --search_space=nb201; its depth flag is "
     "--cells_per_stage", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--checkpoint_every_steps=-1"], "--checkpoint_every_steps must be 0 or positive", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--unrolled", "--mixed_precision=mixed_float16"],
     "--unrolled does not support --mixed_precision=mixed_float16", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--unrolled", "--recompute_cells=all"],
     "--unrolled does not support --recompute_cells=all", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--jit_compile", "--deterministic"],
     "--jit_compile does nothing with --deterministic", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--recompute_cells=some"],
     "flag --recompute_cells=some: value should be one of", FLAG_PARSING),
    ("drnas_tf.search", [*SMALL_NB201, "--intra_op_threads=-1"],
     "--intra_op_threads must be 0 (TensorFlow's default) or positive, got -1", 2),
    # NAS-Bench-201 analysis.
    ("drnas_tf.search", ["--search_space=darts", "--dataset=digits", "--nb201_benchmark={tmp}/empty"],
     "needs --search_space=nb201", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--nb201_benchmark={tmp}/b.csv"], "b.csv does not exist", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--nb201_benchmark={tmp}/empty"], "pip install nats_bench", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--trajectory_samples=-1"], "must be 0 or positive", 2),
    # Numbers out of range, caught before any work.
    ("drnas_tf.search", [*SMALL_NB201, "--learning_rate=-1"], "--learning_rate must be positive, got -1.0", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--arch_learning_rate=nan"], "--arch_learning_rate must be 0 or positive, "
     "got nan", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--seed=-5"], "--seed must be in [0, 4294967295], got -5", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--momentum=1.5"], "--momentum must be in [0, 1), got 1.5", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--reg_scale=inf"], "--reg_scale must be 0 or positive, got inf", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--method=gumbel", "--gumbel_temperature=nan"],
     "--gumbel_temperature must be positive, got nan", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--progress=7"], "--progress must be 0, 1 or 2, got 7", 2),
    ("drnas_tf.search", [*SMALL_NB201, "--num_gpus=-2"], "--num_gpus must be -1 (all visible GPUs), 0 or positive, "
     "got -2", 2),
    ("drnas_tf.train", [f"--genotype={NB201}", "--dataset=digits", "--weight_decay=-0.1"],
     "--weight_decay must be 0 or positive, got -0.1", 2),
    ("drnas_tf.train", [f"--genotype={NB201}", "--dataset=digits", "--epochs=0"], "--epochs must be positive, got 0", 2),
    ("drnas_tf.summary", ["--search_space=nb201", "--seed=-1"], "--seed must be in [0, 4294967295], got -1", 2),
    # Output.
    ("drnas_tf.search", [*SMALL_NB201, "--model_dir={tmp}/afile/run"], "is not writable: Not a directory", 2),
    # Genotypes.
    ("drnas_tf.train", ["--dataset=digits"], "--genotype is required", 2),
    ("drnas_tf.train", [f"--genotype={NB201}", "--dataset=digits", "--model_dir="], "--model_dir is required", 2),
    ("drnas_tf.train", ["--genotype=NoSuchGenotype"], "genotype 'NoSuchGenotype' is not a published name", 2),
    ("drnas_tf.train", ["--genotype=Genotype(normal=[('sep_conv_3x3', 0)"], "not a DARTS genotype: expected "
     "Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)", 2),
    ("drnas_tf.train", ["--genotype=|nor_conv_3x3~0|+|conv_7x7~0|none~1|+|none~0|none~1|none~2|"], "conv_7x7", 2),
    ("drnas_tf.train", ["--genotype=|nor_conv_3x3~0|+|none~0|"], "has 2 nodes; expected 3", 2),
    ("drnas_tf.train", ["--genotype={tmp}/bad.json"], "genotype JSON is not valid", 2),
    ("drnas_tf.train", ["--genotype={tmp}/nospace.json"], "genotype JSON has no 'space' field", 2),
    ("drnas_tf.train", ["--genotype={tmp}/empty"], "has no genotype.json", 2),
    ("drnas_tf.train", ["--genotype=DARTS_V2", "--dataset=digits", "--cells_per_stage=5"],
     "--cells_per_stage does not apply to darts genotypes; its depth flag is --layers", 2),
    ("drnas_tf.train", [f"--genotype={NB201}", "--dataset=digits", "--layers=8"],
     "--layers does not apply to nb201 genotypes; its depth flag is --cells_per_stage", 2),
    ("drnas_tf.train", [f"--genotype={NB201}", "--dataset=digits", "--auxiliary"], "--auxiliary does not apply to nb201 genotypes; it applies to darts genotypes", 2),
    # Training settings, data and output.
    ("drnas_tf.train", [f"--genotype={NB201}", "--dataset=digits", "--batch_size=0"], "--batch_size must be positive, got 0", 2),
    ("drnas_tf.train", [f"--genotype={NB201}", "--dataset=digits", "--batch_size=5000"], "fewer than one batch", 2),
    ("drnas_tf.train", ["--genotype=DARTS_V2", "--drop_path_prob=1.5"], "--drop_path_prob must be in [0, 1), got 1.5", 2),
    ("drnas_tf.train", ["--genotype=DARTS_V2", "--dataset=cifar10", "--data_dir={tmp}/empty"],
     "dataset cifar10 (cifar10) is not prepared in", 2),
    ("drnas_tf.train", [f"--genotype={NB201}", "--dataset=digits", "--model_dir={tmp}/afile/run"],
     "is not writable: Not a directory", 2),
    # Summaries, exports and predictions.
    ("drnas_tf.summary", ["--genotype=DARTS_V2", "--k=4"], "--k describes a supernet and cannot be combined with --genotype", 2),
    ("drnas_tf.summary", ["--search_space=nb201", "--genotype=DARTS_V2"],
     "--genotype is a darts genotype but --search_space=nb201", 2),
    ("drnas_tf.summary", ["--search_space=nb201", "--k=3"], "k=3 must be a positive divisor", 2),
    ("drnas_tf.summary", ["--search_space=nb201", "--num_keep=9"], "num_keep=9", 2),
    ("drnas_tf.summary", ["--search_space=nb201", "--image_size=big"], "--image_size='big' must be a positive size", 2),
    ("drnas_tf.export", ["--model_dir={tmp}/empty", "--export_dir={tmp}/run"], "holds no trained model (no "
     "train_config.json)", 2),
    ("drnas_tf.predict", ["{tmp}/afile"], "--export_dir is required", 2),
    ("drnas_tf.predict", ["--export_dir={tmp}/empty"], "expected at least one IMAGE", 2),
    ("drnas_tf.predict", ["--export_dir={tmp}/empty", "--top_k=0", "{tmp}/afile"],
     "--top_k must be positive, got 0", 2),
    ("drnas_tf.predict", ["--export_dir={tmp}/empty", "{tmp}/photo.png"], "photo.png does not exist", 2),
    ("drnas_tf.predict", ["--export_dir={tmp}/empty", "{tmp}/afile"], "holds no SavedModel (no saved_model.pb)", 2),
    # The quickstart outside a clone (an installed package) has no flags/.
    ("drnas_tf.quickstart", ["--model_dir={tmp}/run", "--search_flagfile={tmp}/missing.flags"],
     "missing.flags does not exist; the quickstart's flagfiles are in flags/ of a clone of the repository", 2),
]


def prepare(tmp):
    (tmp / "empty").mkdir()
    (tmp / "afile").write_text("not a directory")
    (tmp / "bad.json").write_text('{"normal": [')
    (tmp / "nospace.json").write_text('{"genotype": "|nor_conv_3x3~0|"}')


def tree(root):
    return sorted(os.path.relpath(os.path.join(parent, name), root)
                  for parent, dirs, files in os.walk(root) for name in dirs + files)


def command_line(program, flags, tmp):
    flags = [flag.replace("{tmp}", str(tmp)) for flag in flags]
    if program in ("drnas_tf.search", "drnas_tf.train") and not any(flag.startswith("--model_dir") for flag in flags):
        flags.append(f"--model_dir={tmp / 'run'}")
    return [flag for flag in flags if flag != "--model_dir="]


@pytest.mark.parametrize("program,flags,message,code", CASES,
                         ids=[f"{case[0][9:]}:{case[2][:40]}" for case in CASES])
def test_bad_input_gives_one_line_and_leaves_nothing(program, flags, message, code, tmp_path):
    prepare(tmp_path)
    before = tree(tmp_path)
    result = run_module(program, *command_line(program, flags, tmp_path), timeout=300)
    assert result.returncode == code, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{program}: error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert tree(tmp_path) == before, "the failed run left output behind"


def test_every_message_is_in_docs_errors_md():
    text = open(os.path.join(ROOT, "docs", "errors.md"), encoding="utf-8").read()
    missing = [message for _, _, message, _ in CASES if message not in text]
    assert not missing, missing


def test_verbose_adds_the_traceback(tmp_path):
    flags = [*SMALL_NB201, "--ks=3", "--num_keeps=5", "--stage_epochs=1", f"--model_dir={tmp_path / 'run'}"]
    quiet, verbose = run_module("drnas_tf.search", *flags), run_module("drnas_tf.search", *flags, "--verbose")
    assert quiet.returncode == verbose.returncode == 2
    assert "Traceback" not in quiet.stderr
    verbose_lines = cli.without_startup_notices(verbose.stderr)  # --verbose keeps TensorFlow's start-up notices
    assert verbose_lines.startswith("drnas_tf.search: error: k=3 does not divide") and "Traceback" in verbose_lines
