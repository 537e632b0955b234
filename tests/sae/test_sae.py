"""SAE variants: ground-truth recovery, metrics, constraints, straight-through and AuxK gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seqrec_jax import sae
from seqrec_jax.sae import jumprelu
from seqrec_jax.sae import topk
from seqrec_jax.core import training


def sparse_dictionary_data(n, d=64, m=256, active=4, seed=0):
  """`x = f @ D`: `m` random unit directions in `d` dims, ~`active` of them per sample."""
  rng = np.random.default_rng(seed)
  directions = rng.normal(size=(m, d))
  directions /= np.linalg.norm(directions, axis=1, keepdims=True)
  mask = rng.random((n, m)) < active / m
  x = (rng.uniform(0.5, 1.5, (n, m)) * mask) @ directions
  return x.astype(np.float32), directions


def train(cfg, x, *, steps, batch_size, lr, seed=0):
  """`steps` shared train steps (`training.train_step`), scanned inside one jit."""
  norm = sae.fit_normalizer(x, "scalar")
  variables = sae.init_variables(cfg, jax.random.PRNGKey(seed),
                                 np.asarray(norm.normalize(x[:4096])), "mean")
  tx = optax.adam(lr)
  state = sae.create_train_state(cfg, variables, norm, tx, seed)
  fns = sae.make_step_fns(cfg, tx)
  index = np.random.default_rng(seed + 1).integers(0, len(x), (steps, batch_size))

  @jax.jit
  def run(state, x, index):
    def body(state, rows):
      return training.train_step(state, {"x": x[rows]}, fns)
    return jax.lax.scan(body, state, index)

  state, metrics = run(state, jnp.asarray(x), index)
  return state, jax.tree_util.tree_map(lambda m: m[-1], metrics)


def mean_max_cosine(true_directions, learned):
  learned = learned / np.linalg.norm(learned, axis=1, keepdims=True)
  return float((true_directions @ learned.T).max(1).mean())


@pytest.mark.parametrize("variant,lr,kwargs", [
    ("relu_l1", 1e-2, dict(l1_coeff=3.0)),
    ("topk", 3e-3, dict(k=4, k_aux=16)),
])
def test_recovers_a_known_sparse_dictionary(variant, lr, kwargs):
  x, directions = sparse_dictionary_data(20_000)
  cfg = sae.SAEConfig(variant=variant, input_dim=64, dict_size=512, dead_tokens=20_000, **kwargs)
  state, _ = train(cfg, x, steps=1000, batch_size=256, lr=lr)
  mmcs = mean_max_cosine(directions, np.asarray(state.params["W_dec"]))
  assert mmcs >= 0.9, mmcs


def test_explained_variance_reference_points():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(500, 8)) * rng.uniform(0.1, 3, 8) + 5
  assert sae.explained_variance(x, np.broadcast_to(x.mean(0), x.shape)) == pytest.approx(0, abs=1e-12)
  assert sae.explained_variance(x, x) == 1.0
  # 1 - SSE / total, not a per-dimension average or a variance of residuals ratio of norms.
  x_hat = x + rng.normal(size=x.shape)
  expected = 1 - np.sum((x - x_hat) ** 2) / np.sum((x - x.mean(0)) ** 2)
  assert sae.explained_variance(x, x_hat) == pytest.approx(expected)


def test_evaluate_quality_matches_direct_formulas():
  rng = np.random.default_rng(1)
  x = (rng.normal(size=(300, 16)) * 2 + 1).astype(np.float32)
  cfg = sae.SAEConfig(variant="relu_l1", input_dim=16, dict_size=32)
  norm = sae.fit_normalizer(x, "scalar")
  trained = sae.TrainedSAE(cfg, sae.init_variables(cfg, jax.random.PRNGKey(0)), norm)
  q = sae.evaluate_quality(trained, x, batch_size=64, dense_threshold=0.1)  # padded last batch
  f = np.asarray(trained.encode(x))
  x_hat = np.asarray(trained.decode(f))
  assert q.explained_variance == pytest.approx(sae.explained_variance(x, x_hat), abs=1e-5)
  assert q.mse == pytest.approx(np.mean((x - x_hat) ** 2), rel=1e-5)
  assert q.l0 == pytest.approx((f > 0).sum(1).mean())
  assert q.dead_fraction == pytest.approx(np.mean((f > 0).sum(0) == 0))
  assert q.dense_fraction == pytest.approx(np.mean((f > 0).mean(0) > 0.1))


@pytest.mark.parametrize("method", ["scalar", "sqrt_d", "none"])
def test_raw_units_round_trip(method):
  """encode/decode speak raw units: decode(encode(x)) == denormalised module reconstruction."""
  rng = np.random.default_rng(2)
  x = (rng.normal(size=(64, 8)) * 3 + 2).astype(np.float32)
  cfg = sae.SAEConfig(variant="topk", input_dim=8, dict_size=16, k=3)
  norm = sae.fit_normalizer(x, method)
  variables = sae.init_variables(cfg, jax.random.PRNGKey(0))
  trained = sae.TrainedSAE(cfg, variables, norm)
  module_hat = sae.make_sae(cfg).apply(variables, norm.normalize(x))
  np.testing.assert_allclose(trained.reconstruct(x), norm.denormalize(module_hat), rtol=1e-5, atol=1e-5)
  if method == "scalar":
    assert float(norm.normalize(x).std()) == pytest.approx(1.0, abs=1e-4)
  if method == "sqrt_d":
    assert float(jnp.linalg.norm(norm.normalize(x), axis=1).mean()) == pytest.approx(np.sqrt(8), rel=1e-4)


@pytest.mark.parametrize("variant", sae.VARIANTS)
def test_decoder_rows_stay_unit_norm(variant):
  x, _ = sparse_dictionary_data(2048, d=16, m=32, seed=3)
  cfg = sae.SAEConfig(variant=variant, input_dim=16, dict_size=64, k=4, k_aux=8, dead_tokens=512)
  state, metrics = train(cfg, x, steps=20, batch_size=128, lr=3e-2)
  norms = np.linalg.norm(np.asarray(state.params["W_dec"]), axis=1)
  np.testing.assert_allclose(norms, 1.0, atol=1e-5)
  assert np.isfinite(metrics["loss"])
  # Decoder starts as the encoder's transpose.
  fresh = sae.init_variables(cfg, jax.random.PRNGKey(0))["params"]
  np.testing.assert_array_equal(fresh["W_enc"], fresh["W_dec"].T)


def test_jumprelu_threshold_gradient_is_the_straight_through_formula():
  eps = 0.002
  z = jnp.array([[0.5, 1.0005, 2.0, 0.9995], [1.0009, 3.0, 0.0, 1.0]])
  theta = jnp.array([1.0, 1.0, 1.0, 1.0])
  # jumprelu(z) = z H(z - theta); d/dtheta = -(theta / eps) K((z - theta) / eps), K = 1[|u| < 1/2].
  # Inside the window |z - theta| < eps / 2 = 0.001 the kernel is 1.
  # Window entries: column 0: 1.0009; column 1: 1.0005; column 3: 0.9995 and 1.0 (two).
  g = jax.grad(lambda t: jnp.sum(jumprelu.jumprelu(z, t, eps)))(theta)
  np.testing.assert_allclose(g, [-500.0, -500.0, 0.0, -1000.0], rtol=1e-5)
  g_step = jax.grad(lambda t: jnp.sum(jumprelu.heaviside(z, t, eps)))(theta)
  np.testing.assert_allclose(g_step, [-500.0, -500.0, 0.0, -1000.0], rtol=1e-5)  # -(1/eps) K
  # theta != 1 tells theta / eps (jumprelu) from 1 / eps (step): theta = 0.5, z = 0.5004.
  z2, theta2 = jnp.array([[0.5004, 0.2]]), jnp.array([0.5, 0.1])
  np.testing.assert_allclose(jax.grad(lambda t: jnp.sum(jumprelu.jumprelu(z2, t, eps)))(theta2),
                             [-250.0, 0.0], rtol=1e-5)
  np.testing.assert_allclose(jax.grad(lambda t: jnp.sum(jumprelu.heaviside(z2, t, eps)))(theta2),
                             [-500.0, 0.0], rtol=1e-5)
  # Per-output weights flow through: d/dtheta of sum(w * jumprelu) picks w at the window entries.
  w = jnp.arange(1.0, 9.0).reshape(2, 4)
  g = jax.grad(lambda t: jnp.sum(w * jumprelu.jumprelu(z, t, eps)))(jnp.array([1.0, 1.0, 1.0, 2.0]))
  np.testing.assert_allclose(g, [-500.0 * 5, -500.0 * 2, 0.0, 0.0], rtol=1e-5)
  # Gradient with respect to z is H(z - theta) for jumprelu and 0 for the step.
  gz = jax.grad(lambda a: jnp.sum(jumprelu.jumprelu(a, theta, eps)))(z)
  np.testing.assert_array_equal(gz, (z > theta).astype(jnp.float32))
  assert not np.any(jax.grad(lambda a: jnp.sum(jumprelu.heaviside(a, theta, eps)))(z))
  # Forward values.
  np.testing.assert_allclose(jumprelu.jumprelu(z, theta, eps), np.where(z > theta, z, 0.0))


@pytest.mark.parametrize("variant", ["topk", "batchtopk"])
def test_auxk_gives_a_never_firing_dead_latent_gradient(variant):
  d, m = 8, 16
  cfg = sae.SAEConfig(variant=variant, input_dim=d, dict_size=m, k=2, k_aux=4, dead_tokens=1)
  params, state = sae.split_variables(sae.init_variables(cfg, jax.random.PRNGKey(0)))
  x = jax.random.normal(jax.random.PRNGKey(1), (32, d))
  params = dict(params)
  # Latent 0: positive but always below the top-k (never fires); bias keeps it just positive.
  params["W_enc"] = params["W_enc"].at[:, 0].set(0.0)
  params["b_enc"] = params["b_enc"].at[0].set(1e-3)
  params["b_enc"] = params["b_enc"].at[1:].add(1.0)  # the others win the top k
  variables = sae.join_variables(params, state)
  latents = jax.jit(lambda v: sae.per_example_loss(cfg, v, x)[2].latents)(variables)
  assert not np.any(np.asarray(latents)[:, 0] > 0)  # never fires

  dead = jnp.zeros(m, bool).at[0].set(True)
  grad_w = jax.jit(lambda dead: jax.grad(
      lambda p: sae.loss(cfg, sae.join_variables(p, state), x, dead)[0])(params))
  with_aux = grad_w(dead)
  assert np.abs(np.asarray(with_aux["W_enc"][:, 0])).sum() > 0
  assert np.abs(np.asarray(with_aux["W_dec"][0])).sum() > 0
  without = grad_w(jnp.zeros(m, bool))  # not marked dead: no gradient reaches it
  assert np.abs(np.asarray(without["W_enc"][:, 0])).sum() == 0
  assert float(jax.jit(lambda v: sae.loss(cfg, v, x, dead)[1]["aux"])(variables)) > 0


def test_batchtopk_training_budget_and_fixed_inference_threshold():
  d, m, k = 8, 32, 3
  cfg = sae.SAEConfig(variant="batchtopk", input_dim=d, dict_size=m, k=k, threshold_momentum=0.5)
  x = np.random.default_rng(4).normal(size=(64, d)).astype(np.float32)
  tx = optax.adam(1e-3)
  state = sae.create_train_state(cfg, sae.init_variables(cfg, jax.random.PRNGKey(0)),
                                 sae.identity_normalizer(d), tx, 0)
  variables = sae.join_variables(state.params, state.model_state["state"])
  latents = np.asarray(jax.jit(lambda v: sae.per_example_loss(cfg, v, x)[2].latents)(variables))
  assert int(np.sum(latents > 0)) == k * len(x)  # k per example on average
  smallest = float(latents[latents > 0].min())
  step = jax.jit(lambda s, b: training.train_step(s, b, sae.make_step_fns(cfg, tx)))
  state, _ = step(state, {"x": x})
  assert float(state.model_state["state"]["threshold"]) == pytest.approx(smallest, rel=1e-5)
  trained = sae.trained_sae_from_state(cfg, state)
  encode = jax.jit(lambda t, v: t.encode(v))
  full = np.asarray(encode(trained, x))
  single = np.concatenate([np.asarray(encode(trained, x[i : i + 1])) for i in range(4)])
  # Per example, whatever the batch: the same values within float tolerance (a batch and single
  # rows are different computations; XLA may block their matmuls differently).
  np.testing.assert_allclose(full[:4], single, rtol=1e-5, atol=1e-6)
  assert full[full > 0].min() > float(state.model_state["state"]["threshold"])


def test_dead_latent_counters_and_resampling():
  d, m = 8, 16
  cfg = sae.SAEConfig(variant="relu_l1", input_dim=d, dict_size=m, dead_tokens=64)
  params, st = sae.split_variables(sae.init_variables(cfg, jax.random.PRNGKey(0)))
  params = dict(params)
  params["b_enc"] = params["b_enc"].at[:4].set(-100.0)  # latents 0-3 can never fire
  tx = optax.adam(1e-3)
  state = sae.create_train_state(cfg, sae.join_variables(params, st), sae.identity_normalizer(d), tx, 0)
  step = jax.jit(lambda s, b: training.train_step(s, b, sae.make_step_fns(cfg, tx)))
  x = np.random.default_rng(5).normal(size=(32, d)).astype(np.float32)
  for _ in range(3):
    state, _ = step(state, {"x": x})
  counters = np.asarray(state.model_state["tokens_since_fired"])
  np.testing.assert_array_equal(counters[:4], 96)
  assert np.all(counters[4:][counters[4:] > 0] == 96)  # others either fired (0) or never did
  dead = np.asarray(sae.dead_mask(cfg, state.model_state))
  assert dead[:4].all()
  new, count = sae.resample_dead(state, jnp.asarray(x), jax.random.PRNGKey(0), config=cfg)
  assert int(count) == dead.sum()
  assert not np.asarray(sae.dead_mask(cfg, new.model_state)).any()
  assert np.all(np.asarray(new.params["b_enc"])[:4] == 0)
  mu = new.opt_state[0].mu
  assert not np.asarray(mu["W_enc"])[:, :4].any() and not np.asarray(mu["W_dec"])[:4].any()
  np.testing.assert_array_equal(np.asarray(new.params["W_dec"])[~dead], np.asarray(state.params["W_dec"])[~dead])


def test_host_kth_value_matches_lax_top_k(monkeypatch):
  x = jax.random.normal(jax.random.PRNGKey(0), (5, 7, 64))
  fast = jax.jit(lambda v: topk.topk_mask(v, 5))(x)
  monkeypatch.setattr(topk, "HOST_SELECT_ON_CPU", False)
  slow = jax.jit(lambda v: topk.topk_mask(v, 5))(x)
  np.testing.assert_array_equal(fast, slow)
  assert np.all(np.asarray(fast).sum(-1) == 5)
  np.testing.assert_array_equal(fast, x >= jnp.sort(x, -1)[..., -5:-4])


@pytest.mark.parametrize("num_dead", [0, 3, 8, 9, 40])
def test_auxk_on_gathered_dead_latents_matches_plain_autodiff(num_dead):
  """k_aux = 8: exact while at most 8 latents are dead; beyond, exact on the 8 candidates (the
  dead latents with the largest mean pre-activation)."""
  b, m, d = 16, 48, 8
  keys = jax.random.split(jax.random.PRNGKey(num_dead), 6)
  x = jax.random.normal(keys[0], (b, d))
  residual = jax.random.normal(keys[1], (b, d))
  w_enc = jax.random.normal(keys[2], (d, m))
  bias = jax.random.normal(keys[4], (m,))
  w_dec = jax.random.normal(keys[5], (m, d))
  dead = jax.random.permutation(keys[3], jnp.arange(m) < num_dead)
  weights = jax.random.uniform(keys[3], (b,))
  reference_dead = dead
  if num_dead > 8:
    index, real = topk.auxk_candidates(jnp.mean(x @ w_enc + bias, 0), dead, 8)
    reference_dead = jnp.zeros(m, bool).at[index].set(real)
    assert int(reference_dead.sum()) == 8 and bool(jnp.all(dead | ~reference_dead))
  fast = jax.jit(jax.value_and_grad(
      lambda we, bi, wd: jnp.sum(weights * topk.auxk_loss(x, residual, we, bi, wd, dead, 8)),
      argnums=(0, 1, 2)))
  slow = jax.jit(jax.value_and_grad(
      lambda we, bi, wd: jnp.sum(weights * topk.auxk_reference(x @ we + bi, residual, wd,
                                                              reference_dead, 8)),
      argnums=(0, 1, 2)))
  (v1, g1), (v2, g2) = fast(w_enc, bias, w_dec), slow(w_enc, bias, w_dec)
  np.testing.assert_allclose(v1, v2, rtol=1e-5)
  for a, c in zip(g1, g2):
    np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)
  assert (float(v1) == 0) == (num_dead == 0)


@pytest.mark.parametrize("variant", ["topk", "batchtopk"])
def test_aux_coeff_scales_the_auxk_part_of_the_loss(variant):
  d, m = 8, 16
  x = jax.random.normal(jax.random.PRNGKey(1), (32, d))
  dead = jnp.zeros(m, bool).at[:6].set(True)

  def loss_and_aux(aux_coeff):
    cfg = sae.SAEConfig(variant=variant, input_dim=d, dict_size=m, k=2, k_aux=4, dead_tokens=1,
                        aux_coeff=aux_coeff)
    variables = sae.init_variables(cfg, jax.random.PRNGKey(0))  # same weights for every coeff
    total, parts = jax.jit(lambda v: sae.loss(cfg, v, x, dead))(variables)
    return float(total), float(parts["aux"])

  total_1, aux_1 = loss_and_aux(1 / 32)
  total_2, aux_2 = loss_and_aux(2 / 32)
  total_0, aux_0 = loss_and_aux(0.0)
  assert aux_1 > 1e-4  # dead latents left a residual to reconstruct
  np.testing.assert_allclose(aux_2, 2 * aux_1, rtol=1e-5)
  assert aux_0 == 0.0
  # The weighted aux part is what enters the loss, once.
  np.testing.assert_allclose(total_2 - total_1, aux_1, rtol=1e-3)
  np.testing.assert_allclose(total_1 - total_0, aux_1, rtol=1e-3)
