"""The ``optax-clr`` command line: thin commands over the library.

One module per command, each parsing its flags, calling the library and
printing: ``range-test`` (classic, ``--seeds S``, ``--parallel K``),
``train`` (one schedule; with ``fit``, which ``train --auto-bounds`` runs),
``plot-schedule``, ``disciplined`` and ``demo``. What they share (option
types, errors and exit codes, data, models and optimizers from flags) is in
:mod:`._common`, the run directory in :mod:`._run`. The modules import only
click at the top; jax and the library load inside the commands.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from optax_clr.cli import _common
from optax_clr.cli._common import error_message
from optax_clr.cli._common import progress_enabled
from optax_clr.cli.demo import demo_cmd
from optax_clr.cli.disciplined import disciplined_cmd
from optax_clr.cli.plot_schedule import plot_schedule_cmd
from optax_clr.cli.range_test import range_test_cmd
from optax_clr.cli.train import fit_cmd
from optax_clr.cli.train import resolve_bounds
from optax_clr.cli.train import train_cmd

__all__ = ["cli", "error_message", "main", "progress_enabled",
           "resolve_bounds"]


@click.group(context_settings=_common.CONTEXT)
@click.version_option(package_name="optax-clr", prog_name=_common.PROG)
def cli():
  """Cyclical learning rates and LR range tests for JAX/optax.

  Start with `optax-clr demo` (under a minute on a laptop CPU).

  \b
  Exit status: 0 done; 1 failed (a run that diverged or stalled, a test
  that gave no answer); 2 usage error (a bad flag, file or value; nothing
  is written); 130 interrupted (the results so far are written first; an
  error after Ctrl-C is reported as "interrupted, then failed", exit 1).
  \b
  Environment:
    OPTAX_CLR_CACHE_DIR  compiled programs kept between runs
                         (default ~/.cache/optax-clr; empty: off)
    OPTAX_CLR_DEBUG=1    a traceback instead of a one-line error
  """


for _command in (range_test_cmd, train_cmd, fit_cmd, plot_schedule_cmd,
                 disciplined_cmd, demo_cmd):
  cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status (0 done, 1 failed, 2
  usage, 130 interrupted).

  The first Ctrl-C asks the running loop to stop after its chunk (nothing
  is torn: no compile, step or file write is cut short); the command then
  writes what it computed and exits 130. A second Ctrl-C stops at once.
  """
  from optax_clr import _interrupt
  with _interrupt.deferred():
    return _common.run_main(cli, argv, _interrupt.requested)


if __name__ == "__main__":  # pragma: no cover
  sys.exit(main())
