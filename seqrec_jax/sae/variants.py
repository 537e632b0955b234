"""The variant registry, variable initialisation, and what the `train_sae` stage asks of variants.

A variant is one file: its module and a `base.Variant` declaring its settings (names, defaults,
one-line docs), whether `resample_dead` revives its dead latents, and what results.json reports.
Adding one is that file plus one line in `REGISTRY`; its settings then appear in the config
(`add_settings`), reach its `SAEConfig` (`sae_config_from`) and the stage's fingerprint
(`fingerprint_fields`).

Config layout (`add_settings`): a block per variant, `config.sae.<variant>.<setting>`, and the
flat alias `config.sae.<setting>` that commands used before the blocks existed. Both names hold
one `FieldReference`, so setting either (in a config file or as `--config.sae.k=16` /
`--config.sae.topk.k=16`) sets both. Variants declaring the same setting share its value (topk
and batchtopk: `k`, `k_aux`, `aux_coeff`; relu_l1 and gated: `l1_coeff`), as they did when only
the flat names existed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from seqrec_jax.sae.gated import VARIANT as GATED
from seqrec_jax.sae.jumprelu import VARIANT as JUMPRELU
from seqrec_jax.sae.relu_l1 import VARIANT as RELU_L1
from seqrec_jax.sae.topk import BATCHTOPK, TOPK
from seqrec_jax.sae.base import Setting, SparseAutoencoder, Variant
from seqrec_jax.sae.config import SAEConfig
from seqrec_jax.sae.normalization import geometric_median


# SAEConfig fields set from shared settings (or by the stage), never by a variant's own.
_SHARED_FIELDS = ("variant", "input_dim", "dict_size", "dead_tokens", "unit_norm_decoder", "extra")
# Shared `config.sae` settings that matter only to variants that resample (`Variant.resamples`).
RESAMPLING_SETTINGS = ("resample_every_steps", "resample_stop_fraction", "resample_sample_size")


def _collect(*variants: Variant) -> dict[str, Variant]:
  out, seen = {}, {}
  for v in variants:
    if v.name in out:
      raise ValueError(f"SAE variant {v.name!r} registered twice")
    for s in v.settings:
      if s.name in _SHARED_FIELDS or s.name in RESAMPLING_SETTINGS:
        raise ValueError(f"{v.name}: setting {s.name!r} is a shared SAE setting")
      first = seen.setdefault(s.name, (v.name, s))
      if first[1].default != s.default or type(first[1].default) is not type(s.default):
        raise ValueError(f"{v.name} and {first[0]} share setting {s.name!r} (one value) but "
                         f"declare different defaults {s.default!r} and {first[1].default!r}")
    out[v.name] = v
  clash = set(out) & set(seen)
  if clash:
    raise ValueError(f"names used both as variant and as setting: {sorted(clash)}")
  return out


REGISTRY: dict[str, Variant] = _collect(
    RELU_L1,
    TOPK,
    BATCHTOPK,
    JUMPRELU,
    GATED,
)
VARIANTS = tuple(REGISTRY)


def variant(name: str) -> Variant:
  try:
    return REGISTRY[name]
  except KeyError:
    raise ValueError(f"SAE variant must be one of {tuple(REGISTRY)}, got {name!r}") from None


def resamples(name: str) -> bool:
  """Whether the stage revives `name`'s dead latents with `resample_dead`."""
  return variant(name).resamples


def make_sae(config: SAEConfig) -> SparseAutoencoder:
  return variant(config.variant).module(config)


def variant_settings() -> dict[str, Setting]:
  """Every registered setting by name (a name shared by several variants appears once)."""
  return {s.name: s for v in REGISTRY.values() for s in v.settings}


# ----------------------------------------------------------------------------- config


def add_settings(block: ml_collections.ConfigDict) -> None:
  """Adds every registered variant's settings to `block` (`config.sae`), in place.

  A flat field `block.<setting>` per setting (its declared default, or the value already there)
  and a block `block.<variant>` per variant whose fields are references to the flat ones.
  """
  for v in REGISTRY.values():
    own = ml_collections.ConfigDict()
    for s in v.settings:
      if s.name not in block:
        block[s.name] = s.default
      own[s.name] = block.get_ref(s.name)
    block[v.name] = own


