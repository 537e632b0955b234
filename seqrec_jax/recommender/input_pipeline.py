"""Fixed-shape training and evaluation batches from item sequences.

Sequences are right-aligned in `[B, L]` rows (0 = padding on the left), so the most recent item is
always at position L-1. Training rows are windows cut from the end of each training sequence;
every window is one example per epoch.

* SASRec: windows of L+1 items; `input_ids = w[:-1]`, `labels = w[1:]` (next item everywhere).
* BERT4Rec: windows of L items; each item is masked with probability `mask_prob` (at least one
  per row) and, for a fraction `last_item_mask_prob` of rows, only the last item is masked, the
  inference task (RecBole #1132). `labels` holds the true id at masked positions, 0 elsewhere.
"""

from __future__ import annotations

import dataclasses

import grain
import jax
import numpy as np

from seqrec_jax.core import errors

from seqrec_jax.recommender.model import PAD_ID
from seqrec_jax.data.splits import EvalSet, Sequences


def right_align(seq: np.ndarray, length: int) -> np.ndarray:
  """The last `length` items of `seq`, left-padded with 0 to exactly `length`."""
  out = np.zeros(length, np.int32)
  tail = seq[-length:] if length else seq[:0]
  out[length - len(tail) :] = tail
  return out


def training_windows(seqs: Sequences, window: int, stride: int) -> np.ndarray:
  """Windows `[num_windows, window]` ending at n, n - stride, ... of every sequence.

  With `stride = window - 1` consecutive SASRec windows share one item, so every transition of a
  long sequence is trained on exactly once per epoch.
  """
  rows = []
  for i in range(len(seqs)):
    s = seqs[i]
    for end in range(len(s), 1, -stride):
      rows.append(right_align(s[:end], window))
  if not rows:
    raise ValueError("no training sequence has 2 or more items")
  return np.stack(rows)


def sasrec_example(window: np.ndarray) -> dict[str, np.ndarray]:
  inputs = window[:-1]
  # No label where the input is padding: the first item has no history to predict it from.
  return {"input_ids": inputs, "labels": np.where(inputs != PAD_ID, window[1:], PAD_ID)}


def bert4rec_example(
    window: np.ndarray, rng: np.random.Generator, *, mask_prob: float, last_item_mask_prob: float,
    mask_token: int,
) -> dict[str, np.ndarray]:
  real = window != PAD_ID
  if rng.random() < last_item_mask_prob:
    masked = np.zeros_like(real)
    masked[-1] = True
  else:
    masked = real & (rng.random(window.shape) < mask_prob)
    if not masked.any():
      masked[rng.choice(np.flatnonzero(real))] = True
  return {
      "input_ids": np.where(masked, mask_token, window).astype(np.int32),
      "labels": np.where(masked, window, PAD_ID).astype(np.int32),
  }


@dataclasses.dataclass(frozen=True)
class TrainData:
  """Training batches: an endless, deterministic, checkpointable grain iterator."""

  windows: np.ndarray  # int32 [num_windows, window]
  global_batch_size: int
  steps_per_epoch: int
  dataset: grain.MapDataset

  def iterator(self):
    return iter(self.dataset.to_iter_dataset())


def make_train_data(
    seqs: Sequences, *, kind: str, max_len: int, global_batch_size: int, seed: int,
    mask_prob: float = 0.2, last_item_mask_prob: float = 0.1, mask_token: int | None = None,
    num_epochs: int | None = None,
) -> TrainData:
  """Shuffled (per epoch) batches; each process keeps its slice of every global batch.

  Building the global batch on every process and slicing it keeps batches, masks and losses
  bitwise identical whatever the number of processes (sequence ids are tiny next to activations).
  """
  if kind == "sasrec":
    windows = training_windows(seqs, max_len + 1, max_len)
  else:
    windows = training_windows(seqs, max_len, max_len)
  num = len(windows)
  if global_batch_size > num:
    raise errors.ConfigError(f"batch size {global_batch_size} exceeds the {num} training windows",
                             field="train.batch_size", hint=f"set it to at most {num}")
  ds = grain.MapDataset.source(windows).seed(seed).shuffle().repeat(num_epochs)
  if kind == "sasrec":
    ds = ds.map(sasrec_example)
  else:
    ds = ds.random_map(
        lambda w, rng: bert4rec_example(
            w, rng, mask_prob=mask_prob, last_item_mask_prob=last_item_mask_prob,
            mask_token=mask_token,
        )
    )
  ds = ds.batch(global_batch_size, drop_remainder=True)
  count, index = jax.process_count(), jax.process_index()
  if count > 1:
    if global_batch_size % count:
      raise ValueError(f"global batch {global_batch_size} not divisible by {count} processes")
    local = global_batch_size // count
    ds = ds.map(lambda b: {k: v[index * local : (index + 1) * local] for k, v in b.items()})
  return TrainData(windows, global_batch_size, num // global_batch_size, ds)


@dataclasses.dataclass(frozen=True)
class EvalArrays:
  """Model inputs for next-item prediction; rows padded to a multiple of the batch size."""

  input_ids: np.ndarray  # int32 [n_padded, L]
  targets: np.ndarray  # int32 [n_padded]
  seen: np.ndarray  # int32 [n_padded, S], every history item (0-padded), for seen filtering
  valid: np.ndarray  # bool [n_padded], False on padding rows

  def batches(self, batch_size: int):
    for start in range(0, len(self.targets), batch_size):
      yield {k: v[start : start + batch_size] for k, v in dataclasses.asdict(self).items()}


def make_eval_arrays(
    evalset: EvalSet, *, kind: str, max_len: int, batch_size: int, mask_token: int | None = None
) -> EvalArrays:
  """Inputs to score each target: SASRec reads the last L history items; BERT4Rec the last L-1
  followed by the mask token. Either way the prediction is read at position L-1."""
  n = len(evalset)
  n_padded = max(batch_size, -(-n // batch_size) * batch_size)
  hist = evalset.histories
  longest = int(hist.lengths.max()) if n else 1
  seen_width = max(8, -(-longest // 8) * 8)
  input_ids = np.zeros((n_padded, max_len), np.int32)
  seen = np.zeros((n_padded, seen_width), np.int32)
  for i in range(n):
    h = hist[i]
    if kind == "sasrec":
      input_ids[i] = right_align(h, max_len)
    else:
      input_ids[i, :-1] = right_align(h, max_len - 1)
      input_ids[i, -1] = mask_token
    seen[i, : len(h)] = h
  targets = np.zeros(n_padded, np.int32)
  targets[:n] = evalset.targets
  valid = np.arange(n_padded) < n
  return EvalArrays(input_ids, targets, seen, valid)
