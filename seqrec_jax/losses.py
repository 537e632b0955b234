"""Item-softmax losses over the tied output table.

All losses return the *sum* over labelled positions and the number of labelled positions, so the
shared train step can normalise by the global count across devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqrec_jax.models import PAD_ID


def full_softmax_ce(hidden: jax.Array, table: jax.Array, labels: jax.Array):
  """Cross-entropy over the whole catalogue.

  Args:
    hidden: `[..., d]` hidden states.
    table: `[V, d]` item embeddings (row 0 = padding, never a valid prediction).
    labels: `[...]` int target ids; 0 marks positions without a label.
  Returns:
    `(loss_sum, count)`: summed negative log-likelihood and number of labelled positions.
  """
  logits = (hidden @ table.astype(hidden.dtype).T).astype(jnp.float32)
  logits = logits.at[..., PAD_ID].set(-jnp.inf)
  valid = labels != PAD_ID
  safe = jnp.where(valid, labels, 1)
  picked = jnp.take_along_axis(logits, safe[..., None], axis=-1)[..., 0]
  nll = jax.nn.logsumexp(logits, axis=-1) - picked
  return jnp.sum(jnp.where(valid, nll, 0.0)), jnp.sum(valid)
