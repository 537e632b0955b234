"""The SAE hyperparameters shared by every variant."""

from __future__ import annotations

import dataclasses

from flax import struct



VARIANTS = ("relu_l1", "topk", "batchtopk", "jumprelu", "gated")
COUNTER_CAP = 2**30  # tokens_since_fired saturates here (int32)


@struct.dataclass
class SAEConfig:
  """Hyperparameters of one SAE (all static; frozen, use `.replace`)."""

  variant: str = struct.field(pytree_node=False, default="relu_l1")  # one of VARIANTS
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

  def __post_init__(self):
    if self.variant not in VARIANTS:
      raise ValueError(f"SAE variant must be one of {VARIANTS}, got {self.variant!r}")

  def to_dict(self) -> dict:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
