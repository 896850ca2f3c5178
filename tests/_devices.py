"""XLA flags of the tests' subprocesses that force several CPU devices.

The device count must be set before jax is imported, hence subprocesses. On
CI's two busy cores, eight device threads can take longer than XLA's default
40 s to meet at a collective; XLA then kills the process although nothing is
stuck (its own log calls such a wait "a false-positive ... the system can be
overloaded"). The tests raise that limit, so a slow machine is slow, not
killed.
"""


def forced_devices(count: int) -> str:
  """``XLA_FLAGS`` for ``count`` CPU devices with a 10-minute collective limit."""
  return (f"--xla_force_host_platform_device_count={count} "
          "--xla_cpu_collective_call_terminate_timeout_seconds=600")
