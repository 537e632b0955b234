"""PyTorch references of the same shapes, measured in the same run (CPU torch is optional).

The recommender mirrors the paper's model: HuggingFace `GPT2Model` with a tied item embedding
when `transformers` is installed, otherwise the same pre-LN GPT-2 block written with
`torch.nn.TransformerEncoderLayer(norm_first=True, activation="gelu")` and a causal mask. Dropout
(embeddings, attention weights, residual branches) is the same rate as ours, so both sides do the
same work. Callers time torch with one thread and with all CPU threads and keep the faster (on
a loaded machine torch's thread pool can collapse), `thread_options()`.
"""

from __future__ import annotations

import os
import time

import numpy as np


def available() -> bool:
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


def thread_options() -> list[int]:
  """Thread counts worth trying: 1 and all CPUs."""
  return sorted({1, os.cpu_count() or 1})


def _recommender(*, num_items, hidden_dim, num_blocks, num_heads, max_len, dropout_rate,
                 threads=None):
  """`(forward(input_ids) -> hidden [B, L, d], item embedding, modules, kind)`; 0 pads."""
  import torch
  from torch import nn

  torch.manual_seed(0)
  torch.set_num_threads(threads or os.cpu_count() or 1)
  items = nn.Embedding(num_items, hidden_dim)
  try:
    from transformers import GPT2Config, GPT2Model

    body = GPT2Model(GPT2Config(vocab_size=1, n_positions=max_len, n_embd=hidden_dim,
                                n_layer=num_blocks, n_head=num_heads, n_inner=4 * hidden_dim,
                                resid_pdrop=dropout_rate, embd_pdrop=dropout_rate,
                                attn_pdrop=dropout_rate, bos_token_id=0, eos_token_id=0))
    kind = "transformers.GPT2Model"

    def forward(ids):
      return body(inputs_embeds=items(ids), attention_mask=(ids != 0).long()).last_hidden_state
  except ImportError:
    layer = nn.TransformerEncoderLayer(hidden_dim, num_heads, 4 * hidden_dim, dropout=dropout_rate,
                                       activation="gelu", batch_first=True, norm_first=True)
    body = nn.TransformerEncoder(layer, num_blocks, enable_nested_tensor=False)
    pos = nn.Embedding(max_len, hidden_dim)
    body.add_module("pos", pos)
    final = nn.LayerNorm(hidden_dim)
    body.add_module("final", final)
    mask = nn.Transformer.generate_square_subsequent_mask(max_len)
    kind = "torch.nn.TransformerEncoder (pre-LN, GELU)"

    def forward(ids):
      return final(body(items(ids) + pos.weight[None], mask=mask, is_causal=True,
                        src_key_padding_mask=ids == 0))
  return forward, items, [body, items], kind


def recommender_step_seconds(*, num_items, hidden_dim, num_blocks, num_heads, max_len, batch_size,
                             dropout_rate: float = 0.0, steps: int = 5,
                             threads: int | None = None) -> tuple[float, str]:
  """Seconds per Adam step of full-softmax CE at every position; and which model was used."""
  import torch
  from torch import nn

  forward, items, modules, kind = _recommender(
      num_items=num_items, hidden_dim=hidden_dim, num_blocks=num_blocks, num_heads=num_heads,
      max_len=max_len, dropout_rate=dropout_rate, threads=threads)
  params = [p for m in modules for p in m.parameters()]
  for m in modules:
    m.train()
  opt = torch.optim.Adam(params, lr=1e-3)
  ids = torch.randint(1, num_items, (batch_size, max_len + 1))

  def step():
    opt.zero_grad(set_to_none=True)
    hidden = forward(ids[:, :-1])
    logits = hidden @ items.weight.T
    loss = nn.functional.cross_entropy(logits.reshape(-1, num_items), ids[:, 1:].reshape(-1))
    loss.backward()
    opt.step()

  step()
  start = time.perf_counter()
  for _ in range(steps):
    step()
  return (time.perf_counter() - start) / steps, kind


def recommender_eval_seconds(*, num_items, hidden_dim, num_blocks, num_heads, max_len,
                             input_ids: np.ndarray, seen: np.ndarray, targets: np.ndarray,
                             batch_size: int, k: int = 10,
                             threads: int | None = None) -> tuple[float, dict, str]:
  """Full-ranking evaluation of every row: the last position's scores over all items, padding
  and seen items removed, top-k, NDCG@k and HR@k. Returns `(seconds, metrics, kind)`."""
  import torch

  forward, items, modules, kind = _recommender(
      num_items=num_items, hidden_dim=hidden_dim, num_blocks=num_blocks, num_heads=num_heads,
      max_len=max_len, dropout_rate=0.0, threads=threads)
  for m in modules:
    m.eval()
  discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float32))
  ndcg = hr = 0.0
  start = time.perf_counter()
  with torch.inference_mode():
    for s in range(0, len(input_ids), batch_size):
      ids = torch.from_numpy(input_ids[s : s + batch_size])
      scores = forward(ids)[:, -1] @ items.weight.T
      scores.scatter_(1, torch.from_numpy(seen[s : s + batch_size]).long(), float("-inf"))
      scores[:, 0] = float("-inf")
      top = scores.topk(k, dim=1).indices
      hits = (top == torch.from_numpy(targets[s : s + batch_size]).long()[:, None]).float()
      ndcg += float((hits * discounts).sum())
      hr += float(hits.sum())
  seconds = time.perf_counter() - start
  n = len(input_ids)
  return seconds, {f"ndcg@{k}": ndcg / n, f"hr@{k}": hr / n}, kind
