"""Captured activations and layer-edit hooks against manual forward passes."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax.recommender import activations
from seqrec_jax.recommender import hooks
from seqrec_jax.recommender import evaluation
from seqrec_jax.recommender.model import PAD_ID, Attention, Mlp, ModelConfig, TransformerBlock, attention_mask, init_params, make_model
from seqrec_jax.data.splits import make_sequences


def tiny(kind="sasrec"):
  cfg = ModelConfig(kind=kind, num_items=30, max_len=8, hidden_dim=16, num_blocks=2, num_heads=2,
                    mlp_dim=32, dropout_rate=0.0)
  return cfg, init_params(cfg, jax.random.PRNGKey(0))


def sequences():
  rng = np.random.default_rng(0)
  lengths = [3, 12, 8, 1, 5, 9, 2]
  return make_sequences([rng.integers(1, 30, n) for n in lengths], np.arange(100, 107))


@functools.partial(jax.jit, static_argnums=1)
def manual_layers(params, cfg, ids):
  """Every capturable layer's output `[B, L, d]`, computed from the parameters step by step."""
  ln = lambda p, h: nn.LayerNorm().apply({"params": p}, h)
  x = params["item_embedding"]["embedding"][ids] + params["position_embedding"]["embedding"][: ids.shape[1]]
  mask = attention_mask(ids, cfg.causal)
  out = {}
  for i in range(cfg.num_blocks):
    p = params[f"blocks_{i}"]
    attn = Attention(cfg).apply({"params": p["attention"]}, ln(p["ln_attention"], x), mask)
    x = x + attn
    mlp = Mlp(cfg).apply({"params": p["mlp"]}, ln(p["ln_mlp"], x))
    x = x + mlp
    out.update({f"blocks_{i}/attention": attn, f"blocks_{i}/mlp": mlp, f"blocks_{i}": x})
  out["final_norm"] = ln(params["final_norm"], x)
  return out


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_captured_activations_equal_a_manual_forward_pass(kind):
  cfg, params = tiny(kind)
  seqs = sequences()
  ids = activations.sequence_windows(seqs, cfg.max_len)
  assert not np.any(ids == cfg.mask_token) or kind == "sasrec"  # BERT4Rec: plain sequence
  reference = manual_layers(params, cfg, jnp.asarray(ids))
  real = ids != PAD_ID
  layers = ["blocks_0/attention", "blocks_0/mlp", "blocks_0", "final_norm"]
  for layer in layers if kind == "sasrec" else layers[2:]:
    acts = activations.capture_activations(params, cfg, seqs, layer, batch_size=3)  # padded batch
    np.testing.assert_allclose(acts.values, np.asarray(reference[layer])[real], atol=1e-5, rtol=1e-5)
    assert acts.values.dtype == np.float32 and acts.layer == layer
  # The last layer equals the model's own output.
  full = make_model(cfg).apply({"params": params}, ids)
  np.testing.assert_allclose(acts.values, np.asarray(full)[real], atol=1e-5)


def test_index_arrays():
  cfg, params = tiny()
  seqs = sequences()
  acts = activations.capture_activations(params, cfg, seqs, "blocks_0")
  assert len(acts) == int(np.minimum(seqs.lengths, cfg.max_len).sum())
  for row in range(len(seqs)):
    s = seqs[row]
    pick = acts.rows == row
    kept = min(len(s), cfg.max_len)
    np.testing.assert_array_equal(acts.positions[pick], np.arange(cfg.max_len - kept, cfg.max_len))
    np.testing.assert_array_equal(acts.items[pick], s[-kept:])
    np.testing.assert_array_equal(acts.next_items[pick], np.append(s[len(s) - kept + 1 :], 0))
    assert np.all(acts.users[pick] == seqs.users[row])


def test_streams_to_disk_over_the_memory_budget(tmp_path):
  cfg, params = tiny()
  seqs = sequences()
  in_memory = activations.capture_activations(params, cfg, seqs, "blocks_1")
  on_disk = activations.capture_activations(params, cfg, seqs, "blocks_1", memory_budget_bytes=100,
                                            out_dir=tmp_path)
  assert isinstance(on_disk.values, np.memmap)
  np.testing.assert_array_equal(np.asarray(on_disk.values), in_memory.values)
  loaded = activations.load_activations(tmp_path)
  np.testing.assert_array_equal(np.asarray(loaded.values), in_memory.values)
  np.testing.assert_array_equal(loaded.next_items, in_memory.next_items)
  assert loaded.layer == "blocks_1"


def test_unknown_layer_is_an_error():
  cfg, params = tiny()
  with pytest.raises(ValueError, match="capturable layers"):
    activations.capture_activations(params, cfg, sequences(), "blocks_7")


def test_layer_edit_hook():
  cfg, params = tiny()
  ids = jnp.asarray(activations.sequence_windows(sequences(), cfg.max_len))
  model = make_model(cfg)
  plain = model.apply({"params": params}, ids)
  same = hooks.apply_with_layer_edit(model, {"params": params}, ids, "blocks_0", lambda h: h)
  np.testing.assert_array_equal(same, plain)

  # Editing block 0 = running block 1 and the final norm on the edited output by hand.
  delta = jax.random.normal(jax.random.PRNGKey(1), (cfg.hidden_dim,))
  edited = hooks.apply_with_layer_edit(model, {"params": params}, ids, "blocks_0", lambda h: h + delta)

  h = manual_layers(params, cfg, ids)["blocks_0"] + delta
  mask = attention_mask(ids, cfg.causal)
  h = TransformerBlock(cfg).apply({"params": params["blocks_1"]}, h, mask)
  by_hand = nn.LayerNorm().apply({"params": params["final_norm"]}, h)
  np.testing.assert_allclose(edited, by_hand, atol=1e-5)
  assert not np.allclose(edited, plain)

  # A LayerEdit passes through jit; new args do not retrace.
  traces = []

  @jax.jit
  def scores(params, ids, edit):
    traces.append(1)
    return evaluation.scores_last(params, ids, cfg, edit=edit)

  add = lambda args, h: h + args
  a = scores(params, ids, hooks.LayerEdit("blocks_1", add, jnp.zeros(cfg.hidden_dim)))
  b = scores(params, ids, hooks.LayerEdit("blocks_1", add, delta))
  np.testing.assert_allclose(a, evaluation.scores_last(params, ids, cfg), atol=1e-5)
  assert not np.allclose(a, b) and len(traces) == 1
  zero = evaluation.scores_last(params, ids, cfg, edit=hooks.zero_ablation("blocks_0"))
  assert zero.shape == (len(ids), cfg.num_items)
