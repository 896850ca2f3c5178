"""``python -m optax_clr``: the ``optax-clr`` command line."""

import sys

from optax_clr.cli import main

if __name__ == "__main__":
  sys.exit(main())
