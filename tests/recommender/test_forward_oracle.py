"""The transformer's forward pass equals an independent float64 NumPy reference.

The reference is written from the documented architecture (pre-LN GPT-2 blocks, learned
positions, unscaled embeddings, 1/sqrt(head_dim) attention, tanh-approximate GELU, final
LayerNorm, tied output table, SASRec causal + padding mask / BERT4Rec padding mask) and reads
the same parameter arrays. Hidden states and logits at the real (non-padding) positions must
agree to float32 round-off; a sensitivity test checks that each plausible bug (as a mutation of
the reference) moves the output far beyond that tolerance, so the comparison can fail.
"""

from math import erf

import jax
import numpy as np
import pytest

from seqrec_jax.recommender.model import PAD_ID, ModelConfig, SequentialRecommender, init_params, make_model

V, L, D, HEADS, BLOCKS, MLP = 30, 8, 16, 2, 2, 32
RTOL, ATOL = 1e-4, 1e-5
LN_EPS = 1e-6  # flax.linen.LayerNorm's default


def _config(kind):
  return ModelConfig(kind=kind, num_items=V, max_len=L, hidden_dim=D, num_blocks=BLOCKS,
                     num_heads=HEADS, mlp_dim=MLP, dropout_rate=0.0)


def _ids(cfg):
  """Left-padded sequences: none, some and almost all padding (BERT4Rec: with [MASK] tokens)."""
  rng = np.random.default_rng(7)
  ids = rng.integers(1, V, size=(4, L)).astype(np.int32)
  ids[1, :3] = PAD_ID
  ids[2, :5] = PAD_ID
  ids[3, :L - 1] = PAD_ID  # a single real item
  if cfg.kind == "bert4rec":
    ids[0, 2] = ids[1, -1] = ids[2, 6] = cfg.mask_token
  return ids


