"""What every command shares: option types, errors, the run directory,
progress, and building data, models and optimizers from flags.

Errors a user can cause print one line, ``optax-clr: error: <what>``,
naming CLI flags (never library parameter names), and exit 2 (usage) or 1
(anything else); nothing prints a traceback unless ``OPTAX_CLR_DEBUG=1``.
Exit codes: 0 completed, 1 failed (including a training run that diverged
or stalled, unless ``--allow-failure``), 2 usage, 130 interrupted (what was
computed is written first).

A run directory (``--out``, default ``runs/<command>-<timestamp>``) holds
``config.json``, ``environment.json``, the results and the plots, every file
written atomically. It is locked while a command uses it; a directory that
already holds a run is refused unless ``--overwrite``; an empty ``--out``,
the current directory, the home directory, a filesystem root and a
non-empty directory that is not a run are refused.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import math
import os
import pathlib
import platform
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import click

PROG = "optax-clr"
MODELS = ("cnn", "resnet")
OPTIMIZERS = ("sgd", "adam", "adamw")
LOCK_NAME = ".optax-clr.lock"

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
                   "run.")(f)
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
# Run directory.


def _unsafe(path: pathlib.Path) -> str | None:
  resolved = path.resolve()
  if resolved == pathlib.Path(resolved.anchor):
    return "a filesystem root"
  if resolved == pathlib.Path.home().resolve():
    return "the home directory"
  if resolved == pathlib.Path.cwd().resolve():
    return "the current directory"
  return None


def check_out(out: str | None, overwrite: bool) -> pathlib.Path | None:
  """The ``--out`` path after the checks (None: a fresh default)."""
  if out is None:
    return None
  if not out.strip():
    raise usage("--out must name a directory, got an empty string")
  path = pathlib.Path(out).expanduser()
  why = _unsafe(path)
  if why is not None:
    raise usage(f"--out {out} is {why}; give a directory of its own")
  if path.exists() and not path.is_dir():
    raise usage(f"--out {out} exists and is not a directory")
  pid = _lock_holder(path)
  if pid is not None:
    raise usage(f"--out {path} is in use by another optax-clr run (pid "
                f"{pid})")
  if path.is_dir() and any(p.name != LOCK_NAME for p in path.iterdir()):
    if not (path / "config.json").exists():
      raise usage(f"--out {out} is a non-empty directory that holds no "
                  "optax-clr run; give an empty or new directory")
    if not overwrite:
      raise usage(f"--out {out} already holds a run (config.json); use "
                  "another directory or --overwrite")
  return path


def fresh_dir(command: str) -> pathlib.Path:
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  base = pathlib.Path("runs") / f"{command}-{stamp}"
  path, n = base, 1
  while path.exists():
    n += 1
    path = base.with_name(f"{base.name}-{n}")
  return path


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _lock_holder(path: pathlib.Path) -> int | None:
  """The pid of a live process holding ``path``'s lock, else None."""
  try:
    pid = int((path / LOCK_NAME).read_text().strip() or 0)
  except (OSError, ValueError):
    return None
  if pid and pid != os.getpid() and _pid_alive(pid):
    return pid
  return None


@contextlib.contextmanager
def locked(path: pathlib.Path) -> Iterator[None]:
  """Holds ``path/.optax-clr.lock`` (exclusive create) while in use; a lock
  left by a process that no longer runs is taken over."""
  lock = path / LOCK_NAME
  for _ in range(2):
    try:
      fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      break
    except FileExistsError:
      pid = _lock_holder(path)
      if pid is not None:
        raise usage(f"--out {path} is in use by another optax-clr run "
                    f"(pid {pid})")
      lock.unlink(missing_ok=True)
  else:
    raise usage(f"--out {path}: cannot take the lock {lock}")
  try:
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    yield
  finally:
    lock.unlink(missing_ok=True)


