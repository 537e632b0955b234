"""Sweeps of steering settings over users: the steer stage's measurements.

An `Evaluator` ranks one user group under a `Steer` (metrics, list features, every attribute's
top-10 share, and on demand the top-10 lists). `choose_controls` picks each attribute's SAE
control on the selection users (`controls`); `sweep_methods` measures every method of
`methods.METHODS` over its strengths, with every attribute's share, the knob's selectivity and
the precision of the items it brings in (`specificity`); `sweep_composites` the composite
controls; `method_table` summarises the sweeps. Long sweeps log
progress lines with an ETA (`core.progress`).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from seqrec_jax.core.progress import ProgressLine
from seqrec_jax.data.splits import EvalSet, make_sequences
from seqrec_jax.recommender import evaluation, input_pipeline, metrics
from seqrec_jax.steer import controls as controls_lib
from seqrec_jax.steer import specificity
from seqrec_jax.steer.edits import parse_edit
from seqrec_jax.steer.methods import METHODS, Control, Steer, SteerContext, score_unit

CURVE_KEYS = ("share@10", "ndcg@10", "hr@10", "mrr@10", "coverage@10", "novelty@10", "ild@10",
              "gini@10")


@dataclasses.dataclass(frozen=True)
class Users:
  """One user group ready for sweeps: evaluation arrays in batches of `batch_size` and, where
  the edited layer is a block's output, that output computed once (`LayerInputs`)."""

  arrays: object  # input_pipeline.EvalArrays
  batch_size: int
  layer_inputs: evaluation.LayerInputs | None


