"""What every command shares: option types, errors, progress, and building
data, models and optimizers from flags (the run directory is in
:mod:`._run`).

Errors a user can cause print one line, ``optax-clr: error: <what>``,
naming CLI flags (never library parameter names), and exit 2 (usage) or 1
(anything else); nothing prints a traceback unless ``OPTAX_CLR_DEBUG=1``.
Exit codes: 0 completed, 1 failed (including a training run that diverged
or stalled, unless ``--allow-failure``), 2 usage, 130 interrupted (what was
computed is written first).
"""

from __future__ import annotations

import functools
import math
import os
import re
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

PROG = "optax-clr"
MODELS = ("cnn", "resnet")
OPTIMIZERS = ("sgd", "adam", "adamw")

CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=100,
               show_default=True)

# Library parameter -> the flag that sets it, for error messages.
FLAG_OF = {
    "num_steps": "--steps", "start_lr": "--start-lr", "end_lr": "--end-lr",
    "min_lr": "--min-lr", "max_lr": "--max-lr", "base_lr": "--base-lr",
    "base_value": "--base-lr", "max_value": "--max-lr",
    "step_size_up": "--step-size", "step_size_down": "--step-size-down",
    "batch_size": "--batch-size", "num_lrs": "--parallel",
    "num_seeds": "--seeds", "num_epochs": "--epochs", "smoothing":
    "--smoothing", "diverge_threshold": "--diverge-threshold",
    "eval_every": "--eval-every", "gamma": "--gamma", "pct_start":
    "--pct-start", "div_factor": "--div-factor", "final_div_factor":
    "--final-div-factor", "base_momentum": "--base-momentum",
    "max_momentum": "--max-momentum", "momentum": "--momentum",
    "weight_decay": "--weight-decay", "learning_rate": "--lr",
    "total_steps": "--epochs", "val_fraction": "--val-fraction",
    "width": "--width", "seed": "--seed", "lr": "--lr",
}


# ----------------------------------------------------------------------------
# Option types: one-line messages that name the option, the value and the
# allowed range, e.g. "--base-lr must be > 0, got -1".


class Number(click.ParamType):
  """A finite int or float in an interval (float32-representable)."""

  def __init__(self, kind: type = float, low: float | None = None,
               high: float | None = None, *, low_open: bool = False,
               high_open: bool = False):
    self.kind = kind
    self.low, self.high = low, high
    self.low_open, self.high_open = low_open, high_open
    self.name = "integer" if kind is int else "float"

  def get_metavar(self, param, ctx=None):  # pylint: disable=unused-argument
    return "INT" if self.kind is int else "FLOAT"

  def convert(self, value, param, ctx):
    if isinstance(value, bool):
      self.fail(f"must be a number, got {value!r}", param, ctx)
    text = value if isinstance(value, str) else repr(value)
    try:
      x = self.kind(value)
      if self.kind is int and isinstance(value, float) and value != int(value):
        raise ValueError
    except (TypeError, ValueError, OverflowError):
      article = "an" if self.kind is int else "a"
      self.fail(f"must be {article} {self.name}, got {text}", param, ctx)
    if self.kind is float and not math.isfinite(x):
      self.fail(f"must be a finite number, got {text}", param, ctx)
    if self.kind is float and abs(x) > 3.4028234e38:
      self.fail(f"must be a float32 (|x| <= 3.4e38), got {text}", param, ctx)
    if (self.kind is float and self.low == 0 and self.low_open and x > 0
        and struct.unpack("f", struct.pack("f", x))[0] == 0):
      # Rounds to 0 in float32, where the library uses it: not "> 0".
      self.fail(f"must be > 0 in float32 (>= 1.4e-45), got {text}", param,
                ctx)
    if self.kind is int and abs(x) > 2**31 - 1:
      self.fail(f"must be an int32 (|x| <= 2147483647), got {text}", param,
                ctx)
    if self.low is not None and (x <= self.low if self.low_open
                                 else x < self.low):
      op = ">" if self.low_open else ">="
      self.fail(f"must be {op} {self.low:g}, got {text}", param, ctx)
    if self.high is not None and (x >= self.high if self.high_open
                                  else x > self.high):
      op = "<" if self.high_open else "<="
      self.fail(f"must be {op} {self.high:g}, got {text}", param, ctx)
    return x


POSITIVE = Number(float, 0.0, low_open=True)
NONNEG = Number(float, 0.0)
FRACTION = Number(float, 0.0, 1.0, low_open=True, high_open=True)
MOMENTUM = Number(float, 0.0, 1.0, high_open=True)
GAMMA = Number(float, 0.0, 1.0, low_open=True)
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


