"""What every command shares: option types and flags, errors and exit
codes, and the data, model and optimizer a command's flags name (the run
directory is in :mod:`._run`).

This module imports only click and the standard library: ``--help`` and
usage errors answer before jax is loaded. Errors print one line,
``optax-clr: error: <what>``, naming CLI flags (never library parameter
names); ``OPTAX_CLR_DEBUG=1`` raises them with their traceback instead.
Exit codes: 0 done; 2 usage (a bad flag, file or value, found before
anything is written); 1 failed (a run that diverged or stalled unless
``--allow-failure``, a test that gave no answer, a checkpoint of another
run, a bug); 130 interrupted (what was computed is written first).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import click

PROG = "optax-clr"
CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=100,
               show_default=True)
# Library parameter -> the flag that sets it, for error messages.
FLAG_OF = {
    "num_steps": "--steps", "start_lr": "--start-lr", "end_lr": "--end-lr",
    "min_lr": "--min-lr", "max_lr": "--max-lr", "base_lr": "--base-lr",
    "base_value": "--base-lr", "max_value": "--max-lr", "lr": "--lr",
    "step_size_up": "--step-size", "step_size_down": "--step-size-down",
    "batch_size": "--batch-size", "num_lrs": "--parallel",
    "num_seeds": "--seeds", "num_epochs": "--epochs", "total_steps":
    "--epochs", "smoothing": "--smoothing", "diverge_threshold":
    "--diverge-threshold", "eval_every": "--eval-every", "gamma": "--gamma",
    "pct_start": "--pct-start", "div_factor": "--div-factor",
    "final_div_factor": "--final-div-factor", "base_momentum":
    "--base-momentum", "max_momentum": "--max-momentum", "momentum":
    "--momentum", "weight_decay": "--weight-decay", "learning_rate": "--lr",
    "val_fraction": "--val-fraction", "width": "--width", "seed": "--seed",
    "cycles": "--cycles"}


class Number(click.ParamType):
  """A finite int or float in an interval, representable in float32/int32;
  errors like "--base-lr must be > 0, got -1"."""

  def __init__(self, kind: type = float, low: float | None = None,
               high: float | None = None, *, low_open: bool = False,
               high_open: bool = False):
    self.kind, self.low, self.high = kind, low, high
    self.low_open, self.high_open = low_open, high_open
    self.name = "integer" if kind is int else "float"

  def get_metavar(self, param, ctx=None):  # pylint: disable=unused-argument
    return "INT" if self.kind is int else "FLOAT"

  def convert(self, value, param, ctx):
    text = value if isinstance(value, str) else repr(value)
    try:
      if isinstance(value, bool) or (self.kind is int and isinstance(
          value, float) and value != int(value)):
        raise ValueError
      x = self.kind(value)
    except (TypeError, ValueError, OverflowError):
      self.fail(f"must be {'an' if self.kind is int else 'a'} {self.name}, "
                f"got {text}", param, ctx)
    if self.kind is float:
      if not math.isfinite(x):
        self.fail(f"must be a finite number, got {text}", param, ctx)
      if abs(x) > 3.4028234e38:
        self.fail(f"must be a float32 (|x| <= 3.4e38), got {text}", param,
                  ctx)
      if (self.low == 0 and self.low_open and x > 0
          and struct.unpack("f", struct.pack("f", x))[0] == 0):
        self.fail(f"must be > 0 in float32 (>= 1.4e-45), got {text}", param,
                  ctx)
    elif abs(x) > 2**31 - 1:
      self.fail(f"must be an int32 (|x| <= 2147483647), got {text}", param,
                ctx)
    if self.low is not None and (x <= self.low if self.low_open
                                 else x < self.low):
      self.fail(f"must be {'>' if self.low_open else '>='} {self.low:g}, "
                f"got {text}", param, ctx)
    if self.high is not None and (x >= self.high if self.high_open
                                  else x > self.high):
      self.fail(f"must be {'<' if self.high_open else '<='} {self.high:g}, "
                f"got {text}", param, ctx)
    return x


POSITIVE = Number(float, 0.0, low_open=True)
NONNEG = Number(float, 0.0)
FRACTION = Number(float, 0.0, 1.0, low_open=True, high_open=True)
MOMENTUM = Number(float, 0.0, 1.0, high_open=True)
POS_INT = Number(int, 1)
NONNEG_INT = Number(int, 0)


def choice(values: Sequence[str]) -> click.Choice:
  return click.Choice(list(values), case_sensitive=False)


def usage(message: str) -> click.UsageError:
  return click.UsageError(message)


# ----------------------------------------------------------------------------
# Errors and exit codes.


def one_line(text: Any) -> str:
  return " ".join(str(text).split())


_LIBRARY_NAME = re.compile(r"(?<![\w\-\.'\[])(" + "|".join(
    sorted(map(re.escape, FLAG_OF), key=len, reverse=True)) + r")(?![\w'])")


def in_flags(text: str) -> str:
  """Library parameter names (at word boundaries) replaced by their flags."""
  return _LIBRARY_NAME.sub(lambda m: FLAG_OF[m.group(1)], text)


def error_message(e: BaseException) -> str:
  """The one-line message printed for an error."""
  if isinstance(e, click.BadParameter) and (e.param_hint or e.param):
    hint = e.param_hint or [o for o in e.param.opts if o.startswith("--")]
    name = hint if isinstance(hint, str) else " / ".join(hint)
    msg = one_line(e.message)
    return (f"{name} {msg}" if msg.startswith(("must ", "is "))
            else f"invalid value for {name}: {msg}")
  if isinstance(e, click.ClickException):
    return one_line(e.format_message())
  if isinstance(e, OSError) and e.filename is not None and e.strerror:
    return one_line(f"{e.filename}: {e.strerror}")
  text = one_line(e)
  if isinstance(e, (ValueError, TypeError, OSError)) and text:
    return in_flags(text)
  return (f"{type(e).__name__}: {text}" if text else type(e).__name__) + (
      " (set OPTAX_CLR_DEBUG=1 for the traceback)")


def fail(message: str) -> None:
  click.echo(f"{PROG}: error: {message}", err=True)


def warn(message: str) -> None:
  click.echo(f"{PROG}: warning: {one_line(message)}", err=True)


class Exit(Exception):
  """A command's own non-zero exit after writing its results."""

  def __init__(self, code: int, message: str):
    super().__init__(message)
    self.code = code


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
  """What goes wrong in the block is the user's input (a file, a value):
  a usage error (exit 2), raised before the run directory exists."""
  try:
    yield
  except (ValueError, TypeError, OSError) as e:
    if os.environ.get("OPTAX_CLR_DEBUG"):
      raise
    raise usage(error_message(e)) from e