def setting_value(block: ml_collections.ConfigDict, variant_name: str, setting: Setting) -> Any:
  """The value of `setting` of `variant_name` in `block` (`config.sae`), by either name.

  The two names share one reference; a copy made with `copy_and_resolve_references()` (or a
  config rebuilt from a dict) keeps them apart. Then the flat name, which the fingerprint covers,
  is read, and a block value changed from the default that disagrees with it is an error rather
  than silently ignored.
  """
  name = setting.name
  own = block.get(variant_name)
  has_flat, has_own = name in block, own is not None and name in own
  if not has_flat and not has_own:
    raise KeyError(f"config.sae has neither {name} nor {variant_name}.{name} "
                   f"(variants.add_settings adds them)")
  value = block[name] if has_flat else own[name]
  if has_flat and has_own and own[name] != value and own[name] != setting.default:
    raise ValueError(
        f"config.sae.{variant_name}.{name}={own[name]!r} and config.sae.{name}={value!r} name one "
        f"setting but hold different values: the config was copied without its references "
        f"(copy_and_resolve_references, or rebuilt from a dict); copy it with copy.deepcopy or set "
        f"config.sae.{name}")
  if isinstance(setting.default, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  return value


def sae_config_from(block: ml_collections.ConfigDict, input_dim: int, dead_tokens: int) -> SAEConfig:
  """The `SAEConfig` of the SAE that `block` (`config.sae`) describes.

  `input_dim`: d, the captured layer's width; `dead_tokens`: activations without firing after
  which a latent counts as dead. Only the active variant's settings are read; other variants'
  fields keep `SAEConfig`'s defaults, so the result depends on `fingerprint_fields` alone.
  """
  v = variant(block.variant)
  values = {s.name: setting_value(block, v.name, s) for s in v.settings}
  fields = {f.name for f in dataclasses.fields(SAEConfig)}
  return SAEConfig(
      variant=v.name, input_dim=int(input_dim), dict_size=int(block.dict_size),
      dead_tokens=int(dead_tokens), **{k: x for k, x in values.items() if k in fields},
      extra={k: x for k, x in values.items() if k not in fields})


def fingerprint_fields(block: ml_collections.ConfigDict, prefix: str = "sae") -> tuple[str, ...]:
  """Dotted names (`"sae.dict_size"`, `"sae.k"`, ...) of the settings that decide the SAE.

  Every shared setting of `block` plus the active variant's own, under their flat names (those
  in stage records written before the variant blocks existed, so old records keep matching);
  neither other variants' settings (blocks or flat names) nor, for variants that do not
  resample, `RESAMPLING_SETTINGS`. The stage excludes its run-only settings (subdir, logging)
  itself. Raises where the two names of an active setting disagree (`setting_value`).
  """
  v = variant(block.variant)
  for s in v.settings:
    setting_value(block, v.name, s)
  not_shared = set(REGISTRY) | set(variant_settings())
  if not v.resamples:
    not_shared |= set(RESAMPLING_SETTINGS)
  shared = [k for k in block.keys() if k not in not_shared]
  own = [s.name if s.name in block else f"{v.name}.{s.name}" for s in v.settings]
  return tuple(sorted(f"{prefix}.{k}" for k in (*shared, *own)))


def reported(config: SAEConfig) -> dict:
  """results.json's variant-specific keys: every key some variant reports, `None` where
  `config`'s variant does not (today `{"k": k}` for topk / batchtopk, `{"k": None}` otherwise)."""
  own = variant(config.variant).reports
  keys = dict.fromkeys(k for v in REGISTRY.values() for k in v.reports)
  return {k: getattr(config, k) if k in own else None for k in keys}


# ----------------------------------------------------------------------------- variables


def init_variables(config: SAEConfig, rng: jax.Array, x_sample=None, decoder_bias_init: str = "mean"):
  """Variables `{"params": ..., "state": ...}` ("state" only for batchtopk).

  `x_sample[n, d]` (normalised units) sets the decoder bias to its mean or geometric median.
  """
  variables = make_sae(config).init(rng, jnp.zeros((1, config.input_dim)), method="encode")
  variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
  variables = {k: dict(v) for k, v in variables.items()}
  if x_sample is not None and len(x_sample):
    if decoder_bias_init == "mean":
      centre = np.asarray(x_sample, np.float64).mean(0)
    elif decoder_bias_init == "geometric_median":
      centre = geometric_median(x_sample)
    else:
      raise ValueError(f"decoder_bias_init must be mean or geometric_median, got {decoder_bias_init!r}")
    variables["params"]["b_dec"] = jnp.asarray(centre, jnp.float32)
  return variables


def split_variables(variables) -> tuple[dict, dict]:
  """`(params, state)`; state is `{}` for variants without one."""
  return variables["params"], dict(variables.get("state", {}))


def join_variables(params, state) -> dict:
  return {"params": params, "state": state} if state else {"params": params}
