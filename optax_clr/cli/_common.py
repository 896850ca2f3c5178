"""What every command shares: option types and flags, errors and exit
codes, and what the flags name (data, model, optimizer: built by the
library). Only click and the standard library load here, so ``--help`` and
usage errors answer before jax does. An error is one line naming flags,
never library parameters (``OPTAX_CLR_DEBUG=1``: the traceback). Exit
codes: 0 done; 2 a bad flag, file or value, found before anything is
written; 1 a failed run (diverged or stalled, a test that gave no answer, a
checkpoint of another run, a bug); 130 interrupted, what was computed
written first.
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
usage = click.UsageError
# Library parameter -> the flag that sets it, for error messages.
FLAG_OF = dict({n: "--" + n.replace("_", "-") for n in (
    "start_lr end_lr min_lr max_lr base_lr lr batch_size smoothing gamma "
    "diverge_threshold eval_every pct_start div_factor final_div_factor "
    "base_momentum max_momentum momentum weight_decay val_fraction width "
    "seed cycles weight_decays momenta step_size_down").split()},
    num_steps="--steps", base_value="--base-lr", max_value="--max-lr",
    learning_rate="--lr", step_size_up="--step-size", num_lrs="--parallel",
    num_seeds="--seeds", num_epochs="--epochs", total_steps="--epochs")
_LIBRARY_NAME = re.compile(r"(?<![\w\-\.'\[])(" + "|".join(
    sorted(FLAG_OF, key=len, reverse=True)) + r")(?![\w'])")


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
    try:
      f32 = struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
      f32 = math.inf
    low, high = self.low, self.high
    for bad, why in (
        (self.kind is float and not math.isfinite(x), "a finite number"),
        (self.kind is int and abs(x) > 2**31 - 1,
         "an int32 (|x| <= 2147483647)"),
        (self.kind is float and math.isinf(f32), "a float32 (|x| <= 3.4e38)"),
        (low == 0 and self.low_open and x > 0 and f32 == 0,
         "> 0 in float32 (>= 1.4e-45)"),
        (low is not None and (x <= low if self.low_open else x < low),
         f"{'>' if self.low_open else '>='} {low or 0:g}"),
        (high is not None and (x >= high if self.high_open else x > high),
         f"{'<' if self.high_open else '<='} {high or 0:g}")):
      if bad:
        self.fail(f"must be {why}, got {text}", param, ctx)
    return x


POSITIVE = Number(float, 0.0, low_open=True)
NONNEG = Number(float, 0.0)
FRACTION = Number(float, 0.0, 1.0, low_open=True, high_open=True)
MOMENTUM = Number(float, 0.0, 1.0, high_open=True)
POS_INT = Number(int, 1)
NONNEG_INT = Number(int, 0)


def choice(values: Sequence[str]) -> click.Choice:
  return click.Choice(list(values), case_sensitive=False)


# ----------------------------------------------------------------------------
# Errors and exit codes.


def one_line(text: Any) -> str:
  return " ".join(str(text).split())


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
  code, message, crashed = 0, None, False
  try:
    group.main(args=None if argv is None else list(argv), prog_name=PROG,
               standalone_mode=False)
  except click.exceptions.NoArgsIsHelpError as e:
    click.echo(e.ctx.get_help())
  except click.exceptions.Exit as e:
    return e.exit_code
  except Exit as e:
    code, message = e.code, one_line(e)
  except (Exception, KeyboardInterrupt) as e:  # pylint: disable=broad-except
    if os.environ.get("OPTAX_CLR_DEBUG"):
      raise
    stopped = isinstance(e, (KeyboardInterrupt, click.Abort))
    code = 130 if stopped else 2 if isinstance(e, usage) else 1
    message = "interrupted" if stopped else error_message(e)
    crashed = code == 1
  if interrupted() and crashed:
    # An error the library did not report itself (not an Exit): the results
    # may not have been written, so say what happened instead.
    message = f"interrupted, then failed: {message}"
  elif interrupted() and code in (0, 1, 130):
    # Ctrl-C: every loop stopped at its next chunk and what was computed
    # is written; a failure it reported (e.g. no bounds) is not the news.
    code, message = 130, "interrupted (the results so far are written)"
  if message is not None:
    fail(message)
  return code


# ----------------------------------------------------------------------------
# Flags shared by commands.


def reject(ctx: click.Context, names: Sequence[str], why: str) -> None:
  """A usage error when a flag that would be ignored was given."""
  found = [p.opts[0] for p in ctx.command.params if p.name in names and
           ctx.get_parameter_source(p.name) not in (
               click.core.ParameterSource.DEFAULT, None)]
  if found:
    raise usage(f"{' '.join(found)}: {why}")


def options(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
  """Several click options as one decorator (listed in --help in order)."""
  return lambda f: functools.reduce(lambda g, d: d(g), decorators[::-1], f)


def opt(flags: str, type_: Any = None, default: Any = None, help_: str = "",
        **kwargs: Any) -> Callable[[Any], Any]:
  """``click.option(*flags.split(), type=, default=, help=)``."""
  if default is not None:  # else click's: None, or False for a flag
    kwargs["default"] = default
  return click.option(*flags.split(), type=type_, help=help_, **kwargs)


data_options = options(
    opt("--data", None, "digits", "Dataset: digits (embedded), mnist:DIR, "
        "fashion-mnist:DIR, cifar10:DIR or npz:PATH (x, y).",
        metavar="SPEC"),
    opt("--model", choice(("cnn", "resnet")), "cnn", "cnn: the small CNN; "
        "resnet: a residual net for CIFAR-sized inputs."),
    opt("--width", POS_INT, None, "Base width (channels) of the model.",
        show_default="16"),
    opt("--batch-size", POS_INT, 64, "Examples per training batch."),
    opt("--val-fraction", FRACTION, 0.2, "Fraction held out for "
        "validation."))
OUT = options(
    opt("--out", click.Path(file_okay=False), None, "Output directory.",
        show_default="runs/<command>-<timestamp>"),
    opt("--overwrite", None, None, "Reuse an --out that holds a run (its "
        "results, plots and records are removed first).", is_flag=True))
JSON = opt("--json as_json", None, None, "Print one JSON object of the "
           "results on stdout (other lines go to stderr).", is_flag=True)
run_options = options(
    opt("--seed", NONNEG_INT, 0, "Seed of the split, the initial weights and "
        "the shuffles."), OUT,
    opt("--no-progress", None, None, "No progress bars (shown only on a "
        "terminal anyway).", is_flag=True), JSON)
OPTIMIZER = opt("--optimizer", choice(("sgd", "adam", "adamw")), "sgd",
                "sgd (with momentum), adam or adamw.")
WEIGHT_DECAY = opt("--weight-decay", NONNEG, 0.0, "Weight decay (decoupled "
                   "for adamw, added to the gradient for sgd and adam).")
optimizer_options = options(
    OPTIMIZER, opt("--momentum", MOMENTUM, 0.9, "SGD momentum (0: plain "
                   "SGD), or Adam's b1."), WEIGHT_DECAY)


# ----------------------------------------------------------------------------
# What the flags name: data, model, optimizer (the library builds them).


def progress_enabled(no_progress: bool) -> bool:
  """Bars only in an interactive session, and not with --no-progress."""
  from optax_clr import _progress
  return not no_progress and _progress.interactive()


def load_data(f: Any):
  """``(dataset, train, val)`` of ``--data``, ``--val-fraction`` and
  ``--seed``; a usage error (exit 2) when they, or ``--batch-size``, do not
  fit."""
  from optax_clr import data
  with usage_errors():
    dataset = data.load_dataset(f.data)
    train, val = dataset.split(f.val_fraction, f.seed)
  if f.batch_size > len(train):
    raise click.BadParameter(f"must be <= the {len(train)} training "
                             f"examples, got {f.batch_size}",
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
  """``learning_rate -> GradientTransformation`` of ``--optimizer`` (for
  the tests and fit; train schedules it with
  :func:`optax_clr.cyclic_optimizer`). The same object for the same flags:
  compiled programs are reused."""
  from optax_clr import optimizers
  kw = {} if momentum is None else {
      "momentum" if name == "sgd" else "b1": momentum}
  return functools.partial(getattr(optimizers, name),
                           weight_decay=weight_decay, **kw,
                           **({"nesterov": True} if nesterov else {}))


def fmt(x: Any, spec: str = ".4g") -> str:
  return "-" if x is None else (format(x, spec) if isinstance(x, float)
                                else str(x))
