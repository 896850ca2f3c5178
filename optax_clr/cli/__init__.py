"""The ``optax-clr`` command line: thin commands over the library.

One module per command, each parsing its flags, calling the library and
printing; what they share (option types, errors, the run directory, data,
models and optimizers from flags) is in :mod:`._common`.

* ``range-test``    the classic LR range test (``--seeds S`` ramps), or
                    ``--parallel K`` fixed LRs trained side by side.
* ``train``         CLR, one-cycle or a fixed LR with momentum cycling; the
                    bounds given, read from a run, or ``--auto-bounds``.
* ``plot-schedule`` draws one or several LR (and momentum) schedules.
* ``disciplined``   Smith's 2018 recipe: range tests over weight decay.
* ``demo``          range test -> sweep -> CLR against the best fixed LR.

Heavy modules (jax, flax, matplotlib) are imported inside the commands, so
``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from optax_clr import _interrupt
from optax_clr.cli import _common
from optax_clr.cli._common import error_message
from optax_clr.cli._common import progress_enabled
from optax_clr.cli.demo import demo_cmd
from optax_clr.cli.disciplined import disciplined_cmd
from optax_clr.cli.plot_schedule import plot_schedule_cmd
from optax_clr.cli.range_test import range_test_cmd
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
  Exit status: 0 done, 1 failed (also: training diverged or stalled),
  2 usage error, 130 interrupted (results so far are written first).
  \b
  Environment:
    OPTAX_CLR_CACHE_DIR  compiled programs and autotuning kept between runs
                         (default ~/.cache/optax-clr; empty: off)
    OPTAX_CLR_DEBUG=1    a traceback instead of a one-line error
  """


cli.add_command(range_test_cmd)
cli.add_command(train_cmd)
cli.add_command(plot_schedule_cmd)
cli.add_command(disciplined_cmd)
cli.add_command(demo_cmd)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status (0 done, 1 failed, 2
  usage, 130 interrupted).

  The first Ctrl-C asks the running loop to stop after its chunk (nothing
  is torn: no compile, step or file write is cut short); the command then
  writes what it computed and exits 130. A second Ctrl-C stops at once.
  """
  with _interrupt.deferred():
    code = _common.run_main(cli, argv)
    interrupted = _interrupt.requested()
  if interrupted and code in (0, 1):
    # Ctrl-C after the last loop (work done), or a failure it caused (e.g.
    # an interrupted range test gave no bounds, already reported): the exit
    # status says the user stopped the command.
    if code == 0:
      _common.fail("interrupted")
    return 130
  return code


if __name__ == "__main__":  # pragma: no cover
  sys.exit(main())
