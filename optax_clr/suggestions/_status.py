"""The status of a run: the one rule every test and ``train`` use
(:func:`classify`). A ramp's stop (where a deliberately rising LR broke
training) is a different question: its ``stop_reason``, not a status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from optax_clr import _checks

STATUSES = ("trained", "stalled", "spiked", "diverged", "nonfinite")

DEFAULT_WINDOW = 10
DIVERGE_THRESHOLD = 4.0
SPIKE_THRESHOLD = 4.0
MIN_IMPROVEMENT = 0.02


def windowed_mean(losses: Any, window: int) -> np.ndarray:
  """``[K, N] -> [K, N]``: at each step, the mean of the finite losses among
  the last ``min(window, t + 1)`` steps (NaN if none is finite). Each window
  is summed on its own (never as a difference of cumulative sums, which
  loses every digit after a loss of 1e17)."""
  x = np.asarray(losses, np.float64)
  window = _checks.check_int("window", window, low=1, high=None)
  k, _ = x.shape
  pad = np.full((k, window - 1), np.nan)
  views = np.lib.stride_tricks.sliding_window_view(
      np.concatenate([pad, x], axis=1), window, axis=1)
  finite = np.isfinite(views)
  count = finite.sum(-1)
  with np.errstate(invalid="ignore", over="ignore"):
    total = np.where(finite, views, 0.0).sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def classify(losses: Any, mean_loss: Any, *,
             initial_metrics: Mapping[str, Any] | None = None,
             final_metrics: Mapping[str, Any] | None = None,
             diverge_threshold: float | None = DIVERGE_THRESHOLD,
             spike_threshold: float | None = SPIKE_THRESHOLD,
             min_improvement: float = MIN_IMPROVEMENT) -> np.ndarray:
  """Each run's status (one of :data:`STATUSES`), from its per-step training
  losses and, when evaluated, its validation metrics before and at best:

  * ``"nonfinite"``: a loss was NaN or inf;
  * ``"diverged"``: its final windowed loss exceeds ``diverge_threshold``
    times its initial loss;
  * ``"spiked"``: some step's loss exceeded ``spike_threshold`` times the
    initial loss, even if it came back (a run that survived a blow-up by
    luck sits at the edge of stability, where float32 rounding or the
    device count decides whether it trains);
  * ``"stalled"``: it ends no better than it started: its best validation
    accuracy rose by less than ``min_improvement`` (a model at chance), else
    its best validation loss fell by less than ``min_improvement`` of the
    initial one, else (no validation) its final windowed loss fell by less
    than that below the mean of its first steps;
  * ``"trained"``: everything else. Only these are *stable*; the others are
    excluded from every suggestion and marked in plots and CSV.

  Args:
    losses: [K, N] per-step training losses.
    mean_loss: [K] final windowed mean loss.
    initial_metrics, final_metrics: validation metrics (name -> [K]) before
      and after training, if evaluated.
    diverge_threshold, spike_threshold: multiples of the initial loss (None
      disables the check).
    min_improvement: the least relative fall of the loss (and absolute rise
      of an accuracy) that counts as training.
  """
  x = np.asarray(losses, np.float64)
  final = np.asarray(mean_loss, np.float64)
  k, n = x.shape
  initial = x[:, 0] if n else np.full(k, np.nan)
  status = np.full(k, "trained", dtype=object)
  init_m, fin_m = dict(initial_metrics or {}), dict(final_metrics or {})
  with np.errstate(invalid="ignore", over="ignore"):
    if "accuracy" in init_m and "accuracy" in fin_m:
      # A dead run sits at chance accuracy, even where its loss went from
      # the initial level down to the chance-level loss.
      a, b = np.asarray(init_m["accuracy"]), np.asarray(fin_m["accuracy"])
      stalled = ~(b >= a + min_improvement)
    elif "loss" in init_m and "loss" in fin_m:
      a, b = np.asarray(init_m["loss"]), np.asarray(fin_m["loss"])
      stalled = ~(b < a - min_improvement * np.abs(a))
    else:
      # The first steps' mean, not one batch's loss: a single batch can be
      # a few percent off the model's loss.
      head = x[:, :max(1, min(10, n // 5))]
      ok = np.isfinite(head)
      start = np.where(ok, head, 0.0).sum(1) / np.maximum(ok.sum(1), 1)
      start = np.where(ok.any(1), start, np.nan)
      stalled = ~(final < start - min_improvement * np.abs(start))
    status[stalled] = "stalled"
    if spike_threshold is not None and n:
      peak = np.max(np.where(np.isfinite(x), x, -np.inf), axis=1)
      status[peak > spike_threshold * np.abs(initial)] = "spiked"
    if diverge_threshold is not None:
      status[final > diverge_threshold * np.abs(initial)] = "diverged"
  status[~np.all(np.isfinite(x), axis=1)] = "nonfinite"
  return status.astype(str)


def summarize(losses: Any, window: int = DEFAULT_WINDOW,
              diverge_threshold: float | None = DIVERGE_THRESHOLD
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """``(final_loss, mean_loss, diverged, diverged_at)`` of ``[K, N]``
  losses, by the rule of :func:`classify`: a run diverged at its first
  NaN/inf loss, or -- when its final windowed loss exceeds
  ``diverge_threshold`` times its initial loss -- at the first step whose
  windowed mean did; ``diverged_at`` is -1 otherwise."""
  x = np.asarray(losses, np.float64)
  k, n = x.shape
  trailing = windowed_mean(x, window) if n else np.zeros((k, 0))
  final = x[:, -1] if n else np.full(k, np.nan)
  mean = trailing[:, -1] if n else np.full(k, np.nan)
  bad = ~np.isfinite(x)
  nonfinite = bad.any(1)
  # argmax of a run without steps is an error: a sweep stopped before its
  # first chunk has no divergence to place.
  at = (np.where(nonfinite, np.argmax(bad, 1), -1) if n
        else np.full(k, -1)).astype(np.int64)
  diverged = nonfinite.copy()
  if diverge_threshold is not None and n:
    with np.errstate(invalid="ignore"):
      over = trailing > diverge_threshold * x[:, :1]
    late = over[:, -1] & ~nonfinite
    at = np.where(late, np.argmax(over, 1), at)
    diverged |= late
  return final, mean, diverged, np.where(diverged, at, -1)
