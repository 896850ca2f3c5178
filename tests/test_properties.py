"""Property-based tests (hypothesis): schedules against the float64
reference, and the results readers against random and mutated JSON.

* Every schedule (cyclic modes including both forms of exp_range,
  waveforms, asymmetric cycles, one-cycle with two and three phases, both
  momentum schedules), for random valid hyperparameters and random steps in
  ``[0, 2**31 - 1]``, stays within ``1e-6 * max_value`` plus float32
  rounding of the value of ``_reference`` (README: "float32 results stay
  within 1e-6 x max of a float64 reference for every step up to
  2**31 - 1").
* The readers (``load_results``, ``*.from_json``), given any JSON value or
  a valid results file with a field dropped, retyped or garbled, either
  return a valid result or raise ValueError/TypeError naming the file:
  never another exception.
"""

import json
import pathlib
import tempfile

import _reference as ref
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import optax_clr as S
from optax_clr import results as results_lib
from optax_clr.results import ParallelSweepResult
from optax_clr.results import RangeTestResult
from optax_clr.results import TrainHistory

INT32_MAX = 2**31 - 1
F32_EPS = 2.0**-23
F32_TINY = float(np.finfo(np.float32).tiny)  # rounding below it: underflow
NUM_STEPS = 16  # every example evaluates the same shape: no recompiles

