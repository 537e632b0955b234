"""Progress lines with an ETA for long loops that are not training steps (sweeps, effects)."""

from __future__ import annotations

import time

from absl import logging


class ProgressLine:
  """Logs `done/total` with the elapsed time and an ETA, at most every `every_seconds`."""

  def __init__(self, what: str, total: int, every_seconds: float = 10.0):
    self.what, self.total, self.every = what, max(total, 1), every_seconds
    self.done, self.start, self.last = 0, time.perf_counter(), time.perf_counter()

  def step(self, count: int = 1) -> None:
    self.done += count
    now = time.perf_counter()
    if now - self.last >= self.every or self.done == self.total:
      self.last = now
      elapsed = now - self.start
      eta = elapsed / self.done * (self.total - self.done)
      logging.info("%s: %d/%d in %.0fs, ETA %.0fs", self.what, self.done, self.total, elapsed, eta)
