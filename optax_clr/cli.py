"""The ``optax-clr`` command line.

Commands (``optax-clr COMMAND --help`` for every option):

* ``range-test``    the classic LR range test, or ``--parallel K`` fixed LRs
                    trained side by side; prints the suggestions.
* ``train``         CLR (triangular, triangular2, exp_range; any waveform),
                    one-cycle or a fixed LR, with momentum cycling; the bounds
                    given or read from a range-test results file.
* ``plot-schedule`` draws one or several LR (and momentum) schedules.
* ``demo``          range test -> suggested bounds -> parallel sweep for the
                    best fixed LR -> triangular2 CLR with cyclic momentum
                    against that fixed LR -> comparison table.

Every command writes into ``--out`` (default ``runs/<command>-<timestamp>``):
``config.json`` (the options and the values derived from them),
``environment.json`` (versions, backend, devices), results as JSON and CSV,
and PNG plots.

Errors a user can cause (a bad option, a missing or malformed file, an invalid
hyperparameter rejected by the library) print one line,
``optax-clr: error: <what>``, and exit with status 2 (usage) or 1 (anything
else), never with a traceback. ``OPTAX_CLR_DEBUG=1`` re-raises them.

Heavy modules (jax, flax, matplotlib) are imported inside the commands, so
``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

PROG = "optax-clr"

POLICIES = ("triangular", "triangular2", "exp_range", "one-cycle", "fixed")
CYCLIC_POLICIES = ("triangular", "triangular2", "exp_range")
WAVEFORMS = ("triangular", "cosine", "welch")
MODELS = ("cnn", "resnet")
OPTIMIZERS = ("sgd", "adam")

# Smith (2017): the cycle's half (the step size) is best 2-10 epochs of
# iterations; 4 epochs with 16 epochs of training gives two full cycles.
DEFAULT_STEP_SIZE_EPOCHS = 4.0
# Default momentum bounds: PyTorch's CyclicLR (0.8, 0.9) and OneCycleLR
# (0.85, 0.95).
CYCLIC_MOMENTUM = (0.8, 0.9)
ONE_CYCLE_MOMENTUM = (0.85, 0.95)
# Without --gamma, exp_range decays the amplitude to this fraction by the
# last step (gamma = EXP_RANGE_FINAL ** (1 / total_steps)).
EXP_RANGE_FINAL = 0.1

_CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=100,
                show_default=True)


# ----------------------------------------------------------------------------
# Option types: one-line messages that name the option, the value and the
# allowed range, e.g. "--base-lr must be > 0, got -1".


class _Number(click.ParamType):
  """A finite int or float in an interval."""

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
    except (TypeError, ValueError):
      article = "an" if self.kind is int else "a"
      self.fail(f"must be {article} {self.name}, got {text}", param, ctx)
    if not math.isfinite(x):
      self.fail(f"must be a finite number, got {text}", param, ctx)
    if self.low is not None and (x <= self.low if self.low_open
                                 else x < self.low):
      op = ">" if self.low_open else ">="
      self.fail(f"must be {op} {self.low:g}, got {text}", param, ctx)
    if self.high is not None and (x >= self.high if self.high_open
                                  else x > self.high):
      op = "<" if self.high_open else "<="
      self.fail(f"must be {op} {self.high:g}, got {text}", param, ctx)
    return x


POSITIVE = _Number(float, 0.0, low_open=True)
NONNEGATIVE = _Number(float, 0.0)
FRACTION = _Number(float, 0.0, 1.0, low_open=True, high_open=True)
MOMENTUM = _Number(float, 0.0, 1.0, high_open=True)
GAMMA = _Number(float, 0.0, 1.0, low_open=True)
POS_INT = _Number(int, 1)
NONNEG_INT = _Number(int, 0)


def _choice(values: Sequence[str]) -> click.Choice:
  return click.Choice(list(values), case_sensitive=False)


# ----------------------------------------------------------------------------
# Errors.


def _one_line(text: str) -> str:
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


def error_message(e: BaseException) -> str:
  """The one-line message printed for an expected error."""
  if isinstance(e, click.BadParameter):
    name = _param_name(e)
    if name:
      msg = _one_line(e.message)
      if msg.startswith(("must ", "is ")):
        return f"{name} {msg}"
      return f"invalid value for {name}: {msg}"
  if isinstance(e, click.ClickException):
    return _one_line(e.format_message())
  if isinstance(e, OSError) and e.filename is not None and e.strerror:
    return _one_line(f"{e.filename}: {e.strerror}")
  text = _one_line(str(e))
  if isinstance(e, (KeyError, IndexError)) or not text:
    text = f"{type(e).__name__}: {text}"
  return text


def _fail(message: str) -> None:
  click.echo(f"{PROG}: error: {message}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status.

  0 on success, 2 for usage errors (unknown option, invalid value), 1 for
  other expected errors (missing or malformed file, a hyperparameter the
  library rejects), 130 when interrupted.
  """
  try:
    rv = cli.main(args=None if argv is None else list(argv), prog_name=PROG,
                  standalone_mode=False)
    return rv if isinstance(rv, int) else 0
  except click.exceptions.NoArgsIsHelpError as e:
    click.echo(e.ctx.get_help())
    return 0
  except (click.UsageError, click.ClickException, click.Abort, ValueError,
          TypeError, OSError, KeyboardInterrupt) as e:
    if os.environ.get("OPTAX_CLR_DEBUG"):
      raise
    if isinstance(e, KeyboardInterrupt):
      _fail("interrupted")
      return 130
    if isinstance(e, click.Abort):
      _fail("aborted")
      return 1
    _fail(error_message(e))
    if isinstance(e, click.UsageError):
      return 2
    if isinstance(e, click.ClickException):
      return e.exit_code or 1
    return 1


def _usage(message: str) -> click.UsageError:
  return click.UsageError(message)


# ----------------------------------------------------------------------------
# Output directory, config and environment.


