"""`SAEConfig`: the hyperparameters of one SAE, as the modules read them and as saved with it.

Each variant declares its own settings (`base.Setting`) in its file; `variants.sae_config_from`
builds an `SAEConfig` from the `config.sae` block. The fields below are those of the first five
variants (saved in `sae_config.json` and checkpoints, so never renamed); a later variant's
settings without a field here go to `extra` and read as attributes all the same (`cfg.name`).
"""

from __future__ import annotations

import dataclasses

from flax import struct


COUNTER_CAP = 2**30  # tokens_since_fired saturates here (int32)


@struct.dataclass
class SAEConfig:
  """Hyperparameters of one SAE (all static; frozen, use `.replace`)."""

  variant: str = struct.field(pytree_node=False, default="relu_l1")  # one of variants.VARIANTS
  input_dim: int = struct.field(pytree_node=False, default=64)  # d, width of the activations
  dict_size: int = struct.field(pytree_node=False, default=512)  # M, number of latents
  k: int = struct.field(pytree_node=False, default=32)  # topk / batchtopk: active latents
  k_aux: int = struct.field(pytree_node=False, default=32)  # AuxK: dead latents used (~ d / 2)
  aux_coeff: float = struct.field(pytree_node=False, default=1 / 32)  # AuxK weight
  l1_coeff: float = struct.field(pytree_node=False, default=0.1)  # relu_l1 / gated sparsity weight
  l0_coeff: float = struct.field(pytree_node=False, default=0.05)  # jumprelu L0 weight
  bandwidth: float = struct.field(pytree_node=False, default=0.05)  # jumprelu STE kernel width eps
  init_threshold: float = struct.field(pytree_node=False, default=0.1)  # jumprelu initial theta
  threshold_momentum: float = struct.field(pytree_node=False, default=0.01)  # batchtopk EMA rate
  dead_tokens: int = struct.field(pytree_node=False, default=100_000)  # dead after this many
  unit_norm_decoder: bool = struct.field(pytree_node=False, default=True)  # renormalise W_dec rows
  # Settings of variants without a field above: sorted `(name, value)` pairs (a dict is accepted).
  extra: tuple = struct.field(pytree_node=False, default=())

  def __post_init__(self):
    # The variant name is checked where it is used (`variants.variant`, `make_sae`): the
    # registry imports this module, so this one does not import the registry.
    extra = tuple(sorted((str(k), _hashable(v)) for k, v in dict(self.extra).items()))
    clash = {k for k, _ in extra} & {f.name for f in dataclasses.fields(self)}
    if clash:
      raise ValueError(f"SAEConfig.extra repeats fields {sorted(clash)}")
    object.__setattr__(self, "extra", extra)  # hashable, so modules and jit can key on it

  def __getattr__(self, name):
    # Reached only when ordinary lookup fails: a setting kept in `extra`.
    for key, value in self.__dict__.get("extra", ()):
      if key == name:
        return value
    raise AttributeError(f"SAEConfig ({self.__dict__.get('variant')}) has no setting {name!r}")

  def to_dict(self) -> dict:
    """JSON-ready; `SAEConfig(**to_dict())` rebuilds it (`extra` appears only when set)."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    out["extra"] = dict(self.extra)
    if not out["extra"]:
      del out["extra"]
    return out


def _hashable(value):
  return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value
