"""The gated and jumprelu SAE variants (relu_l1 and topk for comparison) learn data that truly
is sparse in a dictionary: high held-out explained variance, a large gain over the untrained SAE
and L0 far below the dictionary size; the gated magnitude parameters and the jumprelu
thresholds get gradient and move during training (thresholds upwards, as the L0 penalty asks).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seqrec_jax import sae
from seqrec_jax.core import training

D, ATOMS, DICT = 16, 64, 64
STEPS, BATCH = 600, 256


def sparse_data(n, seed):
  """`n` samples, each a sum of 2-3 of `ATOMS` fixed random unit directions (seed 0) with
  positive magnitudes in [0.5, 1.5]; `seed` draws the samples only (train and held-out differ)."""
  atoms = np.random.default_rng(0).normal(size=(ATOMS, D))
  atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
  rng = np.random.default_rng(seed)
  codes = np.zeros((n, ATOMS))
  for row, count in enumerate(rng.integers(2, 4, size=n)):
    chosen = rng.choice(ATOMS, size=count, replace=False)
    codes[row, chosen] = rng.uniform(0.5, 1.5, size=count)
  return (codes @ atoms).astype(np.float32)


@functools.cache
def datasets():
  return sparse_data(4096, seed=1), sparse_data(2048, seed=2)


def train(cfg, x, *, lr, seed=0):
  """`STEPS` shared train steps (`training.train_step`) with Adam, scanned inside one jit."""
  norm = sae.identity_normalizer(D)
  variables = sae.init_variables(cfg, jax.random.PRNGKey(seed), x, "mean")
  tx = optax.adam(lr)
  state = sae.create_train_state(cfg, variables, norm, tx, seed)
  fns = sae.make_step_fns(cfg, tx)
  index = np.random.default_rng(seed + 1).integers(0, len(x), (STEPS, BATCH))

  @jax.jit
  def run(state, x, index):
    def body(state, rows):
      return training.train_step(state, {"x": x[rows]}, fns)
    return jax.lax.scan(body, state, index)

  final, metrics = run(state, jnp.asarray(x), index)
  return state, final, metrics


# (learning rate, config overrides, explained-variance floor). The floors sit ~0.05 below what
# this implementation reaches on the held-out set (relu_l1 0.89, topk 0.85, gated 0.92,
# jumprelu 0.97; true L0 is 2.5). relu_l1 pays L1 shrinkage under unit-norm decoder rows and
# topk is capped at k = 3 latents per sample, hence their lower floors. An untrained SAE (random
# unit decoder, encoder = its transpose) is at about -1.4 (topk: 0.38, it keeps only 3 latents).
VARIANTS = {
    "relu_l1": (1e-2, dict(l1_coeff=0.3), 0.8),
    "topk": (1e-2, dict(k=3, k_aux=8), 0.8),
    "gated": (1e-2, dict(l1_coeff=0.5), 0.85),
    # theta starts at 0.1, below most active pre-activations (O(1)); eps = theta / 2.
    "jumprelu": (1e-2, dict(l0_coeff=0.03, init_threshold=0.1, bandwidth=0.05), 0.9),
}


def _config(variant):
  return sae.SAEConfig(variant=variant, input_dim=D, dict_size=DICT, dead_tokens=10 * BATCH,
                       **VARIANTS[variant][1])


@functools.cache
def trained(variant):
  x_train, _ = datasets()
  return train(_config(variant), x_train, lr=VARIANTS[variant][0])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_learns_sparse_dictionary(variant):
  cfg, floor = _config(variant), VARIANTS[variant][2]
  initial, final, metrics = trained(variant)
  _, x_test = datasets()
  before = sae.evaluate_quality(sae.trained_sae_from_state(cfg, initial), x_test, batch_size=1024)
  after = sae.evaluate_quality(sae.trained_sae_from_state(cfg, final), x_test, batch_size=1024)
  loss = np.asarray(metrics["loss"])
  assert np.all(np.isfinite(loss))
  assert loss[-50:].mean() <= 0.5 * loss[0], (loss[0], loss[-50:].mean())
  summary = (variant, before.explained_variance, after.explained_variance, before.l0, after.l0)
  assert after.explained_variance >= floor, summary
  assert after.explained_variance - before.explained_variance >= 0.3, summary
  # Sparse: at most a quarter of the dictionary per sample (reached: 3 to ~12; untrained ~25-32),
  # yet not collapsed to nothing.
  assert 1.0 <= after.l0 <= DICT / 4, summary
  if variant != "topk":  # topk's L0 is k by construction
    assert after.l0 <= 0.5 * before.l0, summary


def _change(initial, final, name):
  return np.asarray(final.params[name]) - np.asarray(initial.params[name])


@pytest.mark.parametrize("variant,names", [("jumprelu", ["log_threshold"]),
                                           ("gated", ["r_mag", "b_mag"])])
def test_variant_specific_parameters_get_gradient(variant, names):
  cfg = _config(variant)
  x_train, _ = datasets()
  variables = sae.init_variables(cfg, jax.random.PRNGKey(0), x_train, "mean")
  grads = jax.jit(jax.grad(lambda p: sae.loss(cfg, {"params": p}, jnp.asarray(x_train[:BATCH]))[0])
                  )(variables["params"])
  initial, final, _ = trained(variant)
  for name in names:
    assert np.count_nonzero(np.asarray(grads[name])) >= DICT // 2, name  # at initialisation
    change = _change(initial, final, name)
    # Adam moves a parameter only where its gradient is non-zero; most latents must have moved,
    # and by far more than a single lr-sized (0.01) step. Reached: mean |change| 0.69
    # (log_threshold), 0.14 (r_mag), 0.05 (b_mag); >= 90% of latents moved by > 0.01.
    assert np.mean(np.abs(change) > 0.01) >= 0.5, (name, change)
    assert np.mean(np.abs(change)) >= 0.02, (name, change)
  if variant == "jumprelu":
    # The L0 penalty pushes thresholds up from their small initial value (0.1 -> ~0.2); with a
    # sign error in the straight-through gradient they would fall and L0 would grow.
    assert np.mean(_change(initial, final, "log_threshold")) > 0.2
