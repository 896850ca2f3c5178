"""Hostile input against the library: every case refused by name, in one line.

A matrix of faulty or adversarial inputs, by category (schedules, steps,
optimizers, traced hyperparameters, range tests / sweeps / training,
loaders, results files, checkpoints). Each case names the exception type and
regexes that must all match the message: the argument (or file) AND the
value or the problem. Every message is one line, and the innermost frame of
the error is in ``optax_clr``: our own check, not a crash inside jax or
NumPy. (tests/test_bad_inputs.py holds an older, smaller table; the cases
here are new ones.)

Cases that need a run use a linear model on 32 examples; most are refused
before anything is traced.
"""

import json
import pathlib
import pickle
import re
import struct
import gzip

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

import optax_clr as S
from optax_clr import drivers
from optax_clr.drivers import _checkpoint
from optax_clr.results import MultiSeedRangeTestResult
from optax_clr.results import ParallelSweepResult
from optax_clr.results import RangeTestResult
from optax_clr.results import TrainHistory

import _toy

PKG = pathlib.Path(S.__file__).resolve().parent
NAN, INF = float("nan"), float("inf")


class Evil:
  """Unpickling this runs ``touch <path>``: a malicious pickle."""

  def __init__(self, path):
    self.path = str(path)

  def __reduce__(self):
    import os  # pylint: disable=import-outside-toplevel
    return (os.system, (f"touch {self.path}",))


def C(make, error, *patterns):
  """A case: ``make(tmp_path)`` raises ``error``; every pattern matches."""
  return (make, error, patterns)


# ----------------------------------------------------------------------------
# Tiny runs: a linear classifier on 32 examples of 4 features.


params = _toy.classifier_params
loss_fn = _toy.classifier_loss
arrays = _toy.classifier_data


EMPTY_VAL = {"x": np.zeros((0, 4), np.float32), "y": np.zeros(0, np.int32)}


def rt(**kw):
  kw = {"num_steps": 10, "batch_size": 8, "progress": False, **kw}
  return S.range_test(params(), kw.pop("loss_fn", loss_fn),
                      kw.pop("data", arrays()), **kw)


def prt(**kw):
  kw = {"num_steps": 3, "batch_size": 8, "progress": False, **kw}
  return S.parallel_range_test(params(), kw.pop("loss_fn", loss_fn),
                               kw.pop("data", arrays()), **kw)


def sw(**kw):
  kw = {"hyperparams": {"learning_rate": [0.01, 0.1]}, "num_steps": 3,
        "batch_size": 8, "progress": False, **kw}
  return S.sweep(params(), loss_fn, arrays(), **kw)


def tr(**kw):
  kw = {"optimizer": S.cyclic_sgd(0.1, 0.9), "num_epochs": 1,
        "batch_size": 8, "progress": False, **kw}
  return S.train(params(), kw.pop("loss_fn", loss_fn),
                 kw.pop("data", arrays()), **kw)


def state():
  return S.cyclic_sgd(0.1, 0.9).init(params())


def sched(step):
  return S.triangular_schedule(0.01, 0.1, 4)(step)


def vmapped(fn, values):
  return jax.vmap(fn)(jnp.asarray(values))


# ----------------------------------------------------------------------------
# Schedules: every constructor, every argument.

tri = S.triangular_schedule
cyc = S.cyclic_schedule
one = S.one_cycle_schedule
mom = S.cyclic_momentum_schedule
omom = S.one_cycle_momentum_schedule