def environment_info() -> dict[str, Any]:
  """Versions, backend, devices and CPU: what a result needs to be
  compared."""
  import importlib.metadata as md

  import jax

  from optax_clr import __version__
  from optax_clr.engine import _autotune

  def version(dist: str) -> str | None:
    try:
      return md.version(dist)
    except md.PackageNotFoundError:
      return None

  devices = jax.devices()
  return {
      "optax_clr": __version__, "python": platform.python_version(),
      "jax": jax.__version__, "jaxlib": version("jaxlib"),
      "optax": version("optax"), "flax": version("flax"),
      "numpy": version("numpy"), "backend": jax.default_backend(),
      "device_count": jax.device_count(),
      "local_device_count": jax.local_device_count(),
      "process_count": jax.process_count(),
      "device_kind": devices[0].device_kind if devices else None,
      "cpu_model": _autotune.cpu_model(), "platform": platform.platform(),
      "machine": platform.machine(), "cpu_count": os.cpu_count(),
      "xla_flags": os.environ.get("XLA_FLAGS"),
  }


def compilation_cache_dir() -> str | None:
  """Where compiled XLA programs are kept between runs (None: not kept).

  ``OPTAX_CLR_CACHE_DIR`` (empty: off) + ``/xla``, else
  ``$XDG_CACHE_HOME/optax-clr/xla`` (``~/.cache/optax-clr/xla``). A
  ``JAX_COMPILATION_CACHE_DIR`` set by the user wins.
  """
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  from optax_clr.engine import _autotune
  base = _autotune.cache_dir()
  return None if base is None else str(base / "xla")


def configure_jax() -> str | None:
  """Turns on the persistent compilation cache; returns its directory."""
  from optax_clr import enable_compilation_cache
  path = compilation_cache_dir()
  if path is None or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return path
  return enable_compilation_cache(path)


class Run:
  """One command's output directory: config, environment, files written,
  and where human-readable lines go (stderr under ``--json``)."""

  def __init__(self, ctx: click.Context, out: pathlib.Path | None,
               as_json: bool = False):
    self.cache_dir = configure_jax()
    self.command = ctx.info_name or "run"
    self.dir = out if out is not None else fresh_dir(self.command)
    self.dir.mkdir(parents=True, exist_ok=True)
    self.as_json = as_json
    self.start = time.perf_counter()
    self.files: list[str] = []
    self._lock = locked(self.dir)
    self._lock.__enter__()
    self.config = {
        "command": self.command,
        "options": {k: (str(v) if isinstance(v, pathlib.Path) else v)
                    for k, v in ctx.params.items()},
        "argv": sys.argv[1:],
        "started": datetime.datetime.now().astimezone().isoformat(
            timespec="seconds"),
        "compilation_cache": self.cache_dir,
    }
    self.write_json("config.json", self.config)
    self.write_json("environment.json", environment_info())

  def say(self, text: str = "") -> None:
    click.echo(text, err=self.as_json)

  def path(self, name: str) -> pathlib.Path:
    if name not in self.files:
      self.files.append(name)
    return self.dir / name

  def write_json(self, name: str, data: Any) -> None:
    from optax_clr import _serialize
    _serialize.dump_json(_serialize.jsonable(data, name), self.path(name), 2)

  def finish(self, summary: Mapping[str, Any] | None = None,
             **resolved: Any) -> float:
    """Adds the derived values and the wall time to config.json, prints
    the file list (and the JSON summary under ``--json``), releases the
    directory."""
    wall = time.perf_counter() - self.start
    self.config["resolved"] = resolved
    self.config["wall_time_s"] = round(wall, 3)
    self.write_json("config.json", self.config)
    self.say(f"wrote {self.dir}/: {', '.join(sorted(self.files))}")
    if self.as_json:
      from optax_clr import _serialize
      click.echo(json.dumps(_serialize.jsonable(
          {"command": self.command, "out": str(self.dir),
           "files": sorted(self.files), "wall_time_s": round(wall, 3),
           **(summary or {})}), allow_nan=False))
    self.close()
    return wall

  def close(self) -> None:
    if self._lock is not None:
      self._lock.__exit__(None, None, None)
      self._lock = None


@contextlib.contextmanager
def run_dir(ctx: click.Context, out: str | None, overwrite: bool,
            as_json: bool) -> Iterator[Run]:
  run = Run(ctx, check_out(out, overwrite), as_json)
  try:
    yield run
  finally:
    run.close()


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
