"""Latents against raw dimensions without selection bias: choose on one set of users, measure on
another, with bootstrap intervals over the measuring users; and monosemanticity per feature.

The best feature for an attribute is the one with the highest statistic *on the selection users*
(the SAE users); its statistic is then *measured on the test users*. Choosing and measuring on the
same positions would favour whichever family has more columns (512 latents against 128 signed
dimensions): the maximum of many noisy estimates is biased upwards.

Monosemanticity of a feature (a latent, or a signed dimension) is
`1 - c2 / c1`, where c1 >= c2 are its two highest positive Pearson correlations with the
attributes: 1 when one attribute carries all of its association, 0 when two attributes tie. It is
undefined (NaN) for a feature whose best correlation is below `MIN_CORRELATION`, which no attribute
explains. Attributes that overlap (Animation and Children's) lower it even for a clean detector of
one of them, so compare latents and dimensions on the same attributes only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from seqrec_jax.interpret import bootstrap

# Statistics that choose the best feature (each chooses for itself); the AUC-chosen feature is
# also described by the firing statistics.
CHOOSING = ("auc", "corr", "f1")
DESCRIBING = ("precision", "frac_fired", "mean_act")
MIN_CORRELATION = 0.05


def best_columns(stats: Mapping[str, np.ndarray], statistic: str) -> np.ndarray:
  """`[G]` column with the highest `statistic` per attribute (NaN never wins; -1 if all NaN)."""
  table = np.asarray(stats[statistic], np.float64)
  scored = np.where(np.isnan(table), -np.inf, table)
  best = scored.argmax(axis=0)
  return np.where(np.isfinite(scored.max(axis=0)), best, -1)


def compare(*, latent_selection: Mapping[str, np.ndarray], neuron_selection: Mapping[str, np.ndarray],
            latents: np.ndarray, hidden: np.ndarray, labels: np.ndarray, users: np.ndarray,
            attribute_names: Sequence[str], neuron_thresholds: np.ndarray,
            num_samples: int = 1000, seed: int = 0) -> dict:
  """Best latent and best signed dimension per attribute, chosen on selection statistics and
  measured on the given (test) positions with user-bootstrap 95 % intervals.

  Args:
    latent_selection: `attribute_statistics` of the latents on the selection users (`[M, G]`).
    neuron_selection: `neuron_statistics` of the hidden dimensions there (`[2d, G]`, with
      `dimension` and `sign`).
    latents: `[N, M]` latents at the test positions.
    hidden: `[N, d]` hidden states at the test positions.
    labels: `[N, G]` bool attributes at the test positions.
    users: `[N]` user of each test position (the bootstrap unit).
    attribute_names: G names.
    neuron_thresholds: `[2d]` firing thresholds of the signed dimensions (from the selection
      users, so that nothing about the test users is chosen).
    num_samples, seed: bootstrap replicates and their seed.

  Returns:
    `{"attributes": {name: {"latent": {stat: {"feature", "value", "ci"}}, "dimension": {...}}},
    "mean": {"latent" | "dimension" | "difference": {stat: {"value", "ci"}}}}`. For a
    dimension, `feature` is the hidden dimension and `sign` its direction. `difference` is
    latent minus dimension, paired (the same replicates of the same users).
  """
  names = list(attribute_names)
  labels = np.asarray(labels, bool)
  dimension = np.asarray(neuron_selection["dimension"])
  sign = np.asarray(neuron_selection["sign"])

  def measure(selection, columns_of):
    """{stat: (chosen [G], point [G], samples [B, G])} for one family."""
    out = {}
    for statistic in CHOOSING:
      chosen = best_columns(selection, statistic)
      values, thresholds = columns_of(np.maximum(chosen, 0))
      result = bootstrap.bootstrap(values, labels, users, num_samples=num_samples, seed=seed,
                                   fire_threshold=thresholds)
      keep = (chosen >= 0)[None, :]
      stats = [statistic] + (list(DESCRIBING) if statistic == "auc" else [])
      for name in stats:
        point = np.where(keep[0], result[name]["value"], np.nan)
        out[name] = (chosen, point, np.where(keep, result[name]["samples"], np.nan))
    return out

  def latent_columns(chosen):
    return np.asarray(latents)[:, chosen], 0.0

  def neuron_columns(chosen):
    values = np.asarray(hidden, np.float64)[:, dimension[chosen]] * sign[chosen]
    return values, np.asarray(neuron_thresholds)[chosen]

  families = {"latent": measure(latent_selection, latent_columns),
              "dimension": measure(neuron_selection, neuron_columns)}
  return {"num_samples": int(num_samples),
          "attributes": _per_attribute(families, names, dimension, sign),
          "mean": _means(families)}


def _per_attribute(families: dict, names, dimension, sign) -> dict:
  """`{name: {family: {stat: {"feature", "value", "ci"(, "sign")} | None}}}`."""
  attributes = {}
  for g, name in enumerate(names):
    entry = {}
    for family, measured in families.items():
      entry[family] = {}
      for statistic, (chosen, point, samples) in measured.items():
        if chosen[g] < 0 or not np.isfinite(point[g]):
          entry[family][statistic] = None
          continue
        item = {"feature": int(chosen[g] if family == "latent" else dimension[chosen[g]]),
                "value": float(point[g]), "ci": _pair(bootstrap.interval(samples[:, g]))}
        if family == "dimension":
          item["sign"] = int(sign[chosen[g]])
        entry[family][statistic] = item
    attributes[name] = entry
  return attributes


def _means(families: dict) -> dict:
  """Means over the attributes both families measure, with paired bootstrap intervals."""
  mean = {"latent": {}, "dimension": {}, "difference": {}}
  for statistic in families["latent"]:
    _, lat_point, lat_samples = families["latent"][statistic]
    _, dim_point, dim_samples = families["dimension"][statistic]
    both = np.isfinite(lat_point) & np.isfinite(dim_point)
    if not both.any():
      continue
    for family, point, samples in (("latent", lat_point, lat_samples),
                                   ("dimension", dim_point, dim_samples),
                                   ("difference", lat_point - dim_point, lat_samples - dim_samples)):
      with np.errstate(invalid="ignore"):
        replicate_means = np.nanmean(samples[:, both], axis=1)
      mean[family][statistic] = {"value": float(point[both].mean()),
                                 "ci": _pair(bootstrap.interval(replicate_means))}
  return mean


def monosemanticity(corr: np.ndarray) -> np.ndarray:
  """`[F]` monosemanticity (module docstring) of each feature from its `[F, G]` correlations."""
  c = np.sort(np.maximum(np.nan_to_num(np.asarray(corr, np.float64)), 0.0), axis=1)[:, ::-1]
  if c.shape[1] < 2:
    return np.where(c[:, 0] >= MIN_CORRELATION, 1.0, np.nan)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(c[:, 0] >= MIN_CORRELATION, 1.0 - c[:, 1] / c[:, 0], np.nan)


def distribution(values: np.ndarray) -> dict:
  """Summary of a monosemanticity distribution: count defined, quartiles, share >= 0.5."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  if not len(v):
    return {"count": 0}
  q = np.percentile(v, [25, 50, 75])
  return {"count": int(len(v)), "q25": float(q[0]), "median": float(q[1]), "q75": float(q[2]),
          "share_at_least_0.5": float((v >= 0.5).mean())}


def _pair(ci) -> list[float | None]:
  return [float(x) if np.isfinite(x) else None for x in np.asarray(ci).reshape(2)]


LABEL_POSITIONS = ("item", "next_item")


def position_labels(multi_hot: np.ndarray, items: np.ndarray, next_items: np.ndarray,
                    label_position: str) -> tuple[np.ndarray, np.ndarray]:
  """`(labels[N, G] bool, keep[N] bool)`: the attributes (`multi_hot[V, G]`) of the item at each
  position (`label_position="item"`, the paper's) or of the next one; `keep` marks positions
  that have such an item."""
  if label_position not in LABEL_POSITIONS:
    raise ValueError(f"label_position must be one of {LABEL_POSITIONS}, got {label_position!r}")
  labelled = items if label_position == "item" else next_items
  return np.asarray(multi_hot)[labelled], labelled > 0


def signed_thresholds(hidden: np.ndarray, fire_z: float = 1.0) -> np.ndarray:
  """`[2d]` firing thresholds of +x and -x (as `neuron_statistics`), from these positions."""
  mean = hidden.mean(0, dtype=np.float64)
  std = hidden.std(0, dtype=np.float64)
  return np.concatenate([mean + fire_z * std, -mean + fire_z * std])