SCHEDULES = {
    "base-nan": C(lambda t: tri(NAN, 0.1, 10), ValueError, r"base_value",
                  r"nan"),
    "base-inf": C(lambda t: tri(INF, 0.1, 10), ValueError, r"base_value",
                  r"inf"),
    "base-1e39-float32-overflow": C(lambda t: tri(1e39, 1e40, 10),
                                    ValueError, r"base_value",
                                    r"overflows float32"),
    "base-bool": C(lambda t: tri(True, 0.1, 10), TypeError, r"base_value",
                   r"bool"),
    "base-python-complex": C(lambda t: tri(0.01j, 0.1, 10), TypeError,
                             r"base_value", r"complex"),
    "base-numpy-complex": C(lambda t: tri(np.complex128(0.01), 0.1, 10),
                            TypeError, r"base_value", r"complex"),
    "base-string": C(lambda t: tri("0.01", 0.1, 10), TypeError,
                     r"base_value", r"str"),
    "base-none": C(lambda t: tri(None, 0.1, 10), TypeError, r"base_value",
                   r"NoneType"),
    "base-object": C(lambda t: tri(object(), 0.1, 10), TypeError,
                     r"base_value", r"object"),
    "base-vector": C(lambda t: tri(np.array([0.01, 0.02]), 0.1, 10),
                     ValueError, r"base_value", r"scalar.*\(2,\)"),
    "base-object-array": C(lambda t: tri(np.array([None], dtype=object)[0:1]
                                         .reshape(()), 0.1, 10), TypeError,
                           r"base_value", r"object"),
    "max-nan": C(lambda t: tri(0.01, NAN, 10), ValueError, r"max_value",
                 r"nan"),
    "max-1e39-float32-overflow": C(lambda t: tri(0.01, 1e39, 10), ValueError,
                                   r"max_value", r"1e\+39.*overflows float32"),
    "max-numpy-float64-1e39": C(lambda t: tri(0.01, np.float64(1e39), 10),
                                ValueError, r"max_value", r"overflows"),
    "max-negative": C(lambda t: tri(-0.5, -0.1, 10), ValueError,
                      r"base_value", r"-0\.5"),
    "max-numpy-complex64": C(lambda t: tri(0.01, np.complex64(0.1), 10),
                             TypeError, r"max_value", r"complex"),
    "max-bool-array": C(lambda t: tri(0.01, np.bool_(True), 10), TypeError,
                        r"max_value", r"bool"),
    "max-string-array": C(lambda t: tri(0.01, np.array("0.1"), 10),
                          TypeError, r"max_value", r"<U3|str"),
    "max-matrix": C(lambda t: tri(0.01, np.ones((2, 2)), 10), ValueError,
                    r"max_value", r"\(2, 2\)"),
    "step-size-zero": C(lambda t: tri(0.01, 0.1, 0), ValueError,
                        r"step_size_up", r"got 0"),
    "step-size-negative": C(lambda t: tri(0.01, 0.1, -5), ValueError,
                            r"step_size_up", r"-5"),
    "step-size-float": C(lambda t: tri(0.01, 0.1, 2.5), TypeError,
                         r"step_size_up", r"2\.5"),
    "step-size-bool": C(lambda t: tri(0.01, 0.1, True), TypeError,
                        r"step_size_up", r"bool"),
    "step-size-string": C(lambda t: tri(0.01, 0.1, "10"), TypeError,
                          r"step_size_up", r"str"),
    "step-size-int64-above-int32": C(lambda t: tri(0.01, 0.1,
                                                   np.int64(2**31)),
                                     ValueError, r"step_size_up",
                                     r"2147483648"),
    "step-size-2**40": C(lambda t: tri(0.01, 0.1, 2**40), ValueError,
                         r"step_size_up", r"1099511627776"),
    "step-size-down-zero": C(lambda t: tri(0.01, 0.1, 10, 0), ValueError,
                             r"step_size_down", r"got 0"),
    "step-size-down-float": C(lambda t: tri(0.01, 0.1, 10, 1.5), TypeError,
                              r"step_size_down", r"1\.5"),
    "cycle-beyond-int32": C(lambda t: tri(0.01, 0.1, 2**30, 2**30),
                            ValueError, r"step_size_up \+ step_size_down",
                            r"int32"),
    "mode-int": C(lambda t: cyc(0.01, 0.1, 10, mode=3), ValueError,
                  r"mode", r"got 3"),
    "mode-none": C(lambda t: cyc(0.01, 0.1, 10, mode=None), ValueError,
                   r"mode", r"None"),
    "gamma-zero": C(lambda t: cyc(0.01, 0.1, 10, mode="exp_range",
                                  gamma=0.0), ValueError, r"gamma",
                    r"\(0, 1\]"),
    "gamma-nan": C(lambda t: S.exp_range_schedule(0.01, 0.1, 10, gamma=NAN),
                   ValueError, r"gamma", r"nan"),
    "gamma-complex": C(lambda t: S.exp_range_schedule(0.01, 0.1, 10,
                                                      gamma=0.9j),
                       TypeError, r"gamma", r"complex"),
    "gamma-string": C(lambda t: S.exp_range_schedule(0.01, 0.1, 10,
                                                     gamma="0.9"),
                      TypeError, r"gamma", r"str"),
    "exp-range-decay-bounds-not-bool": C(
        lambda t: S.exp_range_schedule(0.01, 0.1, 10, gamma=0.9,
                                       decay_bounds="yes"), TypeError,
        r"decay_bounds", r"str"),
    "scale-mode-unknown": C(lambda t: cyc(0.01, 0.1, 10, scale_fn=abs,
                                          scale_mode="epoch"), ValueError,
                            r"scale_mode", r"epoch"),
    "scale-fn-string": C(lambda t: cyc(0.01, 0.1, 10, scale_fn="halve"),
                         TypeError, r"scale_fn", r"str"),
    "waveform-none": C(lambda t: tri(0.01, 0.1, 10, waveform=None),
                       ValueError, r"waveform", r"None"),
    "triangular2-max-below-base": C(
        lambda t: S.triangular2_schedule(0.1, 0.01, 10), ValueError,
        r"base_value.*max_value", r"0\.1.*0\.01"),
    "momentum-base-nan": C(lambda t: mom(NAN, 0.9, 10), ValueError,
                           r"base_momentum", r"nan"),
    "momentum-max-one": C(lambda t: mom(0.8, 1.0, 10), ValueError,
                          r"max_momentum", r"1\.0"),
    "momentum-negative": C(lambda t: mom(-0.1, 0.9, 10), ValueError,
                           r"base_momentum", r"-0\.1"),
    "momentum-complex": C(lambda t: mom(0.8, 0.9j, 10), TypeError,
                          r"max_momentum", r"complex"),
    "momentum-string": C(lambda t: mom("0.8", 0.9, 10), TypeError,
                         r"base_momentum", r"str"),
    "one-cycle-max-nan": C(lambda t: one(NAN, 100), ValueError,
                           r"max_value", r"nan"),
    "one-cycle-max-1e39": C(lambda t: one(1e39, 100), ValueError,
                            r"max_value", r"overflows float32"),
    "one-cycle-max-negative": C(lambda t: one(-1.0, 100), ValueError,
                                r"max_value", r"-1\.0"),
    "one-cycle-max-bool": C(lambda t: one(True, 100), TypeError,
                            r"max_value", r"bool"),
    "one-cycle-max-numpy-complex": C(lambda t: one(np.complex64(1), 100),
                                     TypeError, r"max_value", r"complex"),
    "one-cycle-total-steps-float": C(lambda t: one(1.0, 100.0), TypeError,
                                     r"total_steps", r"100\.0"),
    "one-cycle-total-steps-string": C(lambda t: one(1.0, "100"), TypeError,
                                      r"total_steps", r"str"),
    "one-cycle-total-steps-above-int32": C(lambda t: one(1.0, 2**31),
                                           ValueError, r"total_steps",
                                           r"2147483648"),
    "one-cycle-pct-start-zero": C(lambda t: one(1.0, 100, pct_start=0.0),
                                  ValueError, r"pct_start", r"\(0, 1\)"),
    "one-cycle-pct-start-nan": C(lambda t: one(1.0, 100, pct_start=NAN),
                                 ValueError, r"pct_start", r"nan"),
    "one-cycle-pct-start-too-small-for-warmup": C(
        lambda t: one(1.0, 10, pct_start=0.05), ValueError,
        r"pct_start \* total_steps", r"0\.05"),
    "one-cycle-three-phase-pct-too-large": C(
        lambda t: one(1.0, 100, pct_start=0.6, three_phase=True),
        ValueError, r"pct_start", r"three_phase"),
    "one-cycle-three-phase-not-bool": C(
        lambda t: one(1.0, 100, three_phase=1), TypeError, r"three_phase",
        r"int"),
    "one-cycle-div-factor-zero": C(lambda t: one(1.0, 100, div_factor=0.0),
                                   ValueError, r"div_factor", r"0\.0"),
    "one-cycle-div-factor-tiny-overflows": C(
        lambda t: one(1.0, 100, div_factor=1e-40), ValueError,
        r"div_factor=1e-40", r"overflows float32"),
    "one-cycle-div-factor-underflows-to-zero": C(
        lambda t: one(1.0, 100, div_factor=1e-300), ValueError,
        r"div_factor", r"float32"),
    "one-cycle-final-div-factor-tiny-overflows": C(
        lambda t: one(1.0, 100, final_div_factor=1e-40), ValueError,
        r"final_div_factor=1e-40", r"overflows float32"),
    "one-cycle-final-div-factor-nan": C(
        lambda t: one(1.0, 100, final_div_factor=NAN), ValueError,
        r"final_div_factor", r"nan"),
    "one-cycle-anneal-none": C(lambda t: one(1.0, 100, anneal_strategy=None),
                               ValueError, r"anneal_strategy", r"None"),
    "one-cycle-momentum-total-steps-one": C(lambda t: omom(1), ValueError,
                                            r"total_steps", r"got 1"),
    "one-cycle-momentum-base-above-max": C(
        lambda t: omom(100, base_momentum=0.95, max_momentum=0.85),
        ValueError, r"base_momentum", r"0\.95"),
    "one-cycle-momentum-max-one": C(lambda t: omom(100, max_momentum=1.0),
                                    ValueError, r"max_momentum", r"1\.0"),
    "policy-unknown": C(lambda t: S.policy_schedules("cosine", base_lr=0.1,
                                                     max_lr=1.0),
                        ValueError, r"policy", r"cosine"),
    "policy-fixed-without-lr": C(lambda t: S.policy_schedules("fixed"),
                                 ValueError, r"fixed", r"lr"),
}

# Steps given to a schedule.
STEPS = {
    "step-string": C(lambda t: sched("3"), TypeError, r"step", r"str '3'"),
    "step-bool": C(lambda t: sched(True), TypeError, r"step", r"bool"),
    "step-numpy-bool": C(lambda t: sched(np.bool_(False)), TypeError,
                         r"step", r"bool"),
    "step-complex": C(lambda t: sched(3 + 0j), TypeError, r"step",
                      r"complex"),
    "step-none": C(lambda t: sched(None), TypeError, r"step", r"None"),
    "step-object": C(lambda t: sched(object()), TypeError, r"step",
                     r"object"),
    "step-string-array": C(lambda t: sched(np.array(["1", "2"])), TypeError,
                           r"step", r"<U1"),
    "step-int64-beyond-int32": C(lambda t: sched(np.int64(2**31 + 2)),
                                 ValueError, r"step must be <= 2147483647",
                                 r"2147483650"),
    "step-python-2**40": C(lambda t: sched(2**40), ValueError, r"step",
                           r"1099511627776"),
    "step-uint64-2**63": C(lambda t: sched(np.uint64(2**63)), ValueError,
                           r"step", r"9223372036854775808"),
    "step-int64-array-one-beyond-int32": C(
        lambda t: sched(np.array([0, 5, 2**32], np.int64)), ValueError,
        r"step", r"4294967296"),
}

