"""The variant registry: each variant's settings in the config (block and flat alias), the
`SAEConfig` built from them, and the settings the `train_sae` fingerprint covers."""

import copy
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from experiments.configs import default
from seqrec_jax import sae
from seqrec_jax.core import stage_record
from seqrec_jax.sae import base, variants
from seqrec_jax.sae.relu_l1 import ReluL1SAE

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs" / "default.py"

# The `config.sae` fields before the variant blocks existed (old stage records hold these names).
OLD_SAE_FIELDS = {
    "subdir", "layer", "variant", "dict_size", "k", "k_aux", "aux_coeff", "l1_coeff", "l0_coeff",
    "bandwidth", "init_threshold", "threshold_momentum", "normalization", "decoder_bias_init",
    "batch_size", "learning_rate", "warmup_steps", "decay_fraction", "grad_clip_norm",
    "num_epochs", "max_steps", "dead_window_tokens", "resample_every_steps",
    "resample_stop_fraction", "resample_sample_size", "val_fraction", "eval_every_steps",
    "log_every_steps", "capture_batch_size", "memory_budget_mb", "dense_threshold"}
OLD_DEFAULTS = {"k": 32, "k_aux": 32, "aux_coeff": 1 / 32, "l1_coeff": 0.5, "l0_coeff": 0.05,
                "bandwidth": 0.05, "init_threshold": 0.1, "threshold_momentum": 0.01}
OWN = {"relu_l1": {"l1_coeff"}, "gated": {"l1_coeff"}, "topk": {"k", "k_aux", "aux_coeff"},
       "batchtopk": {"k", "k_aux", "aux_coeff", "threshold_momentum"},
       "jumprelu": {"l0_coeff", "bandwidth", "init_threshold"}}


def _config(variant):
  c = default.get_config()
  c.sae.variant = variant
  c.sae.dict_size = 64
  return c


def _other_value(setting):
  """A valid value other than the default (ints shrink: k must stay below dict_size)."""
  d = setting.default
  return d // 4 if isinstance(d, int) else d * 2


def _fingerprint(config):
  return stage_record.settings_of(config, ("seed", *sae.fingerprint_fields(config.sae)))


def test_registry_lists_all_five_variants():
  assert sae.VARIANTS == ("relu_l1", "topk", "batchtopk", "jumprelu", "gated")
  assert {v: {s.name for s in sae.REGISTRY[v].settings} for v in sae.VARIANTS} == OWN
  assert [v for v in sae.VARIANTS if sae.resamples(v)] == ["relu_l1", "jumprelu", "gated"]
  for v in sae.REGISTRY.values():
    assert issubclass(v.module, base.SparseAutoencoder)
    assert all(s.doc for s in v.settings)
  with pytest.raises(ValueError, match="must be one of"):
    sae.resamples("relu")


@pytest.mark.parametrize("variant", ["relu_l1", "topk", "batchtopk", "jumprelu", "gated"])
def test_every_variant_builds_from_the_config(variant):
  c = _config(variant)
  values = {}
  for s in sae.REGISTRY[variant].settings:
    values[s.name] = _other_value(s)
    c.sae[variant][s.name] = values[s.name]  # the block name ...
  cfg = sae.sae_config_from(c.sae, input_dim=8, dead_tokens=100)
  assert (cfg.variant, cfg.input_dim, cfg.dict_size, cfg.dead_tokens) == (variant, 8, 64, 100)
  for name, value in values.items():
    assert getattr(cfg, name) == value and getattr(c.sae, name) == value  # ... is the flat one
  variables = sae.init_variables(cfg, jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8))
  latents = sae.make_sae(cfg).apply(variables, x, method="encode")
  assert latents.shape == (4, 64) and bool(jnp.all(jnp.isfinite(latents)))
  assert sae.SAEConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_flat_alias_and_block_name_are_one_value():
  c = default.get_config()
  for name, setting in variants.variant_settings().items():
    sharing = [v for v in sae.VARIANTS if name in OWN[v]]
    value = _other_value(setting)
    c.sae[name] = value
    assert [c.sae[v][name] for v in sharing] == [value] * len(sharing)
    c.sae[sharing[-1]][name] = setting.default
    assert c.sae[name] == setting.default
    assert [c.sae[v][name] for v in sharing] == [setting.default] * len(sharing)