def _param_name(e: click.UsageError) -> str | None:
  hint = getattr(e, "param_hint", None)
  if isinstance(hint, str):
    return hint
  if isinstance(hint, (list, tuple)) and hint:
    return " / ".join(hint)
  param = getattr(e, "param", None)
  if param is not None:
    opts = list(getattr(param, "opts", []) or [])
    longs = [o for o in opts if o.startswith("--")]
    return (longs or opts or [param.name])[0]
  return None


def in_flags(text: str) -> str:
  """Replaces library parameter names at word boundaries by their flags."""
  def repl(m):
    return FLAG_OF.get(m.group(1), m.group(1))
  pattern = r"(?<![\w\-\.'\[])(" + "|".join(
      sorted(map(re.escape, FLAG_OF), key=len, reverse=True)) + r")(?![\w'])"
  return re.sub(pattern, repl, text)


def error_message(e: BaseException) -> str:
  """The one-line message printed for an error."""
  if isinstance(e, click.BadParameter):
    name = _param_name(e)
    if name:
      msg = one_line(e.message)
      if msg.startswith(("must ", "is ")):
        return f"{name} {msg}"
      return f"invalid value for {name}: {msg}"
  if isinstance(e, click.ClickException):
    return one_line(e.format_message())
  if isinstance(e, OSError) and e.filename is not None and e.strerror:
    return one_line(f"{e.filename}: {e.strerror}")
  text = one_line(str(e))
  if isinstance(e, (ValueError, TypeError)):
    text = in_flags(text)
  if not isinstance(e, (ValueError, TypeError, OSError)) or not text:
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
  return text


def fail(message: str) -> None:
  click.echo(f"{PROG}: error: {message}", err=True)


def warn(message: str) -> None:
  click.echo(f"{PROG}: warning: {one_line(message)}", err=True)


class Exit(Exception):
  """A command's own non-zero exit after writing its results."""

  def __init__(self, code: int, message: str):
    super().__init__(message)
    self.code = code


def run_main(group: click.Group, argv: Sequence[str] | None) -> int:
  """Runs the command line; returns the exit status (see module docstring).
  """
  try:
    rv = group.main(args=None if argv is None else list(argv),
                    prog_name=PROG, standalone_mode=False)
    return rv if isinstance(rv, int) else 0
  except click.exceptions.NoArgsIsHelpError as e:
    click.echo(e.ctx.get_help())
    return 0
  except click.exceptions.Exit as e:
    return e.exit_code
  except Exit as e:
    fail(one_line(e))
    return e.code
  except (click.Abort, KeyboardInterrupt) as e:
    if os.environ.get("OPTAX_CLR_DEBUG"):
      raise
    interrupted = isinstance(e, KeyboardInterrupt) or isinstance(
        e.__cause__ or e.__context__, KeyboardInterrupt)
    fail("interrupted" if interrupted else "aborted")
    return 130 if interrupted else 1
  except click.UsageError as e:
    if os.environ.get("OPTAX_CLR_DEBUG"):
      raise
    fail(error_message(e))
    return 2
  except click.ClickException as e:
    if os.environ.get("OPTAX_CLR_DEBUG"):
      raise
    fail(error_message(e))
    return e.exit_code or 1
  except Exception as e:  # pylint: disable=broad-except
    # Expected errors (ValueError, TypeError, OSError) and bugs alike end in
    # one line; OPTAX_CLR_DEBUG=1 shows the traceback.
    if os.environ.get("OPTAX_CLR_DEBUG"):
      raise
    fail(error_message(e) + ("" if isinstance(
        e, (ValueError, TypeError, OSError)) else
        " (set OPTAX_CLR_DEBUG=1 for the traceback)"))
    return 1
  except RecursionError as e:  # not an Exception subclass in every Python
    fail(f"RecursionError: {one_line(e)}")
    return 1


# ----------------------------------------------------------------------------
# Options shared by commands, and checks in CLI terms.


def given(ctx: click.Context, *names: str) -> list[str]:
  """The options among ``names`` (parameter names) set on the command line."""
  out = []
  for param in ctx.command.params:
    if param.name in names and ctx.get_parameter_source(param.name) not in (
        click.core.ParameterSource.DEFAULT, None):
      longs = [o for o in param.opts if o.startswith("--")]
      out.append((longs or param.opts)[0])
  return out


def reject(ctx: click.Context, names: Sequence[str], why: str) -> None:
  """A usage error when an option that would be ignored was given."""
  found = given(ctx, *names)
  if found:
    raise usage(f"{' '.join(found)}: {why}")


