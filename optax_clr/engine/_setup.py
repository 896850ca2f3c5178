"""What every driver does before its first step, in one place.

:func:`prepare` builds the feed, takes the model apart, reads the loss's
signature, resolves the optimizer and checks the loss and the evaluation on
one batch with ``jax.eval_shape`` -- before anything is compiled, so a
mistake costs no compilation and gets a message naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding

from optax_clr import _options
from optax_clr.engine import _feed
from optax_clr.engine import _layout
from optax_clr.engine import _loss
from optax_clr.engine import _model
from optax_clr.engine import _optimizer
from optax_clr.engine import _placement
from optax_clr.engine import _step

PyTree = Any
# Steps per compiled chunk: one host read per chunk, and at most one chunk of
# masked steps after a stop. Measured per step (bundled CNN, digits, batch
# 64, 2 CPU cores, scan): 5 -> 2.87 ms, 10 -> 2.70 ms, 25 -> 2.68 ms,
# 100 -> 2.61 ms: 25 is within 3 % of the best and keeps reports responsive.
CHUNK_STEPS = 25


class Setup(NamedTuple):
  """A driver's checked inputs.

  Attributes:
    options: the options.
    feed: the training batches.
    model: how to rebuild the model.
    parts: the model's arrays (fresh copies).
    spec: the step's static description.
    val: validation batches ``[V, ...]`` on the host, or None.
    metric_names: names of the training metrics (``loss`` and aux).
    eval_names: names of the validation metrics (empty without val_data).
    chunk_steps: steps per compiled chunk.
    has_conv: the step holds a convolution (the CPU execution, :mod:`._layout`).
    mesh, copies_axis, data_axis, bind: where the copies run
      (:func:`optax_clr.engine._layout.placement`).
  """
  options: _options.Options
  feed: Any
  model: _model.ModelDef
  parts: _model.Parts
  spec: _step.Spec
  val: PyTree
  metric_names: list[str]
  eval_names: list[str]
  chunk_steps: int
  has_conv: bool
  mesh: Any
  copies_axis: str | None
  data_axis: str | None
  bind: bool


def prepare(model: Any, loss_fn: Any, train_data: Any, options: Any, *,
            val_data: Any, optimizer: Any, driven: Sequence[str] = (),
            placeholders: Mapping[str, float] | None = None,
            training: bool = False, num_steps: int = 1,
            num_copies: int = 1) -> Setup:
  """Checks and builds everything a driver needs (nothing is compiled)."""
  if options.eval_fn is not None and val_data is None:
    raise ValueError("eval_fn needs val_data")
  feed = _feed.make_feed(train_data, options.batch_size, options.seed)
  defn, parts = _model.split_model(model, options.wrt)
  first = feed.first_batch()
  loss = _loss.resolve(loss_fn, "loss_fn", defn.stateful, first)
  evaluator = None if options.eval_fn is None else _loss.resolve(
      options.eval_fn, "eval_fn", defn.stateful, first)
  if training:
    opt = _optimizer.for_training(optimizer)
  else:
    opt = _optimizer.for_range_test(optimizer, parts.params, driven,
                                    placeholders)
  mesh, copies, data, bind = _layout.placement(options, num_copies)
  spec = _step.Spec(defn, loss, evaluator, opt, options.compute_dtype,
                    options.step_mode, options.eval_mode,
                    data if bind else None)
  val = None if val_data is None else _feed.load_validation(
      val_data, options.val_batches)
  with _placement.mesh_context(None if bind else mesh):
    names, has_conv = _checked(spec, lambda s: _step.check_loss(
        s, parts, _abstract(first, mesh, data, bind)))
    metric_names = ["loss"] + names
    eval_names: list[str] = []
    if val is not None:
      eval_names = _checked(spec, lambda s: _step.check_eval(
          s, parts, _abstract(jax.tree.map(lambda x: x[0], val), mesh,
                              data, bind)))
  chunk = chunk_steps(num_steps, options.steps_per_chunk)
  return Setup(options, feed, defn, parts, spec, val, metric_names,
               eval_names, chunk, has_conv, mesh, copies, data, bind)


def chunk_steps(num_steps: int, requested: int | None) -> int:
  """Steps per chunk: ``requested``, else chunks of at most
  :data:`CHUNK_STEPS` balanced over the run (30 steps: two chunks of 15,
  not 25 and a last one padded from 5 to 25, whose padding a scanned chunk
  would compute)."""
  if requested is not None:
    return max(1, min(num_steps, requested))
  chunks = -(-num_steps // CHUNK_STEPS)
  return max(1, -(-num_steps // chunks))


_UNBOUND = re.compile(r"unbound axis name: (\S+)")


def _checked(spec: _step.Spec, check: Any) -> Any:
  """Runs a check with the data axis bound (as the step will have it); a
  loss written for ``pmap`` without a bound axis gets the one-line fix."""
  axis = spec.data_axis
  try:
    if axis is None:
      return check(spec)
    found = []
    def probe():
      found.append(check(spec))
      return 0
    jax.vmap(lambda _: probe(), axis_name=axis, axis_size=1)(np.zeros(1))
    return found[0]
  except NameError as e:
    found = _UNBOUND.search(str(e))
    if found is None:
      raise
    name = found.group(1).rstrip(".,")
    raise ValueError(
        f"{spec.loss.name} uses the named axis {name!r} (code written for "
        f"pmap, e.g. lax.pmean(x, {name!r}) or BatchNorm(axis_name="
        f"{name!r})); pass data_axis={name!r} to bind it (the batch is then "
        "split over every device along that axis)") from None


def _abstract(batch: PyTree, mesh: Any, data_axis: str | None,
              bind: bool) -> PyTree:
  """The batch as the compiled step sees it: the local shard under
  ``shard_map``, the global array (with its sharding) under the user's
  mesh."""
  if mesh is None or data_axis is None:
    return batch
  size = mesh.shape[data_axis]

  def one(x):
    shape = np.shape(x)
    if np.ndim(x) == 0 or shape[0] % size:
      raise ValueError(
          f"the batch size {shape[0] if np.ndim(x) else '()'} must be "
          f"divisible by the {size} devices of the data axis {data_axis!r}")
    if bind:
      return jax.ShapeDtypeStruct((shape[0] // size,) + shape[1:], x.dtype)
    spec = _placement.batch_spec(np.ndim(x), 0, data_axis)
    return jax.ShapeDtypeStruct(shape, x.dtype,
                                sharding=NamedSharding(mesh, spec))
  return jax.tree.map(one, batch)


def config(setup: Setup, **extra: Any) -> dict[str, Any]:
  """The config entries every result records."""
  return {
      "model": setup.model.name,
      "loss_fn": _optimizer.describe(setup.spec.loss.fn),
      "optimizer": setup.spec.optimizer.description,
      **_options.describe(setup.options),
      "steps_per_chunk": int(setup.chunk_steps),
      "mesh": _layout.mesh_shape(setup.mesh),
      **extra,
  }