def make_out_dir(out: str | None, command: str) -> pathlib.Path:
  """``out`` (created if needed), or a fresh ``runs/<command>-<timestamp>``."""
  if out is not None:
    path = pathlib.Path(out).expanduser()
    if path.exists() and not path.is_dir():
      raise _usage(f"--out {out} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  base = pathlib.Path("runs") / f"{command}-{stamp}"
  path, n = base, 1
  while path.exists():
    n += 1
    path = base.with_name(f"{base.name}-{n}")
  path.mkdir(parents=True)
  return path


def environment_info() -> dict[str, Any]:
  """Versions, backend and devices: what a result needs to be compared."""
  import importlib.metadata as md

  import jax

  def version(dist: str) -> str | None:
    try:
      return md.version(dist)
    except md.PackageNotFoundError:
      return None

  devices = jax.devices()
  from optax_clr import __version__
  return {
      "optax_clr": __version__,
      "python": platform.python_version(),
      "jax": jax.__version__,
      "jaxlib": version("jaxlib"),
      "optax": version("optax"),
      "flax": version("flax"),
      "numpy": version("numpy"),
      "backend": jax.default_backend(),
      "device_count": jax.device_count(),
      "local_device_count": jax.local_device_count(),
      "process_count": jax.process_count(),
      "device_kind": devices[0].device_kind if devices else None,
      "platform": platform.platform(),
      "machine": platform.machine(),
      "cpu_count": os.cpu_count(),
      "xla_flags": os.environ.get("XLA_FLAGS"),
  }


def _jsonable(value: Any) -> Any:
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if value is None or isinstance(value, (str, int, bool)):
    return value
  if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
    return _jsonable(value.item())
  if hasattr(value, "tolist"):
    return _jsonable(value.tolist())
  return str(value)


def write_json(path: pathlib.Path, data: Any) -> None:
  path.write_text(json.dumps(_jsonable(data), indent=2, allow_nan=False)
                  + "\n", encoding="utf-8")


def compilation_cache_dir() -> str | None:
  """Where compiled XLA programs are kept between runs (None: not kept).

  ``OPTAX_CLR_CACHE_DIR`` (empty: off), else ``$XDG_CACHE_HOME/optax-clr/xla``
  (``~/.cache/optax-clr/xla``). A JAX_COMPILATION_CACHE_DIR set by the user
  wins. The second run of a command then skips most compilation, which on a
  CPU is most of a short run.
  """
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  env = os.environ.get("OPTAX_CLR_CACHE_DIR")
  if env is not None:
    return env or None
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(base, "optax-clr", "xla")


def configure_jax() -> str | None:
  """Turns on the persistent compilation cache; returns its directory."""
  import jax
  path = compilation_cache_dir()
  if path is None or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return path
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return None  # a read-only home: run without the cache
  jax.config.update("jax_compilation_cache_dir", path)
  # Cache every program: the many small ones (initialisers, evaluations)
  # add up to seconds of compilation on a CPU.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  return path


class Run:
  """One command's output directory: config, environment, files written."""

  def __init__(self, ctx: click.Context, out: str | None):
    self.cache_dir = configure_jax()
    self.command = ctx.info_name or "run"
    self.dir = make_out_dir(out, self.command)
    self.start = time.perf_counter()
    self.files: list[str] = []
    self.config = {
        "command": self.command,
        "options": dict(ctx.params),
        "started": datetime.datetime.now().astimezone().isoformat(
            timespec="seconds"),
        "compilation_cache": self.cache_dir,
    }
    self.write_json("config.json", self.config)
    self.write_json("environment.json", environment_info())

  def path(self, name: str) -> pathlib.Path:
    if name not in self.files:
      self.files.append(name)
    return self.dir / name

  def write_json(self, name: str, data: Any) -> None:
    write_json(self.path(name), data)

  def finish(self, **resolved: Any) -> float:
    """Adds the derived values and the wall time to config.json."""
    wall = time.perf_counter() - self.start
    self.config["resolved"] = resolved
    self.config["wall_time_s"] = round(wall, 3)
    self.write_json("config.json", self.config)
    click.echo(f"wrote {self.dir}/: {', '.join(sorted(self.files))}")
    return wall


# ----------------------------------------------------------------------------
# Progress bars.


def progress_enabled(no_progress: bool) -> bool:
  """Bars only on an interactive terminal, and not with --no-progress."""
  if no_progress:
    return False
  try:
    return sys.stderr.isatty()
  except (AttributeError, ValueError):
    return False


def _scalar(value: Any) -> float | None:
  try:
    x = float(value)
  except (TypeError, ValueError):
    return None
  return x


class ProgressBar:
  """A tqdm bar driven by the library's ``progress(step, total, metrics)``.

  The library calls it once per compiled chunk of steps (or per epoch), so
  reading the metrics here syncs the device once per chunk, never per step.
  When the bar is disabled the metrics are not read at all.
  """

  def __init__(self, desc: str, enabled: bool, unit: str = "step",
               total: int | None = None):
    from tqdm.auto import tqdm
    self.enabled = enabled
    self.bar = tqdm(total=total, desc=desc, unit=unit, disable=not enabled,
                    leave=False, dynamic_ncols=True, file=sys.stderr)

  def __call__(self, step: int, total: int | None = None,
               metrics: Mapping[str, Any] | None = None) -> None:
    if not self.enabled:
      return
    if total is not None and total != self.bar.total:
      self.bar.total = int(total)
    self.bar.update(max(0, int(step) - self.bar.n))
    if metrics:
      shown = {}
      for k, v in metrics.items():
        x = _scalar(v)
        if x is not None:
          shown[k] = f"{x:.3g}"
      self.bar.set_postfix(shown, refresh=False)
    self.bar.refresh()

  def close(self) -> None:
    self.bar.close()

  def __enter__(self) -> ProgressBar:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


# ----------------------------------------------------------------------------
# Shared building blocks.


def load_data(spec: str, val_fraction: float, seed: int):
  """Loads a dataset spec and splits it into (train, val)."""
  from optax_clr import data as data_lib
  dataset = data_lib.load_dataset(spec)
  return dataset, *dataset.split(val_fraction, seed)


def build_model(name: str, dataset, width: int | None, seed: int):
  from optax_clr import models
  return models.make_model(name, num_classes=dataset.num_classes,
                           in_channels=dataset.image_shape[-1], width=width,
                           seed=seed)


def optimizer_factory(name: str, momentum: float) -> Callable[[Any], Any]:
  """``lr -> GradientTransformation`` for the range tests."""
  import optax
  if name == "sgd":
    return lambda lr: optax.sgd(lr, momentum=momentum or None)
  return lambda lr: optax.adam(lr, b1=momentum)


def auto_gamma(total_steps: int, final: float = EXP_RANGE_FINAL) -> float:
  """``gamma`` with ``gamma ** total_steps == final``."""
  return float(final ** (1.0 / max(1, total_steps)))


def build_schedules(
    policy: str, *, base_lr: float | None, max_lr: float | None,
    lr: float | None = None, step_size_up: int, step_size_down: int | None,
    total_steps: int, waveform: str = "triangular", gamma: float | None = None,
    decay_bounds: bool = False, cycle_momentum: bool = True,
    momentum: float = 0.9, base_momentum: float | None = None,
    max_momentum: float | None = None, pct_start: float = 0.3,
    anneal_strategy: str = "cos", div_factor: float | None = None,
    final_div_factor: float = 1e4, three_phase: bool = False,
) -> tuple[Any, Any, dict[str, Any]]:
  """LR and momentum (schedules or constants) for a policy.

  Returns:
    ``(learning_rate, momentum, resolved)``: each a schedule or a float, and
    the resolved hyperparameters (for config.json).
  """
  from optax_clr import momentum as mom_lib
  from optax_clr import schedules as sched
  resolved: dict[str, Any] = {"policy": policy}
  if policy == "fixed":
    resolved.update(lr=lr, momentum=momentum)
    return lr, momentum, resolved
  one_cycle = policy == "one-cycle"
  lo, hi = ONE_CYCLE_MOMENTUM if one_cycle else CYCLIC_MOMENTUM
  base_m = lo if base_momentum is None else base_momentum
  max_m = hi if max_momentum is None else max_momentum
  if one_cycle:
    if div_factor is None:
      div_factor = max_lr / base_lr if base_lr else 25.0
    lr_fn = sched.one_cycle_schedule(
        max_lr, total_steps, pct_start=pct_start,
        anneal_strategy=anneal_strategy, div_factor=div_factor,
        final_div_factor=final_div_factor, three_phase=three_phase)
    mom_fn = mom_lib.one_cycle_momentum_schedule(
        total_steps, pct_start=pct_start, anneal_strategy=anneal_strategy,
        base_momentum=base_m, max_momentum=max_m, three_phase=three_phase)
    resolved.update(max_lr=max_lr, initial_lr=max_lr / div_factor,
                    final_lr=max_lr / div_factor / final_div_factor,
                    total_steps=total_steps, pct_start=pct_start,
                    anneal_strategy=anneal_strategy, div_factor=div_factor,
                    final_div_factor=final_div_factor,
                    three_phase=three_phase)
  else:
    if policy == "exp_range" and gamma is None:
      gamma = auto_gamma(total_steps)
    g = 1.0 if gamma is None else gamma
    lr_fn = sched.cyclic_schedule(
        base_lr, max_lr, step_size_up, step_size_down, mode=policy, gamma=g,
        waveform=waveform, decay_bounds=decay_bounds)
    mom_fn = mom_lib.cyclic_momentum_schedule(
        base_m, max_m, step_size_up, step_size_down, mode=policy, gamma=g,
        waveform=waveform)
    resolved.update(base_lr=base_lr, max_lr=max_lr, step_size_up=step_size_up,
                    step_size_down=step_size_down or step_size_up,
                    waveform=waveform)
    if policy == "exp_range":
      resolved.update(gamma=g, decay_bounds=decay_bounds)
  if cycle_momentum:
    resolved.update(base_momentum=base_m, max_momentum=max_m)
    return lr_fn, mom_fn, resolved
  resolved.update(momentum=momentum)
  return lr_fn, momentum, resolved


def as_schedule(value: Any) -> Callable[[Any], Any]:
  """A jitted schedule (a constant becomes a flat one), for plotting: one
  compiled evaluation instead of one per operation."""
  import jax
  import jax.numpy as jnp
  if callable(value):
    return jax.jit(value)
  return jax.jit(lambda t: jnp.full(jnp.shape(t), value, jnp.float32))


def build_optimizer(name: str, learning_rate: Any, momentum: Any,
                    nesterov: bool = False):
  """SGD (momentum) or Adam (b1 as the momentum), hyperparameters in state."""
  from optax_clr import optimizers
  if name == "sgd":
    return optimizers.cyclic_sgd(learning_rate, momentum or None,
                                 nesterov=nesterov)
  return optimizers.cyclic_adam(learning_rate, b1=momentum)


def _fmt(x: Any, spec: str = ".3g") -> str:
  if x is None:
    return "-"
  try:
    return format(float(x), spec)
  except (TypeError, ValueError):
    return str(x)


def suggestions_table(s) -> str:
  """The suggestions as a small aligned table (one line per method)."""
  rows = [("method", "lr", "derivative", "note")]
  for label, sug in (("steepest", s.steepest), ("minimum/10", s.minimum),
                     ("valley", s.valley), ("accuracy_base", s.accuracy_base),
                     ("accuracy_max", s.accuracy_max)):
    if sug is None:
      rows.append((label, "-", "-", "no accuracy evaluated (--eval-every)"))
    else:
      rows.append((label, _fmt(sug.lr, ".3e") if sug.lr else "-",
                   sug.derivative, _one_line(sug.reason or "")))
  widths = [max(len(r[i]) for r in rows) for i in range(3)]
  lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths))
           + "  " + r[3] for r in rows]
  if s.base_lr is not None:
    lines.append(f"CLR bounds: base_lr={s.base_lr:.3e}  max_lr="
                 f"{s.max_lr:.3e}")
  else:
    lines.append("CLR bounds: none")
  lines.append(f"  rule: {_one_line(s.rule)}")
  return "\n".join(lines)


