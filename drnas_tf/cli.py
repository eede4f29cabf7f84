"""What every entry point shares: absl start-up, and one readable line for user errors."""

import sys

from absl import app, flags, logging


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
