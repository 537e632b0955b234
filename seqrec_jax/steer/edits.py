"""Steer recommendations by editing SAE latents at one layer.

An edit list is three arrays (`Edits`): latent ids, modes (set / add / scale) and values, so a
sweep over strengths reuses one compiled forward pass. Values of `set` and `add` are in units of
the latent's *typical activation* (its mean where it fires on the selection (SAE) users' positions): `add 2.0` adds
twice what the latent usually carries when it is on, whatever its scale; `scale` multiplies.
Edited values are not clipped at 0: with the error-preserving form an edit moves h linearly along
the latent's decoder direction, and a negative value ("no horror") pushes h away from it, which
switching a latent off alone cannot do when other latents and the error term carry the same
attribute.

At the edited positions (`"last"` or `"all"`), with f = encode(h) and f' the edited latents:

* error-preserving (default): h' = h + decode(f') - decode(f), computed as
  decode(f' - f) - decode(0) (the decoder is affine), so an empty edit leaves h bit-for-bit
  unchanged and the SAE's reconstruction error stays in h';
* the paper's variant: h' = decode(f'), the reconstruction replaces h.

Everything is in raw activation units. The edit rides on `hooks.LayerEdit`, so the model code does
not change and `recommender.evaluate(..., edit=...)` runs the steered model.
"""

from __future__ import annotations

import difflib
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from seqrec_jax.recommender import hooks
from seqrec_jax.core.errors import DataError
from seqrec_jax.sae import TrainedSAE

MODES = {"set": 0, "add": 1, "scale": 2}
POSITIONS = ("last", "all")


@struct.dataclass
class Edits:
  """E edits applied in order."""

  latents: jax.Array  # int32 [E]
  modes: jax.Array  # int32 [E], values of MODES
  values: jax.Array  # float32 [E]: typical-activation units (set, add) or a factor (scale)

  @classmethod
  def make(cls, edits: list[tuple[int, str, float]]) -> Edits:
    """From `[(latent, mode, value), ...]`; an empty list edits nothing."""
    for _, mode, _ in edits:
      if mode not in MODES:
        raise ValueError(f"edit mode must be one of {list(MODES)}, got {mode!r}")
    return cls(
        latents=jnp.asarray([e[0] for e in edits], jnp.int32).reshape(-1),
        modes=jnp.asarray([MODES[e[1]] for e in edits], jnp.int32).reshape(-1),
        values=jnp.asarray([e[2] for e in edits], jnp.float32).reshape(-1),
    )


def edit_latents(latents: jax.Array, edits: Edits, typical: jax.Array) -> jax.Array:
  """Apply `edits` to `latents[..., M]`; `typical[M]` is each latent's unit (raw units)."""
  for e in range(edits.latents.shape[0]):  # E is static and small
    j, mode, value = edits.latents[e], edits.modes[e], edits.values[e]
    current = latents[..., j]
    unit = typical[j]
    new = jnp.select([mode == MODES["set"], mode == MODES["add"]],
                     [jnp.full_like(current, value * unit), current + value * unit],
                     current * value)
    latents = latents.at[..., j].set(new)
  return latents


def steer_hidden(h: jax.Array, sae: TrainedSAE, edits: Edits, typical: jax.Array, *,
                 positions: str = "all", error_preserving: bool = True) -> jax.Array:
  """Edited hidden states `[B, L, d]` (raw units) for `h[B, L, d]`."""
  f = sae.encode(h)
  f_edited = edit_latents(f, edits, typical)
  if error_preserving:
    zero = jnp.zeros_like(f)
    edited = h + (sae.decode(f_edited - f) - sae.decode(zero))
  else:
    edited = sae.decode(f_edited)
  if positions == "last":
    at_last = (jnp.arange(h.shape[-2]) == h.shape[-2] - 1)[:, None]
    edited = jnp.where(at_last, edited, h)
  elif positions != "all":
    raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
  return edited.astype(h.dtype)


@functools.cache
def _edit_fn(positions: str, error_preserving: bool):
  """One function object per setting, so that jit caches steered passes by identity."""

  def fn(args, h):
    sae, edits, typical = args
    return steer_hidden(h, sae, edits, typical, positions=positions,
                        error_preserving=error_preserving)

  return fn


def layer_edit(layer: str, sae: TrainedSAE, edits: Edits, typical, *, positions: str = "all",
               error_preserving: bool = True) -> hooks.LayerEdit:
  """A `hooks.LayerEdit` that steers `layer` (pass it to `recommender.evaluate` / `scores_last`)."""
  if positions not in POSITIONS:
    raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
  return hooks.LayerEdit(layer, _edit_fn(positions, bool(error_preserving)),
                         (sae, edits, jnp.asarray(typical, jnp.float32)))


# ----------------------------------------------------------------------------- names


def close_matches_error(kind: str, name: str, known) -> DataError:
  known = [str(k) for k in known]
  close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
  hint = f"; close matches: {', '.join(close)}" if close else f"; known: {', '.join(known[:20])}"
  return DataError(f"unknown {kind} {name!r}{hint}")


def parse_edit(text: str) -> tuple[str, float]:
  """`"Comedy:+3"` -> `("Comedy", 3.0)`; the name may itself contain colons."""
  name, sep, value = text.rpartition(":")
  if not sep or not name:
    raise DataError(f"edit {text!r} must look like NAME:VALUE, e.g. Comedy:+2 or Horror:-1")
  try:
    return name, float(value)
  except ValueError:
    raise DataError(f"edit {text!r}: {value!r} is not a number") from None


def resolve_edits(texts, controls, mode: str = "add") -> list[tuple[int, str, float]]:
  """Edits named by attribute (through its control) or by latent (`#123`).

  `controls` maps an attribute name to its latent (int) or to `{"promote": Control, "suppress":
  Control}` (`steer.stage.attribute_controls`): a positive value uses the promoting control, a
  negative one the suppressing control, each latent edited by value x its weight.
  """
  edits = []
  for text in texts:
    name, value = parse_edit(text)
    if name.startswith("#") and name[1:].isdigit():
      edits.append((int(name[1:]), mode, value))
    elif name in controls:
      control = controls[name]
      if isinstance(control, dict):
        edits += control["suppress" if value < 0 else "promote"].edits(value, mode)
      else:
        edits.append((int(control), mode, value))
    else:
      raise close_matches_error("attribute", name, controls)
  return edits


def typical_activation(latents: np.ndarray) -> np.ndarray:
  """`[M]` mean of each latent where it fires (1 for latents that never fire), from `[N, M]`
  latents: steering's unit, so a strength means the same for every latent."""
  fired = latents > 0
  counts = fired.sum(0)
  sums = np.where(fired, latents, 0).sum(0, dtype=np.float64)
  return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0).astype(np.float32)
