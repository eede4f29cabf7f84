"""A retraining of a few steps on digits and its SavedModel: what the export and predict tests serve from."""

from drnas_tf import config as config_lib, saved_model, train_task
from drnas_tf.config import Execution
from drnas_tf.spaces import parse_genotype

GENOTYPE = parse_genotype("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|skip_connect~2|")


def train_and_export(root):
    """Trains GENOTYPE (C=4, one cell per stage) for 3 steps into root/run and exports it; (run dir, export dir)."""
    config = config_lib.train_config(GENOTYPE, "digits", init_channels=4, cells_per_stage=1, epochs=1,
                                     batch_size=16, steps_per_epoch=3, cutout=0)
    run_dir = str(root / "run")
    train_task.run_train(config, run_dir, execution=Execution(progress=0))
    return run_dir, saved_model.export_run(run_dir, str(root / "saved_model"))