def test_flat_defaults_are_the_old_defaults():
  c = default.get_config()
  assert {name: c.sae[name] for name in OLD_DEFAULTS} == OLD_DEFAULTS
  assert set(c.sae.keys()) - set(sae.VARIANTS) == OLD_SAE_FIELDS


@pytest.mark.parametrize("args,variant,expected", [
    (["--config.sae.k=16"], "topk", {"k": 16}),
    (["--config.sae.topk.k=16"], "topk", {"k": 16}),
    (["--config.sae.batchtopk.k=16", "--config.sae.aux_coeff=0.5"], "batchtopk",
     {"k": 16, "aux_coeff": 0.5}),
    (["--config.sae.l1_coeff=1"], "relu_l1", {"l1_coeff": 1.0}),
    (["--config.sae.gated.l1_coeff=0.25"], "gated", {"l1_coeff": 0.25}),
    (["--config.sae.jumprelu.l0_coeff=0.2", "--config.sae.bandwidth=0.01"], "jumprelu",
     {"l0_coeff": 0.2, "bandwidth": 0.01}),
])
def test_command_line_overrides_reach_the_sae(args, variant, expected):
  argv = ["prog", f"--config={DEFAULT_CONFIG}", f"--config.sae.variant={variant}", *args]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", str(DEFAULT_CONFIG), flag_values=fv, lock_config=True,
                                  sys_argv=argv)  # as experiments/main.py, with argv explicit
  fv(argv)
  cfg = sae.sae_config_from(fv.config.sae, input_dim=8, dead_tokens=100)
  assert {name: getattr(cfg, name) for name in expected} == expected
  assert {name: type(getattr(cfg, name)) for name in expected} == {
      name: type(value) for name, value in expected.items()}
  for name, value in expected.items():  # both names, and the fingerprint's flat one
    assert fv.config.sae[name] == value and fv.config.sae[variant][name] == value
    assert _fingerprint(fv.config)[f"sae.{name}"] == value


@pytest.mark.parametrize("variant", ["relu_l1", "topk", "batchtopk", "jumprelu", "gated"])
def test_fingerprint_covers_the_active_variants_settings_only(variant):
  c = _config(variant)
  before, cfg_before = _fingerprint(c), sae.sae_config_from(c.sae, 8, 100)
  names = sae.fingerprint_fields(c.sae)
  assert "sae.dict_size" in names and "sae.variant" in names and "sae.learning_rate" in names
  assert not [n for n in names if n.split(".")[1] in sae.VARIANTS]  # no blocks
  assert {n.split(".")[1] for n in names} <= OLD_SAE_FIELDS  # names old records hold
  others = set(variants.variant_settings()) - OWN[variant]
  for name in others:
    c.sae[name] = _other_value(variants.variant_settings()[name])
  if not sae.resamples(variant):
    c.sae.resample_every_steps = 7
    c.sae.resample_sample_size = 16
  assert _fingerprint(c) == before
  assert sae.sae_config_from(c.sae, 8, 100) == cfg_before  # the SAE is the same, too
  for name in OWN[variant]:
    c = _config(variant)
    c.sae[variant][name] = _other_value(variants.variant_settings()[name])
    changed = {k for k, v in _fingerprint(c).items() if before[k] != v}
    assert changed == {f"sae.{name}"}
  c = _config(variant)
  c.sae.dict_size = 32
  assert _fingerprint(c) != before


def test_resampling_settings_count_for_resampling_variants():
  c = _config("jumprelu")
  before = _fingerprint(c)
  c.sae.resample_every_steps = 7
  assert _fingerprint(c) != before


def test_topk_fingerprint_ignores_jumprelu_l0_coeff():
  # The case that made a finished topk SAE refuse to be reused.
  c = _config("topk")
  before = _fingerprint(c)
  c.sae.l0_coeff = 0.5
  assert _fingerprint(c) == before
  c.sae.jumprelu.l0_coeff = 0.7
  assert _fingerprint(c) == before
  assert sorted(k for k in before if k.startswith("sae.")) == sorted(sae.fingerprint_fields(c.sae))


