"""SASRec and BERT4Rec: one pre-LayerNorm transformer, two masking regimes.

Both models map item ids `input_ids[B, L]` (0 = padding, sequences right-aligned so the most
recent item sits at position L-1) to hidden states `[B, L, d]`; scores over the catalogue are
`hidden @ item_embedding.T` (tied weights, `SequentialRecommender.item_logits`).

Every block's output and its attention and MLP outputs are reachable by name through
`capture_intermediates` (see `layer_names`), e.g. `blocks_0/__call__`,
`blocks_0/attention/__call__`, `blocks_0/mlp/__call__`, `final_norm/__call__`.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from seqrec_jax.recommender.dropout import Dropout

PAD_ID = 0
MODEL_KINDS = ("sasrec", "bert4rec")


@struct.dataclass
class ModelConfig:
  """Hyperparameters of a sequential recommender (frozen; use `.replace`)."""

  kind: str = struct.field(pytree_node=False, default="sasrec")  # "sasrec" | "bert4rec"
  num_items: int = struct.field(pytree_node=False, default=0)  # V: ids 1..V-1 are items, 0 pads
  max_len: int = struct.field(pytree_node=False, default=64)  # L, positions per sequence
  hidden_dim: int = struct.field(pytree_node=False, default=64)  # d
  num_blocks: int = struct.field(pytree_node=False, default=2)
  num_heads: int = struct.field(pytree_node=False, default=2)
  mlp_dim: int = struct.field(pytree_node=False, default=256)  # MLP hidden width (4 d)
  dropout_rate: float = struct.field(pytree_node=False, default=0.1)
  # Multiply the item embeddings by sqrt(d) on input (the original SASRec's scaling); the output
  # table stays unscaled.
  scale_embeddings: bool = struct.field(pytree_node=False, default=False)
  deterministic: bool = struct.field(pytree_node=False, default=True)  # True disables dropout
  # Activation and matmul dtype ("bfloat16" on accelerators). Parameters stay float32 (the
  # master weights), LayerNorm statistics and the attention softmax run in float32, item logits
  # accumulate in float32 and the losses are computed in float32.
  dtype: str = struct.field(pytree_node=False, default="float32")

  @property
  def mask_token(self) -> int:
    """BERT4Rec's [MASK] id: one past the last item."""
    return self.num_items

  @property
  def vocab_size(self) -> int:
    """Rows of the embedding table (BERT4Rec adds the mask token)."""
    return self.num_items + (1 if self.kind == "bert4rec" else 0)

  @property
  def causal(self) -> bool:
    return self.kind == "sasrec"


def layer_names(config: ModelConfig) -> list[str]:
  """Names of the capturable layers, in forward order (`/`-joined module paths)."""
  names = []
  for i in range(config.num_blocks):
    names += [f"blocks_{i}/attention", f"blocks_{i}/mlp", f"blocks_{i}"]
  return names + ["final_norm"]


class Mlp(nn.Module):
  config: ModelConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    h = nn.Dense(cfg.mlp_dim, dtype=cfg.dtype, name="fc_in")(x)
    h = nn.gelu(h)
    h = nn.Dense(x.shape[-1], dtype=cfg.dtype, name="fc_out")(h)
    return Dropout(cfg.dropout_rate)(h, deterministic=cfg.deterministic)


class _Projection(nn.Module):
  """The `kernel` and `bias` of a `flax.linen.DenseGeneral` (same names, shapes and init), returned
  instead of applied, so that several projections can run as one matrix product."""

  in_shape: tuple[int, ...]
  out_shape: tuple[int, ...]

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array]:
    flat = (math.prod(self.in_shape), math.prod(self.out_shape))
    init = nn.initializers.lecun_normal()
    kernel = self.param(
        "kernel", lambda rng: init(rng, flat).reshape(self.in_shape + self.out_shape))
    return kernel, self.param("bias", nn.initializers.zeros_init(), self.out_shape)


class SelfAttention(nn.Module):
  """Multi-head self-attention with the parameters of `flax.linen.MultiHeadDotProductAttention`
  (`query`/`key`/`value` kernels `[d, H, d/H]`, `out` `[H, d/H, d]`, so checkpoints are
  interchangeable) and the same arithmetic (query scaled by 1/sqrt(d/H), masked scores set to the
  float32 minimum, float32 softmax, dropout on the weights), computed with one fused QKV matrix
  product and hashed dropout masks (`recommender.dropout`)."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, last_only: bool = False) -> jax.Array:
    """`x[B, L, d]`, `mask[B, 1, L, L]` -> `[B, L, d]` (`[B, 1, d]`: the last query only)."""
    cfg = self.config
    d, heads = x.shape[-1], cfg.num_heads
    head_dim = d // heads
    qkv = [_Projection((d,), (heads, head_dim), name=n)() for n in ("query", "key", "value")]
    kernel = jnp.stack([k for k, _ in qkv], axis=1).astype(cfg.dtype)  # [d, 3, H, dh]
    bias = jnp.stack([b for _, b in qkv]).astype(cfg.dtype)  # [3, H, dh]
    q, k, v = jnp.einsum("bld,dthk->tbhlk", x, kernel) + bias[:, None, :, None]  # each [B, H, L, dh]
    if last_only:
      q, mask = q[:, :, -1:], mask[:, :, -1:]
    q = q / jnp.sqrt(jnp.asarray(head_dim, q.dtype))
    scores = jnp.einsum("bhqk,bhsk->bhqs", q, k, preferred_element_type=jnp.float32)
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(cfg.dtype)
    weights = Dropout(cfg.dropout_rate)(weights, deterministic=cfg.deterministic)
    context = jnp.einsum("bhqs,bhsk->bqhk", weights, v)
    out_kernel, out_bias = _Projection((heads, head_dim), (d,), name="out")()
    return jnp.einsum("bqhk,hkd->bqd", context, out_kernel.astype(cfg.dtype)) + out_bias.astype(
        cfg.dtype)


class Attention(nn.Module):
  config: ModelConfig

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, last_only: bool = False) -> jax.Array:
    cfg = self.config
    h = SelfAttention(cfg, name="self_attention")(x, mask, last_only)
    return Dropout(cfg.dropout_rate)(h, deterministic=cfg.deterministic)


class TransformerBlock(nn.Module):
  """Pre-LN block (GPT-2 style): x + attn(ln(x)), then + mlp(ln(x)). With `last_only`, only the
  last position's output `[B, 1, d]` (it attends to every position's keys and values)."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, last_only: bool = False) -> jax.Array:
    dtype = self.config.dtype
    h = Attention(self.config, name="attention")(
        nn.LayerNorm(dtype=dtype, name="ln_attention")(x), mask, last_only)
    x = (x[:, -1:] if last_only else x) + h
    return x + Mlp(self.config, name="mlp")(nn.LayerNorm(dtype=dtype, name="ln_mlp")(x))