def data_options(f):
  f = click.option("--val-fraction", type=FRACTION, default=0.2,
                   help="Fraction of the data held out for validation.")(f)
  f = click.option("--batch-size", type=POS_INT, default=64,
                   help="Examples per training batch.")(f)
  f = click.option("--width", type=POS_INT, default=None,
                   show_default="16",
                   help="Base width (channels) of the model.")(f)
  f = click.option("--model", type=choice(MODELS), default="cnn",
                   help="cnn: the small default CNN; resnet: a residual net "
                   "for CIFAR-sized inputs.")(f)
  f = click.option("--data", default="digits", metavar="SPEC",
                   help="Dataset: digits (embedded, no download), mnist:DIR, "
                   "fashion-mnist:DIR, cifar10:DIR or npz:PATH (x, y).")(f)
  return f


def run_options(f):
  f = click.option("--json", "as_json", is_flag=True,
                   help="Print one JSON object with the results on stdout "
                   "(human-readable lines go to stderr).")(f)
  f = click.option("--no-progress", is_flag=True,
                   help="Never show progress bars (they are shown only on a "
                   "terminal anyway).")(f)
  f = click.option("--overwrite", is_flag=True,
                   help="Reuse an --out directory that already holds a "
                   "run (its results, plots and records are removed "
                   "first; a checkpoint is kept).")(f)
  f = click.option("--out", type=click.Path(file_okay=False), default=None,
                   show_default="runs/<command>-<timestamp>",
                   help="Output directory.")(f)
  f = click.option("--seed", type=NONNEG_INT, default=0,
                   help="Seed of the split, the initial weights and the "
                   "shuffles.")(f)
  return f


def optimizer_options(f):
  f = click.option("--weight-decay", type=NONNEG, default=0.0,
                   help="Weight decay (decoupled for adamw; added to the "
                   "gradient for sgd and adam).")(f)
  f = click.option("--momentum", type=MOMENTUM, default=0.9,
                   help="SGD momentum (0: plain SGD), or Adam's b1.")(f)
  f = click.option("--optimizer", type=choice(OPTIMIZERS), default="sgd",
                   help="sgd (momentum), adam or adamw (--momentum is "
                   "b1).")(f)
  return f


def check_batch(train: Any, batch_size: int) -> None:
  if batch_size > len(train):
    raise click.BadParameter(
        f"must be <= the {len(train)} training examples, got {batch_size}",
        param_hint="--batch-size")


# ----------------------------------------------------------------------------
# Progress.


def progress_enabled(no_progress: bool) -> bool:
  """Bars only on an interactive terminal, and not with --no-progress."""
  if no_progress:
    return False
  try:
    return sys.stderr.isatty()
  except (AttributeError, ValueError):
    return False


# ----------------------------------------------------------------------------
# Data, models and optimizers from flags.


def load_data(spec: str, val_fraction: float, seed: int):
  """Loads a dataset spec and splits it into (dataset, train, val)."""
  from optax_clr import data as data_lib
  dataset = data_lib.load_dataset(spec)
  return dataset, *dataset.split(val_fraction, seed)


def build_model(name: str, dataset: Any, width: int | None, seed: int):
  from optax_clr import models
  return models.make_model(name, num_classes=dataset.num_classes,
                           in_channels=dataset.image_shape[-1], width=width,
                           seed=seed)


def momentum_name(optimizer: str) -> str:
  return "momentum" if optimizer == "sgd" else "b1"


@functools.lru_cache(maxsize=None)
def optimizer_factory(name: str, momentum: float,
                      weight_decay: float = 0.0) -> Callable[..., Any]:
  """``(lr, **driven) -> GradientTransformation`` for the range tests, the
  sweep and the confirmation (the momentum may be driven too). The same
  object for the same flags, so compiled programs are reused."""
  from optax_clr import optimizers
  fn = {"sgd": optimizers.sgd, "adam": optimizers.adam,
        "adamw": optimizers.adamw}[name]
  return functools.partial(fn, **{momentum_name(name): momentum},
                           weight_decay=weight_decay)


def build_optimizer(name: str, learning_rate: Any, momentum: Any,
                    weight_decay: float = 0.0, nesterov: bool = False):
  """SGD (momentum), Adam or AdamW (b1 as the momentum), with the
  hyperparameters in the state (so they are logged)."""
  import optax

  from optax_clr import optimizers
  if name == "sgd":
    tx = optimizers.cyclic_sgd(learning_rate, momentum or None,
                               nesterov=nesterov)
  elif name == "adam":
    tx = optimizers.cyclic_adam(learning_rate, b1=momentum)
  else:
    return optimizers.cyclic_adamw(learning_rate, b1=momentum,
                                   weight_decay=weight_decay)
  if weight_decay:
    return optax.chain(optax.add_decayed_weights(weight_decay), tx)
  return tx


def fmt(x: Any, spec: str = ".3g") -> str:
  if x is None:
    return "-"
  try:
    return format(float(x), spec)
  except (TypeError, ValueError):
    return str(x)
