"""Ways to steer toward (or away from) an attribute, each a function of one strength.

A `Steer` is what `recommender.evaluate` needs for one setting: a layer edit and/or a score bias.
The methods compared by the `steer` stage:

* `sae_effect` (default): the SAE control chosen by its measured effect (`controls`), edited
  with the error-preserving form h + decode(f') - decode(f). Strength: typical activations.
* `sae_auc`: the attribute's best latent by ROC AUC (the first version's choice), same edit.
* `sae_replace`: the `sae_effect` control with the paper's form h' = decode(f') (the
  reconstruction replaces h; at strength 0 this is the spliced-in SAE, not the baseline).
* `dimension`: add strength x std to the attribute's best raw hidden dimension (by correlation,
  with its sign) at the same layer. Strength: standard deviations of that dimension.
* `probe`: add strength x std along a linear probe's direction at the same layer (the Fisher
  discriminant Sigma^-1 (mu_1 - mu_0), unit-normalised). Strength: standard deviations of h
  projected on it.
* `rerank`: add strength x (a typical user's score standard deviation) to the scores of the
  attribute's items: the direct reference, no model internals. Strength: score std units.
* `diff_means`: add strength x std along the difference of means at the same layer (the mean
  hidden state on the attribute's positions minus the mean elsewhere, selection users; unit-
  normalised). Strength: standard deviations of h projected on it, as for `probe`.
* `random_latent`: a random latent that fires on the selection users, one per attribute (seeded,
  `controls.random_latents`), edited like the SAE controls: what an SAE edit does without the
  choice. Strength: typical activations.

Every form except `sae_replace` leaves the model bit-for-bit unchanged at strength 0: the added
offset is an exact zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from seqrec_jax.recommender import hooks
from seqrec_jax.steer import edits as steering


@dataclasses.dataclass(frozen=True)
class Control:
  """A weighted set of latents: strength s edits latent i by s * weights[i] (mode units)."""

  latents: tuple[int, ...]
  weights: tuple[float, ...]

  @classmethod
  def single(cls, latent: int) -> Control:
    return cls((int(latent),), (1.0,))

  def edits(self, strength: float, mode: str = "add") -> list[tuple[int, str, float]]:
    return [(j, mode, float(strength) * w) for j, w in zip(self.latents, self.weights)]

  def to_json(self) -> dict:
    return {"latents": list(self.latents), "weights": list(self.weights)}

  @classmethod
  def from_json(cls, d: dict) -> Control:
    return cls(tuple(int(j) for j in d["latents"]), tuple(float(w) for w in d["weights"]))


@dataclasses.dataclass(frozen=True)
class Steer:
  """One setting for `recommender.evaluate(edit=..., score_bias=...)`."""

  edit: hooks.LayerEdit | None = None
  score_bias: jnp.ndarray | None = None


def sae_steer(layer, trained, typical, edit_list, *, positions="all", error_preserving=True) -> Steer:
  """SAE edits `[(latent, mode, value), ...]` at `layer`."""
  return Steer(edit=steering.layer_edit(layer, trained, steering.Edits.make(edit_list), typical,
                                        positions=positions, error_preserving=error_preserving))


def _add_offset_all(offset, h):
  return h + offset.astype(h.dtype)


def _add_offset_last(offset, h):
  return h.at[..., -1, :].add(offset.astype(h.dtype))


def direction_steer(layer: str, direction: np.ndarray, amount: float, *, positions="all") -> Steer:
  """Add `amount * direction` (`[d]`, raw units) to `layer`'s output at the positions."""
  if positions not in steering.POSITIONS:
    raise ValueError(f"positions must be one of {steering.POSITIONS}, got {positions!r}")
  offset = jnp.asarray(float(amount) * np.asarray(direction, np.float32))
  fn = _add_offset_last if positions == "last" else _add_offset_all
  return Steer(edit=hooks.LayerEdit(layer, fn, offset))


def rerank_steer(attribute_items: np.ndarray, amount: float) -> Steer:
  """Add `amount` to the scores of the items where `attribute_items[V]` is True."""
  bias = jnp.asarray(float(amount) * np.asarray(attribute_items, np.float32))
  return Steer(score_bias=bias)


# ---------------------------------------------------------------- raw-dimension directions


def dimension_direction(hidden: np.ndarray, dimension: int, sign: int) -> np.ndarray:
  """`[d]` sign x std(h_dim) along the dimension: one standard deviation, toward the attribute."""
  direction = np.zeros(hidden.shape[1], np.float32)
  direction[dimension] = sign * float(np.asarray(hidden[:, dimension], np.float64).std())
  return direction


