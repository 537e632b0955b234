"""The one training loop, used by the recommender and the SAE.

`train_loop` runs a compiled step (`training.Parallel.compile`) until `total_steps` or until the
caller's `on_boundary` sets `progress.done`, and owns what every loop needs: the progress line
(step, loss, throughput), metric writing (`MetricWriter`), the non-finite check, the evaluation /
checkpoint cadence and multi-process-safe host copies of the state. What differs between models
lives in two callbacks: `on_boundary(host_state)` (evaluate, checkpoint, early stopping) and the
optional `after_step(step, state)` (e.g. resampling dead SAE latents).

Progress is one absl log line per interval: tqdm-style redrawn bars garble the logs of several
processes and of runs whose output goes to a file, and the line is a few lines of code here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np
from absl import logging

from seqrec_jax.core.metric_writer import MetricWriter
from seqrec_jax.core.training import Parallel, local_copy


class Progress(Protocol):
  step: int  # steps done
  train_seconds: float  # time spent in steps and logging, excluding evaluations
  done: bool  # set by `on_boundary` to stop early


@dataclasses.dataclass(frozen=True)
class Cadence:
  """How often the loop logs and reaches a boundary (evaluation + checkpoint)."""

  total_steps: int
  log_every: int
  eval_every: int
  examples_per_step: int  # global batch size, for the throughput figure
  unit: str = "ex"  # what an example is, for the progress line ("seq", "act")
  name: str = "step"  # progress line prefix ("step", "sae step")


def train_loop(state, *, step_fn: Callable, parallel: Parallel, next_batch: Callable[[int], Any],
               progress: Progress, cadence: Cadence, writer: MetricWriter,
               on_boundary: Callable[[Any], None],
               after_step: Callable[[int, Any], Any] | None = None):
  """Trains from `progress.step`; returns the final state as host (numpy) arrays.

  Args:
    state: the train state (host arrays); placed with `parallel.put_state`.
    step_fn: the compiled step `(state, batch) -> (state, metrics)`, metrics with a "loss".
    next_batch: `step -> this process's numpy batch` for the step about to run.
    progress: updated in place (`step`, `train_seconds`); `on_boundary` may set `done`.
    on_boundary: called with the host state every `eval_every` steps and at the last step.
    after_step: optional `(step, device state) -> new host state or None`, after each step.
  """
  c = cadence
  state = parallel.put_state(state)
  window_start, window_steps, window_losses = time.perf_counter(), 0, []
  while not progress.done and progress.step < c.total_steps:
    state, metrics = step_fn(state, parallel.put_batch(next_batch(progress.step)))
    progress.step += 1
    window_steps += 1
    window_losses.append(metrics["loss"])
    boundary = progress.step % c.eval_every == 0 or progress.step == c.total_steps
    if progress.step % c.log_every == 0 or boundary:
      # One host transfer per log interval, yet the error names the first bad step.
      check_finite_losses(window_losses, first_step=progress.step - len(window_losses) + 1)
      window_losses = []
      metrics = parallel.get_metrics(metrics)
      elapsed = time.perf_counter() - window_start
      progress.train_seconds += elapsed
      rate = window_steps * c.examples_per_step / max(elapsed, 1e-9)
      extra = "".join(f"  {k} {v:.4g}" for k, v in metrics.items() if k not in ("loss", "grad_norm"))
      logging.info("%s %d/%d  loss %.4f%s  %.0f %s/s", c.name, progress.step, c.total_steps,
                   metrics["loss"], extra, rate, c.unit)
      writer.write(progress.step, "train", {**metrics, f"{c.unit}_per_s": rate})
      window_start, window_steps = time.perf_counter(), 0
    if after_step is not None:
      replaced = after_step(progress.step, state)
      if replaced is not None:
        state = parallel.put_state(replaced)
        window_start = time.perf_counter()
    if boundary:
      on_boundary(parallel.host_state(state))
      window_start, window_steps = time.perf_counter(), 0
  return parallel.host_state(state)


def check_finite_losses(losses: list, first_step: int) -> None:
  """Raises naming the first step whose loss is not finite (`losses` are device scalars)."""
  values = np.asarray(jax.device_get([local_copy(x) for x in losses]), np.float64)
  values = values.reshape(len(losses), -1)
  bad = np.flatnonzero(~np.isfinite(values).all(-1))
  if bad.size:
    raise FloatingPointError(
        f"non-finite loss {values[bad[0]][0]} at step {first_step + int(bad[0])}; the last "
        "checkpoint before it is kept (lower the learning rate or enable grad_clip_norm)")

