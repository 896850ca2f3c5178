"""Progress reporting for library calls and the CLI.

Every driver takes ``progress``:

* ``None`` (default): a ``tqdm.auto`` bar when the session is interactive (a
  terminal on stderr, or a Jupyter/IPython kernel), nothing otherwise, so
  batch jobs and CI logs stay clean;
* ``True``: always a bar; ``False``: never;
* a callable ``progress(done, total, metrics)``, called on the host after
  every compiled chunk (e.g. to log, or to update the user's own bar).

The count and metrics are updated once per chunk (the chunk's outputs
arrive on the host then anyway, so reading them costs no extra device
sync); in between, a background thread redraws the bar every
``REFRESH_SECONDS`` so that its clock and rate stay live while a long
chunk (or its compilation) runs.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

Progress = Callable[[int, int, Mapping[str, Any]], Any]
# A bar is redrawn at least this often (seconds) while it is open.
REFRESH_SECONDS = 0.5


def interactive() -> bool:
  """A terminal on stderr, or an IPython/Jupyter kernel."""
  shell = sys.modules.get("IPython")
  if shell is not None:
    try:
      if shell.get_ipython() is not None:
        return True
    except Exception:  # pylint: disable=broad-except
      pass
  try:
    return sys.stderr.isatty()
  except (AttributeError, ValueError):
    return False


def _scalar(value: Any) -> float | None:
  try:
    return float(value)
  except (TypeError, ValueError):
    return None


class Bar:
  """A tqdm bar driven by ``bar(done, total, metrics)``."""

  def __init__(self, desc: str, unit: str = "step", total: int | None = None,
               enabled: bool = True):
    from tqdm.auto import tqdm
    self.enabled = enabled
    self.bar = tqdm(total=total, desc=desc, unit=unit, disable=not enabled,
                    leave=False, dynamic_ncols=True, file=sys.stderr,
                    mininterval=0.0)
    self._closed = threading.Event()
    self._ticker = None
    if enabled:
      self._ticker = threading.Thread(target=self._tick, daemon=True,
                                      name="optax-clr-progress")
      self._ticker.start()

  def _tick(self) -> None:
    while not self._closed.wait(REFRESH_SECONDS):
      self.bar.refresh()

  def __call__(self, done: int, total: int | None = None,
               metrics: Mapping[str, Any] | None = None) -> None:
    if not self.enabled:
      return
    if total is not None and total != self.bar.total:
      self.bar.total = int(total)
    self.bar.update(max(0, int(done) - self.bar.n))
    if metrics:
      shown = {k: f"{x:.3g}" for k, x in (
          (k, _scalar(v)) for k, v in metrics.items()
          if k != "elapsed") if x is not None}
      self.bar.set_postfix(shown, refresh=False)
    self.bar.refresh()

  def write(self, line: str) -> None:
    self.bar.write(line, file=sys.stdout)

  def close(self) -> None:
    self._closed.set()
    if self._ticker is not None:
      self._ticker.join()
    self.bar.close()


@contextlib.contextmanager
def reporter(progress: Any, desc: str, unit: str = "step"
             ) -> Iterator[Progress | None]:
  """The callable a driver calls, for the user's ``progress`` argument."""
  if callable(progress) and progress is not True:
    yield progress
    return
  show = interactive() if progress is None else bool(progress)
  if not show:
    yield None
    return
  bar = Bar(desc, unit)
  try:
    yield bar
  finally:
    bar.close()
