"""Plots of schedules and of training runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from optax_clr.plotting._style import finite_or_nan
from optax_clr.plotting._style import log_wanted
from optax_clr.plotting._style import new_figure
from optax_clr.plotting._style import outside_legend
from optax_clr.plotting._style import PathLike
from optax_clr.plotting._style import save_png


def evaluate_schedule(fn: Callable[[Any], Any], num_steps: int
                      ) -> np.ndarray:
  """``[fn(0), ..., fn(num_steps - 1)]`` as float64 (vmapped over int32
  steps; a Python loop for functions that do not trace)."""
  try:
    import jax
    import jax.numpy as jnp
    values = np.asarray(jax.vmap(fn)(jnp.arange(num_steps)),
                        dtype=np.float64)
    if values.shape == (num_steps,):
      return values
  except Exception:  # noqa: BLE001 -- any failure to trace means "loop"
    pass
  return np.array([float(np.asarray(fn(i))) for i in range(num_steps)])


def _constant(value: Any) -> Callable[[Any], Any]:
  return lambda t: np.full(np.shape(t), float(value))


def plot_schedules(schedules: Mapping[str, Any], num_steps: int, *,
                   momentum: Mapping[str, Any] | None = None,
                   title: str | None = None, path: PathLike = None) -> Any:
  """Learning-rate schedules (and momentum schedules) over steps.

  All LR schedules are overlaid in one panel, labelled by name; momentum
  schedules, if given, in a second panel below sharing the step axis. A
  number stands for a constant schedule.

  Args:
    schedules: name -> schedule (step -> LR) or constant.
    num_steps: number of steps to draw, from 0.
    momentum: optional name -> momentum schedule or constant.
    title: the figure's title (default: "learning-rate schedules").
    path: if given, the figure is saved there as PNG.

  Returns:
    The Figure.
  """
  from optax_clr import _checks
  num_steps = _checks.check_int("num_steps", num_steps, low=1)
  if not schedules:
    raise ValueError("schedules must name at least one schedule")
  as_fn = lambda f: f if callable(f) else _constant(  # noqa: E731
      _checks.check_number("schedule value", f, dtype=None))
  schedules = {k: as_fn(v) for k, v in schedules.items()}
  momentum = {k: as_fn(v) for k, v in (momentum or {}).items()}
  rows = 2 if momentum else 1
  fig = new_figure((8.5, 3.0 * rows + 0.6))
  axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
  steps = np.arange(num_steps)
  panels = [(axes[0], schedules, "learning rate")]
  if momentum:
    panels.append((axes[1], momentum, "momentum"))
  for ax, fns, ylabel in panels:
    for name, fn in fns.items():
      ax.plot(steps, evaluate_schedule(fn, num_steps), label=name, gid=name)
    ax.set_ylabel(ylabel)
    outside_legend(ax)
  axes[-1].set_xlabel("step")
  fig.suptitle(title or "learning-rate schedules")
  save_png(fig, path)
  return fig


_TRAINING_PANELS = (
    ("loss", "loss"),
    ("val_accuracy", "validation accuracy"),
    ("lr", "learning rate"),
    ("momentum", "momentum"),
)


def history_arrays(history: Any) -> dict[str, np.ndarray]:
  """A :class:`~optax_clr.TrainHistory` as the arrays
  :func:`plot_training` draws (a mapping is returned as it is)."""
  if isinstance(history, Mapping):
    return dict(history)
  out = {"step": np.asarray(history.steps),
         "loss": np.asarray(history.losses), "lr": np.asarray(history.lrs)}
  if np.isfinite(np.asarray(history.momenta)).any():
    out["momentum"] = np.asarray(history.momenta)
  if len(history.eval_steps):
    out["val_step"] = np.asarray(history.eval_steps)
    for name, values in history.eval_metrics.items():
      out[f"val_{name}"] = np.asarray(values)
  return out


def _x_for(name: str, run: Mapping[str, Any], key: str, n: int) -> np.ndarray:
  steps = run.get("step")
  if key.startswith("val_") and "val_step" in run:
    x = np.asarray(run["val_step"])
  elif steps is not None:
    x = np.asarray(steps)
  else:
    x = np.arange(n)
  if x.shape != (n,):
    raise ValueError(
        f"run {name!r}: {key!r} has {n} values but its steps have shape "
        f"{x.shape}; give 'val_step' for validation metrics evaluated at "
        f"other steps")
  return x


def plot_training(histories: Mapping[str, Any], *,
                  log_loss: bool | None = None, title: str | None = None,
                  path: PathLike = None) -> Any:
  """Training curves of several runs, e.g. a CLR run against a fixed LR.

  One panel per quantity any run records, in this order: ``loss`` (with
  ``val_loss`` dashed in the same colour), ``val_accuracy``, ``lr``,
  ``momentum``; each run keeps one colour across panels. The loss axis is
  logarithmic when the loss spans more than a decade (``log_loss``).

  Args:
    histories: run name -> a :class:`~optax_clr.TrainHistory`, or a mapping
      ``{"step": [n], "loss": [n], "val_accuracy": ..., "val_step": ...,
      "lr": [n], ...}``.
    log_loss: log-scale loss panel; None: when the loss spans a decade.
    title: the figure's title (default: "training").
    path: if given, the figure is saved there as PNG.

  Returns:
    The Figure.
  """
  if not histories:
    raise ValueError("histories must hold at least one run")
  runs = {}
  for name, run in histories.items():
    if not isinstance(run, Mapping) and not hasattr(run, "losses"):
      raise TypeError(
          f"histories[{name!r}] must be a TrainHistory or a mapping of name "
          f"-> array, got {type(run).__name__}")
    runs[name] = history_arrays(run)
  present = lambda k: any(k in run for run in runs.values())  # noqa: E731
  panels = [(k, label) for k, label in _TRAINING_PANELS
            if present(k) or (k == "loss" and present("val_loss"))]
  if not panels:
    raise ValueError(
        "no run records any of "
        + ", ".join(k for k, _ in _TRAINING_PANELS) + " or val_loss")
  fig = new_figure((8.5, 2.6 * len(panels) + 0.6))
  axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
  colors = [f"C{i % 10}" for i in range(len(runs))]
  for ax, (key, label) in zip(axes, panels):
    drawn = []
    for color, (name, run) in zip(colors, runs.items()):
      series = [(key, "-", name)]
      if key == "loss":
        series.append(("val_loss", "--", f"{name} (val)"))
      for k, style, line_label in series:
        if k not in run:
          continue
        y = finite_or_nan(run[k])
        drawn.append(y)
        ax.plot(_x_for(name, run, k, y.size), y, linestyle=style,
                color=color, label=line_label, gid=f"{name}:{k}")
    if key == "loss" and drawn and log_wanted(np.concatenate(drawn),
                                               log_loss):
      ax.set_yscale("log")
    ax.set_ylabel(label)
    outside_legend(ax)
  axes[-1].set_xlabel("step")
  fig.suptitle(title or "training")
  save_png(fig, path)
  return fig