# ----------------------------------------------------------------------------
# Optimizers and their hyperparameters.

OPTIMIZERS = {
    "sgd-lr-nan": C(lambda t: S.cyclic_sgd(NAN), ValueError,
                    r"learning_rate", r"nan"),
    "sgd-lr-1e39": C(lambda t: S.cyclic_sgd(1e39), ValueError,
                     r"learning_rate", r"overflows float32"),
    "sgd-lr-zero": C(lambda t: S.cyclic_sgd(0.0), ValueError,
                     r"learning_rate", r"\(0, inf\)"),
    "sgd-lr-bool": C(lambda t: S.cyclic_sgd(True), TypeError,
                     r"learning_rate", r"bool"),
    "sgd-lr-complex": C(lambda t: S.cyclic_sgd(0.1j), TypeError,
                        r"learning_rate", r"complex"),
    "sgd-lr-numpy-complex": C(lambda t: S.cyclic_sgd(np.complex64(0.1)),
                              TypeError, r"learning_rate", r"complex"),
    "sgd-lr-none": C(lambda t: S.cyclic_sgd(None), TypeError,
                     r"learning_rate", r"NoneType"),
    "sgd-lr-list": C(lambda t: S.cyclic_sgd([0.1]), TypeError,
                     r"learning_rate", r"list"),
    "sgd-schedule-returns-string": C(lambda t: S.cyclic_sgd(lambda c: "x"),
                                     TypeError, r"learning_rate",
                                     r"str|schedule"),
    "sgd-schedule-returns-vector": C(
        lambda t: S.cyclic_sgd(lambda c: jnp.ones(3) * 0.1), TypeError,
        r"learning_rate", r"scalar"),
    "sgd-schedule-python-if-on-step": C(
        lambda t: S.cyclic_sgd(lambda c: 0.1 if c > 5 else 0.2), TypeError,
        r"learning_rate", r"traced step"),
    "sgd-schedule-complex": C(lambda t: S.cyclic_sgd(lambda c: c * 1j),
                              TypeError, r"learning_rate", r"real scalar"),
    "sgd-momentum-one": C(lambda t: S.cyclic_sgd(0.1, 1.0), ValueError,
                          r"momentum", r"\[0, 1\)"),
    "sgd-momentum-negative": C(lambda t: S.cyclic_sgd(0.1, -0.1),
                               ValueError, r"momentum", r"-0\.1"),
    "sgd-momentum-nan": C(lambda t: S.cyclic_sgd(0.1, NAN), ValueError,
                          r"momentum", r"nan"),
    "sgd-momentum-string": C(lambda t: S.cyclic_sgd(0.1, "0.9"), TypeError,
                             r"momentum", r"str"),
    "sgd-nesterov-not-bool": C(lambda t: S.cyclic_sgd(0.1, 0.9,
                                                      nesterov="yes"),
                               TypeError, r"nesterov", r"str"),
    "adam-b1-one": C(lambda t: S.cyclic_adam(0.1, b1=1.0), ValueError,
                     r"b1", r"\[0, 1\)"),
    "adam-b2-complex": C(lambda t: S.cyclic_adam(0.1, b2=0.99j), TypeError,
                         r"b2", r"complex"),
    "adam-eps-negative": C(lambda t: S.cyclic_adam(0.1, eps=-1e-8),
                           ValueError, r"eps", r"-1e-08"),
    "adam-eps-inf": C(lambda t: S.cyclic_adam(0.1, eps=INF), ValueError,
                      r"eps", r"inf"),
    "adamw-weight-decay-nan": C(lambda t: S.cyclic_adamw(0.1,
                                                         weight_decay=NAN),
                                ValueError, r"weight_decay", r"nan"),
    "adamw-weight-decay-1e39": C(lambda t: S.cyclic_adamw(
        0.1, weight_decay=1e39), ValueError, r"weight_decay",
        r"overflows float32"),
    "adamw-lr-string": C(lambda t: S.cyclic_adamw("1e-3"), TypeError,
                         r"learning_rate", r"str"),
    "cyclic-optimizer-unknown-hyperparameter": C(
        lambda t: S.cyclic_optimizer(optax.sgd, learning_rate=0.1,
                                     beta=0.5), (TypeError, ValueError),
        r"beta"),
    "set-lr-nan": C(lambda t: S.set_hyperparams(state(), learning_rate=NAN),
                    ValueError, r"learning_rate", r"nan"),
    "set-momentum-1.5": C(lambda t: S.set_hyperparams(state(), momentum=1.5),
                          ValueError, r"momentum", r"1\.5"),
    "set-lr-1e39": C(lambda t: S.set_hyperparams(state(), learning_rate=1e39),
                     ValueError, r"learning_rate", r"overflows float32"),
    "set-lr-negative": C(lambda t: S.set_hyperparams(state(),
                                                     learning_rate=-1.0),
                         ValueError, r"learning_rate", r"-1\.0"),
    "set-lr-string": C(lambda t: S.set_hyperparams(state(),
                                                   learning_rate="0.1"),
                       TypeError, r"learning_rate", r"str"),
    "set-lr-bool": C(lambda t: S.set_hyperparams(state(), learning_rate=True),
                     TypeError, r"learning_rate", r"bool"),
    "set-lr-complex": C(lambda t: S.set_hyperparams(state(),
                                                    learning_rate=0.1j),
                        TypeError, r"learning_rate", r"complex"),
    "set-lr-none": C(lambda t: S.set_hyperparams(state(), learning_rate=None),
                     TypeError, r"learning_rate", r"NoneType"),
    "set-lr-array-bad-beyond-index-1024": C(
        lambda t: S.set_hyperparams(state(), learning_rate=np.r_[
            np.full(2000, 0.1), -0.5]), ValueError, r"learning_rate",
        r"-0\.5"),
    "set-momentum-array-nan": C(lambda t: S.set_hyperparams(
        state(), momentum=np.array([0.9, NAN])), ValueError, r"momentum",
        r"nan"),
    "set-scheduled-hyperparameter": C(
        lambda t: S.set_hyperparams(S.cyclic_sgd(
            S.triangular_schedule(0.01, 0.1, 10)).init(params()),
            learning_rate=0.1), ValueError, r"learning_rate",
        r"follows a schedule"),
    "get-hyperparams-plain-dict": C(lambda t: S.get_hyperparams({"a": 1}),
                                    ValueError, r"opt_state",
                                    r"no optax InjectHyperparamsState"),
    "get-hyperparams-plain-optax-state": C(
        lambda t: S.get_hyperparams(optax.sgd(0.1).init(params())),
        ValueError, r"opt_state", r"InjectHyperparamsState"),
    "get-hyperparams-unknown-path": C(
        lambda t: S.get_hyperparams(state(), "[7]"), ValueError,
        r"\[7\]", r"path|InjectHyperparamsState"),
    "get-step-none": C(lambda t: S.get_step(None), ValueError,
                       r"opt_state", r"InjectHyperparamsState"),
}