def test_a_copy_without_references_reads_the_flat_name_or_refuses():
  c = _config("topk")
  resolved = c.copy_and_resolve_references()  # what experiments/ablations.py does
  resolved.sae.k = 16
  assert sae.sae_config_from(resolved.sae, 8, 100).k == 16
  resolved = c.copy_and_resolve_references()
  resolved.sae.topk.k = 16  # can no longer reach the flat name: refused, not ignored
  with pytest.raises(ValueError, match="config.sae.topk.k=16 and config.sae.k=32"):
    sae.sae_config_from(resolved.sae, 8, 100)
  with pytest.raises(ValueError, match="name one setting"):
    sae.fingerprint_fields(resolved.sae)
  deep = copy.deepcopy(c)
  deep.sae.topk.k = 16
  assert sae.sae_config_from(deep.sae, 8, 100).k == 16 and c.sae.k == 32


def test_old_saved_sae_config_loads():
  saved = {"variant": "jumprelu", "input_dim": 64, "dict_size": 512, "k": 32, "k_aux": 32,
           "aux_coeff": 0.03125, "l1_coeff": 0.5, "l0_coeff": 0.05, "bandwidth": 0.05,
           "init_threshold": 0.1, "threshold_momentum": 0.01, "dead_tokens": 12345,
           "unit_norm_decoder": True}
  cfg = sae.SAEConfig(**saved)
  assert cfg.to_dict() == saved  # what new runs write for the five variants is unchanged, too
  written = sae.sae_config_from(_config("jumprelu").sae, 64, 12345).to_dict()
  assert set(written) == set(saved)


@pytest.mark.parametrize("variant,expected", [("topk", {"k": 8}), ("batchtopk", {"k": 8}),
                                              ("relu_l1", {"k": None}), ("gated", {"k": None})])
def test_reported_keys(variant, expected):
  c = _config(variant)
  c.sae.k = 8
  assert sae.reported(sae.sae_config_from(c.sae, 8, 100)) == expected


class _ScaledSAE(ReluL1SAE):
  """A toy variant whose setting `latent_scale` has no `SAEConfig` field."""

  def encode(self, x):
    return self.config.latent_scale * super().encode(x)


_TOY = base.Variant("toy", _ScaledSAE, settings=(base.Setting("latent_scale", 1.0, "scales"),),
                    reports=("latent_scale",))


def test_a_new_variant_is_one_declaration(monkeypatch):
  monkeypatch.setattr(variants, "REGISTRY", {**variants.REGISTRY, "toy": _TOY})
  c = _config("toy")  # `add_settings` now adds the toy's block and flat alias
  c.sae.toy.latent_scale = 3.0
  assert c.sae.latent_scale == 3.0
  cfg = sae.sae_config_from(c.sae, input_dim=8, dead_tokens=100)
  assert cfg.latent_scale == 3.0 and cfg.extra == (("latent_scale", 3.0),)
  assert sae.SAEConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg
  assert sae.reported(cfg) == {"k": None, "latent_scale": 3.0}
  assert "sae.latent_scale" in sae.fingerprint_fields(c.sae)
  c.sae.variant = "relu_l1"
  assert "sae.latent_scale" not in sae.fingerprint_fields(c.sae)
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8))
  variables = sae.init_variables(cfg, jax.random.PRNGKey(0))
  scaled = sae.make_sae(cfg).apply(variables, x, method="encode")
  plain = sae.make_sae(cfg.replace(extra={"latent_scale": 1.0})).apply(variables, x, method="encode")
  assert float(jnp.max(jnp.abs(plain))) > 0
  np.testing.assert_allclose(scaled, 3.0 * plain, rtol=1e-6)
  with pytest.raises(AttributeError, match="no setting 'latent_scale'"):
    sae.SAEConfig(variant="toy").latent_scale


def test_registry_refuses_shared_settings_with_different_defaults():
  clash = base.Variant("clash", ReluL1SAE, settings=(base.Setting("k", 16, "other default"),))
  with pytest.raises(ValueError, match="share setting 'k'"):
    variants._collect(*variants.REGISTRY.values(), clash)
