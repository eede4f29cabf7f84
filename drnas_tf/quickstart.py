"""The whole pipeline on the built-in offline `digits` data: `python -m drnas_tf.quickstart` (`make quickstart`).

1. search:   python -m drnas_tf.search --flagfile=flags/quickstart.flags --model_dir=DIR/search
2. retrain:  python -m drnas_tf.train --flagfile=flags/train/digits.flags --genotype=DIR/search --model_dir=DIR/train
3. export:   python -m drnas_tf.export --model_dir=DIR/train --export_dir=DIR/export_train --overwrite
4. classify: tf.saved_model.load(DIR/export_train) on the 600 held-out digits test images (uint8), printing accuracy.

Each step is the entry point a user would run, printed before it runs. With --compare_random a random
genotype of the same space (fixed by --random_seed) is retrained, exported and classified the same way, and
both accuracies are printed. Re-running resumes: finished steps are not repeated (the search and the training
resume from their model_dirs; the export is rewritten).
"""

import os
import shlex
import subprocess
import sys
import time

from absl import flags

from drnas_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "runs/quickstart", "Parent directory of the search, train and export outputs.")
flags.DEFINE_string("search_flagfile", "flags/quickstart.flags", "Flagfile of the search step.")
flags.DEFINE_string("train_flagfile", "flags/train/digits.flags", "Flagfile of the retraining step.")
flags.DEFINE_multi_string("search_flag", [], "An extra flag for the search step, e.g. --search_flag=--seed=3 "
                          "(repeatable).")
flags.DEFINE_multi_string("train_flag", [], "An extra flag for the retraining step, e.g. --train_flag=--epochs=2 "
                          "(repeatable).")
flags.DEFINE_bool("compare_random", False, "Also retrain, export and classify a random genotype of the same space.")
flags.DEFINE_integer("random_seed", 0, "Seed of the --compare_random genotype.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resolve_flagfile(flag):
    """The file the flag names: as given if it exists, else relative to the repository (so the defaults work from
    anywhere in a clone). An installed drnas_tf has no flags/, so there the defaults fail with the way out."""
    path = getattr(FLAGS, flag)
    for candidate in (path, os.path.join(ROOT, path)):
        if os.path.isfile(candidate):
            return candidate
    raise ValueError(f"--{flag}={path} does not exist; the quickstart's flagfiles are in flags/ of a clone of the "
                     "repository (an installed drnas_tf has none): run it in a clone, or pass --search_flagfile "
                     "and --train_flagfile")


def run_step(module, *args):
    """Runs `python -m module args` as a user would, echoing the command first."""
    command = [sys.executable, "-m", module, *args]
    print("$ " + " ".join(shlex.quote(part) for part in ["python", *command[1:]]), flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    if subprocess.run(command, env=env).returncode != 0:
        raise ValueError(f"step `{module}` failed (its error is above); fix it and re-run to resume")


def classify_digits(export_dir):
    """Test accuracy of the SavedModel in export_dir on the digits test split, fed as uint8 images."""
    import numpy as np
    import tensorflow as tf

    from drnas_tf.data import digits

    images, labels = digits.load_digits_arrays("test")
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    classes = np.concatenate([serve(images=tf.constant(images[start:start + 200]))["classes"].numpy()
                              for start in range(0, len(images), 200)])
    return float(np.mean(classes == labels))


def retrain_export_classify(genotype, name, train_flagfile):
    """Steps 2–4 for one genotype spec; returns the SavedModel's digits test accuracy."""
    train_dir, export_dir = (os.path.join(FLAGS.model_dir, part) for part in (name, f"export_{name}"))
    run_step("drnas_tf.train", f"--flagfile={train_flagfile}", f"--genotype={genotype}",
             f"--model_dir={train_dir}", *FLAGS.train_flag)
    run_step("drnas_tf.export", f"--model_dir={train_dir}", f"--export_dir={export_dir}", "--overwrite")
    accuracy = classify_digits(export_dir)
    print(f"SavedModel {export_dir}: digits test accuracy {accuracy:.4f} (600 images)", flush=True)
    return accuracy


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    from drnas_tf.config import SEED, check_range
    from drnas_tf.spaces import parse_genotype, random_genotype

    check_range("random_seed", FLAGS.random_seed, SEED)
    search_flagfile, train_flagfile = resolve_flagfile("search_flagfile"), resolve_flagfile("train_flagfile")
    started = time.time()
    search_dir = os.path.join(FLAGS.model_dir, "search")
    run_step("drnas_tf.search", f"--flagfile={search_flagfile}", f"--model_dir={search_dir}", *FLAGS.search_flag)
    found = parse_genotype(search_dir)
    accuracies = {"searched": (found.to_text(), retrain_export_classify(search_dir, "train", train_flagfile))}
    if FLAGS.compare_random:
        random = random_genotype(found.space, FLAGS.random_seed).to_text()
        accuracies["random"] = (random, retrain_export_classify(random, "train_random", train_flagfile))
    print(f"\nquickstart finished in {time.time() - started:.0f} s")
    for name, (genotype, accuracy) in accuracies.items():
        print(f"{name:>8} genotype {genotype}: digits test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    cli.run(main, "drnas_tf.quickstart")