# Hyperparameters that are tracers: only their dtype can be checked.
TRACED = {
    "vmap-bool-max-value": C(lambda t: vmapped(
        lambda m: tri(0.01, m, 10)(3), [True, False]), TypeError,
        r"max_value", r"dtype bool"),
    "vmap-complex-max-value": C(lambda t: vmapped(
        lambda m: tri(0.01, m, 10)(3), [0.1 + 0j, 0.2]), TypeError,
        r"max_value", r"complex64"),
    "vmap-bool-base-momentum": C(lambda t: vmapped(
        lambda m: mom(m, 0.9, 10)(3), [True]), TypeError, r"base_momentum",
        r"dtype bool"),
    "vmap-complex-gamma": C(lambda t: vmapped(
        lambda g: S.exp_range_schedule(0.01, 0.1, 10, gamma=g)(3), [0.9j]),
        TypeError, r"gamma", r"complex"),
    "vmap-float-step-size": C(lambda t: vmapped(
        lambda s: tri(0.01, 0.1, s)(3), [10.0]), TypeError,
        r"step_size_up", r"float32"),
    "vmap-bool-one-cycle-max": C(lambda t: vmapped(
        lambda m: one(m, 100)(3), [True]), TypeError, r"max_value",
        r"dtype bool"),
    "vmap-complex-div-factor": C(lambda t: vmapped(
        lambda d: one(1.0, 100, div_factor=d)(3), [25j]), TypeError,
        r"div_factor", r"complex"),
    "vmap-bool-step": C(lambda t: vmapped(sched, [True, False]), TypeError,
                        r"step", r"bool"),
    "vmap-set-hyperparams-bool": C(lambda t: vmapped(
        lambda v: S.set_hyperparams(state(), learning_rate=v),
        [True, False]), TypeError, r"learning_rate", r"bool"),
    "vmap-set-hyperparams-complex": C(lambda t: vmapped(
        lambda v: S.set_hyperparams(state(), momentum=v), [0.9j]), TypeError,
        r"momentum", r"complex"),
    "vmap-sgd-complex-lr": C(lambda t: vmapped(
        lambda v: S.cyclic_sgd(v).init(params()), [0.1j]), TypeError,
        r"learning_rate", r"complex"),
}

# ----------------------------------------------------------------------------
# Range tests, sweeps and training.

RUNS = {
    "rt-num-steps-string": C(lambda t: rt(num_steps="10"), TypeError,
                             r"num_steps", r"str '10'"),
    "rt-num-steps-float": C(lambda t: rt(num_steps=10.0), TypeError,
                            r"num_steps", r"10\.0"),
    "rt-num-steps-bool": C(lambda t: rt(num_steps=True), TypeError,
                           r"num_steps", r"bool"),
    "rt-num-steps-2**40": C(lambda t: rt(num_steps=2**40), ValueError,
                            r"num_steps", r"1099511627776"),
    "rt-start-lr-nan": C(lambda t: rt(start_lr=NAN), ValueError,
                         r"start_lr", r"nan"),
    "rt-start-lr-complex": C(lambda t: rt(start_lr=1e-3j), TypeError,
                             r"start_lr", r"complex"),
    "rt-start-lr-bool": C(lambda t: rt(start_lr=True), TypeError,
                          r"start_lr", r"bool"),
    "rt-end-lr-1e39": C(lambda t: rt(end_lr=1e39), ValueError, r"end_lr",
                        r"overflows float32"),
    "rt-end-lr-string": C(lambda t: rt(end_lr="10"), TypeError, r"end_lr",
                          r"str"),
    "rt-ramp-underflows-float32": C(lambda t: rt(start_lr=1e-50,
                                                 end_lr=1e-3), ValueError,
                                    r"start_lr", r"float32"),
    "rt-smoothing-nan": C(lambda t: rt(smoothing=NAN), ValueError,
                          r"smoothing", r"nan"),
    "rt-smoothing-above-one": C(lambda t: rt(smoothing=1.5), ValueError,
                                r"smoothing", r"1\.5"),
    "rt-diverge-threshold-inf": C(lambda t: rt(diverge_threshold=INF),
                                  ValueError, r"diverge_threshold", r"inf"),
    "rt-eval-every-zero": C(lambda t: rt(eval_every=0, val_data=arrays(8)),
                            ValueError, r"eval_every", r"got 0"),
    "rt-batch-size-zero": C(lambda t: rt(batch_size=0), ValueError,
                            r"batch_size", r"0"),
    "rt-batch-size-above-data": C(lambda t: rt(batch_size=64), ValueError,
                                  r"batch_size", r"64"),
    "rt-batch-size-string": C(lambda t: rt(batch_size="8"), TypeError,
                              r"batch_size", r"str"),
    "rt-empty-validation-data": C(lambda t: rt(val_data=EMPTY_VAL,
                                               eval_every=2), ValueError,
                                  r"val_data", r"empty"),
    "rt-seed-negative": C(lambda t: rt(seed=-1), ValueError, r"seed",
                          r"-1"),
    "rt-seed-2**40": C(lambda t: rt(seed=2**40), ValueError, r"seed",
                       r"1099511627776"),
    "rt-steps-per-chunk-zero": C(lambda t: rt(steps_per_chunk=0),
                                 ValueError, r"steps_per_chunk", r"0"),
    "rt-loss-returns-string": C(lambda t: rt(loss_fn=lambda p, b: "x"),
                                TypeError, r"loss_fn", r"str"),
    "rt-loss-returns-none": C(lambda t: rt(loss_fn=lambda p, b: None),
                              TypeError, r"loss_fn", r"NoneType"),
    "rt-loss-returns-vector": C(lambda t: rt(loss_fn=lambda p, b: (
        b["x"] @ p["w"]).sum(1)), ValueError, r"loss_fn", r"\(8,\)"),
    "rt-loss-returns-int": C(lambda t: rt(loss_fn=lambda p, b: jnp.int32(3)),
                             TypeError, r"loss_fn", r"int32"),
    "rt-loss-returns-triple": C(lambda t: rt(loss_fn=lambda p, b: (
        loss_fn(p, b), {}, 0)), ValueError, r"loss_fn", r"length 3"),
    "rt-loss-returns-string-with-aux": C(lambda t: rt(
        loss_fn=lambda p, b: ("x", {"acc": 1.0})), TypeError, r"loss_fn",
        r"str"),
    "prt-lrs-strings": C(lambda t: prt(lrs=["0.1", "0.2"]), TypeError,
                         r"lrs", r"'0\.1'"),
    "prt-lrs-ragged": C(lambda t: prt(lrs=[[0.1], [0.2, 0.3]]), ValueError,
                        r"lrs", r"rectangular"),
    "prt-lrs-nan": C(lambda t: prt(lrs=[0.1, NAN]), ValueError, r"lrs\[1\]",
                     r"nan"),
    "prt-lrs-float32-overflow": C(lambda t: prt(lrs=[0.1, 1e39]), ValueError,
                                  r"lrs\[1\]", r"1e\+39"),
    "prt-lrs-underflow-to-zero": C(lambda t: prt(lrs=[1e-50, 0.1]),
                                   ValueError, r"lrs\[0\]", r"float32"),
    "prt-lrs-2d": C(lambda t: prt(lrs=[[0.1, 0.2]]), ValueError, r"lrs",
                    r"1-D.*\(1, 2\)"),
    "prt-lrs-empty": C(lambda t: prt(lrs=[]), ValueError, r"lrs",
                       r"at least one"),
    "prt-lrs-bool": C(lambda t: prt(lrs=[True, False]), TypeError, r"lrs",
                      r"bool"),
    "prt-lrs-complex": C(lambda t: prt(lrs=[0.1j, 0.2]), TypeError, r"lrs",
                         r"complex"),
    "prt-lrs-objects": C(lambda t: prt(lrs=[object(), 0.1]), TypeError,
                         r"lrs", r"list"),
    "prt-lrs-duplicate-in-float32": C(lambda t: prt(lrs=[0.1, 0.1 + 1e-12]),
                                      ValueError, r"lrs", r"distinct"),
    "prt-num-lrs-string": C(lambda t: prt(num_lrs="4"), TypeError,
                            r"num_lrs", r"str"),
    "prt-max-lr-1e39": C(lambda t: prt(max_lr=1e39), ValueError, r"max_lr",
                         r"overflows float32"),
    "prt-min-lr-nan": C(lambda t: prt(min_lr=NAN), ValueError, r"min_lr",
                        r"nan"),
    "prt-empty-validation-data": C(lambda t: prt(val_data=EMPTY_VAL),
                                   ValueError, r"val_data", r"empty"),
    "prt-batch-size-above-data": C(lambda t: prt(batch_size=33), ValueError,
                                   r"batch_size", r"33"),
    "prt-schedule-fn-returns-number": C(
        lambda t: prt(lrs=[0.1, 0.2], schedule_fn=lambda lr: lr / 4),
        TypeError, r"schedule_fn", r"schedule"),
    "prt-schedule-fn-not-callable": C(lambda t: prt(schedule_fn=0.1),
                                      TypeError, r"schedule_fn", r"float"),
    "sweep-hyperparams-strings": C(lambda t: sw(hyperparams={
        "learning_rate": ["a", "b"]}), ValueError, r"learning_rate", r"<U1"),
    "sweep-hyperparams-nan": C(lambda t: sw(hyperparams={
        "learning_rate": [0.1, NAN]}), ValueError, r"learning_rate", r"nan"),
    "sweep-hyperparams-not-a-mapping": C(lambda t: sw(hyperparams=0.1),
                                         (TypeError, ValueError),
                                         r"hyperparams", r"float"),
    "sweep-schedule-fn-returns-number": C(
        lambda t: sw(schedule_fn=lambda hp, step: 0.1), (TypeError,
                                                         ValueError),
        r"schedule_fn", r"float|dict|mapping"),
    "train-num-epochs-string": C(lambda t: tr(num_epochs="1"), TypeError,
                                 r"num_epochs", r"str"),
    "train-num-epochs-2**40": C(lambda t: tr(num_epochs=2**40), ValueError,
                                r"num_epochs", r"1099511627776"),
    "train-batch-size-above-data": C(lambda t: tr(batch_size=33),
                                     ValueError, r"batch_size", r"33"),
    "train-empty-validation-data": C(lambda t: tr(val_data=EMPTY_VAL),
                                     ValueError, r"val_data", r"empty"),
    "train-loss-returns-string": C(lambda t: tr(loss_fn=lambda p, b: "x"),
                                   TypeError, r"loss_fn", r"str"),
    "train-optimizer-number": C(lambda t: tr(optimizer=0.1), TypeError,
                                r"optimizer", r"float"),
    "train-checkpoint-every-bool": C(lambda t: tr(checkpoint_every=True),
                                     TypeError, r"checkpoint_every",
                                     r"bool"),
    "train-resume-not-bool": C(lambda t: tr(resume="no",
                                            checkpoint_dir=t),
                               TypeError, r"resume", r"str"),
}

