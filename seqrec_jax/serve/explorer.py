"""The explorer's answers: one method per API route, each a pure function of the query.

`Explorer.load(config, workdir)` reads a finished workdir once (through `seqrec_jax.workdir`'s
checked loads) and answers queries given as `{name: [values]}` (what `urllib.parse.parse_qs` returns) with
JSON-ready dicts, or raises `ApiError(status, one-line message)`. The HTTP layer (`server`) only
routes. Composite presets appear once the steer stage has run.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np

from seqrec_jax import workdir as workdir_lib
from seqrec_jax.core.errors import DataError
from seqrec_jax.core.stage_record import StageMismatchError
from seqrec_jax.steer.edits import parse_edit
from seqrec_jax.steer.explain import explain
from seqrec_jax.steer.recommend import MAX_EDITS, Steerer

MAX_HISTORY = 200  # items in a typed history
MAX_USER_ID = 200  # characters of a user id (an unknown one is compared with every known one)
MAX_MATCHES = 20  # answers of a search
EFFECT_CACHE = 512  # settings whose effect over all test users is remembered (a slider moved back)
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")  # ASCII digits only: str.isdigit() accepts '²'


class ApiError(Exception):
  """A request the explorer cannot answer: HTTP `status` and a one-line message."""

  def __init__(self, status: int, message: str):
    super().__init__(" ".join(str(message).split()))
    self.status = status


def _count(query, name: str, default: int) -> int:
  """`name=N`, a whole number of at most 9 ASCII digits; `default` when absent or empty."""
  text = query.get(name, [""])[0].strip()
  if not text:
    return default
  if not re.fullmatch(r"[0-9]{1,9}", text):
    raise ApiError(400, f"{name} must be a whole number, got {text!r}")
  return int(text)


def finite(value):
  """`value` with NaN and infinities replaced by None, numpy scalars and arrays by Python ones
  (browsers reject NaN in JSON)."""
  if isinstance(value, dict):
    return {str(k): finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple, np.ndarray)):
    return [finite(v) for v in value]
  if isinstance(value, (np.bool_, bool)):
    return bool(value)
  if isinstance(value, (np.integer, int)):
    return int(value)
  if isinstance(value, (np.floating, float)):
    return float(value) if math.isfinite(value) else None
  return value


class Explorer:
  """A loaded workdir and the API's answers."""

  def __init__(self, steerer: Steerer, interpretation, steering, name: str, layout=None):
    """`interpretation` and `steering` are `workdir.Interpretation` and `workdir.Steering` (None
    before the steer stage has run); `name` names the workdir on the page; with `layout`
    (`workdir.Layout`) every answer first checks that no stage was redone since."""
    self.steerer = steerer
    self.name = name
    self.layout = layout
    self.loaded = workdir_lib.snapshot(layout) if layout is not None else None
    s = steerer
    self.interpreted = interpretation.results
    self.steered = steering.results if steering is not None else {}
    stats = interpretation.statistics
    self.stats = {f"latent_{k}": v for k, v in stats.tables["latent"].items()}
    self.attribute_names = list(stats.attribute_names)
    self.dict_size = int(s.trained.config.dict_size)
    self.labels = {int(j): v for j, v in self.interpreted.get("labels", {}).items()}
    self.dashboards = {int(j): v for j, v in interpretation.dashboards.items()}
    self.strength_limit = self._strength_limit()
    self.baseline = finite(s.test_effect())
    self._effect = functools.lru_cache(EFFECT_CACHE)(lambda edits: finite(s.test_effect(edits)))
    self.presets = self._presets()

  @classmethod
  def load(cls, config, workdir) -> Explorer:
    """Every artefact of a finished workdir, read through `seqrec_jax.workdir`'s checked loads."""
    layout = workdir_lib.Layout.of(workdir, config)
    steering = (workdir_lib.load_steering(layout) if workdir_lib.has_finished(layout.steer)
                else None)
    return cls(workdir_lib.load_steerer(config, workdir),
               workdir_lib.load_interpretation(layout), steering, layout.root.absolute().name,
               layout)

  def check_current(self) -> None:
    """`ApiError(409)` once a stage of the served workdir was redone (or damaged) since load."""
    if self.layout is not None:
      try:
        workdir_lib.check_unchanged(self.layout, self.loaded)
      except StageMismatchError as e:
        raise ApiError(409, str(e)) from None

  def _strength_limit(self) -> float:
    """Largest |strength| accepted: the widest of the steer stage's sweep (32 by default)."""
    strengths = [abs(float(v)) for a in self.steered.get("attributes", {}).values()
                 for v in a.get("strengths", [])]
    return max(strengths, default=0.0) or 32.0

  def _presets(self) -> list[dict]:
    """The steer stage's composite settings (`composites[NAME]["edits"]`) as `--edit` texts."""
    presets = []
    for name, entry in (self.steered.get("composites") or {}).items():
      texts = list(entry.get("edits", []))
      if texts and self.steerer.resolve(texts):
        presets.append({"name": str(name), "edits": texts})
    return presets

  # ------------------------------------------------------------------ query parsing

  def _history(self, query) -> tuple[str | None, np.ndarray]:
    """`(user, items)` from `user=ID` or `items=ID,ID,...` (oldest first)."""
    if query.get("user"):
      user = query["user"][0]
      if len(user) > MAX_USER_ID:
        raise ApiError(400, f"user ids have at most {MAX_USER_ID} characters, got {len(user)}")
      try:
        return user, self.steerer.user_history(user)
      except DataError as e:
        raise ApiError(404, str(e)) from None
    if query.get("items"):
      texts = [t for t in ",".join(query["items"]).split(",") if t.strip()]
      if len(texts) > MAX_HISTORY:
        raise ApiError(400, f"at most {MAX_HISTORY} items in a typed history, got {len(texts)}")
      return None, self._items(texts)
    raise ApiError(400, "give user=ID or items=ID,ID,...")

  def _items(self, texts) -> np.ndarray:
    bad = [t for t in texts if not _INTEGER.fullmatch(t.strip())]
    if bad:
      raise ApiError(400, f"item ids must be integers (at most 18 digits), got {bad[0]!r}")
    ids = [int(t) for t in texts]
    try:
      return self.steerer.check_items(ids)
    except DataError as e:
      raise ApiError(404, str(e)) from None

  def _edits(self, query) -> list[tuple[int, str, float]]:
    """At most `MAX_EDITS` latent edits (an attribute counts its control's latents)."""
    texts = [t for t in query.get("edit", []) if t.strip()]
    if len(texts) > MAX_EDITS:
      raise ApiError(400, f"at most {MAX_EDITS} edits per request, got {len(texts)}")
    for text in texts:
      name = text.rpartition(":")[0]
      if name.startswith("#") and name[1:].isdigit() and not _INTEGER.fullmatch(name[1:]):
        raise ApiError(400, f"edit {text!r}: a latent is #N with N in 0..{self.dict_size - 1}")
    try:
      edits = self.steerer.resolve(texts)
    except DataError as e:
      raise ApiError(400, str(e)) from None
    if len(edits) > MAX_EDITS:
      raise ApiError(400, f"at most {MAX_EDITS} latent edits per request, got {len(edits)} "
                          "(an attribute counts its control's latents)")
    for text in texts:
      value = parse_edit(text)[1]
      if not math.isfinite(value) or abs(value) > self.strength_limit:
        raise ApiError(400, f"edit {text!r}: strength {value:g} out of range "
                            f"[-{self.strength_limit:g}, {self.strength_limit:g}]")
    for latent, _, _ in edits:
      if not 0 <= latent < self.dict_size:
        raise ApiError(400, f"edit #{latent}: latent out of range 0..{self.dict_size - 1}")
    return edits

  # ------------------------------------------------------------------ routes

  def info(self, query) -> dict:
    s = self.steerer
    users = [str(u) for u in s.dataset.interactions.user_ids]
    controls = [{"attribute": name, "latent": _main_latent(c["promote"]),
                 "label": self._label(_main_latent(c["promote"])),
                 "promote": c["promote"].to_json(), "suppress": c["suppress"].to_json(),
                 "measured": self.knob_effect(name), "shares_control_with": self._sharing(name)}
                for name, c in s.controls.items()]
    return finite({
        "workdir": self.name, "dataset": s.dataset.name, "layer": s.layer,
        "dict_size": self.dict_size, "num_users": len(users), "num_items": s.model_cfg.num_items - 1,
        "example_users": users[:5], "mode": s.mode, "positions": s.positions,
        "error_preserving": s.error_preserving, "strength_limit": self.strength_limit,
        "max_edits": MAX_EDITS, "max_history": MAX_HISTORY,
        "attributes": self.attribute_names, "controls": controls, "presets": self.presets,
        "baseline": self.baseline, "num_dashboards": len(self.dashboards)})

  def knob_effect(self, name: str) -> dict | None:
    """What the attribute's knob did on the test users in the steer stage (its default method):
    at the positive strength with the largest share keeping NDCG@10 >= the stage's ratio of the
    baseline, the share against the unedited one, the selectivity (>= 1: its own attribute moved
    most) and the share of the items it brought in that carry the attribute."""
    method = self.steered.get("default_method", "sae_effect")
    curves = self.steered.get("methods", {}).get(method, {}).get("attributes", {}).get(name)
    baseline = self.steered.get("baseline")
    if not curves or not baseline:
      return None
    floor = self.steered["table"]["min_ndcg_ratio"] * baseline["ndcg@10"]
    ok = [i for i, (st, nd) in enumerate(zip(curves["strengths"], curves["ndcg@10"]))
          if st > 0 and nd >= floor]
    if not ok:
      return {"strength": None, "baseline_share": baseline["share@10"].get(name)}
    i = max(ok, key=lambda j: curves["share@10"][j])
    pick = lambda key: (curves.get(key) or [None] * len(curves["strengths"]))[i]
    return finite({"strength": curves["strengths"][i], "share": curves["share@10"][i],
                   "baseline_share": baseline["share@10"].get(name),
                   "ndcg_ratio": curves["ndcg@10"][i] / max(baseline["ndcg@10"], 1e-12),
                   "selectivity": pick("selectivity"),
                   "new_item_precision": pick("new_item_precision")})

  def _sharing(self, name: str) -> list[str]:
    """The attributes whose promoting control is the same as `name`'s (measured best for each)."""
    for group in (self.steered.get("shared_controls") or {}).get("promote", []):
      if name in group:
        return [n for n in group if n != name]
    return []

  def _label(self, latent: int) -> str | None:
    label = self.labels.get(int(latent)) or {}
    return label.get("attribute")

  def latents(self, query) -> dict:
    """One row per latent: label, best attribute by AUC, AUC, precision, firing rate."""
    auc = self.stats.get("latent_auc")
    precision = self.stats.get("latent_precision")
    fire = self.stats.get("latent_fire_rate")
    rows = []
    for j in range(self.dict_size):
      label = self.labels.get(j) or {}
      best = int(np.nanargmax(auc[j])) if auc is not None and np.isfinite(auc[j]).any() else None
      rows.append({
          "latent": j, "label": label.get("attribute"),
          "monosemantic": bool(label.get("monosemantic", False)),
          "best_attribute": None if best is None else self.attribute_names[best],
          "auc": None if best is None else auc[j, best],
          "precision": label.get("precision", None if best is None or precision is None
                                 else precision[j, best]),
          "fire_rate": None if fire is None else fire[j],
          "typical": self.steerer.typical[j]})
    return finite({"latents": rows})

  def latent(self, query) -> dict:
    """A latent's card: label, statistics per attribute, top items and sequences, dashboard."""
    try:
      j = int(query.get("id", [""])[0])
    except ValueError:
      raise ApiError(400, "give id=LATENT (an integer)") from None
    if not 0 <= j < self.dict_size:
      raise ApiError(404, f"unknown latent {j}: latents run from 0 to {self.dict_size - 1}")
    statistics = {}
    for key, values in self.stats.items():
      if key.startswith("latent_") and values.ndim == 2 and values.shape[1] == len(
          self.attribute_names):
        statistics[key[len("latent_"):]] = values[j]
    order = np.argsort(-np.nan_to_num(statistics["auc"], nan=-1.0)) if "auc" in statistics else []
    by_attribute = [{"attribute": self.attribute_names[g],
                     **{name: values[g] for name, values in statistics.items()}}
                    for g in order[:8]]
    examples = self.interpreted.get("top_examples", {}).get(str(j), {})
    fire = self.stats.get("latent_fire_rate")
    return finite({
        "latent": j, "label": self.labels.get(j), "typical": self.steerer.typical[j],
        "fire_rate": None if fire is None else fire[j], "statistics": by_attribute,
        "top_items": examples.get("items", []), "top_sequences": examples.get("sequences", []),
        "dashboard": self.dashboards.get(j, {}),
        "controls": [name for name, c in self.steerer.controls.items()
                     if j in c["promote"].latents + c["suppress"].latents]})

  def users(self, query) -> dict:
    text = query.get("q", [""])[0].strip().lower()
    ids = [str(u) for u in self.steerer.dataset.interactions.user_ids]
    starts = [u for u in ids if u.lower().startswith(text)]
    contains = [u for u in ids if text in u.lower() and not u.lower().startswith(text)]
    return {"users": (starts + contains)[:MAX_MATCHES]}

  def items(self, query) -> dict:
    text = query.get("q", [""])[0].strip().lower()
    titles = self.steerer.dataset.attributes.titles
    found = [i for i in range(1, len(titles)) if text in str(titles[i]).lower()] if text else []
    return {"items": [self.steerer.describe(i) for i in found[:MAX_MATCHES]]}

  def history(self, query) -> dict:
    user, items = self._history(query)
    recent = min(_count(query, "recent", 10), len(items))
    return {"user": user, "length": len(items),
            "recent": [self.steerer.describe(i) for i in items[len(items) - recent:]]}

  def recommend(self, query) -> dict:
    """Top 10 before and after the edits; `after` entries say whether they are `new`."""
    user, history = self._history(query)
    edits = self._edits(query)
    before = self.steerer.top_items(history)
    after = self.steerer.top_items(history, edits) if edits else before
    return finite({
        "user": user,
        "edits": [{"latent": j, "mode": mode, "strength": v} for j, mode, v in edits],
        "before": [self.steerer.describe(i) for i in before],
        "after": [{**self.steerer.describe(i), "new": i not in before} for i in after]})

  def effect(self, query) -> dict:
    """The same edits over all test users (as the steer stage measures them) and the baseline."""
    edits = self._edits(query)
    after = self._effect(tuple(edits)) if edits else self.baseline
    return {"baseline": self.baseline, "after": after}

  def explain(self, query) -> dict:
    """The latents contributing most to one item's score for this history (no edits)."""
    user, history = self._history(query)
    if not query.get("item"):
      raise ApiError(400, "give item=ID")
    item = int(self._items(query["item"][:1])[0])
    top = _count(query, "top", 10)
    s = self.steerer
    batch = s.input_batch(history)
    result = explain(s.params, s.model_cfg, s.trained, s.layer, batch["input_ids"][0], item,
                     positions=s.positions)
    return finite({
        "user": user, **s.describe(item), "score": result.score, "remainder": result.remainder,
        "positions": s.positions, "layer": s.layer,
        "latents": [{"latent": int(j), "label": self._label(j), "contribution": c,
                     "activation": a}
                    for j, c, a in zip(result.latents[:top], result.contributions[:top],
                                       result.activations[:top])]})


def _main_latent(control) -> int:
  """The latent a control weighs most (a solved control's first latent may weigh 0.08)."""
  return int(max(zip(control.weights, control.latents))[1])
