"""Test-wide settings.

Tests run on the CPU. Multi-device tests start a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` because the flag must be
set before jax is imported, and this process has already imported it.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