SETTINGS = settings(deadline=None, max_examples=40, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def log_uniform(lo, hi):
  return st.floats(np.log10(lo), np.log10(hi)).map(lambda e: 10.0**e)


def steps_of(cycle=None):
  """Random steps in [0, 2**31 - 1], with the cycle's boundaries and the
  largest step among them."""
  special = [0, INT32_MAX]
  if cycle:
    special += [cycle, min(INT32_MAX, cycle - 1), min(INT32_MAX, 2 * cycle)]
  return st.lists(st.integers(0, INT32_MAX), min_size=NUM_STEPS - len(
      special), max_size=NUM_STEPS - len(special)).map(
          lambda xs: xs + special)


def ours(schedule, steps):
  values = schedule(jnp.asarray(steps, jnp.int32))
  assert values.dtype == jnp.float32
  return np.asarray(values, np.float64)


def assert_close(got, want, top):
  err = np.abs(got - want)
  tol = 1e-6 * top + F32_EPS * np.abs(want) + F32_TINY
  bad = np.flatnonzero(~(err <= tol))
  assert not bad.size, (f"{bad.size} steps off, worst {err.max():.3g} > "
                        f"{tol[bad[0]]:.3g}", got[bad[:3]], want[bad[:3]])


# ----------------------------------------------------------------------------
# Schedules.

cyclic_args = st.fixed_dictionaries({
    "top": log_uniform(1e-6, 10.0),
    "base_frac": st.floats(0.0, 1.0),
    "up": st.one_of(st.integers(1, 20), st.integers(1, 10**6),
                    st.integers(1, 2**30 - 1)),  # up + up <= 2**31 - 1
    "down": st.one_of(st.none(), st.integers(1, 20), st.integers(1, 10**6)),
    "waveform": st.sampled_from(S.schedules.WAVEFORMS),
})


@SETTINGS
@given(args=cyclic_args, mode=st.sampled_from(["triangular", "triangular2"]),
       data=st.data())
def test_cyclic_lr_matches_the_reference(args, mode, data):
  top, up, down = args["top"], args["up"], args["down"]
  base = top * args["base_frac"]
  steps = data.draw(steps_of(up + (down or up)))
  lr = S.cyclic_schedule(base, top, up, down, mode=mode,
                         waveform=args["waveform"])
  want = ref.sequence(ref.cyclic_lr, steps, base, top, up, down, mode=mode,
                      waveform=args["waveform"])
  assert_close(ours(lr, steps), want, top)


@SETTINGS
@given(args=cyclic_args, gamma=st.one_of(
    st.floats(0.9, 1.0), st.floats(1 - 1e-6, 1.0),
    st.floats(1 - 1e-9, 1.0)), decay_bounds=st.booleans(), data=st.data())
def test_exp_range_both_forms_match_the_reference(args, gamma, decay_bounds,
                                                  data):
  assume(gamma > 0)
  top, up, down = args["top"], args["up"], args["down"]
  base = top * args["base_frac"]
  steps = data.draw(steps_of(up + (down or up)))
  lr = S.exp_range_schedule(base, top, up, down, gamma=gamma,
                            decay_bounds=decay_bounds,
                            waveform=args["waveform"])
  want = ref.sequence(ref.cyclic_lr, steps, base, top, up, down,
                      mode="exp_range", gamma=gamma, waveform=args["waveform"],
                      decay_bounds=decay_bounds)
  assert_close(ours(lr, steps), want, top)


@SETTINGS
@given(args=cyclic_args, low=st.floats(0.0, 0.99), width=st.floats(0.0, 1.0),
       mode=st.sampled_from(S.schedules.MODES), data=st.data())
def test_cyclic_momentum_matches_the_reference(args, low, width, mode, data):
  high = low + (0.999 - low) * width
  up, down = args["up"], args["down"]
  gamma = 0.999 if mode == "exp_range" else 1.0
  steps = data.draw(steps_of(up + (down or up)))
  m = S.cyclic_momentum_schedule(low, high, up, down, mode=mode, gamma=gamma,
                                 waveform=args["waveform"])
  want = ref.sequence(ref.cyclic_momentum, steps, low, high, up, down,
                      mode=mode, gamma=gamma, waveform=args["waveform"])
  assert_close(ours(m, steps), want, high)


one_cycle_args = st.fixed_dictionaries({
    "total": st.one_of(st.integers(2, 100), st.integers(2, 10**7),
                       st.integers(2, INT32_MAX)),
    "pct": st.floats(0.01, 0.99),
    "anneal": st.sampled_from(S.schedules.ANNEAL_STRATEGIES),
    "three_phase": st.booleans(),
})


def valid_phases(args):
  n, p = args["total"], args["pct"]
  ends = [p * n - 1] + ([2 * p * n - 2] if args["three_phase"] else []) + [
      n - 1]
  return ends[0] > 0 and all(a < b for a, b in zip(ends, ends[1:]))


@SETTINGS
@given(args=one_cycle_args, top=log_uniform(1e-6, 10.0),
       div=log_uniform(1.0, 1e4), final_div=log_uniform(1.0, 1e5),
       data=st.data())
def test_one_cycle_matches_the_reference(args, top, div, final_div, data):
  assume(valid_phases(args))
  steps = data.draw(steps_of(args["total"]))
  lr = S.one_cycle_schedule(top, args["total"], pct_start=args["pct"],
                            anneal_strategy=args["anneal"], div_factor=div,
                            final_div_factor=final_div,
                            three_phase=args["three_phase"])
  want = ref.sequence(ref.one_cycle_lr, steps, top, args["total"],
                      args["pct"], args["anneal"], div, final_div,
                      args["three_phase"])
  assert_close(ours(lr, steps), want, top)


@SETTINGS
@given(args=one_cycle_args, low=st.floats(0.0, 0.99),
       width=st.floats(0.0, 1.0), data=st.data())
def test_one_cycle_momentum_matches_the_reference(args, low, width, data):
  assume(valid_phases(args))
  high = low + (0.999 - low) * width
  steps = data.draw(steps_of(args["total"]))
  m = S.one_cycle_momentum_schedule(
      args["total"], pct_start=args["pct"], anneal_strategy=args["anneal"],
      base_momentum=low, max_momentum=high, three_phase=args["three_phase"])
  want = ref.sequence(ref.one_cycle_momentum, steps, args["total"],
                      args["pct"], args["anneal"], low, high,
                      args["three_phase"])
  assert_close(ours(m, steps), want, high)


# ----------------------------------------------------------------------------
# Results readers on random JSON.

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.text(max_size=8), children, max_size=5),
    max_leaves=30)

TYPES = ["RangeTestResult", "MultiSeedRangeTestResult", "ParallelSweepResult",
         "GridSweepResult", "WeightDecayRangeTestResult", "TrainHistory",
         "BatchSizeSweepResult", "RunSummary", "Unknown"]


def valid_files():
  lrs = np.logspace(-5, 0, 6)
  return {
      "range": RangeTestResult(
          lrs=lrs, losses=np.linspace(3, 1, 6), smoothed_losses=np.linspace(
              3, 1, 6), stop_reason="diverged", eval_steps=[0, 3],
          eval_lrs=lrs[[0, 3]], eval_metrics={"accuracy": [0.1, 0.4]},
          config={"num_steps": 6}).to_dict(),
      "sweep": ParallelSweepResult(
          lrs=[0.01, 0.1, 1.0], losses=[[2, 1], [2, 0.5], [2, np.nan]],
          final_loss=[1, 0.5, np.nan], mean_loss=[1.5, 1.2, np.nan],
          diverged=[False, False, True], diverged_at=[-1, -1, 1],
          eval_metrics={"accuracy": [0.4, 0.6, np.nan]}).to_dict(),
      "history": TrainHistory(
          steps=[0, 1, 2], losses=[2.0, 1.5, 1.0], lrs=[0.1, 0.2, 0.1],
          momenta=[0.9, 0.85, 0.9], eval_steps=[3],
          eval_metrics={"accuracy": [0.5]}, wall_times=[0.5],
          initial_metrics={"accuracy": [0.1]}).to_dict(),
      "summary": {"type": "RunSummary", "format_version": 2,
                  "command": "demo", "parts": {"range_test": "r.json"},
                  "bounds": {"base_lr": 0.01, "max_lr": 0.1}, "summary": {}},
  }