def load_results(path: str):
  """A RangeTestResult or ParallelSweepResult from a results.json file."""
  from optax_clr import results as results_lib
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(
        f"{path}: not a range-test results file (invalid JSON: {e})") from e
  if isinstance(data, Mapping) and isinstance(data.get("results"), Mapping):
    data = data["results"]
  if not isinstance(data, Mapping) or data.get("type") not in (
      "RangeTestResult", "ParallelSweepResult"):
    kind = data.get("type") if isinstance(data, Mapping) else None
    raise ValueError(
        f"{path}: not a range-test results file (expected a JSON object "
        "with \"type\": \"RangeTestResult\" or \"ParallelSweepResult\", as "
        f"written by '{PROG} range-test'; got type {kind!r})")
  cls = getattr(results_lib, data["type"])
  try:
    return cls.from_dict(data)
  except KeyError as e:
    raise ValueError(f"{path}: malformed {data['type']}: missing field "
                     f"{e.args[0]!r}") from e
  except (TypeError, ValueError) as e:
    raise ValueError(f"{path}: malformed {data['type']}: {e}") from e


def best_fixed_lr(sweep) -> tuple[float, int, str]:
  """The sweep's best LR: highest final validation accuracy (ties: lowest
  mean loss) among the runs that did not diverge; lowest mean loss without
  accuracies.

  Returns:
    ``(lr, index, rule)``.
  """
  import numpy as np
  ok = ~np.asarray(sweep.diverged) & np.isfinite(sweep.mean_loss)
  if not ok.any():
    raise ValueError("every LR of the sweep diverged; lower --max-lr")
  mean = np.where(ok, sweep.mean_loss, np.inf)
  acc = sweep.eval_metrics.get("accuracy")
  if acc is not None and np.isfinite(np.where(ok, acc, np.nan)).any():
    a = np.where(ok & np.isfinite(acc), acc, -np.inf)
    best = np.flatnonzero(a == a.max())
    i = int(best[np.argmin(mean[best])])
    return float(sweep.lrs[i]), i, (
        f"highest final validation accuracy ({acc[i]:.4f}) of "
        f"{int(ok.sum())} non-diverged runs")
  i = int(np.argmin(mean))
  return float(sweep.lrs[i]), i, (
      f"lowest mean loss of the last steps ({mean[i]:.4g}) of "
      f"{int(ok.sum())} non-diverged runs")


# ----------------------------------------------------------------------------
# Common options.


def _data_options(f):
  f = click.option("--val-fraction", type=FRACTION, default=0.2,
                   help="Fraction of the data held out for validation.")(f)
  f = click.option("--batch-size", type=POS_INT, default=64,
                   help="Examples per training batch.")(f)
  f = click.option("--width", type=POS_INT, default=None,
                   show_default="16",
                   help="Base width (channels) of the model.")(f)
  f = click.option("--model", type=_choice(MODELS), default="cnn",
                   help="cnn: the small default CNN; resnet: a residual net "
                   "for CIFAR-sized inputs.")(f)
  f = click.option("--data", default="digits", metavar="SPEC",
                   help="Dataset: digits (embedded, no download), mnist:DIR, "
                   "fashion-mnist:DIR, cifar10:DIR or npz:PATH (x, y).")(f)
  return f


def _run_options(f):
  f = click.option("--no-progress", is_flag=True,
                   help="Never show progress bars (they are shown only on a "
                   "terminal anyway).")(f)
  f = click.option("--out", type=click.Path(file_okay=False), default=None,
                   show_default="runs/<command>-<timestamp>",
                   help="Output directory.")(f)
  f = click.option("--seed", type=NONNEG_INT, default=0,
                   help="Seed of the split, the initial weights and the "
                   "shuffles.")(f)
  return f


def _given(ctx: click.Context, *names: str) -> list[str]:
  """The options among ``names`` (parameter names) set on the command line."""
  out = []
  for param in ctx.command.params:
    if param.name in names and ctx.get_parameter_source(param.name) not in (
        click.core.ParameterSource.DEFAULT, None):
      longs = [o for o in param.opts if o.startswith("--")]
      out.append((longs or param.opts)[0])
  return out


