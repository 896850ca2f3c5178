"""Ctrl-C as a request to stop at the next safe point.

A long run (a range test, a sweep, training) must keep what it computed
when the user presses Ctrl-C. A ``KeyboardInterrupt`` raised at an
arbitrary bytecode cannot promise that: raised just after a compiled step
returned, it loses that step's new state (its input was donated, so the old
one is gone too); raised inside an XLA compilation, it leaves a compiler
thread running that can crash the interpreter at exit (SIGSEGV instead of
exit status 130).

Inside :func:`deferred`, the first SIGINT only sets a flag, which the loops
read between compiled chunks (:func:`requested`) and then stop, keeping
every finished chunk; a second SIGINT raises ``KeyboardInterrupt`` at once,
as usual. The flag stays set until the outermost :func:`deferred` block
ends, so every later loop of the same command stops too.

The handler is installed only from the main thread and only over Python's
default one (a handler the user installed is left alone); otherwise
``KeyboardInterrupt`` behaves as usual and the loops catch it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class _State:
  depth = 0
  requested = False


_STATE = _State()


def requested() -> bool:
  """True once SIGINT arrived inside the current :func:`deferred` block
  (False outside one)."""
  return _STATE.depth > 0 and _STATE.requested


def _on_sigint(signum: int, frame: Any) -> None:  # pylint: disable=unused-argument
  if _STATE.requested:  # the second Ctrl-C: stop now
    raise KeyboardInterrupt
  _STATE.requested = True


def _installable() -> bool:
  return (threading.current_thread() is threading.main_thread()
          and signal.getsignal(signal.SIGINT) is signal.default_int_handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
  """Turns the first SIGINT into :func:`requested` for the block (nestable:
  inner blocks share the outer one's flag)."""
  if _STATE.depth or not _installable():
    if _STATE.depth:
      _STATE.depth += 1
    try:
      yield
    finally:
      if _STATE.depth:
        _STATE.depth -= 1
    return
  previous = signal.signal(signal.SIGINT, _on_sigint)
  _STATE.depth, _STATE.requested = 1, False
  try:
    yield
  finally:
    _STATE.depth = 0
    signal.signal(signal.SIGINT, previous)
