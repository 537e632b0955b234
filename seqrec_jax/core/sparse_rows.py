"""Optimiser updates of one large `[V, d]` table that touch only the rows a step uses.

A step that reads a few thousand rows of a table of millions (the item table under a sampled
softmax) would otherwise pay for a dense `[V, d]` gradient and a dense Adam update of the table
and both its moments, every step: cost grows with V although the step's work does not. Here the
step gathers the rows it uses (`rows`, sorted unique ids padded with V, so shapes are static),
differentiates with respect to those `[R, d]` rows only, updates them with `lazy_adam` and
scatters them back in place (the state is donated, so the scatter needs no copy of the table).

Semantics (TF/Keras `LazyAdam`, PyTorch `SparseAdam`): a row's moments are updated, and the row
moved, only at steps that use it; the moments of unused rows are *not* decayed and those rows do
not move (dense Adam would keep moving them on their decaying momentum). Bias correction uses
the global step count, as those implementations do. A row that a step gathers counts as used even
if its gradient is zero, so when every step gathers every row, `lazy_adam` equals `optax.adam`.
Gradient clipping (`clip_norm`) takes the global norm over the other parameters and the gathered
rows together; as the dense gradient is zero outside the gathered rows, that is the dense norm.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

ROWS_KEY = "sparse_rows"  # batch key under which the loss sees the step's row ids


class LazyAdamState(NamedTuple):
  count: jax.Array  # int32 [], steps taken (global, for the bias correction)
  mu: jax.Array  # [V, d] first moments
  nu: jax.Array  # [V, d] second moments


@dataclasses.dataclass(frozen=True)
class LazyAdam:
  """Adam on the rows a step uses; the same hyperparameters and formulas as `optax.adam`."""

  learning_rate: float
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8

  def init(self, table: jax.Array) -> LazyAdamState:
    return LazyAdamState(jnp.zeros((), jnp.int32), jnp.zeros_like(table), jnp.zeros_like(table))

  def update(self, table: jax.Array, rows: jax.Array, values: jax.Array, grads: jax.Array,
             state: LazyAdamState) -> tuple[jax.Array, LazyAdamState]:
    """Moves `table[rows]` (currently `values[R, d]`) along `grads[R, d]`.

    `rows[R]` are unique; ids >= V (padding) are dropped. Returns the new table and state, each
    written by one scatter into the (donated) old buffers.
    """
    count = optax.safe_increment(state.count)
    gather = lambda x: x.at[rows].get(mode="fill", fill_value=0)
    mu = (1 - self.b1) * grads + self.b1 * gather(state.mu)
    nu = (1 - self.b2) * jnp.square(grads) + self.b2 * gather(state.nu)
    mu_hat = mu / (1 - self.b1**count).astype(mu.dtype)
    nu_hat = nu / (1 - self.b2**count).astype(nu.dtype)
    new_values = values + -self.learning_rate * (mu_hat / (jnp.sqrt(nu_hat) + self.eps))
    scatter = lambda x, v: x.at[rows].set(v.astype(x.dtype), mode="drop", indices_are_sorted=True)
    return scatter(table, new_values), LazyAdamState(count, scatter(state.mu, mu),
                                                     scatter(state.nu, nu))


def get_path(tree: dict, path: tuple[str, ...]):
  for key in path:
    tree = tree[key]
  return tree


def without_path(tree: dict, path: tuple[str, ...]) -> dict:
  """A copy of nested dicts `tree` without the leaf at `path` (and parents left empty)."""
  head, *rest = path
  out = dict(tree)
  if rest:
    inner = without_path(tree[head], tuple(rest))
    if inner:
      out[head] = inner
      return out
  del out[head]
  return out


def with_path(tree: dict, path: tuple[str, ...], leaf) -> dict:
  """A copy of nested dicts `tree` with `leaf` at `path` (parents created as needed)."""
  head, *rest = path
  out = dict(tree)
  out[head] = with_path(tree.get(head, {}), tuple(rest), leaf) if rest else leaf
  return out


@dataclasses.dataclass(frozen=True)
class SparseRowsOptimizer:
  """`dense` for every parameter but the table at `path`, `rows` (lazy Adam) for the table.

  Stands in for an optax transformation in `training.create_train_state` (`init`) and makes
  `training.train_step` take the gathered-rows path (the step's `StepFns.rows_fn` says which).
  """

  dense: optax.GradientTransformation
  rows: LazyAdam
  path: tuple[str, ...]
  clip_norm: float = 0.0  # > 0: clip the global gradient norm (dense part and rows together)

  def init(self, params) -> dict:
    return {"dense": self.dense.init(without_path(params, self.path)),
            "rows": self.rows.init(get_path(params, self.path))}

  def update(self, params, opt_state, rows: jax.Array, values: jax.Array, grads) -> tuple[Any, dict]:
    """New `(params, opt_state)` from `grads` (the gradient tree with the `[R, d]` gradient of
    `values = table[rows]` at `path`)."""
    dense_grads = without_path(grads, self.path)
    row_grads = get_path(grads, self.path)
    if self.clip_norm:
      clipped, _ = optax.clip_by_global_norm(self.clip_norm).update(
          (dense_grads, row_grads), optax.EmptyState())
      dense_grads, row_grads = clipped
    rest = without_path(params, self.path)
    updates, dense_state = self.dense.update(dense_grads, opt_state["dense"], rest)
    table, row_state = self.rows.update(get_path(params, self.path), rows, values, row_grads,
                                        opt_state["rows"])
    new_params = with_path(optax.apply_updates(rest, updates), self.path, table)
    return new_params, {"dense": dense_state, "rows": row_state}