# ----------------------------------------------------------------------------
# Loaders: malformed files written to tmp_path.


def write_idx(path, magic, dims, payload=b""):
  path.write_bytes(struct.pack(">I", magic) + b"".join(
      struct.pack(">I", d) for d in dims) + payload)


def mnist(t, images=None, labels=None, gz=False):
  """An MNIST directory; ``images``/``labels`` are (magic, dims, payload)
  or raw bytes."""
  d = t / "mnist"
  d.mkdir(exist_ok=True)
  n = 2
  parts = {"train-images-idx3-ubyte": images or (2051, (n, 28, 28),
                                                 bytes(n * 784)),
           "train-labels-idx1-ubyte": labels or (2049, (n,), bytes(n))}
  for name, spec in parts.items():
    path = d / (name + (".gz" if gz else ""))
    if isinstance(spec, bytes):
      path.write_bytes(spec)
    else:
      write_idx(path, *spec)
      if gz:
        path.write_bytes(gzip.compress(path.read_bytes()))
  return S.load_mnist(d)


def npz(t, **arrays_):
  path = t / "data.npz"
  np.savez(path, **arrays_)
  return S.load_npz(path)


X2 = np.zeros((2, 8, 8), np.uint8)


def cifar(t, batch=None, raw=None):
  d = t / "cifar"
  d.mkdir(exist_ok=True)
  for i in range(1, 6):
    path = d / f"data_batch_{i}"
    if raw is not None:
      path.write_bytes(raw)
    else:
      with open(path, "wb") as f:
        pickle.dump(batch, f)
  return S.load_cifar10(d)


def cifar_batch(data=None, labels=None):
  return {b"data": np.zeros((2, 3072), np.uint8) if data is None else data,
          b"labels": [0, 1] if labels is None else labels}


def evil_cifar(t):
  try:
    cifar(t, {b"data": Evil(t / "pwned"), b"labels": [0]})
  finally:
    assert not (t / "pwned").exists(), "the malicious pickle ran"