VALID = valid_files()


@pytest.fixture(scope="module")
def workdir():
  with tempfile.TemporaryDirectory() as d:
    yield pathlib.Path(d)


def assert_loads_or_names_the_file(path, read=S.load_results):
  try:
    out = read(path)
  except (ValueError, TypeError) as e:
    message = str(e)
    assert str(path) in message, message
    assert "\n" not in message.strip(), message
    return None
  assert isinstance(out, (results_lib.Result, results_lib.RunSummary))
  return out


@settings(SETTINGS, max_examples=150)
@given(value=json_values)
def test_any_json_value_loads_or_is_refused_naming_the_file(workdir, value):
  path = workdir / "any.json"
  path.write_text(json.dumps(value))
  assert_loads_or_names_the_file(path)


@settings(SETTINGS, max_examples=150)
@given(kind=st.sampled_from(TYPES), fields=st.dictionaries(
    st.sampled_from(["lrs", "losses", "smoothed_losses", "stop_reason",
                     "eval_steps", "eval_lrs", "eval_metrics", "config",
                     "format_version", "steps", "momenta", "wall_times",
                     "final_loss", "mean_loss", "diverged", "diverged_at",
                     "seeds", "num_recorded", "stop_reasons", "parts",
                     "bounds", "command", "configs", "initial_metrics"]),
    json_values, max_size=8))
def test_random_fields_of_every_type_load_or_are_refused(workdir, kind,
                                                         fields):
  path = workdir / "typed.json"
  path.write_text(json.dumps({"type": kind, **fields}))
  assert_loads_or_names_the_file(path)


mutations = st.one_of(
    st.tuples(st.just("drop"), st.integers(0, 50)),
    st.tuples(st.just("retype"), st.integers(0, 50), json_values),
    st.tuples(st.just("garble"), st.integers(0, 10**6), st.binary(
        min_size=1, max_size=4)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)))


def mutate(data, mutation):
  """The file's bytes after dropping, retyping or garbling a field."""
  kind, at = mutation[0], mutation[1]
  keys = sorted(data)
  if kind in ("drop", "retype"):
    key = keys[at % len(keys)]
    data = dict(data)
    if kind == "drop":
      data.pop(key)
    else:
      data[key] = mutation[2]
    return json.dumps(data).encode()
  raw = json.dumps(data).encode()
  at %= len(raw)
  if kind == "garble":
    return raw[:at] + mutation[2] + raw[at + len(mutation[2]):]
  return raw[:at]


@settings(SETTINGS, max_examples=200)
@given(name=st.sampled_from(sorted(VALID)), mutation=mutations)
def test_a_mutated_results_file_loads_or_is_refused(workdir, name, mutation):
  path = workdir / "r.json"  # the summary's part points here: it is itself
  path.write_bytes(mutate(VALID[name], mutation))
  out = assert_loads_or_names_the_file(path)
  if out is not None and not isinstance(out, results_lib.RunSummary):
    # What loads is a valid result: it survives its own round trip.
    assert type(out).from_json(out.to_json()) == out


@settings(SETTINGS, max_examples=100)
@given(name=st.sampled_from(["range", "sweep", "history"]),
       mutation=mutations)
def test_from_json_of_a_mutated_file_loads_or_names_it(workdir, name,
                                                       mutation):
  cls = {"range": RangeTestResult, "sweep": ParallelSweepResult,
         "history": TrainHistory}[name]
  path = workdir / "typed_r.json"
  path.write_bytes(mutate(VALID[name], mutation))
  assert_loads_or_names_the_file(path, cls.from_json)


def test_the_valid_files_load_unchanged(workdir):
  for name, data in VALID.items():
    if name == "summary":
      continue
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(data))
    loaded = S.load_results(path)
    assert loaded.to_dict() == data