def _reject(ctx: click.Context, names: Sequence[str], why: str) -> None:
  """A usage error when an option that would be ignored was given."""
  given = _given(ctx, *names)
  if given:
    raise _usage(f"{' '.join(given)}: {why}")


def _check_batch(train, batch_size: int) -> None:
  if batch_size > len(train):
    raise click.BadParameter(
        f"must be <= the {len(train)} training examples, got {batch_size}",
        param_hint="--batch-size")


@click.group(context_settings=_CONTEXT)
@click.version_option(package_name="optax-clr", prog_name=PROG)
def cli():
  """Cyclical learning rates and LR range tests for JAX/optax.

  Start with `optax-clr demo` (under a minute on a laptop CPU).

  \b
  Environment:
    OPTAX_CLR_CACHE_DIR  compiled programs kept between runs
                         (default ~/.cache/optax-clr/xla; empty: off)
    OPTAX_CLR_DEBUG=1    a traceback instead of a one-line error
  """


# ----------------------------------------------------------------------------
# range-test


@cli.command("range-test")
@_data_options
@click.option("--start-lr", type=POSITIVE, default=1e-7,
              help="Classic: first LR of the ramp.")
@click.option("--end-lr", type=POSITIVE, default=10.0,
              help="Classic: last LR of the ramp.")
@click.option("--steps", type=POS_INT, default=100,
              help="Classic: steps of the ramp. Parallel: steps per LR.")
@click.option("--ramp", type=_choice(("exp", "linear")), default="exp",
              help="Classic: exponential (fastai, torch-lr-finder) or "
              "linear (Smith 2017) ramp.")
@click.option("--smoothing", type=_Number(float, 0.0, 1.0, low_open=True),
              default=0.05, help="Classic: EMA factor of the loss.")
@click.option("--diverge-threshold", type=_Number(float, 1.0, low_open=True),
              default=4.0, help="Classic: stop when the smoothed loss exceeds "
              "this multiple of the best.")
@click.option("--eval-every", type=POS_INT, default=None,
              show_default="never",
              help="Classic: evaluate validation accuracy every N steps "
              "(gives Smith's accuracy-based bounds).")
@click.option("--parallel", "parallel", type=NONNEG_INT, default=0,
              metavar="K", show_default="0 = classic",
              help="Train K fixed LRs side by side instead (vmapped, sharded "
              "over the devices).")
@click.option("--min-lr", type=POSITIVE, default=1e-4,
              help="Parallel: smallest LR of the log-spaced grid.")
@click.option("--max-lr", type=POSITIVE, default=1.0,
              help="Parallel: largest LR of the grid.")
@click.option("--optimizer", type=_choice(OPTIMIZERS), default="sgd",
              help="sgd (with --momentum) or adam (--momentum is b1).")
@click.option("--momentum", type=MOMENTUM, default=0.9,
              help="SGD momentum (0: plain SGD) or Adam's b1.")
@_run_options
@click.pass_context
def range_test_cmd(ctx, data, model, width, batch_size, val_fraction,
                   start_lr, end_lr, steps, ramp, smoothing,
                   diverge_threshold, eval_every, parallel, min_lr, max_lr,
                   optimizer, momentum, seed, out, no_progress):
  """LR range test: find the bounds of a cyclical learning rate.

  Classic (default): one run whose LR rises from --start-lr to --end-lr over
  --steps steps; stops early when the smoothed loss diverges. The defaults
  are fastai's; a model that learns slowly gives a clearer curve with a
  ramp over several epochs (Smith), e.g. --start-lr 1e-3 --steps 300.

  Parallel (--parallel K): K runs at fixed, log-spaced LRs in
  [--min-lr, --max-lr], each trained --steps steps, all at once.

  Prints the suggested LRs and a (base_lr, max_lr) pair for `optax-clr train
  --bounds-from OUT/results.json`; writes results.json, results.csv and
  range_test.png.
  """
  if parallel == 1:
    raise click.BadParameter("must be 0 (classic) or >= 2, got 1",
                             param_hint="--parallel")
  if parallel:
    _reject(ctx, ("start_lr", "end_lr", "ramp", "smoothing",
                  "diverge_threshold", "eval_every"),
            "only for the classic test, not with --parallel")
    if min_lr >= max_lr:
      raise _usage(f"--min-lr must be < --max-lr, got --min-lr={min_lr:g}, "
                   f"--max-lr={max_lr:g}")
  else:
    _reject(ctx, ("min_lr", "max_lr"), "only with --parallel K")
  if not parallel and start_lr >= end_lr:
    raise _usage(f"--start-lr must be < --end-lr, got --start-lr="
                 f"{start_lr:g}, --end-lr={end_lr:g}")
  # Data first: a bad --data or --batch-size must not leave an output
  # directory behind.
  dataset, train, val = load_data(data, val_fraction, seed)
  _check_batch(train, batch_size)
  run = Run(ctx, out)
  net = build_model(model, dataset, width, seed)
  from optax_clr import models
  factory = optimizer_factory(optimizer, momentum)
  enabled = progress_enabled(no_progress)
  click.echo(f"data: {dataset.name} {dataset.image_shape}, {len(train)} "
             f"train / {len(val)} val; model: {model}; optimizer: "
             f"{optimizer} (momentum {momentum:g})")
  if parallel:
    from optax_clr import parallel as parallel_lib
    click.echo(f"parallel range test: {parallel} LRs in [{min_lr:g}, "
               f"{max_lr:g}], {steps} steps each")
    with ProgressBar("sweep", enabled) as bar:
      result = parallel_lib.parallel_range_test(
          net, models.cross_entropy_loss, train, num_lrs=parallel,
          min_lr=min_lr, max_lr=max_lr, num_steps=steps, optimizer=factory,
          batch_size=batch_size, val_data=val, seed=seed, progress=bar)
  else:
    from optax_clr.range_test import range_test as run_range_test
    click.echo(f"range test: {ramp} ramp {start_lr:g} -> {end_lr:g} over "
               f"{steps} steps")
    with ProgressBar("range test", enabled) as bar:
      result = run_range_test(
          net, models.cross_entropy_loss, train, start_lr=start_lr,
          end_lr=end_lr, num_steps=steps, ramp=ramp, optimizer=factory,
          batch_size=batch_size, smoothing=smoothing,
          diverge_threshold=diverge_threshold,
          val_data=val if eval_every else None, eval_every=eval_every,
          seed=seed, progress=bar)
    click.echo(f"stopped: {result.stop_reason} after {result.num_steps} "
               f"steps (last LR {result.lrs[-1]:.3g})")
  sugg = result.suggest()
  click.echo("suggestions:")
  click.echo(suggestions_table(sugg))
  if parallel:
    lr, _, rule = best_fixed_lr(result)
    click.echo(f"best fixed LR: {lr:.3e} ({rule})")
  result.to_json(run.path("results.json"))
  result.to_csv(run.path("results.csv"))
  result.plot(path=run.path("range_test.png"))
  run.finish(kind=type(result).__name__, base_lr=sugg.base_lr,
             max_lr=sugg.max_lr)
  if sugg.base_lr is not None:
    click.echo(f"next: {PROG} train --bounds-from "
               f"{run.dir / 'results.json'}")
  return 0


# ----------------------------------------------------------------------------
# train


