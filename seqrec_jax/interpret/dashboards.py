"""What the explorer shows per latent: top items and sequences, activation histogram, logit effect.

`latent_dashboards` builds every latent's card in one pass (one sort over all latents for the
items each promotes); `top_examples_json` the labelled latents' top items and sequences kept in
the interpret stage's results. Sequences are shown through an index built once in O(N log N).
"""

from __future__ import annotations

import numpy as np

from seqrec_jax.data.containers import item_text


def top_examples_json(dataset, acts, top, labels_by_latent, history: int = 5) -> dict:
  index = history_index(acts)
  out = {}
  for latent in labels_by_latent:
    out[str(latent)] = {
        "items": [item_json(dataset, int(i)) for i in top["top_items"][latent] if i > 0],
        "sequences": [sequence_example(dataset, acts, index, int(r), history)
                      for r in top["top_rows"][latent] if r >= 0],
    }
  return out


def history_index(acts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(order, rank, block_start)` `[N]` each, built once in O(N log N): `order` sorts the
  activations by sequence then position, `rank[i]` is activation i's place in that order and
  `block_start[k]` where the sequence of the k-th sorted activation begins."""
  order = np.lexsort((acts.positions, acts.rows))
  rank = np.empty_like(order)
  rank[order] = np.arange(len(order))
  sorted_rows = acts.rows[order]
  starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
  block_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
  return order, rank, block_start


def sequence_example(dataset, acts, index, row: int, history: int) -> dict:
  """The user, position and the last few items up to that position of one activation row
  (`index` from `history_index`: O(history) per example, not O(N))."""
  order, rank, block_start = index
  k = rank[row]
  items = acts.items[order[max(block_start[k], k - history + 1):k + 1]]
  return {"user": str(dataset.interactions.user_ids[acts.users[row]]),
          "position": int(acts.positions[row]),
          "items": [str(dataset.attributes.titles[i]) for i in items]}


def latent_dashboards(dataset, latents, stats, labels, mono, top, acts, logit_effect,
                      attribute_effect, names, *, num_bins: int = 20, history: int = 5) -> dict:
  """Per latent (keyed by its id): label, firing rate, monosemanticity, top items and sequences, a histogram of its
  positive activations, and its logit effect (the items and attributes it promotes)."""
  index = history_index(acts)
  # One sort over all latents: the 10 items each promotes most (item 0 pads) and its attributes
  # by effect.
  promoted_items = np.argsort(-logit_effect[:, 1:], axis=1, kind="stable")[:, :10] + 1
  attributes_by_effect = np.argsort(-np.nan_to_num(attribute_effect, nan=-np.inf), axis=1,
                                    kind="stable")
  out = {}
  for j in range(latents.shape[1]):
    column = latents[:, j]
    positive = column[column > 0]
    counts, edges = np.histogram(positive, bins=num_bins) if len(positive) else ([], [])
    promoted, by_effect = promoted_items[j], attributes_by_effect[j]
    label = labels.get(j)
    out[str(j)] = {
        "latent": j,
        "label": label["attribute"] if label else None,
        "label_corr": label["corr"] if label else None,
        "fire_rate": float(stats["fire_rate"][j]),
        "monosemanticity": None if np.isnan(mono[j]) else float(mono[j]),
        "best_auc_attribute": (names[int(np.nanargmax(stats["auc"][j]))]
                               if np.isfinite(stats["auc"][j]).any() else None),
        "histogram": {"edges": [float(x) for x in edges], "counts": [int(c) for c in counts]},
        "top_items": [item_json(dataset, int(i)) for i in top["top_items"][j] if i > 0],
        "top_sequences": [sequence_example(dataset, acts, index, int(r), history)
                          for r in top["top_rows"][j] if r >= 0],
        "logit_effect": {
            "items": [{**item_json(dataset, int(i)), "effect": float(logit_effect[j, i])}
                      for i in promoted],
            "attributes": [{"attribute": names[g], "effect": float(attribute_effect[j, g])}
                           for g in by_effect[:5] if np.isfinite(attribute_effect[j, g])],
        },
    }
  return {"num_latents": int(latents.shape[1]), "latents": out}


def item_json(dataset, item: int) -> dict:
  title, attributes = item_text(dataset, item)
  return {"item": item, "title": title, "attributes": attributes}
