"""One person's top-k before and after edits: `Steerer` (a loaded workdir, reused by the
`recommend` command and the explorer server) and `recommend` (the command's printable text).

A `Steerer` holds the recommender, SAE, interpretation and steering settings of a workdir (built
once by `seqrec_jax.workdir.load_steerer`) and answers `top_items(history, edits)` with a single compiled forward pass: every query has the same
shapes (one right-aligned `[1, L]` input, a seen list padded to the next of a few fixed widths,
and the edit list padded with no-op edits to the next of `EDIT_BUCKETS`), so moving a strength
never recompiles and no query compiles more than a handful of shapes. A query takes at most
`MAX_EDITS` latent edits.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from seqrec_jax.core.errors import DataError
from seqrec_jax.data.containers import item_text
from seqrec_jax.data.splits import EvalSet, make_sequences
from seqrec_jax.recommender import evaluation, hooks, input_pipeline, metrics
from seqrec_jax.steer import edits as steering

MAX_EDITS = 64  # latent edits per query (an attribute edit counts its control's latents)
EDIT_BUCKETS = (8, 16, 32, MAX_EDITS)  # edit lists are padded to the next of these (one compile
# each per batch shape: the edits unroll in the compiled pass, 64 compile ~20 s on 2 cores)
_NO_OP = (0, "scale", 1.0)  # f_0 * 1 = f_0: the edited hidden state equals h bit for bit


@dataclasses.dataclass
class Steerer:
  """A finished workdir (recommender, SAE, interpret, steer settings), loaded once."""

  rec_config: object
  dataset: object
  split: object
  model_cfg: object
  params: object
  interpreted: dict  # the interpret stage's results
  typical: np.ndarray  # [M] each latent's typical activation (steering's unit)
  trained: object  # sae.TrainedSAE
  layer: str
  controls: dict  # attribute -> {"promote": Control, "suppress": Control}
  mode: str  # set | add | scale
  positions: str  # all | last
  error_preserving: bool
  seen_width: int  # every query's seen list is padded to this width

  @staticmethod
  def seen_width_for(dataset) -> int:
    """The seen-list width every query is padded to: the longest history, in multiples of 64."""
    longest = int(dataset.interactions.lengths.max()) if dataset.interactions.num_users else 1
    return -(-max(longest, 64) // 64) * 64

  # ------------------------------------------------------------------ users, items, edits

  @functools.cached_property
  def _user_rows(self) -> dict[str, int]:
    return {str(u): row for row, u in enumerate(self.dataset.interactions.user_ids)}

  def user_history(self, user) -> np.ndarray:
    """The user's items, oldest first; a `DataError` naming close matches for unknown users."""
    row = self._user_rows.get(str(user))
    if row is None:
      raise steering.close_matches_error("user", str(user), list(self._user_rows))
    return np.asarray(self.dataset.interactions.sequence(row))

  def check_items(self, items) -> np.ndarray:
    """`items` as an int32 array, or a `DataError` if one is not an item id (1..V-1)."""
    items = np.asarray(list(items), np.int64)
    bad = items[(items < 1) | (items >= self.model_cfg.num_items)]
    if len(bad):
      raise DataError(f"unknown item {int(bad[0])}: item ids run from 1 to "
                      f"{self.model_cfg.num_items - 1}")
    return items.astype(np.int32)

  def resolve(self, edit_texts) -> list[tuple[int, str, float]]:
    """`["Comedy:+3", "#17:-2"]` -> `[(latent, mode, strength), ...]` (the `--edit` syntax)."""
    return steering.resolve_edits(edit_texts, self.controls, self.mode)

  def layer_edit(self, edits) -> hooks.LayerEdit | None:
    """The steering edit for `[(latent, mode, value), ...]`, padded with no-ops to a fixed length;
    None for no edits (the plain model, also for the replace variant). The length is the next of
    `EDIT_BUCKETS`; more than `MAX_EDITS` edits is a `DataError`."""
    if not edits:
      return None
    if len(edits) > MAX_EDITS:
      raise DataError(f"at most {MAX_EDITS} latent edits per query, got {len(edits)}")
    size = next(b for b in EDIT_BUCKETS if b >= len(edits))
    padded = list(edits) + [_NO_OP] * (size - len(edits))
    return steering.layer_edit(self.layer, self.trained, steering.Edits.make(padded), self.typical,
                               positions=self.positions, error_preserving=self.error_preserving)

  # ------------------------------------------------------------------ queries

  def input_batch(self, history) -> dict[str, np.ndarray]:
    """The model input predicting the item after `history`: `input_ids` `[1, L]`, `seen`
    `[1, W]` with W the seen width doubled until the history fits (a few shapes in all)."""
    history = np.asarray(history, np.int32)
    evalset = EvalSet(make_sequences([history], [0]), np.zeros(1, np.int32))
    arrays = input_pipeline.make_eval_arrays(evalset, kind=self.model_cfg.kind,
                                             max_len=self.model_cfg.max_len, batch_size=1,
                                             mask_token=self.model_cfg.mask_token)
    width = self.seen_width
    while width < len(history):
      width *= 2
    seen = np.zeros((1, width), np.int32)
    seen[0, : len(history)] = history
    return {"input_ids": arrays.input_ids, "targets": arrays.targets, "seen": seen,
            "valid": arrays.valid}

  def top_items(self, history, edits=(), *, k: int = 10) -> list[int]:
    """The top-k items after `history` with `edits` applied (seen items filtered as in eval)."""
    _, top = evaluation._eval_batch(self.params, self.input_batch(history), model_cfg=self.model_cfg,
                                    k=k, filter_seen=self.rec_config.eval.filter_seen,
                                    edit=self.layer_edit(edits))
    top = np.asarray(top)
    evaluation.check_top(top)  # non-finite scores: an error, never a list
    return [int(i) for i in top[0]]

  @functools.cached_property
  def _test_batch_size(self) -> int:
    """All test users in one batch (padded to a multiple of 8, not to eval.batch_size), at most
    eval.batch_size."""
    return min(self.rec_config.eval.batch_size, -(-max(len(self.split.test), 1) // 8) * 8)

  @functools.cached_property
  def _test_arrays(self):
    return input_pipeline.make_eval_arrays(
        self.split.test, kind=self.model_cfg.kind, max_len=self.model_cfg.max_len,
        batch_size=self._test_batch_size, mask_token=self.model_cfg.mask_token)

  @functools.cached_property
  def _list_features(self) -> metrics.ListFeatures:
    counts = np.bincount(self.split.train.items, minlength=self.dataset.interactions.num_items)
    return metrics.ListFeatures(counts, self.dataset.attributes.multi_hot,
                                self.dataset.attributes.names)

  def test_effect(self, edits=()) -> dict:
    """Metrics over all test users with `edits` (as the steer stage measures them): NDCG@10,
    HR@10, coverage@10, novelty, ILD and `share@10` per attribute."""
    return evaluation.evaluate(self.params, self.model_cfg, self._test_arrays,
                               batch_size=self._test_batch_size,
                               filter_seen=self.rec_config.eval.filter_seen,
                               edit=self.layer_edit(edits), list_features=self._list_features)

  def describe(self, item: int) -> dict:
    """`{"item", "title", "attributes": [names]}` of one item."""
    title, names = item_text(self.dataset, int(item))
    return {"item": int(item), "title": title, "attributes": names.split(", ") if names else []}


def recommend(steerer: Steerer, user: str, edit_texts, *, k: int = 10, recent: int = 10) -> str:
  """The user's recent items and top-k before and after the edits, as printable text."""
  history = steerer.user_history(user)
  edits = steerer.resolve(edit_texts)
  lines = [f"user {user}: {len(history)} interactions; most recent last:"]
  lines += [f"  {_describe(steerer.dataset, i)}" for i in history[-recent:]]
  before = steerer.top_items(history, k=k)
  lines.append(f"top {k} without edits:")
  lines += [f"  {r + 1:2d}. {_describe(steerer.dataset, i)}" for r, i in enumerate(before)]
  if edits:
    after = steerer.top_items(history, edits, k=k)
    shown = ", ".join(edit_texts)
    lines.append(f"top {k} with {shown} ({steerer.mode}, latents {[e[0] for e in edits]}):")
    lines += [f"  {r + 1:2d}. {_describe(steerer.dataset, i)}{'' if i in before else '   (new)'}"
              for r, i in enumerate(after)]
  return "\n".join(lines)


def _describe(dataset, item: int) -> str:
  title, names = item_text(dataset, item)
  return f"{title}  [{names}]"
