"""Plots of schedules and of training runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from optax_clr import _checks
from optax_clr.plotting import _style


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


def _as_schedule(value: Any) -> Callable[[Any], Any]:
  if callable(value):
    return value
  value = float(_checks.check_number("schedule value", value, dtype=None))
  return lambda t: np.full(np.shape(t), value)


def plot_schedules(schedules: Mapping[str, Any], num_steps: int, *,
                   momentum: Mapping[str, Any] | None = None,
                   title: str | None = None,
                   path: _style.PathLike = None) -> Any:
  """Learning-rate schedules (and momentum schedules) over steps.

  All LR schedules are overlaid in one panel, labelled by name; momentum
  schedules, if given, in a second panel below sharing the step axis. A
  number stands for a constant schedule.

  Args:
    schedules: name -> schedule (step -> LR) or constant.
    num_steps: number of steps to draw, from 0.
    momentum: optional name -> momentum schedule or constant.
    title: the figure's title (default: "learning-rate schedules").
  """
  num_steps = _checks.check_int("num_steps", num_steps, low=1)
  if not schedules:
    raise ValueError("schedules must name at least one schedule")
  panels = [(schedules, "learning rate")] + (
      [(momentum, "momentum")] if momentum else [])
  panels = [({k: _as_schedule(v) for k, v in fns.items()}, label)
            for fns, label in panels]
  fig, axes = _style.stacked(len(panels), 3.0)
  for ax, (fns, ylabel) in zip(axes, panels):
    for name, fn in fns.items():
      ax.plot(np.arange(num_steps), evaluate_schedule(fn, num_steps),
              label=name, gid=name)
    ax.set_ylabel(ylabel)
    _style.outside_legend(ax)
  axes[-1].set_xlabel("step")
  fig.suptitle(title or "learning-rate schedules")
  return _style.save(fig, path)


_TRAINING_PANELS = (("loss", "loss"), ("val_accuracy", "validation accuracy"),
                    ("lr", "learning rate"), ("momentum", "momentum"))


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
  steps = run.get("val_step" if key.startswith("val_") and "val_step" in run
                  else "step")
  x = np.arange(n) if steps is None else np.asarray(steps)
  if x.shape != (n,):
    raise ValueError(
        f"run {name!r}: {key!r} has {n} values but its steps have shape "
        f"{x.shape}; give 'val_step' for validation metrics evaluated at "
        f"other steps")
  return x


def plot_training(histories: Mapping[str, Any], *,
                  log_loss: bool | None = None, title: str | None = None,
                  path: _style.PathLike = None) -> Any:
  """Training curves of several runs, e.g. a CLR run against a fixed LR.

  One panel per quantity any run records, in this order: ``loss`` (with
  ``val_loss`` dashed in the same colour), ``val_accuracy``, ``lr``,
  ``momentum``; each run keeps one colour across panels.

  Args:
    histories: run name -> a :class:`~optax_clr.TrainHistory`, or a mapping
      ``{"step": [n], "loss": [n], "val_accuracy": ..., "val_step": ...,
      "lr": [n], ...}``.
    title: the figure's title (default: "training").
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
  fig, axes = _style.stacked(len(panels), 2.6)
  for ax, (key, label) in zip(axes, panels):
    drawn = []
    for i, (name, run) in enumerate(runs.items()):
      series = [(key, "-", name)] + (
          [("val_loss", "--", f"{name} (val)")] if key == "loss" else [])
      for k, style, line_label in series:
        if k in run:
          drawn.append(_style.finite_or_nan(run[k]))
          ax.plot(_x_for(name, run, k, drawn[-1].size), drawn[-1],
                  linestyle=style, color=f"C{i % 10}", label=line_label,
                  gid=f"{name}:{k}")
    if key == "loss" and drawn and _style.log_wanted(np.concatenate(drawn),
                                                      log_loss):
      ax.set_yscale("log")
    ax.set_ylabel(label)
    _style.outside_legend(ax)
  axes[-1].set_xlabel("step")
  fig.suptitle(title or "training")
  return _style.save(fig, path)
