"""Where the copies of a test run, and how many per dispatch.

A test trains ``K`` copies of one model (``K = 1`` for ``range_test`` and
``train``). A :class:`Plan` lays them out:

* over devices: a population's copies are split over a mesh axis
  ``"copies"`` (every device by default); a data axis splits every copy's
  batch instead (``Options.data_axis``: data parallelism, with the axis
  name bound for code written for ``pmap``); under ``jax.set_mesh`` of a
  mesh without a copies axis, every copy runs on all of that mesh, laid out
  as the model says (explicit sharding);
* per dispatch: a *block* of ``devices x group`` copies runs as one compiled
  program, ``group`` copies vmapped on each device; blocks are dispatched
  one after another without waiting;
* in time: ``"scan"`` runs a compiled chunk of steps per dispatch,
  ``"steps"`` one step per dispatch.

The defaults (``Options.group_size="auto"``, ``execution="auto"``):

* **GPU/TPU**: every local copy in one vmapped group (as many as fit in
  memory; more copies run in rounds), ``"scan"``.
* **CPU**: copies one after another (``group = 1``): exactly the loop a
  user writes, so never slower than it. ``"steps"`` when the step holds a
  convolution -- XLA's CPU backend computes a convolution's gradient with a
  naive kernel inside a loop body (jax-ml/jax#12868; measured on 2 cores,
  an ``nnx.Conv`` CNN ran 6.5x slower as a scanned chunk than step by step)
  -- else ``"scan"``, which saves the per-step dispatch (1.1x to 3x on the
  project's MLP, im2col CNN and transformer). A vmapped group is used only
  where it was *measured* faster on the run itself (:func:`try_group`):
  one real chunk of the run in the candidate layout, attempted only when
  its cost (its compilation and a chunk at worst twice as slow) fits in
  ``MEASURE_FRACTION`` of the run's estimated time, so short runs never pay
  for it. What was measured is remembered (:data:`MEASURED`) so a repeated
  call of the same program chooses at once.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from optax_clr.engine import _placement

COPY_AXIS = _placement.COPY_AXIS
# At most this fraction of a run's estimated time goes to measuring a layout.
MEASURE_FRACTION = 0.1
# The vmapped group tried on CPU: large enough to batch small matmuls, small
# enough that a group's activations stay near the caches (measured on 2
# cores: the bundled CNN at K=32, group 8: 3.8 s, group 32: 5.7 s).
CANDIDATE_GROUP = 8
# A candidate must beat the copies-one-after-another layout by this much.
MIN_GAIN = 0.05


def mesh_shape(mesh: Mesh | None) -> dict[str, int] | None:
  """A mesh as results record it: axis name -> size (None: no mesh)."""
  return None if mesh is None else {
      str(k): int(v) for k, v in mesh.shape.items()}


@dataclasses.dataclass(frozen=True)
class Plan:
  """How K copies are laid out (hashable: part of the programs' key).

  Attributes:
    mesh: the mesh, or None (the default device).
    copies_axis: the mesh axis the copies are split over, or None.
    data_axis: the mesh axis every batch is split over, or None.
    bind: run under ``shard_map`` (axis names bound, one program per
      device); False: ``jit`` under the user's mesh (explicit sharding).
    devices: copies per block along the copies axis (its size, or 1).
    group: copies vmapped together on a device.
    execution: ``"scan"`` or ``"steps"``.
  """
  mesh: Mesh | None
  copies_axis: str | None
  data_axis: str | None
  bind: bool
  devices: int
  group: int
  execution: str

  @property
  def block(self) -> int:
    """Copies per dispatch."""
    return self.devices * self.group

  def config(self) -> dict[str, Any]:
    return {"devices": self.devices, "group_size": self.group,
            "execution": self.execution, "data_axis": self.data_axis,
            "mesh": mesh_shape(self.mesh)}


def placement(options: Any, num_copies: int
              ) -> tuple[Mesh | None, str | None, str | None, bool]:
  """``(mesh, copies_axis, data_axis, bind)`` from the options (module
  docstring); a single copy never gets a copies axis of its own."""
  mesh, axis = options.mesh, options.data_axis
  if mesh is None and axis is not None:
    return Mesh(np.array(jax.devices()), (axis,)), None, axis, True
  if mesh is None:
    ambient = _placement.ambient_mesh()
    if ambient is not None and COPY_AXIS not in ambient.axis_names:
      return ambient, None, _placement.resolve_data_axis(ambient, None), False
    if ambient is not None:
      mesh = ambient
    elif num_copies > 1 and len(jax.devices()) > 1:
      mesh = _placement.copy_mesh()
    else:
      return None, None, None, True
  copies = COPY_AXIS if COPY_AXIS in mesh.axis_names and num_copies > 1 else (
      None)
  data = axis or _placement.resolve_data_axis(mesh, None)
  if data == COPY_AXIS:
    data = None
  if num_copies > 1 and COPY_AXIS not in mesh.axis_names and data is None:
    raise ValueError(
        f"mesh must have an axis named {COPY_AXIS!r} (the copies are split "
        f"over it) or a data axis ('data', 'batch' or data_axis=); its axes "
        f"are {list(mesh.axis_names)}")
  return mesh, copies, data, True


def default_execution(has_conv: bool) -> str:
  """``"auto"``'s choice: ``"steps"`` for a CPU step with a convolution."""
  if jax.default_backend() == "cpu" and has_conv:
    return "steps"
  return "scan"


def has_convolution(jaxpr: Any) -> bool:
  """True when a (closed) jaxpr holds a convolution, at any depth."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      return True
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None),
                                           "eqns"):
          if has_convolution(sub):
            return True
  return False


def default_group(local: int, options: Any) -> int:
  """The group before any measurement: the option, all local copies on
  GPU/TPU, one on CPU."""
  if options.group_size != "auto":
    return max(1, min(int(options.group_size), local))
  if jax.default_backend() == "cpu":
    return 1
  return local


def may_measure(options: Any, local: int) -> bool:
  """A vmapped group is worth measuring: CPU, automatic group, several
  local copies, one process (every process must run the same programs)."""
  return (options.group_size == "auto" and local > 1
          and jax.default_backend() == "cpu" and jax.process_count() == 1)


@dataclasses.dataclass
class Measure:
  """What was measured for one program: compile seconds of the group tried
  and seconds per copy-step of each group."""
  compile_seconds: dict[int, float] = dataclasses.field(default_factory=dict)
  per_copy_step: dict[int, float] = dataclasses.field(default_factory=dict)

  def best(self) -> int | None:
    if len(self.per_copy_step) < 2:
      return None
    floor = self.per_copy_step.get(1)
    g, t = min(self.per_copy_step.items(), key=lambda kv: kv[1])
    return g if floor is None or t < (1 - MIN_GAIN) * floor else 1


# The one cache of the layout: measurements by program (the same static key
# the compiled programs have), so that a repeated call chooses at once.
MEASURED: collections.OrderedDict[Any, Measure] = collections.OrderedDict()
MAX_MEASURED = 64


def measured(key: Any) -> Measure:
  if key not in MEASURED:
    MEASURED[key] = Measure()
    while len(MEASURED) > MAX_MEASURED:
      MEASURED.popitem(last=False)
  MEASURED.move_to_end(key)
  return MEASURED[key]


def try_group(measure: Measure, local: int, floor_chunk_seconds: float,
              floor_compile_seconds: float, chunk_copies: int,
              total_chunks: float) -> int | None:
  """The vmapped group to measure on this run, or None.

  Tried only if its cost -- its compilation (estimated as twice the
  floor's, or as measured before) plus one chunk at worst twice as slow --
  fits in ``MEASURE_FRACTION`` of the run's estimated time.

  Args:
    measure: what is known of this program.
    local: copies per device.
    floor_chunk_seconds: one chunk of one block in the floor layout.
    floor_compile_seconds: the floor program's compilation.
    chunk_copies: copies per floor block.
    total_chunks: block-chunks of the whole run in the floor layout.
  """
  group = min(local, CANDIDATE_GROUP)
  if group in measure.per_copy_step or group <= 1:
    return None
  compile_cost = measure.compile_seconds.get(
      group, 2 * floor_compile_seconds)
  chunk_cost = floor_chunk_seconds * group / chunk_copies
  budget = MEASURE_FRACTION * floor_chunk_seconds * total_chunks
  return group if compile_cost + chunk_cost <= budget else None
