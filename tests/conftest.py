"""Test-wide settings.

Tests run on the CPU. Multi-device tests start a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` because the flag must be
set before jax is imported, and this process has already imported it.
"""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture(autouse=True)
def _environment_restored():
  """Every test leaves ``os.environ`` as it found it.

  An example run in-process (``runpy``) sets ``XLA_FLAGS`` for its own
  subprocesses; leaked, the flag forced 8 devices on every later subprocess of
  the same worker (the README's blocks among them), which on 2 busy cores
  stalled an all-reduce past XLA's 40 s rendezvous limit.
  """
  saved = dict(os.environ)
  yield
  if os.environ != saved:
    os.environ.clear()
    os.environ.update(saved)