def attention_mask(input_ids: jax.Array, causal: bool) -> jax.Array:
  """`[B, 1, L, L]` boolean mask built from ids (never from embeddings)."""
  real = input_ids != PAD_ID
  mask = nn.make_attention_mask(real, real)
  if causal:
    mask = nn.combine_masks(mask, nn.make_causal_mask(input_ids))
  return mask


class SequentialRecommender(nn.Module):
  """SASRec (causal) or BERT4Rec (bidirectional), chosen by `config.kind`."""

  config: ModelConfig

  def setup(self):
    cfg = self.config
    if cfg.kind not in MODEL_KINDS:
      raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {cfg.kind!r}")
    init = nn.initializers.normal(stddev=0.02)
    self.item_embedding = nn.Embed(cfg.vocab_size, cfg.hidden_dim, embedding_init=init)
    self.position_embedding = nn.Embed(cfg.max_len, cfg.hidden_dim, embedding_init=init)
    self.embed_dropout = Dropout(cfg.dropout_rate)
    self.blocks = [TransformerBlock(cfg) for _ in range(cfg.num_blocks)]
    self.final_norm = nn.LayerNorm(dtype=cfg.dtype)

  def __call__(self, input_ids: jax.Array, last_only: bool = False) -> jax.Array:
    """`input_ids[B, L]` int32 -> hidden states `[B, L, d]`; with `last_only`, `[B, 1, d]` at the
    last position, computing the last block for that position only (ranking needs no more)."""
    return self.encode(self.item_embedding(input_ids), input_ids, last_only)

  def encode(self, item_vectors: jax.Array, input_ids: jax.Array,
             last_only: bool = False) -> jax.Array:
    """Hidden states `[B, L, d]` (`[B, 1, d]` with `last_only`) from the input items' embedding
    rows `item_vectors[B, L, d]` (`input_ids` gives the padding mask). Lets a caller supply rows
    it gathered itself (`recommender.sparse_items`), without the table."""
    cfg = self.config
    positions = jnp.arange(input_ids.shape[-1])
    x = item_vectors
    if cfg.scale_embeddings:
      x = x * jnp.sqrt(jnp.asarray(cfg.hidden_dim, x.dtype))
    x = x + self.position_embedding(positions)
    x = self.embed_dropout(x, deterministic=cfg.deterministic).astype(cfg.dtype)
    mask = attention_mask(input_ids, cfg.causal)
    for i, block in enumerate(self.blocks):
      x = block(x, mask, last_only and i == len(self.blocks) - 1)
    return self.final_norm(x)

  def resume(self, x: jax.Array, input_ids: jax.Array, start: int) -> jax.Array:
    """Last-position hidden states `[B, 1, d]` from the output `x[B, L, d]` of block `start - 1`:
    runs blocks `start..` (the last one for the last position only) and the final norm. Lets a
    sweep of edits at one block's output reuse everything before it."""
    mask = attention_mask(input_ids, self.config.causal)
    last = len(self.blocks) - 1
    for i in range(start, len(self.blocks)):
      x = self.blocks[i](x, mask, i == last)
    return self.final_norm(x[:, -1:])

  def item_embeddings(self) -> jax.Array:
    """The output table `[V, d]` (tied to the input embedding; excludes the mask token)."""
    return self.item_embedding.embedding[: self.config.num_items]

  def hidden_and_table(self, input_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Hidden states `[B, L, d]` and the output table `[V, d]` in one apply."""
    return self(input_ids), self.item_embeddings()

  def item_logits(self, hidden: jax.Array) -> jax.Array:
    """Scores `[..., V]` (float32) for hidden states `[..., d]`; padding id 0 scores -inf."""
    table = self.item_embeddings().astype(hidden.dtype)
    logits = jnp.einsum("...d,vd->...v", hidden, table, preferred_element_type=jnp.float32)
    return logits.at[..., PAD_ID].set(-jnp.inf)


def make_model(config: ModelConfig, *, train: bool = False) -> SequentialRecommender:
  return SequentialRecommender(config.replace(deterministic=not train))


def init_params(config: ModelConfig, rng: jax.Array):
  model = make_model(config)
  dummy = jnp.zeros((1, config.max_len), jnp.int32).at[:, -1].set(1)
  # One compiled init instead of ~80 eagerly dispatched (and separately compiled) ops.
  return jax.jit(model.init)(rng, dummy)["params"]