def _schedule_options(step_unit: str, *, div_default: str,
                      cycle_momentum: bool = True):
  """Options shared by train and plot-schedule (schedule shape)."""
  opts = [
      click.option("--waveform", type=_choice(WAVEFORMS),
                   default="triangular",
                   help="Shape of each half cycle (Smith 2017 found them "
                   "equivalent)."),
      click.option("--step-size-down", type=_Number(float, 0.0,
                                                    low_open=True),
                   default=None, show_default="= --step-size",
                   help=f"Length of the falling half ({step_unit}); "
                   "asymmetric cycles."),
      click.option("--gamma", type=GAMMA, default=None,
                   show_default=f"amplitude decays to {EXP_RANGE_FINAL:g} by "
                   "the last step",
                   help="exp_range: decay per iteration."),
      click.option("--decay-bounds", is_flag=True,
                   help="exp_range: decay both bounds (the paper's form) "
                   "instead of the amplitude only (PyTorch, Keras)."),
      click.option("--pct-start", type=FRACTION, default=0.3,
                   help="one-cycle: fraction of the steps spent rising."),
      click.option("--anneal-strategy", type=_choice(("cos", "linear")),
                   default="cos", help="one-cycle: annealing shape."),
      click.option("--div-factor", type=_Number(float, 0.0, low_open=True),
                   default=None, show_default=div_default,
                   help="one-cycle: initial LR = max LR / div factor."),
      click.option("--final-div-factor", type=_Number(float, 0.0,
                                                      low_open=True),
                   default=1e4,
                   help="one-cycle: final LR = initial LR / this."),
      click.option("--three-phase", is_flag=True,
                   help="one-cycle: anneal back to the initial LR before "
                   "the final annealing (fastai)."),
      click.option("--base-momentum", type=MOMENTUM, default=None,
                   show_default="0.8 CLR, 0.85 one-cycle",
                   help="Momentum at the LR peak."),
      click.option("--max-momentum", type=MOMENTUM, default=None,
                   show_default="0.9 CLR, 0.95 one-cycle",
                   help="Momentum at the LR minimum."),
  ]
  if cycle_momentum:
    opts.append(click.option(
        "--cycle-momentum/--no-cycle-momentum", default=True,
        help="Cycle the momentum inversely to the LR (Smith & Topin 2017)."))
  def decorate(f):
    for opt in reversed(opts):
      f = opt(f)
    return f
  return decorate


def _check_momentum_bounds(base_momentum, max_momentum, policy):
  lo, hi = ONE_CYCLE_MOMENTUM if policy == "one-cycle" else CYCLIC_MOMENTUM
  b = lo if base_momentum is None else base_momentum
  m = hi if max_momentum is None else max_momentum
  if b > m:
    raise _usage(f"--base-momentum must be <= --max-momentum, got "
                 f"--base-momentum={b:g}, --max-momentum={m:g}")


def _resolve_bounds(policy, base_lr, max_lr, lr, bounds_from):
  """(base_lr, max_lr, lr, source) from the options or a results file."""
  source = "options"
  if bounds_from is not None:
    if base_lr is not None or max_lr is not None:
      raise _usage("give either --bounds-from or --base-lr/--max-lr, not "
                   "both")
    result = load_results(bounds_from)
    sugg = result.suggest()
    if policy == "fixed" and lr is None:
      if type(result).__name__ == "ParallelSweepResult":
        lr, _, rule = best_fixed_lr(result)
        return None, None, lr, f"{bounds_from}: best fixed LR, {rule}"
      raise _usage("--policy fixed needs --lr (or --bounds-from a parallel "
                   "sweep, whose best LR is used)")
    if sugg.base_lr is None or sugg.max_lr is None:
      raise ValueError(f"{bounds_from}: the range test suggests no CLR "
                       f"bounds ({_one_line(sugg.rule)})")
    base_lr, max_lr = sugg.base_lr, sugg.max_lr
    source = f"{bounds_from}: {_one_line(sugg.rule)}"
    if policy == "one-cycle":
      # One-cycle starts at max_lr / --div-factor (25, as fastai and PyTorch),
      # not at the range test's base_lr.
      base_lr = None
      source += "; one-cycle uses its max_lr"
  if policy == "fixed":
    if lr is None:
      raise _usage("--policy fixed needs --lr")
    return base_lr, max_lr, lr, source
  if max_lr is None:
    raise _usage(f"--policy {policy} needs --max-lr (and --base-lr) or "
                 "--bounds-from results.json")
  if base_lr is None and policy != "one-cycle":
    raise _usage(f"--policy {policy} needs --base-lr")
  if base_lr is not None and base_lr >= max_lr:
    raise _usage(f"--base-lr must be < --max-lr, got --base-lr={base_lr:g}, "
                 f"--max-lr={max_lr:g}")
  return base_lr, max_lr, lr, source


def history_arrays(history) -> dict[str, Any]:
  """A TrainHistory as the dict of arrays plot_training draws."""
  import numpy as np
  out = {"step": np.asarray(history.steps), "loss": np.asarray(history.loss),
         "lr": np.asarray(history.lr)}
  if getattr(history, "momentum", None) is not None and len(
      history.momentum):
    out["momentum"] = np.asarray(history.momentum)
  if len(history.eval_steps):
    out["val_step"] = np.asarray(history.eval_steps)
    for name, values in history.eval_metrics.items():
      out[f"val_{name}"] = np.asarray(values)
  return out


class EpochReporter(ProgressBar):
  """Progress of :func:`optax_clr.training.train`: a bar over epochs and, with
  ``echo``, one line per epoch (the metrics arrive on the host once per
  epoch, already fetched by the training loop)."""

  def __init__(self, desc: str, enabled: bool, num_epochs: int,
               echo: bool = True):
    super().__init__(desc, enabled, unit="epoch", total=num_epochs)
    self.echo = echo
    self.lines: list[str] = []

  def __call__(self, step, total=None, metrics=None):
    super().__call__(step, total, metrics)
    if not self.echo:
      return
    metrics = dict(metrics or {})
    width = len(str(total))
    parts = [f"epoch {step:>{width}}/{total}"]
    if "lr" in metrics:
      parts.append(f"lr {_fmt(metrics.pop('lr'), '.3e')}")
    for key, value in metrics.items():
      parts.append(f"{key} {_fmt(value, '.4f')}")
    line = "  " + "  ".join(parts)
    self.lines.append(line)
    if self.enabled:
      self.bar.write(line, file=sys.stdout)
    else:
      click.echo(line)


def run_training(net, train, val, *, optimizer, epochs, batch_size, seed,
                 enabled, desc, echo=True, checkpoint_dir=None, resume=True,
                 checkpoint_every=1, run_config=None):
  """training.train with a progress bar; returns (model, history)."""
  from optax_clr import models
  from optax_clr import training
  with EpochReporter(desc, enabled, epochs, echo) as bar:
    return training.train(
        net, models.cross_entropy_loss, train, optimizer=optimizer,
        num_epochs=epochs, batch_size=batch_size, val_data=val, seed=seed,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
        resume=resume, progress=bar, run_config=run_config)


@cli.command("train")
@_data_options
@click.option("--policy", type=_choice(POLICIES), default="triangular",
              help="LR policy: cyclical (triangular, triangular2, "
              "exp_range), one-cycle, or a fixed LR.")
@click.option("--base-lr", type=POSITIVE, default=None,
              help="Lower LR bound (CLR); one-cycle: initial LR (sets "
              "--div-factor).")
@click.option("--max-lr", type=POSITIVE, default=None,
              help="Upper LR bound (CLR), peak LR (one-cycle).")
@click.option("--lr", type=POSITIVE, default=None,
              help="The LR of --policy fixed.")
