"""One pure train step, compiled three ways (jit, pmap, jit over a device mesh).

A model plugs in a `loss_fn(params, model_state, batch, rng) -> (loss_sum, LossAux)` that
returns *sums* over its local examples plus the number of examples (tokens) they cover. The step
divides by the global count, so a run on N devices and a run on one device with the same global
batch compute the same loss and gradients:

* `jit`: one device, `axis_name=None`.
* `pmap`: classic data parallelism; the batch gets a leading device axis, counts and gradients
  are `psum`-reduced over the `'batch'` axis.
* `mesh`: `jax.jit` with `NamedSharding`s over a 1-D `Mesh(('batch',))`; the state is
  replicated, the batch sharded on its first axis, and XLA inserts the reductions.

With `tx` a `sparse_rows.SparseRowsOptimizer` the step differentiates with respect to the rows of
one big table that `StepFns.rows_fn` names (under pmap: their union over devices) instead of the
whole table, and updates only those (lazy Adam); the three modes work alike.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from seqrec_jax.core import sparse_rows

AXIS = "batch"
MODES = ("jit", "pmap", "mesh")


class LossAux(NamedTuple):
  count: jax.Array  # number of examples/tokens the loss sum covers (local)
  metrics: dict  # extra sums to report (local); divided by the global count on the host
  stats: Any = None  # anything `update_model_state` needs (e.g. which latents fired)


@struct.dataclass
class TrainState:
  step: jax.Array  # int32 []
  params: Any
  opt_state: Any
  rng: jax.Array  # uint32 [2], raw PRNG key; per-step keys are folded from it
  model_state: Any  # non-gradient state (e.g. dead-latent counters); {} when unused


def create_train_state(params, tx: optax.GradientTransformation, seed: int, model_state=None):
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=jax.random.PRNGKey(seed),
      model_state={} if model_state is None else model_state,
  )


@dataclasses.dataclass(frozen=True)
class StepFns:
  """The model-specific pieces of a train step."""

  loss_fn: Callable  # (params, model_state, batch, rng) -> (loss_sum, LossAux)
  tx: optax.GradientTransformation
  # (model_state, stats, psum) -> model_state; `psum` reduces over devices (identity on one).
  update_model_state: Callable | None = None
  # params -> params, applied after each update (e.g. unit-norm decoder columns).
  project_params: Callable | None = None
  # With `tx` a `sparse_rows.SparseRowsOptimizer`: (batch, rng) -> int32 [R], the sorted unique
  # rows of its table the step uses, padded with V. `loss_fn` then sees those `[R, d]` rows in
  # place of the table and the row ids as `batch[sparse_rows.ROWS_KEY]`.
  rows_fn: Callable | None = None


def train_step(state: TrainState, batch, fns: StepFns, axis_name: str | None = None):
  """One optimisation step. Pure; returns `(new_state, metrics)` with global mean metrics."""
  psum = (lambda x: x) if axis_name is None else functools.partial(jax.lax.psum, axis_name=axis_name)
  rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))

  sparse = isinstance(fns.tx, sparse_rows.SparseRowsOptimizer)
  diff_params = state.params
  if sparse:
    rows, values = _gather_rows(state.params, batch, rng, fns, axis_name)
    diff_params = sparse_rows.with_path(state.params, fns.tx.path, values)
    batch = {**batch, sparse_rows.ROWS_KEY: rows}

  def objective(params):
    loss_sum, aux = fns.loss_fn(params, state.model_state, batch, rng)
    total = jnp.maximum(psum(aux.count), 1)
    return loss_sum / total, (loss_sum, total, aux)

  grads, (loss_sum, total, aux) = jax.grad(objective, has_aux=True)(diff_params)
  grads = psum(grads)
  if sparse:
    params, opt_state = fns.tx.update(state.params, state.opt_state, rows, values, grads)
  else:
    updates, opt_state = fns.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
  if fns.project_params is not None:
    params = fns.project_params(params)
  model_state = state.model_state
  if fns.update_model_state is not None:
    model_state = fns.update_model_state(model_state, aux.stats, psum)
  metrics = {"loss": psum(loss_sum) / total, "grad_norm": _global_norm(grads)}
  metrics.update({k: psum(v) / total for k, v in aux.metrics.items()})
  new_state = state.replace(
      step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state
  )
  return new_state, metrics


def _gather_rows(params, batch, rng, fns: StepFns, axis_name):
  """The step's rows `[R]` (the same on every device) and their current values `[R, d]`."""
  if fns.rows_fn is None:
    raise ValueError("a SparseRowsOptimizer needs StepFns.rows_fn (the rows each step uses)")
  table = sparse_rows.get_path(params, fns.tx.path)
  rows = fns.rows_fn(batch, rng)
  if axis_name is not None:  # the union over devices, so that the rows' gradients psum
    every = jax.lax.all_gather(rows, axis_name).reshape(-1)
    rows = jnp.unique(every, size=every.size, fill_value=table.shape[0])
  return rows, table.at[rows].get(mode="fill", fill_value=0)