def probe_direction(hidden: np.ndarray, labels: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
  """`[d]` one standard deviation along the Fisher discriminant of `labels[N]` in `hidden[N, d]`.

  w = (Sigma + ridge * tr(Sigma)/d I)^-1 (mu_1 - mu_0), the linear probe's direction (a logistic
  regression's, for Gaussian classes with shared covariance), scaled so that the projection of h
  on it moves by one standard deviation.
  """
  x = np.asarray(hidden, np.float64)
  y = np.asarray(labels, bool)
  if y.all() or not y.any():
    return np.zeros(x.shape[1], np.float32)
  cov = np.cov(x, rowvar=False)
  cov += ridge * np.trace(cov) / len(cov) * np.eye(len(cov))
  w = np.linalg.solve(cov, x[y].mean(0) - x[~y].mean(0))
  w /= np.linalg.norm(w)
  return (w * (x @ w).std()).astype(np.float32)


def diff_means_direction(hidden: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """`[d]` one standard deviation along mu_1 - mu_0, the mean of `hidden[N, d]` where
  `labels[N]` minus the mean elsewhere (unit-normalised, then scaled so that the projection of h
  on it moves by one standard deviation); zeros where either class is empty."""
  x = np.asarray(hidden, np.float64)
  y = np.asarray(labels, bool)
  if y.all() or not y.any():
    return np.zeros(x.shape[1], np.float32)
  w = x[y].mean(0) - x[~y].mean(0)
  norm = np.linalg.norm(w)
  if norm == 0:
    return np.zeros(x.shape[1], np.float32)
  w /= norm
  return (w * (x @ w).std()).astype(np.float32)


def score_unit(scores_std_per_user: np.ndarray) -> float:
  """The re-ranking unit: the mean over users of the standard deviation of their item scores."""
  return float(np.mean(scores_std_per_user))


# ---------------------------------------------------------------- the registry


@dataclasses.dataclass
class SteerContext:
  """What every method's steer is built from; everything here comes from the selection users.

  `controls[name][direction]` are the chosen SAE controls; `selection_auc[M, G]` the latents'
  AUC; `neuron_corr[2d, G]`, `neuron_dimension[2d]`, `neuron_sign[2d]` the signed dimensions'
  correlation and identity; `hidden[N, d]` and `labels[N, G]` the layer's states and attributes
  at the positions; `score_unit` the re-ranking unit; `multi_hot[V, G]` the items' attributes;
  `random_latents[name]` the `random_latent` baseline's latent.
  """

  layer: str
  trained: object  # sae.TrainedSAE
  typical: np.ndarray
  controls: dict
  multi_hot: np.ndarray
  selection_auc: np.ndarray
  neuron_corr: np.ndarray
  neuron_dimension: np.ndarray
  neuron_sign: np.ndarray
  hidden: np.ndarray
  labels: np.ndarray
  score_unit: float
  mode: str = "add"
  positions: str = "last"
  error_preserving: bool = True
  random_latents: dict = dataclasses.field(default_factory=dict)
  _probes: dict = dataclasses.field(default_factory=dict, repr=False)

  def sae(self, edit_list, error_preserving: bool | None = None) -> Steer:
    ep = self.error_preserving if error_preserving is None else error_preserving
    return sae_steer(self.layer, self.trained, self.typical, edit_list, positions=self.positions,
                     error_preserving=ep)

  def control(self, name: str, strength: float) -> Control:
    return self.controls[name]["promote" if strength >= 0 else "suppress"]

  def probe(self, g: int) -> np.ndarray:
    if g not in self._probes:
      self._probes[g] = probe_direction(self.hidden, self.labels[:, g])
    return self._probes[g]

  def diff_means(self, g: int) -> np.ndarray:
    if ("diff_means", g) not in self._probes:
      self._probes["diff_means", g] = diff_means_direction(self.hidden, self.labels[:, g])
    return self._probes["diff_means", g]


def _sae_effect(ctx: SteerContext, name: str, g: int, strength: float) -> Steer:
  return ctx.sae(ctx.control(name, strength).edits(strength, ctx.mode))


def _sae_replace(ctx: SteerContext, name: str, g: int, strength: float) -> Steer:
  return ctx.sae(ctx.control(name, strength).edits(strength, ctx.mode), error_preserving=False)


def _sae_auc(ctx: SteerContext, name: str, g: int, strength: float) -> Steer:
  latent = int(np.nan_to_num(ctx.selection_auc[:, g], nan=-np.inf).argmax())
  return ctx.sae(Control.single(latent).edits(strength, ctx.mode))


def _dimension(ctx: SteerContext, name: str, g: int, strength: float) -> Steer:
  column = int(np.nan_to_num(ctx.neuron_corr[:, g], nan=-np.inf).argmax())
  vector = dimension_direction(ctx.hidden, int(ctx.neuron_dimension[column]),
                               int(ctx.neuron_sign[column]))
  return direction_steer(ctx.layer, vector, strength, positions=ctx.positions)


def _probe(ctx: SteerContext, name: str, g: int, strength: float) -> Steer:
  return direction_steer(ctx.layer, ctx.probe(g), strength, positions=ctx.positions)


def _rerank(ctx: SteerContext, name: str, g: int, strength: float) -> Steer:
  return rerank_steer(ctx.multi_hot[:, g], strength * ctx.score_unit)


def _diff_means(ctx: SteerContext, name: str, g: int, strength: float) -> Steer:
  return direction_steer(ctx.layer, ctx.diff_means(g), strength, positions=ctx.positions)


def _random_latent(ctx: SteerContext, name: str, g: int, strength: float) -> Steer:
  return ctx.sae(Control.single(ctx.random_latents[name]).edits(strength, ctx.mode))


@dataclasses.dataclass(frozen=True)
class Method:
  """One steering method: its strengths (`config.steer.<grid>`), their unit, and its steer."""

  grid: str
  unit: str
  steer: Callable[[SteerContext, str, int, float], Steer]


METHODS = {
    "sae_effect": Method("strengths", "typical activations", _sae_effect),
    "sae_auc": Method("strengths", "typical activations", _sae_auc),
    "sae_replace": Method("strengths", "typical activations", _sae_replace),
    "dimension": Method("direction_strengths", "standard deviations of the dimension", _dimension),
    "probe": Method("direction_strengths", "standard deviations along the probe", _probe),
    "rerank": Method("rerank_strengths", "score standard deviations ({score_unit:.4g})", _rerank),
    "diff_means": Method("direction_strengths", "standard deviations along the difference of means",
                         _diff_means),
    "random_latent": Method("strengths", "typical activations", _random_latent),
}