@click.option("--bounds-from", type=click.Path(dir_okay=False),
              default=None, metavar="RESULTS_JSON",
              help="Take base/max LR from a range-test results.json (its "
              "suggested CLR bounds; one-cycle takes max_lr only; --policy "
              "fixed takes a parallel sweep's best LR).")
@click.option("--step-size", type=_Number(float, 0.0, low_open=True),
              default=DEFAULT_STEP_SIZE_EPOCHS,
              help="Half a cycle, in epochs (Smith: 2-10 epochs of "
              "iterations).")
@click.option("--epochs", type=POS_INT, default=16,
              help="Training epochs (Smith: stop after 3-5 cycles).")
@_schedule_options(step_unit="epochs",
                   div_default="25, or --max-lr / --base-lr when given")
@click.option("--momentum", type=MOMENTUM, default=0.9,
              help="Constant momentum (fixed policy, or "
              "--no-cycle-momentum); Adam: b1.")
@click.option("--optimizer", type=_choice(OPTIMIZERS), default="sgd",
              help="sgd (momentum cycled) or adam (b1 cycled).")
@click.option("--nesterov", is_flag=True, help="SGD: Nesterov momentum.")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False),
              default=None, help="Save a checkpoint every "
              "--checkpoint-every epochs here.")
@click.option("--checkpoint-every", type=POS_INT, default=1,
              help="Epochs between checkpoints.")
@click.option("--resume/--no-resume", default=True,
              help="Continue from the latest checkpoint in "
              "--checkpoint-dir.")
@_run_options
@click.pass_context
def train_cmd(ctx, data, model, width, batch_size, val_fraction, policy,
              base_lr, max_lr, lr, bounds_from, step_size, epochs, waveform,
              step_size_down, gamma, decay_bounds, pct_start, anneal_strategy,
              div_factor, final_div_factor, three_phase, cycle_momentum,
              base_momentum, max_momentum, momentum, optimizer, nesterov,
              checkpoint_dir, checkpoint_every, resume, seed, out,
              no_progress):
  """Train with a cyclical, one-cycle or fixed learning rate.

  The cycle's step size is given in epochs and converted to iterations.
  Prints validation accuracy per epoch; writes results.json and results.csv
  (per step: loss, LR, momentum; per epoch: validation metrics),
  schedule.png (LR and momentum) and training.png.
  """
  policy = policy.lower()
  one_cycle_only = ("pct_start", "anneal_strategy", "div_factor",
                    "final_div_factor", "three_phase")
  cyclic_only = ("waveform", "step_size", "step_size_down")
  if policy == "fixed":
    _reject(ctx, ("base_lr", "max_lr", "cycle_momentum", "base_momentum",
                  "max_momentum", "gamma", "decay_bounds") + one_cycle_only
            + cyclic_only, "not used by --policy fixed (give --lr)")
  else:
    _reject(ctx, ("lr",), "only for --policy fixed")
  if policy != "one-cycle":
    _reject(ctx, one_cycle_only, "only for --policy one-cycle")
  else:
    _reject(ctx, cyclic_only, "not used by --policy one-cycle (it spans all "
            "--epochs)")
  if policy != "exp_range":
    _reject(ctx, ("gamma", "decay_bounds"), "only for --policy exp_range")
  if policy == "one-cycle" and base_lr is not None and div_factor is not None:
    raise _usage("give --base-lr or --div-factor for one-cycle, not both "
                 "(--div-factor = --max-lr / --base-lr)")
  if nesterov and optimizer != "sgd":
    raise _usage("--nesterov needs --optimizer sgd")
  _check_momentum_bounds(base_momentum, max_momentum, policy)
  base_lr, max_lr, lr, source = _resolve_bounds(policy, base_lr, max_lr, lr,
                                                bounds_from)
  # Data first: a bad --data or --batch-size must not leave an output
  # directory behind.
  dataset, train, val = load_data(data, val_fraction, seed)
  _check_batch(train, batch_size)
  run = Run(ctx, out)
  steps_per_epoch = train.num_batches(batch_size)
  total = epochs * steps_per_epoch
  up = max(1, round(step_size * steps_per_epoch))
  down = (None if step_size_down is None
          else max(1, round(step_size_down * steps_per_epoch)))
  lr_sched, mom_sched, resolved = build_schedules(
      policy, base_lr=base_lr, max_lr=max_lr, lr=lr, step_size_up=up,
      step_size_down=down, total_steps=total, waveform=waveform, gamma=gamma,
      decay_bounds=decay_bounds, cycle_momentum=cycle_momentum,
      momentum=momentum, base_momentum=base_momentum,
      max_momentum=max_momentum, pct_start=pct_start,
      anneal_strategy=anneal_strategy, div_factor=div_factor,
      final_div_factor=final_div_factor, three_phase=three_phase)
  resolved.update(bounds_source=source, steps_per_epoch=steps_per_epoch,
                  total_steps=total)
  opt = build_optimizer(optimizer, lr_sched, mom_sched, nesterov)
  net = build_model(model, dataset, width, seed)
  click.echo(f"data: {dataset.name} {dataset.image_shape}, {len(train)} "
             f"train / {len(val)} val; model: {model}; {steps_per_epoch} "
             f"iterations per epoch")
  click.echo("schedule: " + ", ".join(
      f"{k}={_fmt(v, '.4g') if isinstance(v, float) else v}"
      for k, v in resolved.items() if k not in ("bounds_source",)))
  if bounds_from:
    click.echo(f"bounds from {source}")
  if policy in CYCLIC_POLICIES:
    cycles = total / (up + (down or up))
    click.echo(f"cycle: {up} + {down or up} iterations; {cycles:.2g} cycles "
               f"in {epochs} epochs")
  _, history = run_training(
      net, train, val, optimizer=opt, epochs=epochs, batch_size=batch_size,
      seed=seed, enabled=progress_enabled(no_progress), desc=f"train "
      f"{policy}", checkpoint_dir=checkpoint_dir, resume=resume,
      checkpoint_every=checkpoint_every,
      run_config={"optimizer": optimizer, "nesterov": nesterov,
                  "model": model, "width": width, "data": data,
                  "val_fraction": val_fraction,
                  # Extending a cyclic run by more epochs is a resume, not a
                  # new run; a one-cycle schedule spans total_steps itself.
                  **{k: v for k, v in resolved.items()
                     if k != "bounds_source" and (
                         k != "total_steps" or policy == "one-cycle")}})
  acc = history.eval_metrics.get("accuracy")
  if acc is not None and len(acc):
    import numpy as np
    best = int(np.nanargmax(acc))
    click.echo(f"final val accuracy {acc[-1]:.4f}; best {acc[best]:.4f} at "
               f"step {int(history.eval_steps[best])}")
  history.to_json(run.path("results.json"))
  history.to_csv(run.path("results.csv"))
  from optax_clr import plotting
  name = policy if policy != "fixed" else f"fixed {lr:g}"
  mom = {name: as_schedule(mom_sched)} if callable(mom_sched) else None
  plotting.plot_schedules({name: as_schedule(lr_sched)}, total, momentum=mom,
                          path=run.path("schedule.png"))
  plotting.plot_training({name: history_arrays(history)},
                         path=run.path("training.png"))
  run.finish(**resolved)
  return 0


# ----------------------------------------------------------------------------
# plot-schedule