LOADERS = {
    "idx-dims-overflow-int64": C(lambda t: mnist(t, images=(
        2051, (65536, 16777216, 16777216))), ValueError,
        r"train-images-idx3-ubyte", r"declares shape \(65536, 16777216"),
    "idx-dims-max-uint32": C(lambda t: mnist(t, images=(
        2051, (2**32 - 1,) * 3)), ValueError, r"train-images-idx3-ubyte",
        r"4294967295"),
    "idx-wrong-label-magic": C(lambda t: mnist(t, labels=(
        2051, (2,), bytes(2))), ValueError, r"train-labels-idx1-ubyte",
        r"bad IDX magic 2051"),
    "idx-two-bytes": C(lambda t: mnist(t, images=b"\x00\x00"), ValueError,
                       r"train-images-idx3-ubyte", r"too short"),
    "idx-truncated-header": C(lambda t: mnist(t, images=struct.pack(
        ">I", 2051) + b"\x00\x00"), ValueError, r"train-images-idx3-ubyte",
        r"truncated IDX header"),
    "idx-truncated-labels": C(lambda t: mnist(t, labels=(
        2049, (2,), b"\x00")), ValueError, r"train-labels-idx1-ubyte",
        r"1 bytes of data"),
    "idx-label-above-nine": C(lambda t: mnist(t, labels=(
        2049, (2,), b"\x00\x0c")), ValueError, r"train-labels-idx1-ubyte",
        r"12"),
    "idx-no-images": C(lambda t: mnist(t, images=(2051, (0, 28, 28)),
                                       labels=(2049, (0,))), ValueError,
                       r"mnist", r"empty"),
    "gzip-corrupt": C(lambda t: mnist(t, images=b"\x1f\x8b\x08garbage"),
                      ValueError, r"train-images-idx3-ubyte",
                      r"corrupt gzip"),
    "gzip-truncated": C(lambda t: mnist(t, images=gzip.compress(
        struct.pack(">IIII", 2051, 2, 28, 28) + bytes(1568))[:-12]),
        ValueError, r"train-images-idx3-ubyte", r"corrupt gzip"),
    "gzip-wrong-magic-inside": C(lambda t: mnist(t, images=(
        1234, (2, 28, 28), bytes(1568)), gz=True), ValueError,
        r"train-images-idx3-ubyte\.gz", r"bad IDX magic 1234"),
    "npz-label-2**32": C(lambda t: npz(t, x=X2, y=np.array([0, 2**32])),
                         ValueError, r"data\.npz", r"4294967296.*int32"),
    "npz-label-2**31": C(lambda t: npz(t, x=X2, y=np.array([0, 2**31])),
                         ValueError, r"data\.npz", r"2147483648"),
    "npz-label-uint64-2**63": C(lambda t: npz(t, x=X2, y=np.array(
        [0, 2**63], np.uint64)), ValueError, r"data\.npz",
        r"9223372036854775808"),
    "npz-label-negative": C(lambda t: npz(t, x=X2, y=np.array([0, -3])),
                            ValueError, r"data\.npz", r"negative label -3"),
    "npz-label-float": C(lambda t: npz(t, x=X2, y=np.array([0.0, 1.0])),
                         ValueError, r"data\.npz", r"float64"),
    "npz-label-bool": C(lambda t: npz(t, x=X2, y=np.array([True, False])),
                        ValueError, r"data\.npz", r"bool"),
    "npz-labels-2d": C(lambda t: npz(t, x=X2, y=np.zeros((2, 1), int)),
                       ValueError, r"data\.npz", r"\(2, 1\)"),
    "npz-images-2d": C(lambda t: npz(t, x=np.zeros((2, 64)), y=[0, 1]),
                       ValueError, r"data\.npz", r"\(2, 64\)"),
    "npz-images-5d": C(lambda t: npz(t, x=np.zeros((2, 8, 8, 1, 1)),
                                     y=[0, 1]), ValueError, r"data\.npz",
                       r"\(2, 8, 8, 1, 1\)"),
    "npz-images-empty-height": C(lambda t: npz(t, x=np.zeros((2, 0, 8)),
                                               y=[0, 1]), ValueError,
                                 r"'data'", r"\(2, 0, 8, 1\)"),
    "npz-images-int16": C(lambda t: npz(t, x=X2.astype(np.int16), y=[0, 1]),
                          ValueError, r"data\.npz", r"int16"),
    "npz-images-complex": C(lambda t: npz(t, x=X2.astype(complex),
                                          y=[0, 1]), ValueError,
                            r"data\.npz", r"complex128"),
    "npz-images-nan": C(lambda t: npz(t, x=np.full((2, 8, 8), NAN),
                                      y=[0, 1]), ValueError, r"data\.npz",
                        r"finite.*nan"),
    "npz-images-overflow-float32": C(lambda t: npz(t, x=np.full(
        (2, 8, 8), 1e300), y=[0, 1]), ValueError, r"data\.npz", r"inf"),
    "npz-object-array-not-unpickled": C(lambda t: npz(t, x=np.array(
        [object()] * 2, dtype=object), y=[0, 1]), ValueError,
        r"data\.npz", r"allow_pickle"),
    "npz-num-classes-2**40": C(lambda t: npz(t, x=X2, y=[0, 1],
                                             num_classes=2**40), ValueError,
                               r"data\.npz", r"num_classes.*1099511627776"),
    "npz-num-classes-negative": C(lambda t: npz(t, x=X2, y=[0, 1],
                                                num_classes=-3), ValueError,
                                  r"data\.npz", r"num_classes.*-3"),
    "npz-num-classes-vector": C(lambda t: npz(t, x=X2, y=[0, 1],
                                              num_classes=[2, 3]),
                                ValueError, r"data\.npz", r"num_classes"),
    "npz-garbage-bytes": C(lambda t: (t / "g.npz").write_bytes(
        b"PK\x03\x04junk") and S.load_npz(t / "g.npz"), ValueError,
        r"g\.npz", r"not a readable \.npz"),
    "npz-is-a-directory": C(lambda t: S.load_npz(t), ValueError, str,
                            r"a directory"),
    "cifar-malicious-pickle-not-executed": C(evil_cifar, ValueError,
                                             r"data_batch_1",
                                             r"posix\.system.*not allowed"),
    "cifar-wrong-keys": C(lambda t: cifar(t, {b"images": 1, b"labels": []}),
                          ValueError, r"data_batch_1", r"missing key 'data'"),
    "cifar-not-a-dict": C(lambda t: cifar(t, [1, 2]), ValueError,
                          r"data_batch_1", r"got list"),
    "cifar-label-twenty": C(lambda t: cifar(t, cifar_batch(labels=[0, 20])),
                            ValueError, r"data_batch_1", r"20"),
    "cifar-label-strings": C(lambda t: cifar(t, cifar_batch(
        labels=["a", "b"])), ValueError, r"data_batch_1", r"'labels'"),
    "cifar-float-data": C(lambda t: cifar(t, cifar_batch(
        data=np.zeros((2, 3072), np.float32))), ValueError,
        r"data_batch_1", r"uint8"),
    "cifar-count-mismatch": C(lambda t: cifar(t, cifar_batch(labels=[0])),
                              ValueError, r"data_batch_1",
                              r"2 images but 1 labels"),
    "cifar-truncated-pickle": C(lambda t: cifar(t, raw=pickle.dumps(
        cifar_batch())[:40]), ValueError, r"data_batch_1", r"truncated"),
    "cifar-garbage": C(lambda t: cifar(t, raw=b"\x00garbage"), ValueError,
                       r"data_batch_1", r"not a CIFAR-10 python pickle"),
    "spec-not-a-string": C(lambda t: S.load_dataset(3), TypeError, r"spec",
                           r"int"),
    "spec-empty": C(lambda t: S.load_dataset(""), ValueError,
                    r"dataset spec ''", r"valid specs"),
}

# ----------------------------------------------------------------------------
# Results files.

LRS = np.logspace(-6, 0, 11)


def range_dict():
  r = RangeTestResult(
      lrs=LRS, losses=np.linspace(3, 1, 11), smoothed_losses=np.linspace(
          3, 1, 11), stop_reason="completed", eval_steps=[0, 5],
      eval_lrs=LRS[[0, 5]], eval_metrics={"accuracy": [0.1, 0.5]})
  return json.loads(r.to_json())


def sweep_dict():
  r = ParallelSweepResult(
      lrs=[0.1, 0.2], losses=[[2.0, 1.0], [2.0, 1.5]], final_loss=[1, 1.5],
      mean_loss=[1.5, 1.7], diverged=[False, False], diverged_at=[-1, -1],
      eval_metrics={"accuracy": [0.5, 0.4]})
  return json.loads(r.to_json())


def history_dict():
  h = TrainHistory(steps=[0, 1], losses=[2.0, 1.0], lrs=[0.1, 0.1],
                   momenta=[0.9, 0.9], eval_steps=[2],
                   eval_metrics={"accuracy": [0.5]}, wall_times=[1.0])
  return json.loads(h.to_json())


def write(t, data, name="r.json"):
  path = t / name
  path.write_bytes(data if isinstance(data, bytes) else json.dumps(
      data).encode())
  return path


def load(t, data, **kw):
  return S.load_results(write(t, data), **kw)


def edit(base, **changes):
  out = dict(base)
  for k, v in changes.items():
    if v is DROP:
      out.pop(k)
    else:
      out[k] = v
  return out


DROP = object()


def summary(**kw):
  return {"type": "RunSummary", "command": "demo", "parts": {},
          "bounds": {}, **kw}


