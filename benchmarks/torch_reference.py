"""PyTorch references of the same shapes, measured in the same run (CPU torch is optional).

The recommender mirrors the paper's model: HuggingFace `GPT2Model` with a tied item embedding
when `transformers` is installed, otherwise the same pre-LN GPT-2 block written with
`torch.nn.TransformerEncoderLayer(norm_first=True, activation="gelu")` and a causal mask.
"""

from __future__ import annotations

import time


def available() -> bool:
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


def recommender_step_seconds(*, num_items, hidden_dim, num_blocks, num_heads, max_len, batch_size,
                             steps: int = 5) -> tuple[float, str]:
  """Seconds per Adam step of full-softmax CE at every position; and which model was used."""
  import torch
  from torch import nn

  torch.manual_seed(0)
  try:
    from transformers import GPT2Config, GPT2Model

    body = GPT2Model(GPT2Config(vocab_size=1, n_positions=max_len, n_embd=hidden_dim,
                                n_layer=num_blocks, n_head=num_heads, resid_pdrop=0.0,
                                embd_pdrop=0.0, attn_pdrop=0.0))
    kind = "transformers.GPT2Model"

    def forward(emb):
      return body(inputs_embeds=emb).last_hidden_state
  except ImportError:
    layer = nn.TransformerEncoderLayer(hidden_dim, num_heads, 4 * hidden_dim, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
    body = nn.TransformerEncoder(layer, num_blocks, enable_nested_tensor=False)
    pos = nn.Embedding(max_len, hidden_dim)
    mask = nn.Transformer.generate_square_subsequent_mask(max_len)
    kind = "torch.nn.TransformerEncoder (pre-LN, GELU)"

    def forward(emb):
      return body(emb + pos.weight[None], mask=mask, is_causal=True)
  items = nn.Embedding(num_items, hidden_dim)
  params = list(body.parameters()) + list(items.parameters())
  opt = torch.optim.Adam(params, lr=1e-3)
  ids = torch.randint(1, num_items, (batch_size, max_len + 1))

  def step():
    opt.zero_grad(set_to_none=True)
    hidden = forward(items(ids[:, :-1]))
    logits = hidden @ items.weight.T
    loss = nn.functional.cross_entropy(logits.reshape(-1, num_items), ids[:, 1:].reshape(-1))
    loss.backward()
    opt.step()

  step()
  start = time.perf_counter()
  for _ in range(steps):
    step()
  return (time.perf_counter() - start) / steps, kind