def run_main(group: click.Group, argv: Sequence[str] | None,
             interrupted: Callable[[], bool]) -> int:
  """Runs the command line; returns the exit status (module docstring)."""
  try:
    group.main(args=None if argv is None else list(argv), prog_name=PROG,
               standalone_mode=False)
    code, message = 0, None
  except click.exceptions.NoArgsIsHelpError as e:
    click.echo(e.ctx.get_help())
    return 0
  except click.exceptions.Exit as e:
    return e.exit_code
  except Exit as e:
    code, message = e.code, one_line(e)
  except (click.Abort, KeyboardInterrupt):
    if os.environ.get("OPTAX_CLR_DEBUG"):
      raise
    code, message = 130, "interrupted"
  except click.ClickException as e:
    if os.environ.get("OPTAX_CLR_DEBUG"):
      raise
    code = 2 if isinstance(e, click.UsageError) else e.exit_code or 1
    message = error_message(e)
  except Exception as e:  # pylint: disable=broad-except
    if os.environ.get("OPTAX_CLR_DEBUG"):
      raise
    code, message = 1, error_message(e)
  if interrupted() and code in (0, 1, 130):
    # Ctrl-C: every loop stopped at its next chunk and what was computed
    # is written; a failure it caused (e.g. no bounds) is not the news.
    code, message = 130, "interrupted (the results so far are written)"
  if message is not None:
    fail(message)
  return code


# ----------------------------------------------------------------------------
# Flags shared by commands.


def given(ctx: click.Context, names: Sequence[str]) -> list[str]:
  """The flags among ``names`` (parameter names) set on the command line."""
  return [next((o for o in p.opts if o.startswith("--")), p.opts[0])
          for p in ctx.command.params if p.name in names and
          ctx.get_parameter_source(p.name) not in (
              click.core.ParameterSource.DEFAULT, None)]


def reject(ctx: click.Context, names: Sequence[str], why: str) -> None:
  """A usage error when a flag that would be ignored was given."""
  found = given(ctx, names)
  if found:
    raise usage(f"{' '.join(found)}: {why}")