@cli.command("plot-schedule")
@click.option("--policy", "policies", type=_choice(POLICIES[:-1]),
              multiple=True, show_default="triangular, triangular2, "
              "exp_range, one-cycle",
              help="A policy to draw; repeat to overlay several.")
@click.option("--steps", type=POS_INT, default=8000,
              help="Steps (iterations) to draw; one-cycle spans all of "
              "them.")
@click.option("--base-lr", type=POSITIVE, default=0.001,
              help="Lower LR bound (Smith's CIFAR-10 example: 0.001).")
@click.option("--max-lr", type=POSITIVE, default=0.006,
              help="Upper LR bound (Smith's CIFAR-10 example: 0.006).")
@click.option("--step-size", type=POS_INT, default=1000,
              help="Half a cycle, in iterations.")
@_schedule_options(step_unit="iterations", div_default="25",
                   cycle_momentum=False)
@click.option("--momentum/--no-momentum", "draw_momentum", default=True,
              help="Also draw the momentum schedules.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              show_default="runs/plot-schedule-<timestamp>",
              help="Output directory.")
@click.pass_context
def plot_schedule_cmd(ctx, policies, steps, base_lr, max_lr, step_size,
                      waveform, step_size_down, gamma, decay_bounds,
                      pct_start, anneal_strategy, div_factor,
                      final_div_factor, three_phase, base_momentum,
                      max_momentum, draw_momentum, out):
  """Draw learning-rate (and momentum) schedules over --steps steps.

  Example: optax-clr plot-schedule --policy triangular --policy triangular2
  --policy exp_range --policy one-cycle. Writes schedule.png, and the values
  per step in results.json and schedule.csv.
  """
  policies = [p.lower() for p in policies] or ["triangular", "triangular2",
                                               "exp_range", "one-cycle"]
  if base_lr >= max_lr:
    raise _usage(f"--base-lr must be < --max-lr, got --base-lr={base_lr:g}, "
                 f"--max-lr={max_lr:g}")
  for p in dict.fromkeys(policies):
    _check_momentum_bounds(base_momentum, max_momentum, p)
  down = None if step_size_down is None else max(1, round(step_size_down))
  run = Run(ctx, out)
  import numpy as np
  lrs, moms, resolved = {}, {}, {}
  for policy in dict.fromkeys(policies):
    label = policy
    if policy in CYCLIC_POLICIES and waveform != "triangular":
      label = f"{policy} ({waveform})"
    lr_fn, mom_fn, res = build_schedules(
        policy, base_lr=base_lr,
        max_lr=max_lr, step_size_up=step_size, step_size_down=down,
        total_steps=steps, waveform=waveform, gamma=gamma,
        decay_bounds=decay_bounds and policy == "exp_range",
        cycle_momentum=True, base_momentum=base_momentum,
        max_momentum=max_momentum, pct_start=pct_start,
        anneal_strategy=anneal_strategy,
        div_factor=25.0 if div_factor is None else div_factor,
        final_div_factor=final_div_factor, three_phase=three_phase)
    lrs[label], moms[label], resolved[label] = lr_fn, mom_fn, res
  lrs = {name: as_schedule(fn) for name, fn in lrs.items()}
  moms = {name: as_schedule(fn) for name, fn in moms.items()}
  from optax_clr import plotting
  plotting.plot_schedules(lrs, steps,
                          momentum=moms if draw_momentum else None,
                          path=run.path("schedule.png"))
  t = np.arange(steps, dtype=np.int32)
  values = {name: np.asarray(fn(t)) for name, fn in lrs.items()}
  momenta = {name: np.asarray(fn(t)) for name, fn in moms.items()}
  run.write_json("results.json", {
      "schedules": resolved,
      "summary": {name: {"lr_min": v.min(), "lr_max": v.max(),
                         "lr_last": v[-1], "momentum_min": momenta[name].min(),
                         "momentum_max": momenta[name].max()}
                  for name, v in values.items()},
      "values": "schedule.csv"})
  import csv
  with open(run.path("schedule.csv"), "w", newline="",
            encoding="utf-8") as f:
    writer = csv.writer(f)
    names = list(values)
    writer.writerow(["step"] + [f"lr[{n}]" for n in names]
                    + [f"momentum[{n}]" for n in names])
    for i in range(steps):
      writer.writerow([i] + [f"{values[n][i]:.8g}" for n in names]
                      + [f"{momenta[n][i]:.8g}" for n in names])
  for name in values:
    v = values[name]
    click.echo(f"{name:<24} lr in [{v.min():.3e}, {v.max():.3e}], "
               f"last {v[-1]:.3e}")
  run.finish(schedules=resolved)
  return 0


# ----------------------------------------------------------------------------
# demo


class DemoSettings:
  """Sizes of the demo; ``quick`` is the < 30 s variant the tests run."""

  def __init__(self, quick: bool):
    # The ramp spans several epochs (Smith's advice) so that the small CNN
    # learns during the test and the loss curve has a real descent.
    self.start_lr, self.end_lr = 1e-3, 10.0
    self.range_steps = 60 if quick else 300
    self.sweep_lrs = 8 if quick else 16
    self.sweep_epochs = 2 if quick else 3
    self.epochs = 4 if quick else 24
    self.step_size = 1.0 if quick else 3.0
    self.width = 8 if quick else 16


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> str:
  """The demo's table; rows hold name, iters_to_target, final, best, time."""
  header = ("run", "iterations to target", "final val acc", "best val acc",
            "wall time")
  cells = [header] + [(
      r["name"],
      "not reached" if r["iters"] is None else str(r["iters"]),
      f"{r['final']:.4f}", f"{r['best']:.4f}", f"{r['time']:.1f} s")
      for r in rows]
  widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
  lines = ["  " + "  ".join(c[i].ljust(widths[i]) if i == 0
                            else c[i].rjust(widths[i])
                            for i in range(len(header))) for c in cells]
  lines.insert(1, "  " + "  ".join("-" * w for w in widths))
  return "\n".join(lines)


@cli.command("demo")
@click.option("--quick", is_flag=True,
              help="A small variant (< 30 s): fewer steps, LRs and epochs.")
@click.option("--epochs", type=POS_INT, default=None,
              show_default="24 (4 with --quick)",
              help="Training epochs of each of the two runs.")
@click.option("--width", type=POS_INT, default=None,
              show_default="16 (8 with --quick)", help="CNN width.")