@dataclasses.dataclass
class Evaluator:
  """Ranks users with the recommender `(params, model_cfg)` under a `Steer`."""

  params: object
  model_cfg: object
  batch_size: int
  filter_seen: bool
  list_features: metrics.ListFeatures

  def users(self, evalset: EvalSet, layer: str) -> Users:
    """`evalset` in batches of at most `batch_size`, padded to a multiple of 8 users (94 test
    users rank as one batch of 96, not 256), with `layer`'s output computed once."""
    batch_size = min(self.batch_size, -(-max(len(evalset), 1) // 8) * 8)
    arrays = input_pipeline.make_eval_arrays(
        evalset, kind=self.model_cfg.kind, max_len=self.model_cfg.max_len, batch_size=batch_size,
        mask_token=self.model_cfg.mask_token)
    return Users(arrays, batch_size, evaluation.LayerInputs.build(
        self.params, self.model_cfg, arrays, batch_size, layer))

  def __call__(self, users: Users, steer: Steer = Steer()) -> dict:
    return evaluation.evaluate(self.params, self.model_cfg, users.arrays,
                               batch_size=users.batch_size, filter_seen=self.filter_seen,
                               edit=steer.edit, score_bias=steer.score_bias,
                               list_features=self.list_features, layer_inputs=users.layer_inputs)

  def ranked(self, users: Users, steer: Steer = Steer()) -> tuple[dict, np.ndarray]:
    """`(metrics, top[U, 10])`: `__call__`'s metrics and every user's top-10 items."""
    return evaluation.evaluate(self.params, self.model_cfg, users.arrays,
                               batch_size=users.batch_size, filter_seen=self.filter_seen,
                               edit=steer.edit, score_bias=steer.score_bias,
                               list_features=self.list_features, layer_inputs=users.layer_inputs,
                               return_top=True)

  def shares(self, result: dict) -> np.ndarray:
    """`[G]` top-10 share of every attribute in a result."""
    return np.array([result["share@10"][n] for n in self.list_features.attribute_names])

  def score_unit(self, users: Users) -> float:
    """Mean over users of the standard deviation of their item scores (re-ranking's unit)."""
    stds = []
    for batch in users.arrays.batches(users.batch_size):
      scores = np.asarray(jax.device_get(evaluation.scores_last(
          self.params, batch["input_ids"], self.model_cfg)))[:, 1:]
      stds.append(scores.std(axis=1)[batch["valid"]])
    return score_unit(np.concatenate(stds))


def selection_evalset(split, max_users: int, seed: int) -> EvalSet:
  """The users controls are chosen on: `split.val` (temporal: the SAE users' last items;
  leave-one-out: every user's second-to-last item), at most `max_users` of them."""
  val = split.val
  if max_users and len(val) > max_users:
    keep = np.sort(np.random.default_rng(seed).choice(len(val), max_users, replace=False))
    val = EvalSet(make_sequences([val.histories[i] for i in keep], val.histories.users[keep]),
                  val.targets[keep])
  return val


def choose_controls(evaluate: Evaluator, users: Users, candidates: dict[str, list[int]], ctx_sae,
                    strengths, *, mode: str, min_ndcg_ratio: float, solved=None,
                    baseline: dict | None = None) -> tuple[dict, dict]:
  """`(chosen, baseline)`: each attribute's promote and suppress control chosen on the selection
  `users` among the single latents `candidates` and the weighted sets `solved`
  (`{name: [Control]}`) (`controls.choose_all`), and their unsteered metrics (`baseline`, if
  given, must be `evaluate(users)`)."""
  baseline = evaluate(users) if baseline is None else baseline
  solved = solved or {}
  total = sum(len(c) + 1 + len(solved.get(n, ())) for n, c in candidates.items()) * len(
      [v for v in strengths if v])
  progress = ProgressLine("steer: choosing controls (sweeps on the selection users)", total)

  def sweep(control: Control, strength: float):
    result = evaluate(users, ctx_sae(control.edits(strength, mode)))
    progress.step()
    return evaluate.shares(result), result["ndcg@10"]

  chosen = controls_lib.choose_all(
      sweep, candidates, evaluate.list_features.attribute_names, [v for v in strengths if v],
      base_shares=evaluate.shares(baseline), base_ndcg=baseline["ndcg@10"],
      min_ndcg_ratio=min_ndcg_ratio, solved=solved)
  return chosen, baseline


def sweep_methods(evaluate: Evaluator, users: Users, ctx: SteerContext, names, grids: dict,
                  baseline: tuple[dict, np.ndarray] | None = None) -> dict:
  """`{method: {"unit", "attributes": {name: {"strengths", *CURVE_KEYS, "all_shares@10",
  "selectivity", "new_item_precision", "baseline_share@10"}}}}` on `users`.

  `all_shares@10` is `{attribute: [share per strength]}` over every attribute; `selectivity` and
  `new_item_precision` (None where no item is new) are per strength (`specificity`; selectivity
  against the other attributes of the target's family), against `baseline`
  (`evaluate.ranked(users)`, computed if not given).
  """
  all_names = evaluate.list_features.attribute_names
  base, base_top = evaluate.ranked(users) if baseline is None else baseline
  base_shares = evaluate.shares(base)
  attributes = evaluate.list_features.attributes
  peers = specificity.peer_mask(all_names)
  progress = ProgressLine("steer: sweeping methods on the test users",
                          sum(len(grids[m]) for m in METHODS) * len(names))
  out = {}
  for method, spec in METHODS.items():
    per_attribute = {}
    for name in names:
      g = all_names.index(name)
      curves = {key: [] for key in CURVE_KEYS}
      shares, selectivity, precision = [], [], []
      for strength in grids[method]:
        result, top = evaluate.ranked(users, spec.steer(ctx, name, g, strength))
        progress.step()
        for key in CURVE_KEYS:
          curves[key].append(result[key][name] if key == "share@10" else result[key])
        shares.append(evaluate.shares(result))
        selectivity.append(specificity.selectivity(shares[-1], base_shares, g,
                                                   int(np.sign(strength)), peers=peers[g]))
        precision.append(metrics.new_item_precision(base_top, top, attributes[:, g:g + 1])[0])
      per_attribute[name] = {
          "strengths": list(grids[method]), **curves,
          "all_shares@10": {n: [float(row[i]) for row in shares] for i, n in enumerate(all_names)},
          "selectivity": selectivity,
          "new_item_precision": specificity.finite_or_none(precision),
          "baseline_share@10": float(base_shares[g])}
    out[method] = {"unit": spec.unit.format(score_unit=ctx.score_unit),
                   "attributes": per_attribute}
  return out


def parse_composites(text: str) -> dict[str, list[tuple[str, float]]]:
  """`"kids mode=Children's:+1,Animation:+1;no Horror=Horror:-1"` -> {name: [(attr, sign)]}."""
  out = {}
  for part in filter(None, (p.strip() for p in text.split(";"))):
    name, sep, body = part.partition("=")
    if not sep or not name.strip() or not body.strip():
      raise ValueError(f"steer.composites: {part!r} must look like NAME=ATTR:+1,ATTR:-1")
    out[name.strip()] = [parse_edit(e.strip()) for e in body.split(",") if e.strip()]
  return out


def composite_edits(parts, chosen: dict[str, dict[str, Control]], strength: float,
                    mode: str = "add") -> list[tuple[int, str, float]]:
  """SAE edits of a composite at `strength`: each part's promote or suppress control."""
  edits = []
  for name, weight in parts:
    control = chosen[name]["promote" if weight > 0 else "suppress"]
    edits += control.edits(strength * weight, mode)
  return edits


def sweep_composites(evaluate: Evaluator, users: Users, ctx: SteerContext, text: str, strengths,
                     baseline: dict, min_ndcg_ratio: float) -> dict:
  """Each composite of `text` (`parse_composites`) over `strengths`, with its preset: the
  strongest setting keeping NDCG@10 at `min_ndcg_ratio` of the baseline."""
  out = {}
  for cname, parts in parse_composites(text).items():
    parts = [(n, w) for n, w in parts if n in ctx.controls]
    if not parts:
      continue
    rows = [evaluate(users, ctx.sae(composite_edits(parts, ctx.controls, st, ctx.mode)))
            for st in strengths]
    floor = min_ndcg_ratio * baseline["ndcg@10"]
    usable = [st for st, r in zip(strengths, rows) if st > 0 and r["ndcg@10"] >= floor]
    preset = max(usable, default=min((st for st in strengths if st > 0), default=0.0))
    out[cname] = {
        "parts": [[n, w] for n, w in parts],
        # The strongest setting of the sweep keeping NDCG@10 (the explorer's preset).
        "edits": [f"{n}:{preset * w:+g}" for n, w in parts],
        "strengths": [float(v) for v in strengths],
        "share@10": {n: [r["share@10"][n] for r in rows] for n, _ in parts},
        **{key: [r[key] for r in rows] for key in CURVE_KEYS if key != "share@10"}}
  return out


def _doubles(share: float, base: float) -> bool:
  return share > base and share >= 2 * base


def method_table(methods: dict, baseline: dict, min_ndcg_ratio: float) -> dict:
  """Per method and attribute: the best share@10 at a positive strength keeping NDCG@10 at
  `min_ndcg_ratio` of the baseline or more (None if none does) and the selectivity there; per
  method how many attributes at least double their baseline share there (`doubled`), and how
  many double it at a strength where the knob is also selective, selectivity >= 1
  (`doubled_and_selective`)."""
  floor = min_ndcg_ratio * baseline["ndcg@10"]
  shares, selectivity, doubled, selective = {}, {}, {}, {}
  for method, m in methods.items():
    shares[method], selectivity[method], selective[method] = {}, {}, 0
    for name, a in m["attributes"].items():
      base = baseline["share@10"][name]
      sels = a.get("selectivity", [None] * len(a["strengths"]))
      ok = [(sh, sel) for st, sh, nd, sel in zip(a["strengths"], a["share@10"], a["ndcg@10"], sels)
            if st > 0 and nd >= floor]
      best = max(ok, key=lambda p: p[0]) if ok else (None, None)
      shares[method][name], selectivity[method][name] = best
      selective[method] += any(_doubles(sh, base) and sel is not None and sel >= 1.0
                               for sh, sel in ok)
    doubled[method] = sum(
        1 for name, v in shares[method].items()
        if v is not None and _doubles(v, baseline["share@10"][name]))
  return {"min_ndcg_ratio": min_ndcg_ratio, "share_at_min_ndcg": shares, "doubled": doubled,
          "selectivity_at_min_ndcg": selectivity, "doubled_and_selective": selective}
