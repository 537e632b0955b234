"""Edit one named layer's output during a forward pass, without changing the model code.

Built on `flax.linen.intercept_methods`: the interceptor lets every call through and, for the
`__call__` of the module whose path matches the layer (e.g. `("blocks_0",)` for `"blocks_0"`),
hands the output `h[B, L, d]` to an edit function and continues the forward pass with what it
returns. Pure and jittable; the edit function may close over arrays (traced when they are
arguments of the enclosing jitted function).

Two forms:

* `apply_with_layer_edit(model, variables, input_ids, layer, edit_fn)`: edit_fn(h) -> h'.
* `LayerEdit(layer, fn, args)`: a pytree whose `args` (e.g. SAE parameters, edit strengths) are
  traced and whose `layer` and `fn` are static, so it can be passed *into* jitted functions such
  as `recommender.evaluate(..., edit=...)`; changing `args` does not recompile, changing `fn`
  (compared by identity: use a module-level function) does.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
from flax import struct

from seqrec_jax.recommender.activations import layer_path


def layer_edit_interceptor(layer: str, edit_fn: Callable[[jax.Array], jax.Array]):
  """An interceptor replacing the output of `layer`'s `__call__` by `edit_fn(output)`."""
  path = layer_path(layer)

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and context.module.path == path:
      edited = edit_fn(out)
      if edited.shape != out.shape:
        raise ValueError(f"edit of {layer} changed its shape {out.shape} -> {edited.shape}")
      return edited.astype(out.dtype)
    return out

  return interceptor


def apply_with_layer_edit(model: nn.Module, variables, input_ids: jax.Array, layer: str,
                          edit_fn: Callable[[jax.Array], jax.Array], *, method=None, **kwargs):
  """`model.apply(variables, input_ids, method=method, **kwargs)` with `layer`'s output edited."""
  with nn.intercept_methods(layer_edit_interceptor(layer, edit_fn)):
    return model.apply(variables, input_ids, method=method, **kwargs)


@struct.dataclass
class LayerEdit:
  """`h -> fn(args, h)` at `layer`; a pytree with traced `args` (see module docstring)."""

  layer: str = struct.field(pytree_node=False)  # e.g. "blocks_0"
  fn: Callable[[Any, jax.Array], jax.Array] = struct.field(pytree_node=False)  # (args, h) -> h'
  args: Any = None  # arrays used by `fn`

  def __call__(self, h: jax.Array) -> jax.Array:
    return self.fn(self.args, h)


def maybe_edited_apply(model: nn.Module, variables, input_ids, edit: LayerEdit | None, **kwargs):
  """`model.apply` with `edit` applied when it is not None."""
  if edit is None:
    return model.apply(variables, input_ids, **kwargs)
  return apply_with_layer_edit(model, variables, input_ids, edit.layer, edit, **kwargs)


# Common edits (module-level so that jit caches them by identity).


def _zero(args, h):
  del args
  return h * 0


def zero_ablation(layer: str) -> LayerEdit:
  """Replace `layer`'s output by zeros at every position."""
  return LayerEdit(layer, _zero)


def _reconstruct(sae, h):
  return sae.reconstruct(h)


def sae_splice(layer: str, sae) -> LayerEdit:
  """Replace `layer`'s output by the reconstruction of a `sae.TrainedSAE` at every position."""
  return LayerEdit(layer, _reconstruct, sae)