@_run_options
@click.pass_context
def demo_cmd(ctx, quick, epochs, width, seed, out, no_progress):
  """The main job on the embedded digits, end to end.

  \b
  1. classic LR range test -> suggested (base_lr, max_lr);
  2. parallel sweep over fixed LRs -> the best fixed LR;
  3. triangular2 CLR with cyclic momentum (suggested bounds) next to the
     best fixed LR, same epochs and seed;
  4. a table: iterations to reach the fixed-LR run's best validation
     accuracy, final and best accuracy, wall time.
  """
  import numpy as np

  from optax_clr import models
  from optax_clr import parallel as parallel_lib
  from optax_clr import plotting
  from optax_clr.range_test import range_test as run_range_test

  cfg = DemoSettings(quick)
  if epochs is not None:
    cfg.epochs = epochs
  if width is not None:
    cfg.width = width
  batch_size = 64
  run = Run(ctx, out)
  enabled = progress_enabled(no_progress)
  dataset, train, val = load_data("digits", 0.2, seed)
  steps_per_epoch = train.num_batches(batch_size)
  click.echo(f"data: {dataset.name} {dataset.image_shape}, {len(train)} "
             f"train / {len(val)} val, batch {batch_size} -> "
             f"{steps_per_epoch} iterations per epoch; CNN width "
             f"{cfg.width}; SGD momentum")
  factory = optimizer_factory("sgd", 0.9)
  # The range tests and train() work on copies: one model serves every run,
  # which therefore all start from the same weights.
  net = build_model("cnn", dataset, cfg.width, seed)

  # 1. Classic range test.
  click.echo(f"\n[1/4] LR range test: exp ramp {cfg.start_lr:g} -> "
             f"{cfg.end_lr:g} over {cfg.range_steps} steps")
  t0 = time.perf_counter()
  with ProgressBar("range test", enabled) as bar:
    rt = run_range_test(
        net,
        models.cross_entropy_loss, train, start_lr=cfg.start_lr,
        end_lr=cfg.end_lr,
        num_steps=cfg.range_steps, optimizer=factory, batch_size=batch_size,
        seed=seed, progress=bar)
  sugg = rt.suggest()
  t_rt = time.perf_counter() - t0
  click.echo(f"stopped: {rt.stop_reason} after {rt.num_steps} steps "
             f"({t_rt:.1f} s)")
  click.echo(suggestions_table(sugg))
  if sugg.base_lr is None:
    raise ValueError(f"the range test gave no CLR bounds: {sugg.rule}")
  base_lr, max_lr = sugg.base_lr, sugg.max_lr
  rt.to_json(run.path("range_test.json"))
  rt.to_csv(run.path("range_test.csv"))
  rt.plot(path=run.path("range_test.png"))

  # 2. Parallel sweep over fixed LRs around the suggested bounds.
  lo, hi = base_lr / 10.0, max_lr * 10.0
  sweep_steps = cfg.sweep_epochs * steps_per_epoch
  click.echo(f"\n[2/4] parallel sweep: {cfg.sweep_lrs} fixed LRs in "
             f"[{lo:.2e}, {hi:.2e}], {sweep_steps} steps each")
  t0 = time.perf_counter()
  with ProgressBar("sweep", enabled) as bar:
    sweep = parallel_lib.parallel_range_test(
        net,
        models.cross_entropy_loss, train, num_lrs=cfg.sweep_lrs, min_lr=lo,
        max_lr=hi, num_steps=sweep_steps, optimizer=factory,
        batch_size=batch_size, val_data=val, seed=seed, progress=bar)
  t_sweep = time.perf_counter() - t0
  fixed_lr, _, fixed_rule = best_fixed_lr(sweep)
  click.echo(f"best fixed LR: {fixed_lr:.3e} ({fixed_rule}; "
             f"{t_sweep:.1f} s)")
  sweep.to_json(run.path("sweep.json"))
  sweep.to_csv(run.path("sweep.csv"))
  sweep.plot(path=run.path("sweep.png"))

  # 3. CLR against the best fixed LR.
  up = max(1, round(cfg.step_size * steps_per_epoch))
  total = cfg.epochs * steps_per_epoch
  clr_lr, clr_mom, clr_res = build_schedules(
      "triangular2", base_lr=base_lr, max_lr=max_lr, step_size_up=up,
      step_size_down=None, total_steps=total)
  runs = {
      "CLR triangular2": (clr_lr, clr_mom, clr_res),
      f"fixed LR {fixed_lr:.2e}": (fixed_lr, 0.9,
                                   {"policy": "fixed", "lr": fixed_lr,
                                    "momentum": 0.9}),
  }
  click.echo(f"\n[3/4] training {cfg.epochs} epochs each: triangular2 CLR "
             f"[{base_lr:.2e}, {max_lr:.2e}], step size {up} iterations, "
             f"momentum 0.9 -> 0.8; fixed LR {fixed_lr:.2e}, momentum 0.9")
  histories, times = {}, {}
  for name, (lr_s, mom_s, _) in runs.items():
    t0 = time.perf_counter()
    _, hist = run_training(
        net, train, val,
        optimizer=build_optimizer("sgd", lr_s, mom_s), epochs=cfg.epochs,
        batch_size=batch_size, seed=seed, enabled=enabled, desc=name,
        echo=False)
    times[name] = time.perf_counter() - t0
    histories[name] = hist
    slug = "clr" if name.startswith("CLR") else "fixed"
    hist.to_json(run.path(f"history_{slug}.json"))
    hist.to_csv(run.path(f"history_{slug}.csv"))

  # 4. Comparison.
  fixed_name = list(runs)[1]
  target = float(np.nanmax(histories[fixed_name].eval_metrics["accuracy"]))
  rows = []
  for name, hist in histories.items():
    acc = np.asarray(hist.eval_metrics["accuracy"])
    rows.append({"name": name, "iters": hist.steps_to_reach("accuracy",
                                                            target),
                 "final": float(acc[-1]), "best": float(np.nanmax(acc)),
                 "time": times[name]})
  click.echo(f"\n[4/4] comparison (target: the fixed-LR run's best "
             f"validation accuracy, {target:.4f})")
  click.echo(comparison_table(rows))
  clr_iters, fixed_iters = rows[0]["iters"], rows[1]["iters"]
  if clr_iters is not None and fixed_iters:
    if clr_iters < fixed_iters:
      versus = f"{fixed_iters / clr_iters:.2f}x fewer than"
    elif clr_iters > fixed_iters:
      versus = f"{clr_iters / fixed_iters:.2f}x more than"
    else:
      versus = "as many as"
    click.echo(f"CLR reached the target in {clr_iters} iterations, {versus} "
               f"the fixed LR ({fixed_iters})")
  elif clr_iters is None:
    gap = target - rows[0]["best"]
    click.echo(f"CLR did not reach the target: its best is {gap:.4f} "
               f"lower (about {gap * len(val):.0f} of {len(val)} validation "
               f"images)")
  plotting.plot_schedules(
      {n: as_schedule(v[0]) for n, v in runs.items()}, total,
      momentum={n: as_schedule(v[1]) for n, v in runs.items()},
      path=run.path("schedule.png"))
  plotting.plot_training({n: history_arrays(h) for n, h in histories.items()},
                         path=run.path("training.png"))
  summary = {
      "range_test": {"base_lr": base_lr, "max_lr": max_lr,
                     "rule": sugg.rule, "stop_reason": rt.stop_reason,
                     "num_steps": rt.num_steps, "time_s": t_rt},
      "sweep": {"lrs": sweep.lrs, "best_lr": fixed_lr, "rule": fixed_rule,
                "num_steps": sweep_steps, "time_s": t_sweep},
      "runs": {n: r for n, r in zip(runs, rows)},
      "schedules": {n: v[2] for n, v in runs.items()},
      "target_accuracy": target,
  }
  run.write_json("results.json", summary)
  with open(run.path("comparison.csv"), "w", encoding="utf-8") as f:
    f.write("run,iterations_to_target,final_val_accuracy,best_val_accuracy,"
            "wall_time_s\n")
    for r in rows:
      f.write(f"{r['name']},{'' if r['iters'] is None else r['iters']},"
              f"{r['final']!r},{r['best']!r},{r['time']:.3f}\n")
  wall = run.finish(base_lr=base_lr, max_lr=max_lr, fixed_lr=fixed_lr,
                    epochs=cfg.epochs, width=cfg.width)
  click.echo(f"demo wall time {wall:.1f} s")
  return 0


if __name__ == "__main__":  # pragma: no cover
  sys.exit(main())
