"""What every entry point shares: absl start-up, and one readable line for user errors."""

import sys

from absl import app, flags, logging

from drnas_tf.data.catalog import DATASETS
from drnas_tf.spaces import SPACE_NAMES


def define_network_flags(supernet=True):
    """The flags that pick a network: space, dataset and sizes (None: the paper's default for them).

    With supernet=False (a discrete network, whose genotype fixes the space) --search_space and
    --nb201_bypass are left out.
    """
    if supernet:
        flags.DEFINE_enum("search_space", "darts", SPACE_NAMES, "Search space.")
    flags.DEFINE_enum("dataset", "cifar10", list(DATASETS), "Dataset: sets classes, input size and stem.")
    flags.DEFINE_integer("init_channels", None, "C, channels of the first stage (default: the paper's for the "
                         "space and dataset: DARTS 36 on CIFAR, 48 on ImageNet; NB201 16).")
    flags.DEFINE_integer("layers", None, "DARTS space: number of cells (default 20 on CIFAR, 14 on ImageNet).")
    flags.DEFINE_integer("cells_per_stage", None, "NB201 space: search cells per stage, N (default 5).")
    if supernet:
        flags.DEFINE_enum("nb201_bypass", "sum", ["sum", "mean"], "NB201 partial-channel bypass: 'sum' as the "
                          "reference, 'mean' rescaled by 1/inputs of the node (docs/differences.md).")


def run(main, program):
    """Runs an absl `main`; a ValueError (bad flag value, file or genotype) exits 2 with one line on stderr.

    Library code raises ValueError with a one-line message that names the flag or file at fault.
    """

    def guarded(argv):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # TF's checkpointing logs INFO lines every save
        try:
            return main(argv)
        except ValueError as error:
            print(f"{program}: error: {error}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded)