RESULTS = {
    "binary-garbage": C(lambda t: load(t, b"\x00\xff\xfe\x01"), ValueError,
                        r"r\.json", r"not UTF-8"),
    "latin-1-text": C(lambda t: load(t, '{"type": "caf\xe9"}'.encode(
        "latin-1")), ValueError, r"r\.json", r"not UTF-8.*0xe9"),
    "empty-file": C(lambda t: load(t, b""), ValueError, r"r\.json",
                    r"invalid JSON"),
    "truncated-json": C(lambda t: load(t, json.dumps(range_dict())[:50]
                                       .encode()), ValueError, r"r\.json",
                        r"invalid JSON"),
    "deeply-nested-arrays": C(lambda t: load(t, b"[" * 100000 + b"]" *
                                             100000), ValueError, r"r\.json",
                              r"nested too deeply"),
    "deeply-nested-objects": C(lambda t: load(t, b'{"a":' * 50000 + b"1" +
                                              b"}" * 50000), ValueError,
                               r"r\.json", r"nested too deeply"),
    "top-level-list": C(lambda t: load(t, [1, 2]), ValueError, r"r\.json",
                        r"JSON list"),
    "type-missing": C(lambda t: load(t, edit(range_dict(), type=DROP)),
                      ValueError, r"r\.json", r'"type" is None'),
    "type-a-list": C(lambda t: load(t, edit(range_dict(), type=["x"])),
                     ValueError, r"r\.json", r"\"type\" is \['x'\]"),
    "type-unknown": C(lambda t: load(t, edit(range_dict(), type="Foo")),
                      ValueError, r"r\.json", r"'Foo'"),
    "format-version-99": C(lambda t: load(t, edit(range_dict(),
                                                  format_version=99)),
                           ValueError, r"r\.json", r"format_version 99"),
    "format-version-string": C(lambda t: load(t, edit(range_dict(),
                                                      format_version="2")),
                               ValueError, r"r\.json", r"format_version '2'"),
    "eval-metrics-a-list": C(lambda t: load(t, edit(range_dict(),
                                                    eval_metrics=[1, 2])),
                             ValueError, r"r\.json",
                             r"eval_metrics must be an object.*list"),
    "eval-metrics-nested": C(lambda t: load(t, edit(range_dict(), eval_metrics={
        "a": {"b": 1}})), ValueError, r"r\.json", r"eval_metrics\['a'\]"),
    "eval-metrics-wrong-length": C(lambda t: load(t, edit(
        range_dict(), eval_metrics={"accuracy": [0.1]})), ValueError,
        r"r\.json", r"eval_metrics\['accuracy'\].*one entry per evaluation"),
    "lrs-ragged": C(lambda t: load(t, edit(range_dict(), lrs=[[1], [1, 2]])),
                    ValueError, r"r\.json", r"lrs must be a rectangular"),
    "lrs-strings": C(lambda t: load(t, edit(range_dict(), lrs=["a"] * 11)),
                     ValueError, r"r\.json", r"lrs must hold numbers"),
    "lrs-null": C(lambda t: load(t, edit(range_dict(), lrs=None)),
                  ValueError, r"r\.json", r"lrs must hold numbers"),
    "lrs-a-number": C(lambda t: load(t, edit(range_dict(), lrs=3)),
                      ValueError, r"r\.json", r"lrs must be 1-D"),
    "lrs-nan-not-allowed": C(lambda t: load(t, edit(range_dict(),
                                                    lrs=[None] * 11)),
                             ValueError, r"r\.json", r"lrs.*finite.*nan"),
    "lrs-overflow-1e400": C(lambda t: load(t, edit(range_dict(),
                                                   lrs=[1e400] * 11)),
                            ValueError, r"r\.json", r"lrs.*inf"),
    "lrs-missing": C(lambda t: load(t, edit(range_dict(), lrs=DROP)),
                     ValueError, r"r\.json", r"missing the field 'lrs'"),
    "losses-wrong-length": C(lambda t: load(t, edit(range_dict(),
                                                    losses=[1.0] * 12)),
                             ValueError, r"r\.json",
                             r"losses must have one entry per step"),
    "losses-booleans": C(lambda t: load(t, edit(range_dict(),
                                                losses=[True] * 11)),
                         ValueError, r"r\.json", r"losses.*booleans"),
    "eval-steps-fractional": C(lambda t: load(t, edit(range_dict(),
                                                      eval_steps=[0.5, 1])),
                               ValueError, r"r\.json",
                               r"eval_steps must hold integers"),
    "eval-steps-beyond-int64": C(lambda t: load(t, edit(
        range_dict(), eval_steps=[0, 10**30])), ValueError, r"r\.json",
        r"eval_steps"),
    "stop-reason-unknown": C(lambda t: load(t, edit(range_dict(),
                                                    stop_reason="boom")),
                             ValueError, r"r\.json",
                             r"stop_reason must be one of.*'boom'"),
    "config-a-list": C(lambda t: load(t, edit(range_dict(), config=[1])),
                       ValueError, r"r\.json", r"config must be an object"),
    "sweep-diverged-fractional": C(lambda t: load(t, edit(
        sweep_dict(), diverged=[0.5, 1])), ValueError, r"r\.json",
        r"diverged must hold integers"),
    "sweep-losses-3d": C(lambda t: load(t, edit(sweep_dict(), losses=[
        [[1.0]], [[1.0]]])), ValueError, r"r\.json", r"losses must be 2-D"),
    "sweep-lrs-wrong-count": C(lambda t: load(t, edit(sweep_dict(),
                                                      lrs=[0.1])),
                               ValueError, r"r\.json", r"one entry per LR"),
    "history-steps-strings": C(lambda t: load(t, edit(history_dict(),
                                                      steps=["a", "b"])),
                               ValueError, r"r\.json", r"steps must hold"),
    "history-eval-metrics-missing": C(lambda t: load(t, edit(
        history_dict(), eval_metrics=DROP)), ValueError, r"r\.json",
        r"missing the field 'eval_metrics'"),
    "from-json-names-the-file": C(lambda t: TrainHistory.from_json(write(
        t, edit(history_dict(), eval_metrics=[1]))), ValueError, r"r\.json",
        r"eval_metrics must be an object"),
    "from-json-wrong-class": C(lambda t: TrainHistory.from_json(write(
        t, range_dict())), ValueError, r"r\.json",
        r"expected a TrainHistory, got type 'RangeTestResult'"),
    "from-json-text-garbage": C(lambda t: RangeTestResult.from_json(
        "{not json"), ValueError, r"JSON text", r"invalid JSON"),
    "multi-seed-num-recorded-wrong-count": C(lambda t: load(t, edit(
        json.loads(MultiSeedRangeTestResult(
            seeds=[0, 1], lrs=LRS, losses=np.ones((2, 11)),
            smoothed_losses=np.ones((2, 11)), num_recorded=[11, 11],
            stop_reasons=("completed", "completed")).to_json()),
        num_recorded=[11])), ValueError, r"r\.json", r"num_recorded"),
    "directory-without-results": C(lambda t: S.load_results(t), ValueError,
                                   str, r"without results\.json"),
    "missing-file": C(lambda t: S.load_results(t / "nope.json"),
                      FileNotFoundError, r"nope\.json"),
    "summary-part-not-a-name": C(lambda t: load(t, summary(parts={
        "x": 3}), part="x"), ValueError, r"r\.json", r"parts\['x'\].*3"),
    "summary-part-escapes-the-directory": C(lambda t: load(t, summary(
        parts={"x": "/etc/passwd"}), part="x"), ValueError, r"r\.json",
        r"file name in the run directory.*/etc/passwd"),
    "summary-part-dot-dot": C(lambda t: load(t, summary(parts={
        "x": ".."}), part="x"), ValueError, r"r\.json", r"'\.\.'"),
    "summary-part-is-itself-a-summary": C(lambda t: load(t, summary(
        parts={"x": "r.json"}), part="x"), ValueError, r"r\.json",
        r"itself a RunSummary"),
    "summary-unknown-part": C(lambda t: load(t, summary(), part="sweep"),
                              ValueError, r"r\.json", r"no part 'sweep'"),
    "summary-a-list": C(lambda t: load(t, summary(summary=[1])), ValueError,
                        r"r\.json", r"summary must be a JSON object"),
    "summary-bound-string": C(lambda t: load(t, summary(bounds={
        "max_lr": "big"})), ValueError, r"r\.json",
        r"bounds\['max_lr'\].*'big'"),
    "summary-bound-negative": C(lambda t: load(t, summary(bounds={
        "base_lr": -1})), ValueError, r"r\.json", r"bounds\['base_lr'\]"),
    "summary-command-missing": C(lambda t: load(t, edit(summary(),
                                                        command=DROP)),
                                 ValueError, r"r\.json",
                                 r"RunSummary\.command"),
}