def options(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
  """Several click options as one decorator (listed in --help in order)."""
  def decorate(f):
    for d in reversed(decorators):
      f = d(f)
    return f
  return decorate


data_options = options(
    click.option("--data", default="digits", metavar="SPEC",
                 help="Dataset: digits (embedded, no download), mnist:DIR, "
                 "fashion-mnist:DIR, cifar10:DIR or npz:PATH (x, y)."),
    click.option("--model", type=choice(("cnn", "resnet")), default="cnn",
                 help="cnn: the small default CNN; resnet: a residual net "
                 "for CIFAR-sized inputs."),
    click.option("--width", type=POS_INT, default=None, show_default="16",
                 help="Base width (channels) of the model."),
    click.option("--batch-size", type=POS_INT, default=64,
                 help="Examples per training batch."),
    click.option("--val-fraction", type=FRACTION, default=0.2,
                 help="Fraction of the data held out for validation."))

SEED, OUT, OVERWRITE, NO_PROGRESS, JSON = (
    click.option("--seed", type=NONNEG_INT, default=0,
                 help="Seed of the split, the initial weights and the "
                 "shuffles."),
    click.option("--out", type=click.Path(file_okay=False), default=None,
                 show_default="runs/<command>-<timestamp>",
                 help="Output directory."),
    click.option("--overwrite", is_flag=True,
                 help="Reuse an --out directory that already holds a run "
                 "(its results, plots and records are removed first; a "
                 "checkpoint is kept)."),
    click.option("--no-progress", is_flag=True,
                 help="Never show progress bars (they are shown only on a "
                 "terminal anyway)."),
    click.option("--json", "as_json", is_flag=True,
                 help="Print one JSON object with the results on stdout "
                 "(human-readable lines go to stderr)."))
run_options = options(SEED, OUT, OVERWRITE, NO_PROGRESS, JSON)

optimizer_choice = click.option(
    "--optimizer", type=choice(("sgd", "adam", "adamw")), default="sgd",
    help="sgd (with momentum), adam or adamw.")
weight_decay_option = click.option(
    "--weight-decay", type=NONNEG, default=0.0,
    help="Weight decay (decoupled for adamw; added to the gradient for sgd "
    "and adam).")
optimizer_options = options(
    optimizer_choice,
    click.option("--momentum", type=MOMENTUM, default=0.9,
                 help="SGD momentum (0: plain SGD), or Adam's b1."),
    weight_decay_option)


# ----------------------------------------------------------------------------
# What the flags name: data, model, optimizer (the library builds them).


def progress_enabled(no_progress: bool) -> bool:
  """Bars only in an interactive session, and not with --no-progress."""
  from optax_clr import _progress
  return not no_progress and _progress.interactive()


def load_data(spec: str, val_fraction: float, seed: int, batch_size: int):
  """``(dataset, train, val)``; the batch must fit the training split."""
  from optax_clr import data
  dataset = data.load_dataset(spec)
  train, val = dataset.split(val_fraction, seed)
  if batch_size > len(train):
    raise click.BadParameter(f"must be <= the {len(train)} training "
                             f"examples, got {batch_size}",
                             param_hint="--batch-size")
  return dataset, train, val


def describe_data(dataset: Any, train: Any, val: Any, model: str) -> str:
  return (f"data: {dataset.name} {dataset.image_shape}, {len(train)} train "
          f"/ {len(val)} val; model: {model}")


def build_model(name: str, dataset: Any, width: int | None, seed: int):
  from optax_clr import models
  return models.make_model(name, num_classes=dataset.num_classes,
                           in_channels=dataset.image_shape[-1], width=width,
                           seed=seed)


@functools.lru_cache(maxsize=None)
def factory(name: str, momentum: float | None = None,
            weight_decay: float = 0.0, nesterov: bool = False):
  """``learning_rate -> GradientTransformation`` of ``--optimizer``: for
  the tests, fit, and (scheduled by :func:`optax_clr.cyclic_optimizer`)
  train. The same object for the same flags: compiled programs are
  reused."""
  from optax_clr import optimizers
  kw = {} if momentum is None else {
      "momentum" if name == "sgd" else "b1": momentum}
  if nesterov:
    kw["nesterov"] = True
  return functools.partial(getattr(optimizers, name),
                           weight_decay=weight_decay, **kw)


def fmt(x: Any, spec: str = ".4g") -> str:
  return "-" if x is None else (format(x, spec) if isinstance(x, float)
                                else str(x))