def _global_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


class Parallel:
  """Places states and batches for one of the three compilations and compiles steps for it.

  Batches handed to `put_batch` are this process's share of the global batch (numpy arrays with
  a leading batch axis). States are kept in the compiled form between steps; `get_state` returns
  them as plain (unreplicated) arrays for checkpointing and evaluation.

  Multi-process (after `distributed.initialize`): the mesh spans every process's devices and
  `put_state` checks that every process passes the same state; `get_metrics` and `host_state`
  read this process's replica (no cross-process traffic), so evaluation runs on process-local
  copies, and orbax, given the host state on every process, writes it once (from process 0).
  """

  def __init__(self, mode: str = "jit"):
    if mode not in MODES:
      raise ValueError(f"parallel mode must be one of {MODES}, got {mode!r}")
    self.mode = mode
    # pmap maps over this process's devices; the mesh spans every process's devices.
    devices = {"jit": jax.devices()[:1], "pmap": jax.local_devices(), "mesh": jax.devices()}[mode]
    self.mesh = Mesh(np.asarray(devices), (AXIS,))
    self.replicated = NamedSharding(self.mesh, P())
    self.data_sharding = NamedSharding(self.mesh, P(AXIS))

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  def compile(self, fns: StepFns, *, donate: bool = True) -> Callable:
    donate_argnums = (0,) if donate else ()
    if self.mode == "pmap":
      step = functools.partial(train_step, fns=fns, axis_name=AXIS)
      return jax.pmap(step, axis_name=AXIS, donate_argnums=donate_argnums)
    step = functools.partial(train_step, fns=fns)
    if self.mode == "jit":
      return jax.jit(step, donate_argnums=donate_argnums)
    return jax.jit(
        step,
        in_shardings=(self.replicated, self.data_sharding),
        out_shardings=(self.replicated, self.replicated),
        donate_argnums=donate_argnums,
    )

  def put_state(self, state):
    if self.mode == "pmap":  # one copy per device along a leading axis
      n = self.num_devices
      return jax.tree_util.tree_map(
          lambda x: jax.device_put(np.broadcast_to(x, (n, *np.shape(x))), self.data_sharding), state)
    return jax.device_put(state, self.replicated)

  def get_state(self, state):
    if self.mode == "pmap":
      return jax.tree_util.tree_map(lambda x: x[0], state)
    return state

  def host_state(self, state):
    """The state as numpy arrays: this process's copy (for checkpoints and evaluation)."""
    return jax.tree_util.tree_map(local_value, self.get_state(state))

  def put_batch(self, batch):
    """This process's numpy batch -> device arrays laid out for the compiled step."""
    if self.mode == "pmap":
      n = self.num_devices
      return jax.tree_util.tree_map(
          lambda x: jax.device_put(x.reshape(n, -1, *x.shape[1:]), self.data_sharding), batch)
    if self.mode == "jit":
      return jax.tree_util.tree_map(jnp.asarray, batch)
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(self.data_sharding, x), batch
    )

  def get_metrics(self, metrics) -> dict[str, float]:
    if self.mode == "pmap":
      metrics = jax.tree_util.tree_map(lambda x: x[0], metrics)
    return {k: float(local_value(v)) for k, v in metrics.items()}


def local_copy(x):
  """This process's copy of a replicated array (still on device), without cross-process
  communication; other values unchanged."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    if not x.is_fully_replicated:
      raise ValueError(f"array of shape {x.shape} is sharded across processes ({x.sharding}); "
                       "only replicated arrays have a process-local copy")
    return x.addressable_data(0)
  return x


def local_value(x) -> np.ndarray:
  """This process's copy of a replicated array as numpy."""
  return np.asarray(local_copy(x))