# ----------------------------------------------------------------------------
# Checkpoints: hand-made payloads (the format of _checkpoint.write).


def checkpoint_payload(**changes):
  history = TrainHistory(steps=[0], losses=[1.0], lrs=[0.1], momenta=[0.9],
                         eval_steps=[1], eval_metrics={}, wall_times=[1.0])
  payload = {"format": _checkpoint.FORMAT,
             "version": _checkpoint.FORMAT_VERSION, "config": "{}",
             "epochs_done": 1, "history": history.to_json(),
             "state": {"0": np.zeros(3, np.float32)}}
  return edit(payload, **changes)


def read_checkpoint(t, payload=None, raw=None):
  path = t / drivers.CHECKPOINT_NAME
  path.write_bytes(raw if raw is not None else
                   serialization.msgpack_serialize(payload))
  return drivers.epochs_done(t)


def resume_from_garbage(t):
  (t / drivers.CHECKPOINT_NAME).write_bytes(b"\xc1junk")
  return tr(checkpoint_dir=t)


CKPT = r"checkpoint\.msgpack"
CHECKPOINTS = {
    "garbage-bytes": C(lambda t: read_checkpoint(t, raw=b"\xc1garbage"),
                       ValueError, CKPT, r"not a readable checkpoint"),
    "truncated-msgpack": C(lambda t: read_checkpoint(
        t, raw=serialization.msgpack_serialize(checkpoint_payload())[:60]),
        ValueError, CKPT, r"not a readable checkpoint|not an optax_clr"),
    "empty-file": C(lambda t: read_checkpoint(t, raw=b""), ValueError, CKPT,
                    r"checkpoint"),
    "a-list": C(lambda t: read_checkpoint(t, raw=serialization.
                                          msgpack_serialize([1, 2])),
                ValueError, CKPT, r"not an optax_clr training checkpoint"),
    "wrong-format": C(lambda t: read_checkpoint(t, checkpoint_payload(
        format="orbax")), ValueError, CKPT, r"not an optax_clr"),
    "wrong-version": C(lambda t: read_checkpoint(t, checkpoint_payload(
        version=9)), ValueError, CKPT, r"format version 9"),
    "missing-config": C(lambda t: read_checkpoint(t, checkpoint_payload(
        config=DROP)), ValueError, CKPT, r"'config' is missing"),
    "missing-history": C(lambda t: read_checkpoint(t, checkpoint_payload(
        history=DROP)), ValueError, CKPT, r"'history' is missing"),
    "missing-state": C(lambda t: read_checkpoint(t, checkpoint_payload(
        state=DROP)), ValueError, CKPT, r"'state' is missing"),
    "epochs-done-a-string": C(lambda t: read_checkpoint(
        t, checkpoint_payload(epochs_done="1")), ValueError, CKPT,
        r"'epochs_done' is of type str"),
    "epochs-done-negative": C(lambda t: read_checkpoint(
        t, checkpoint_payload(epochs_done=-1)), ValueError, CKPT,
        r"epochs_done"),
    "garbled-history": C(lambda t: read_checkpoint(t, checkpoint_payload(
        history="{not json")), ValueError, CKPT, r"malformed checkpoint"),
    "history-of-another-type": C(lambda t: read_checkpoint(
        t, checkpoint_payload(history=json.dumps(range_dict()))),
        ValueError, CKPT, r"expected a TrainHistory"),
    "config-not-json": C(lambda t: read_checkpoint(t, checkpoint_payload(
        config="{oops")), ValueError, CKPT, r"malformed checkpoint"),
    "config-a-list": C(lambda t: read_checkpoint(t, checkpoint_payload(
        config="[1]")), ValueError, CKPT, r"bad config"),
    "train-resumes-from-garbage": C(resume_from_garbage, ValueError, CKPT,
                                    r"not a readable checkpoint"),
}

CATEGORIES = {"schedules": SCHEDULES, "steps": STEPS,
              "optimizers": OPTIMIZERS, "traced": TRACED, "runs": RUNS,
              "loaders": LOADERS, "results": RESULTS,
              "checkpoints": CHECKPOINTS}
MATRIX = {f"{cat}/{name}": case for cat, cases in CATEGORIES.items()
          for name, case in cases.items()}


@pytest.mark.parametrize("make, error, patterns", MATRIX.values(),
                         ids=MATRIX.keys())
def test_hostile_input_is_refused_by_name_in_one_line(tmp_path, make, error,
                                                      patterns):
  with pytest.raises(error) as excinfo:
    make(tmp_path)
  message = str(excinfo.value)
  for pattern in patterns:
    if pattern is str:  # the case's own directory
      pattern = re.escape(str(tmp_path))
    assert re.search(pattern, message), (pattern, message)
  assert "\n" not in message.strip(), message
  if not isinstance(excinfo.value, OSError):  # raised by open() itself
    innermost = pathlib.Path(str(excinfo.traceback[-1].path)).resolve()
    assert PKG in innermost.parents, innermost


def test_the_matrix_covers_every_category():
  counts = {cat: len(cases) for cat, cases in CATEGORIES.items()}
  assert all(n >= 10 for n in counts.values()), counts
  assert len(MATRIX) >= 250, counts


# ----------------------------------------------------------------------------
# Hostile values that are accepted, as documented, with the numbers.


def test_a_negative_step_counts_as_step_zero():
  assert float(sched(-1)) == float(sched(0)) == pytest.approx(0.01)
  assert float(sched(np.int64(-2**40))) == pytest.approx(0.01)


def test_a_float_step_is_rounded_down():
  assert float(sched(2.9)) == float(sched(2)) == pytest.approx(0.055)


def test_the_last_int32_step_is_exact():
  # 2**31 - 1 = 8 * 268435455 + 7: one step before the end of a cycle of 8.
  assert float(sched(np.int64(2**31 - 1))) == pytest.approx(0.0325)
  assert float(sched(2**31 - 1)) == float(sched(7))


def test_unsorted_lrs_are_sorted_and_kept(monkeypatch):
  result = prt(lrs=[0.3, 0.01, 0.1])
  np.testing.assert_allclose(result.lrs, [0.01, 0.1, 0.3])


def test_a_ramp_to_the_float32_maximum_runs_and_keeps_every_step():
  # end_lr = 3.4e38 is finite in float32: the ramp is valid; the linear
  # model's loss grows to ~1e37 but stays finite, and nothing is dropped.
  result = rt(start_lr=1e-3, end_lr=3.4e38, num_steps=40,
              diverge_threshold=None)
  assert result.stop_reason == "completed" and result.num_steps == 40
  assert np.isfinite(result.lrs).all()
  assert result.lrs[-1] == pytest.approx(3.4e38, rel=1e-6)
  assert np.isfinite(result.losses).all() and result.losses[-1] > 1e30
  RangeTestResult.from_json(result.to_json())  # strict JSON round trip