def _perturbed(params, seed=0):
  """The same tree with every leaf random and O(1): non-zero biases, LN scales away from 1 and
  embeddings large enough that attention is far from uniform, so no term can hide."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = jax.tree_util.keystr(path)
    shape = np.shape(x)
    if "embedding" in name:
      value = rng.normal(size=shape)
    elif "kernel" in name:
      fan_in = shape[0] if "'out'" not in name else shape[0] * shape[1]
      value = rng.normal(size=shape) * (1.5 / np.sqrt(fan_in))
    elif "scale" in name:
      value = 1.0 + 0.3 * rng.normal(size=shape)
    else:  # biases
      value = 0.3 * rng.normal(size=shape)
    return np.asarray(value, np.float32)

  return jax.tree_util.tree_map_with_path(leaf, params)


# ----------------------------------------------------------------------------- the reference


def _layer_norm(x, p, eps=LN_EPS):
  mean = x.mean(-1, keepdims=True)
  var = np.square(x - mean).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _gelu(x, exact=False):
  if exact:
    return 0.5 * x * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def _attention(x, p, mask, scale=True):
  """Multi-head self-attention; `mask[B, L, L]` (query, key) True where attending is allowed."""
  q = np.einsum("bld,dhk->blhk", x, p["query"]["kernel"]) + p["query"]["bias"]
  k = np.einsum("bld,dhk->blhk", x, p["key"]["kernel"]) + p["key"]["bias"]
  v = np.einsum("bld,dhk->blhk", x, p["value"]["kernel"]) + p["value"]["bias"]
  logits = np.einsum("bqhk,bshk->bhqs", q, k)
  if scale:
    logits = logits / np.sqrt(q.shape[-1])
  logits = np.where(mask[:, None], logits, -1e30)  # fully masked rows: uniform, never compared
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  heads = np.einsum("bhqs,bshk->bqhk", weights, v)
  return np.einsum("bqhk,hkd->bqd", heads, p["out"]["kernel"]) + p["out"]["bias"]


def _mask(ids, causal, attend_padding=False):
  n = ids.shape[-1]
  key_real = ids != PAD_ID if not attend_padding else np.ones_like(ids, bool)
  mask = np.broadcast_to(key_real[:, None, :], (ids.shape[0], n, n))
  if causal:
    mask = mask & np.tril(np.ones((n, n), bool))
  return mask


def reference_forward(params, ids, cfg, mutation=None):
  """Hidden states `[B, L, d]` (float64). `mutation` names a deliberate bug (sensitivity test)."""
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  table = p["item_embedding"]["embedding"]
  x = table[ids]
  if mutation == "scaled_embedding":
    x = x * np.sqrt(cfg.hidden_dim)
  if mutation != "no_position":
    x = x + p["position_embedding"]["embedding"][: ids.shape[-1]]
  causal = cfg.kind == "sasrec"
  if mutation == "flip_causal":
    causal = not causal
  mask = _mask(ids, causal, attend_padding=mutation == "attend_padding")
  for i in range(cfg.num_blocks):
    b = p[f"blocks_{i}"]
    att = lambda h: _attention(h, b["attention"]["self_attention"], mask, scale=mutation != "no_scale")
    mlp = lambda h: (_gelu(h @ b["mlp"]["fc_in"]["kernel"] + b["mlp"]["fc_in"]["bias"],
                           exact=mutation == "exact_gelu")
                     @ b["mlp"]["fc_out"]["kernel"] + b["mlp"]["fc_out"]["bias"])
    if mutation == "post_ln":
      x = _layer_norm(x + att(x), b["ln_attention"])
      x = _layer_norm(x + mlp(x), b["ln_mlp"])
      continue
    a = att(_layer_norm(x, b["ln_attention"]))
    x = a if mutation == "no_attention_residual" else x + a
    m = mlp(_layer_norm(x, b["ln_mlp"]))
    x = m if mutation == "no_mlp_residual" else x + m
  return x if mutation == "no_final_norm" else _layer_norm(x, p["final_norm"])


def reference_logits(params, hidden, cfg):
  table = np.asarray(params["item_embedding"]["embedding"], np.float64)[: cfg.num_items]
  return hidden @ table.T


# ----------------------------------------------------------------------------- the model


def _model_outputs(params, ids, cfg):
  model = make_model(cfg)  # eval mode: deterministic, no dropout
  variables = {"params": params}
  hidden, table = model.apply(variables, ids, method=SequentialRecommender.hidden_and_table)
  logits = model.apply(variables, hidden, method=SequentialRecommender.item_logits)
  direct = model.apply(variables, ids)
  np.testing.assert_allclose(np.asarray(direct), np.asarray(hidden), rtol=1e-6, atol=1e-7)
  assert table.shape == (cfg.num_items, cfg.hidden_dim)  # tied table, without [MASK]
  return np.asarray(hidden, np.float64), np.asarray(logits, np.float64)


@pytest.mark.parametrize("perturb", [False, True], ids=["init", "perturbed"])
@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_forward_matches_numpy_reference(kind, perturb):
  cfg = _config(kind)
  params = init_params(cfg, jax.random.PRNGKey(0))
  if perturb:
    params = _perturbed(params)
  ids = _ids(cfg)
  real = ids != PAD_ID
  hidden, logits = _model_outputs(params, ids, cfg)
  expected = reference_forward(params, ids, cfg)
  np.testing.assert_allclose(hidden[real], expected[real], rtol=RTOL, atol=ATOL)
  expected_logits = reference_logits(params, expected, cfg)
  assert logits.shape == (*ids.shape, cfg.num_items)
  assert np.all(np.isneginf(logits[..., PAD_ID]))  # padding is never a candidate
  np.testing.assert_allclose(logits[real][:, 1:], expected_logits[real][:, 1:], rtol=RTOL, atol=ATOL)


MUTATIONS = ["no_scale", "flip_causal", "attend_padding", "post_ln", "exact_gelu",
             "no_attention_residual", "no_mlp_residual", "no_final_norm", "scaled_embedding",
             "no_position"]


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_reference_is_sensitive_to_plausible_bugs(kind):
  """Every mutated reference misses the model by far more than the comparison's tolerance.

  The correct reference stays within ~0.05 of the tolerance band. Structural bugs land 10^4 to
  10^5 bands away; exact-erf GELU instead of the tanh approximation changes activations by at
  most ~1e-3, which still lands 10 to 100 bands away, so it gets a smaller (still failing) bar.
  """
  cfg = _config(kind)
  params = _perturbed(init_params(cfg, jax.random.PRNGKey(0)))
  ids = _ids(cfg)
  real = ids != PAD_ID
  hidden, _ = _model_outputs(params, ids, cfg)
  allowed = ATOL + RTOL * np.abs(hidden[real])
  for mutation in MUTATIONS:
    wrong = reference_forward(params, ids, cfg, mutation)
    # How far the worst element is outside the tolerance band, in units of that band.
    excess = float(np.max(np.abs(wrong[real] - hidden[real]) / allowed))
    assert excess > (5 if mutation == "exact_gelu" else 1000), (mutation, excess)
