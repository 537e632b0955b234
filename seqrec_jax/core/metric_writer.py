"""Training metrics to `metrics.jsonl` and to TensorBoard event files (`tensorboard/`).

`tensorboard --logdir DIR` shows the recommender's and every SAE's curves and hyperparameters.
TensorBoard files are written with tensorboardX (light: numpy + protobuf); `clu.metric_writers`,
which the flax examples use, needs TensorFlow for the same files. Only process 0 writes.
"""

from __future__ import annotations

import pathlib

from tensorboardX import SummaryWriter
from tensorboardX.summary import hparams as hparams_summary

from seqrec_jax.core import distributed
from seqrec_jax.core.files import append_jsonl


class MetricWriter:
  """Appends `{"step", "split", **metrics}` lines to `DIR/metrics.jsonl` and mirrors the scalars
  as `split/name` in `DIR/tensorboard/`."""

  def __init__(self, directory: str | pathlib.Path):
    self.directory = pathlib.Path(directory)
    self.enabled = distributed.is_main_process()
    self._tb = None
    if self.enabled:
      self.directory.mkdir(parents=True, exist_ok=True)
      self._tb = SummaryWriter(str(self.directory / "tensorboard"), flush_secs=30)

  def write_hparams(self, hparams: dict) -> None:
    """The run's (flattened) hyperparameters, at step 0, to TensorBoard (the stage's own
    `config.json` holds them too)."""
    if not self.enabled:
      return
    values = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()}
    for summary in hparams_summary(values, {}):
      self._tb.file_writer.add_summary(summary, 0)

  def write(self, step: int, split: str, metrics: dict) -> None:
    if not self.enabled:
      return
    append_jsonl(self.directory / "metrics.jsonl", {"step": step, "split": split, **metrics})
    for name, value in metrics.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        # TensorBoard tags allow [A-Za-z0-9_./-]: "ndcg@10" becomes "ndcg_at_10".
        self._tb.add_scalar(f"{split}/{name}".replace("@", "_at_"), value, step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None
