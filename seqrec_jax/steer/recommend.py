"""The `recommend` command: one user's top-k before and after edits."""

from __future__ import annotations


import numpy as np

from seqrec_jax.recommender import input_pipeline
from seqrec_jax.interpret import stage as interpret_stage
from seqrec_jax.recommender import evaluation
from seqrec_jax.steer import edits as steering
from seqrec_jax.steer.stage import attribute_controls, load_steering_context


def recommend(config, workdir, user: str, edit_texts, *, k: int = 10, recent: int = 10) -> str:
  """The user's recent items and top-k before and after the edits, as printable text."""
  (rec_config, dataset, split, model_cfg, params, _, typical, trained,
   layer) = load_steering_context(config, workdir)
  inter = dataset.interactions
  user_ids = [str(u) for u in inter.user_ids]
  if str(user) not in user_ids:
    raise steering.close_matches_error("user", str(user), user_ids)
  row = user_ids.index(str(user))
  history = inter.sequence(row)
  edits = steering.resolve_edits(edit_texts, attribute_controls(workdir), config.steer.mode)
  evalset_like = _single_user_eval(history)
  arrays = input_pipeline.make_eval_arrays(evalset_like, kind=model_cfg.kind,
                                           max_len=model_cfg.max_len, batch_size=1,
                                           mask_token=model_cfg.mask_token)
  batch = next(arrays.batches(1))
  lines = [f"user {user}: {len(history)} interactions; most recent last:"]
  lines += [f"  {_describe(dataset, i)}" for i in history[-recent:]]

  def top_items(edit):
    _, top = evaluation._eval_batch(params, batch, model_cfg=model_cfg, k=k,
                                     filter_seen=rec_config.eval.filter_seen, edit=edit)
    return [int(i) for i in np.asarray(top)[0]]

  before = top_items(None)
  lines.append(f"top {k} without edits:")
  lines += [f"  {r + 1:2d}. {_describe(dataset, i)}" for r, i in enumerate(before)]
  if edits:
    edit = steering.layer_edit(layer, trained, steering.Edits.make(edits), typical,
                               positions=config.steer.positions,
                               error_preserving=config.steer.error_preserving)
    after = top_items(edit)
    shown = ", ".join(edit_texts)
    lines.append(f"top {k} with {shown} ({config.steer.mode}, latents {[e[0] for e in edits]}):")
    lines += [f"  {r + 1:2d}. {_describe(dataset, i)}{'' if i in before else '   (new)'}"
              for r, i in enumerate(after)]
  return "\n".join(lines)


def _single_user_eval(history):
  """Predict the item after the user's whole history (target unknown: 0)."""
  from seqrec_jax.data.splits import EvalSet, make_sequences

  return EvalSet(make_sequences([history], [0]), np.zeros(1, np.int32))


def _describe(dataset, item: int) -> str:
  title, names = interpret_stage.item_text(dataset, item)
  return f"{title}  [{names}]"
